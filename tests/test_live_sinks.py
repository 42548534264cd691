"""Live sinks with no virtual camera device: a fake pyvirtualcam backend registered in
its backend table for one test at a time, the UDP stream read back by PyAV on 127.0.0.1, fan-out,
null, and the preview's GUI check."""
from __future__ import annotations

import socket
import threading
import time
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest
import pyvirtualcam

from streamer.frame import Frame
from streamer.sinks.multi import MultiSink
from streamer.sinks.network import NetworkSink, StreamError
from streamer.sinks.null import NullSink
from streamer.sinks.virtualcam import (PixelFormatRefused, VirtualCameraError,
                                       VirtualCameraUnavailable, VirtualCamSink, install_hint,
                                       open_camera)
from streamer.sources.synthetic import SyntheticSource


class FakeCam:
    """A pyvirtualcam backend that keeps what it is sent."""

    instances: list["FakeCam"] = []
    accept = ("24BG", "raw ", "I420")

    def __init__(self, *, width, height, fps, fourcc, device, **kw):
        from pyvirtualcam.util import decode_fourcc
        fmt = decode_fourcc(fourcc)
        if fmt not in self.accept:
            raise RuntimeError("Unsupported image format.")
        self.width, self.height, self.fps, self.fmt = width, height, fps, fmt
        self._device = device or "/dev/fake0"
        self.frames: list[np.ndarray] = []
        self.times: list[float] = []
        self.closed = False
        type(self).instances.append(self)

    def send(self, frame):
        self.frames.append(frame.copy())
        self.times.append(time.monotonic())

    def close(self):
        self.closed = True

    def device(self):
        return self._device

    def native_fourcc(self):
        return None


class RgbOnlyCam(FakeCam):
    accept = ("raw ",)


@pytest.fixture
def fake_vcam(monkeypatch):
    from pyvirtualcam.camera import BACKENDS
    FakeCam.instances = []
    # registered for this test only: a later test must still find no virtual camera
    monkeypatch.setitem(BACKENDS, "toonstream-fake", FakeCam)
    monkeypatch.setitem(BACKENDS, "toonstream-fake-rgb", RgbOnlyCam)
    return FakeCam


def _frame(img, i=0, t=None):
    return Frame(index=i, pts=i, time_base=Fraction(1, 30),
                 capture_time=time.monotonic() if t is None else t, image=img)


def test_virtual_camera_gets_bgr_frames_when_the_backend_takes_bgr(fake_vcam):
    sink = VirtualCamSink(320, 180, 30, backend="toonstream-fake")
    img = np.zeros((180, 320, 3), np.uint8)
    img[..., 2] = 200  # red in BGR
    sink.write(_frame(img))
    cam = fake_vcam.instances[-1]
    assert sink.pixel_format == "BGR" and cam.fmt == "24BG"
    assert cam.frames[0].reshape(180, 320, 3)[0, 0].tolist() == [0, 0, 200]
    assert "toonstream-fake" in sink.describe() and "/dev/fake0" in sink.describe()
    sink.close()
    assert cam.closed


def test_virtual_camera_falls_back_to_rgb_for_a_backend_without_bgr(fake_vcam):
    sink = VirtualCamSink(64, 48, 30, backend="toonstream-fake-rgb")
    img = np.zeros((48, 64, 3), np.uint8)
    img[..., 2] = 200
    sink.write(_frame(img))
    assert sink.pixel_format == "RGB"
    assert fake_vcam.instances[-1].frames[0].reshape(48, 64, 3)[0, 0].tolist() == [200, 0, 0]
    sink.close()


def test_virtual_camera_is_paced_at_the_output_fps(fake_vcam):
    t = [0.0]
    sleeps = []

    def sleep(s):
        sleeps.append(s)
        t[0] += s

    sink = VirtualCamSink(32, 32, 30, backend="toonstream-fake", clock=lambda: t[0], sleep=sleep)
    img = np.zeros((32, 32, 3), np.uint8)
    sent_at = []
    for i in range(60):  # frames arrive at 60 fps
        t[0] = max(t[0], i / 60)
        sink.write(_frame(img, i))
        sent_at.append(t[0])
    rate = (len(sent_at) - 1) / (sent_at[-1] - sent_at[0])
    assert 28 <= rate <= 31
    # frames arriving at the output rate never wait
    t[0], sleeps[:] = 100.0, []
    for i in range(30):
        t[0] = 100.0 + i / 30
        sink.write(_frame(img, i))
    assert sleeps == []


def test_no_virtual_camera_is_one_line_that_says_how_to_install_one(monkeypatch):
    from pyvirtualcam.camera import BACKENDS
    if "v4l2loopback" in BACKENDS:
        try:
            pyvirtualcam.Camera(64, 48, 30, backend="v4l2loopback").close()
            pytest.skip("this machine has a v4l2loopback device")
        except RuntimeError:
            pass
    with pytest.raises(VirtualCameraError) as info:
        VirtualCamSink(64, 48, 30, backend="v4l2loopback" if "v4l2loopback" in BACKENDS else None)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("no virtual camera")
    if "v4l2loopback" in BACKENDS:
        assert "sudo modprobe v4l2loopback exclusive_caps=1" in msg


def test_install_hints_per_system():
    assert "sudo modprobe v4l2loopback exclusive_caps=1" in install_hint("Linux")
    for system in ("Windows", "Darwin"):
        assert "OBS Studio 30 or later" in install_hint(system)
        assert "virtual camera once" in install_hint(system)


class NoFormatCam(FakeCam):
    accept = ()


class BusyCam(FakeCam):
    """A device another program holds: no pixel format will help."""

    tries = 0

    def __init__(self, **kw):
        type(self).tries += 1
        raise RuntimeError("device /dev/video9 is busy")


def test_a_refused_pixel_format_is_its_own_error_and_the_next_format_is_tried(fake_vcam,
                                                                              monkeypatch):
    from pyvirtualcam.camera import BACKENDS
    with pytest.raises(PixelFormatRefused, match="Unsupported image format"):
        open_camera(64, 48, 30, "BGR", backend="toonstream-fake-rgb")
    assert not issubclass(PixelFormatRefused, VirtualCameraUnavailable)
    monkeypatch.setitem(BACKENDS, "toonstream-no-format", NoFormatCam)
    with pytest.raises(VirtualCameraUnavailable) as info:
        VirtualCamSink(64, 48, 30, backend="toonstream-no-format")
    assert str(info.value).startswith("no virtual camera (") and "\n" not in str(info.value)
    assert fake_vcam.instances == []


def test_a_camera_that_cannot_open_is_not_retried_in_other_formats(fake_vcam, monkeypatch):
    from pyvirtualcam.camera import BACKENDS
    monkeypatch.setitem(BACKENDS, "toonstream-busy", BusyCam)
    BusyCam.tries = 0
    with pytest.raises(VirtualCameraUnavailable, match="busy"):
        open_camera(64, 48, 30, "BGR", backend="toonstream-busy")
    BusyCam.tries = 0
    with pytest.raises(VirtualCameraUnavailable) as info:
        VirtualCamSink(64, 48, 30, device="/dev/video9", backend="toonstream-busy")
    assert str(info.value).startswith("cannot open virtual camera /dev/video9: ")
    assert "check the device name" in str(info.value)
    assert BusyCam.tries == 1


def test_an_unknown_virtual_camera_backend_lists_the_available_ones(fake_vcam):
    with pytest.raises(VirtualCameraError, match="no virtual camera backend 'nope'.*toonstream-fake"):
        VirtualCamSink(64, 48, 30, backend="nope")


def _free_udp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class UdpReceiver:
    """Read an MPEG-TS stream from udp://127.0.0.1:PORT with PyAV in a thread (bounded)."""

    def __init__(self, port: int, want: int, timeout_s: float = 8.0):
        self.url = f"udp://127.0.0.1:{port}"
        self.want, self.timeout_s = want, timeout_s
        self.frames: list[tuple[int, int, np.ndarray]] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            with av.open(self.url, format="mpegts", timeout=self.timeout_s,
                         options={"overrun_nonfatal": "1", "fifo_size": "500000"}) as c:
                for f in c.decode(video=0):
                    self.frames.append((f.width, f.height, f.to_ndarray(format="bgr24")))
                    if len(self.frames) >= self.want:
                        break
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def start(self):
        self.thread.start()
        time.sleep(0.3)  # let it bind the port before anything is sent
        return self

    def join(self):
        self.thread.join(self.timeout_s + 2)


def test_udp_stream_is_read_back_by_pyav():
    port = _free_udp_port()
    rx = UdpReceiver(port, want=20).start()
    sink = NetworkSink(f"udp://127.0.0.1:{port}", 320, 176, 30, gop_s=0.5)
    src = SyntheticSource(320, 176, 30, frames=60)
    for f in src.frames():
        sink.write(f)
    sink.finish()
    rx.join()
    assert rx.error is None, rx.error
    assert len(rx.frames) >= 20
    w, h, img = rx.frames[-1]
    assert (w, h) == (320, 176)
    # the picture survives the trip: close to what was sent for some frame
    assert img.mean() > 30
    assert sink.bytes > 0 and sink.frames == src.produced


def test_stream_urls_are_checked():
    with pytest.raises(StreamError, match="unsupported stream URL"):
        NetworkSink("http://example.com/x", 320, 180, 30)
    with pytest.raises(StreamError, match="even size"):
        NetworkSink("udp://127.0.0.1:9", 321, 180, 30)


@pytest.mark.parametrize("url,hint", [
    ("rtmp:///live/key", "rtmp:///live/key: no host given (use rtmp://HOST[:PORT]/APP/KEY)"),
    ("rtmps://:1935/live/key", "no host given (use rtmps://HOST[:PORT]/APP/KEY)"),
    ("rtmp://example.com", "rtmp://example.com: an RTMP URL names the server's application "
                           "and the stream key (use rtmp://example.com/APP/KEY, e.g. "
                           "rtmp://example.com/live/KEY)"),
    ("rtmp://example.com:1935/live", "(use rtmp://example.com:1935/APP/KEY"),
    ("udp://:5000", "no host given (use udp://HOST:PORT)"),
    ("ftp://example.com/x", "use udp://HOST:PORT, srt://HOST:PORT or rtmp://HOST[:PORT]/APP/KEY"),
])
def test_stream_url_hints_give_each_scheme_its_own_form(url, hint):
    # issue 23: the RTMP hint said rtmp://HOST:PORT, where RTMP takes an application and a key
    with pytest.raises(StreamError) as info:
        NetworkSink(url, 320, 180, 30)
    assert hint in str(info.value) and "\n" not in str(info.value)
    if url.startswith("rtmp"):
        assert "rtmp://HOST:PORT" not in str(info.value)


def test_rtmp_without_a_server_is_a_one_line_error():
    port = _free_udp_port()  # nothing listens on this TCP port either, almost surely
    t0 = time.monotonic()
    with pytest.raises(StreamError) as info:
        NetworkSink(f"rtmp://127.0.0.1:{port}/live/key", 320, 180, 30)
    assert "cannot open rtmp://127.0.0.1" in str(info.value) and "\n" not in str(info.value)
    assert time.monotonic() - t0 < 15


def test_multi_sink_writes_every_sink_and_reports_latency():
    a, b = NullSink(), NullSink(keep_last=True)
    lat = []
    multi = MultiSink([a, b], on_written=lat.append)
    img = np.full((8, 8, 3), 7, np.uint8)
    for i in range(5):
        multi.write(_frame(img, i, t=time.monotonic() - 0.05))
    multi.finish()
    multi.close()
    assert a.frames == b.frames == 5 and b.last[0, 0, 0] == 7
    assert len(lat) == 5 and all(0.05 <= x < 1.0 for x in lat)


def test_multi_sink_finishes_all_sinks_even_when_one_fails():
    class Bad(NullSink):
        def finish(self):
            raise RuntimeError("boom")

    good = NullSink()
    good.finished = False
    good.finish = lambda: setattr(good, "finished", True)
    multi = MultiSink([Bad(), good])
    with pytest.raises(RuntimeError, match="boom"):
        multi.finish()
    assert good.finished


def test_preview_needs_a_gui_and_says_how_to_get_one(monkeypatch):
    from streamer.sinks.preview import PreviewError, PreviewSink, gui_available
    why = gui_available()
    if why is None:
        pytest.skip("this machine can open windows")
    with pytest.raises(PreviewError, match="cannot open the preview window"):
        PreviewSink()


def test_preview_copies_frames_for_the_main_thread(monkeypatch):
    from streamer.sinks.preview import PreviewSink
    shown = []
    monkeypatch.setattr(cv2, "namedWindow", lambda *a: None)
    monkeypatch.setattr(cv2, "resizeWindow", lambda *a: None)
    monkeypatch.setattr(cv2, "imshow", lambda name, img: shown.append(img.copy()))
    monkeypatch.setattr(cv2, "waitKey", lambda ms: ord("3"))
    monkeypatch.setattr(cv2, "getWindowProperty", lambda *a: 1.0)
    p = PreviewSink(check=False, overlay_text=lambda: "30 fps\nanime")
    img = np.zeros((120, 200, 3), np.uint8)
    p.write(_frame(img))
    img[:] = 255  # the ring buffer is reused: the preview kept its own copy
    assert p.pump() == ord("3")
    assert len(shown) == 1 and shown[0][100:, 150:].max() == 0  # overlay only top-left
    assert shown[0][:40, :100].max() > 0


# --- NDI names (issue 23 item 1) ------------------------------------------------------------
# NDI keeps one source per name on a machine; cyndilib 0.1.3 crashed the process (exit 139)
# when NDI refused a second sender of a name. These run in child processes, so a crash is a
# failed test rather than a dead test run, and use names of their own (other runs on this
# machine may hold NDI names meanwhile).

_ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def _ndi_name(tag: str) -> str:
    import uuid
    return f"toonstream-{tag}-{uuid.uuid4().hex[:8]}"


def _run_stream(models_dir, *sinks: str) -> tuple[int, str]:
    import os
    import subprocess
    import sys
    env = dict(os.environ, TOONSTREAM_MODELS=str(models_dir))
    args = [a for s in sinks for a in ("--sink", s)]
    res = subprocess.run([sys.executable, str(_ROOT / "run_stream.py"), "--config", "live-cpu",
                          "--synthetic", "--camera-size", "320x180", "--work", "64",
                          "--status-every", "0", "--no-commands", "--seconds", "1", *args],
                         cwd=_ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                         text=True, timeout=300)
    return res.returncode, res.stderr


@pytest.mark.parametrize("first, second", [
    ("ndi:{n}", "ndi:{n}"),
    ("ndi:{n}", " NDI: {n} "),            # the same name, written differently
    ("ndi:{n}:cam", "ndi:{n}/cam"),       # NDI turns both into "{n} cam"
])
def test_the_same_ndi_sink_twice_gets_the_given_twice_error_that_files_get(
        models_dir, tmp_path, first, second):
    pytest.importorskip("cyndilib")
    name = _ndi_name("twice")
    rc, err = _run_stream(models_dir, first.format(n=name), second.format(n=name))
    file_rc, file_err = _run_stream(models_dir, str(tmp_path / "a.mkv"),
                                    str(tmp_path / "." / "a.mkv"))
    last = err.strip().splitlines()[-1]
    assert rc == file_rc and rc not in (0, -11, 139), err  # refused as the file is, no crash
    assert last.startswith("error: sink") and "is given twice" in last, err
    assert "given twice" in file_err.strip().splitlines()[-1]
    assert "Traceback" not in err and "source:" not in err  # refused before anything starts
    assert list(tmp_path.iterdir()) == []


NDI_TWICE = """
import sys
from fractions import Fraction
import numpy as np
from streamer.frame import Frame
from streamer.sinks.ndi import NdiError, NdiSink
name = sys.argv[1]
first = NdiSink(name, 64, 48, 24.0)
for other in (name, "y" * 300):
    try:
        NdiSink(other, 64, 48, 24.0)
        print("opened")
    except NdiError as exc:
        print("refused:", exc)
first.write(Frame(0, 0, Fraction(1, 24), 0.0, np.zeros((48, 64, 3), np.uint8)))
print("first sent", first.frames)
first.close()
"""


def test_an_ndi_name_ndi_refuses_is_one_error_and_the_open_source_keeps_sending(tmp_path):
    """In one process: a name already open, then one too long for NDI."""
    import subprocess
    import sys
    pytest.importorskip("cyndilib")
    res = subprocess.run([sys.executable, "-c", NDI_TWICE, _ndi_name("held")], cwd=_ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, (res.returncode, res.stdout, res.stderr)
    lines = res.stdout.splitlines()
    assert len(lines) == 3 and "caught exc" not in res.stdout, lines  # cyndilib's own print
    assert lines[0].startswith("refused: NDI refused the source name") and \
        "already running on this machine" in lines[0], lines
    assert lines[1].startswith("refused: NDI refused the source name") and \
        "at most 253" in lines[1], lines
    assert lines[2] == "first sent 1"


NDI_HOLD = """
import sys
from streamer.sinks.ndi import NdiSink
sink = NdiSink(sys.argv[1], 64, 48, 24.0)
print("holding", flush=True)
sys.stdin.read()
sink.close()
"""


def test_run_stream_on_an_ndi_name_another_program_holds_is_one_error_line(models_dir,
                                                                          tmp_path):
    """The other order: the name is taken by another process, and a recording opened
    before the NDI sink is closed again and leaves nothing."""
    import subprocess
    import sys
    pytest.importorskip("cyndilib")
    name = _ndi_name("other")
    holder = subprocess.Popen([sys.executable, "-c", NDI_HOLD, name], cwd=_ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        rc, err = _run_stream(models_dir, str(tmp_path / "rec.mkv"), f"ndi:{name}")
    finally:
        holder.communicate("", timeout=60)
    lines = err.strip().splitlines()
    assert rc == 1, err
    assert lines[-1].startswith(f"error: NDI refused the source name '{name}'"), err
    assert "already running on this machine" in lines[-1] and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # the recording's temporary file is gone


@pytest.mark.parametrize("sinks, words", [
    (("ndi:a\tb",), "control character"),
    (("ndi:",), "needs a name"),
    (("ndi:  ", "null"), "needs a name"),
])
def test_an_ndi_name_ndi_cannot_publish_is_refused_with_the_sinks(sinks, words):
    from streamer.config import LiveSettings
    from streamer.live.parts import LiveError, sink_specs
    with pytest.raises(LiveError, match=words):
        sink_specs(LiveSettings(sinks=sinks))


def test_ndi_names_that_differ_in_case_are_two_sources():
    from streamer.config import LiveSettings
    from streamer.live.parts import sink_specs
    from streamer.sinks.ndi import ndi_key
    assert sink_specs(LiveSettings(sinks=("ndi:cam", "ndi:Cam"))) == ["ndi:cam", "ndi:Cam"]
    assert ndi_key('a:b<c>d\\e/f|g?h*i"j') == "a b c d e f g h i j"


# --- recordings -----------------------------------------------------------------------------

def _bgra(i: int, w: int, h: int) -> np.ndarray:
    """A picture with detail (libvpx's real-time mode skips flat blocks) and a soft-edged
    person-like mask that moves, as alpha."""
    rng = np.random.default_rng(i)
    y, x = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 4), np.uint8)
    img[..., 0] = (x * 255 // (w - 1)).astype(np.uint8)
    img[..., 1] = (y * 255 // (h - 1)).astype(np.uint8)
    blobs = rng.integers(0, 256, (h // 8, w // 8), dtype=np.uint8)  # finer than 4:2:0 keeps
    img[..., 2] = cv2.resize(blobs, (w, h), interpolation=cv2.INTER_CUBIC)
    a = np.zeros((h, w), np.uint8)
    cv2.ellipse(a, (w // 2 + 4 * i, h // 2), (w // 6, h // 3), 0, 0, 360, 255, -1)
    img[..., 3] = cv2.GaussianBlur(a, (0, 0), 2)
    return img


@pytest.mark.parametrize("width, tiles", [(1280, "2"), (640, "1"), (320, "0")])
def test_a_live_vp9_recording_gets_libvpx_real_time_settings(tmp_path, width, tiles):
    from streamer.frame import StreamInfo
    from streamer.live.parts import open_recording
    from streamer.sinks.video_file import usable_cpus
    info = StreamInfo(width, width * 9 // 16, Fraction(1, 1000), Fraction(30))
    for name, alpha in (("rec.webm", True), ("plain.webm", False), ("rec.mkv", True)):
        sink = open_recording(str(tmp_path / name), info, overwrite=False, alpha=alpha)
        try:
            assert sink.codec == "libvpx-vp9" and sink.alpha == alpha
            assert sink.options == {"crf": "24", "b": "0", "deadline": "realtime",
                                    "cpu-used": "8", "row-mt": "1", "lag-in-frames": "0",
                                    "tile-columns": tiles}
            assert sink.threads == usable_cpus()
        finally:
            sink.close()
    # x264 recordings keep their own live settings
    sink = open_recording(str(tmp_path / "rec.mp4"), info, overwrite=False)
    try:
        assert sink.codec == "libx264"
        assert sink.options == {"crf": "20", "preset": "veryfast"} and sink.threads == 0
    finally:
        sink.close()
    assert list(tmp_path.iterdir()) == []  # nothing finished, nothing left


def test_an_alpha_webm_recorded_live_keeps_its_alpha(tmp_path):
    from streamer.frame import StreamInfo
    from streamer.live.parts import open_recording
    from test_background import read_alpha_frames
    w, h = 640, 360
    frames = [_bgra(i, w, h) for i in range(12)]
    out = tmp_path / "rec.webm"
    sink = open_recording(str(out), StreamInfo(w, h, Fraction(1, 1000), Fraction(30)),
                          overwrite=False, alpha=True)
    with sink:
        assert sink.threads >= 1 and sink.options["deadline"] == "realtime"
        for i, img in enumerate(frames):
            sink.write(Frame(i, i * 33, Fraction(1, 1000), time.monotonic(), img))
        sink.finish()
    back = read_alpha_frames(out)
    assert len(back) == len(frames)
    for want, got in zip(frames, back):
        d = np.abs(got[..., 3].astype(int) - want[..., 3])
        assert d.mean() <= 1.0
        inside = want[..., 3] == 255
        assert got[..., 3][inside].min() >= 240 and got[..., 3][want[..., 3] == 0].max() <= 15
        assert np.abs(got[..., :3][inside].astype(int) - want[..., :3][inside]).mean() < 12
