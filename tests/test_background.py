"""--background: parsing and one-line errors, composites exactly where the mask says, every
alpha format read back (alpha equals the mask within the codec's tolerance), the CLI end to
end with audio, the live sinks (key colour, checkerboard, alpha recording), NDI, the web page."""
from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from streamer.frame import Frame, StreamInfo
from streamer.sinks.image import write_image
from streamer.sinks.png_sequence import PngSequenceSink
from streamer.sinks.video_file import OutputError, VideoFileSink
from streamer.toon.background import (Background, BackgroundError, Compositor, blend,
                                      blurred_background, checkerboard, cover, parse_background)

ROOT = Path(__file__).resolve().parents[1]
H, W = 48, 64


@pytest.fixture(autouse=True)
def _models_env(models_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("TOONSTREAM_MODELS", str(models_dir))


def _mask() -> np.ndarray:
    """A mask with every kind of pixel: 0, 1, a ramp, and a hard-edged disc."""
    m = np.zeros((H, W), np.float32)
    m[:, W // 2:] = np.linspace(0, 1, W - W // 2, dtype=np.float32)[None, :]
    cv2.circle(m, (W // 4, H // 2), 12, 1.0, -1)
    return m


def _cartoon(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (H, W, 3), dtype=np.uint8)


# --- parsing --------------------------------------------------------------------------------

@pytest.mark.parametrize("text,kind", [("keep", "keep"), ("transparent", "transparent"),
                                       ("blur", "blur"), ("color:#FF8000", "color"),
                                       ("colour:00ff00", "color")])
def test_good_values_parse(text, kind):
    bg = parse_background(text)
    assert bg.kind == kind
    if text == "color:#FF8000":
        assert bg.color == (0, 128, 255)  # BGR


@pytest.mark.parametrize("text", ["", "green", "blur:5", "color:#12345", "color:red",
                                  "image:", "transparent:1"])
def test_bad_values_are_one_line_errors_naming_the_choices(text):
    with pytest.raises(BackgroundError) as e:
        parse_background(text)
    assert "\n" not in str(e.value)


def test_unreadable_background_image_is_one_line(tmp_path):
    fake = tmp_path / "room.png"
    fake.write_text("not an image")
    with pytest.raises(BackgroundError, match="cannot be read as an image"):
        parse_background(f"image:{fake}")
    with pytest.raises(BackgroundError, match="does not exist"):
        parse_background(f"image:{tmp_path / 'missing.jpg'}")


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("args,pattern", [
    (["--background", "stripes"], "--background must be keep, transparent, blur"),
    (["--background", "image:/no/such/room.jpg"], "background image /no/such/room.jpg does not exist"),
    (["--background", "transparent", "-o", "{tmp}/out.jpg"], "cannot carry the alpha channel"),
])
def test_cli_bad_background_is_one_error_line_and_writes_nothing(media_dir, tmp_path, args,
                                                                 pattern):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "-o" not in args:
        args += ["-o", str(tmp_path / "out.png")]
    res = _run("run_video.py", str(media_dir / "bryan_115px.png"), *args)
    lines = res.stderr.strip().splitlines()
    assert res.returncode != 0
    assert lines[-1].startswith("error: ") and pattern in lines[-1], res.stderr
    assert "Traceback" not in res.stderr
    assert list(tmp_path.iterdir()) == []


def test_transparent_video_into_mp4_names_the_outputs_that_carry_alpha(tmp_path):
    clip = _clip_with_opus(tmp_path / "in.mkv", n=2)
    res = _run("run_video.py", str(clip), "-o", str(tmp_path / "out.mp4"), "--background",
               "transparent", "--faces", "off")
    assert res.returncode != 0
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: out.mp4: .mp4 cannot carry the alpha channel")
    assert ".webm" in last and ".mov" in last and "%05d.png" in last
    res = _run("run_video.py", str(clip), "-o", str(tmp_path / "out.mkv"), "--background",
               "transparent", "--codec", "libx264")
    assert res.returncode != 0 and "libx264 cannot carry the alpha" in res.stderr


# --- composites -----------------------------------------------------------------------------

def _expected(fg: np.ndarray, bg: np.ndarray, m: np.ndarray) -> np.ndarray:
    return m[..., None] * fg.astype(np.float64) + (1 - m[..., None]) * bg.astype(np.float64)


def test_color_composites_exactly_where_the_mask_says():
    fg, m = _cartoon(), _mask()
    out = Compositor(parse_background("color:#2040ff"))(fg, m)
    plate = np.empty_like(fg)
    plate[...] = (255, 64, 32)
    assert np.abs(out - _expected(fg, plate, m)).max() <= 1.0
    assert (out[m == 1] == fg[m == 1]).all() and (out[m == 0] == plate[m == 0]).all()


def test_image_composites_exactly_where_the_mask_says(tmp_path):
    room = np.random.default_rng(5).integers(0, 256, (90, 200, 3), dtype=np.uint8)
    path = tmp_path / "room.png"
    cv2.imwrite(str(path), room)
    fg, m = _cartoon(1), _mask()
    out = Compositor(parse_background(f"image:{path}"))(fg, m)
    plate = cover(room, W, H)
    assert plate.shape == fg.shape
    assert np.abs(out - _expected(fg, plate, m)).max() <= 1.0
    assert (out[m == 0] == plate[m == 0]).all()


def test_blur_composites_exactly_where_the_mask_says():
    fg, m = _cartoon(2), _mask()
    out = Compositor(parse_background("blur"))(fg, m)
    bg = blurred_background(fg, m)
    assert np.abs(out - _expected(fg, bg, m)).max() <= 1.0
    assert (out[m == 1] == fg[m == 1]).all()
    # the room really is blurred: far smoother than the (noise) cartoon behind it
    room = m == 0
    assert np.abs(np.diff(out.astype(int), axis=1))[room[:, 1:]].mean() < \
        0.3 * np.abs(np.diff(fg.astype(int), axis=1))[room[:, 1:]].mean()


def test_transparent_gives_bgra_with_the_mask_as_alpha_and_keep_changes_nothing():
    fg, m = _cartoon(3), _mask()
    out = Compositor(Background("transparent"))(fg, m)
    assert out.shape == (H, W, 4) and (out[..., :3] == fg).all()
    assert np.abs(out[..., 3] - m * 255).max() <= 0.5 + 1e-3
    assert Compositor(Background("keep"))(fg, m) is fg


def test_preview_checkerboard_shows_through_transparent_pixels_only():
    fg, m = _cartoon(4), _mask()
    bgra = Compositor(Background("transparent"))(fg, m)
    shown = checkerboard(bgra, square=8)
    assert (shown[m == 1] == fg[m == 1]).all()
    assert set(np.unique(shown[m == 0])) <= {153, 204}


# --- alpha round trips ----------------------------------------------------------------------

def _bgra_frames(n: int = 4) -> list[np.ndarray]:
    frames = []
    for i in range(n):
        img = np.empty((H, W, 4), np.uint8)
        yy, xx = np.mgrid[0:H, 0:W]  # smooth colours: 4:2:0 video halves the chroma
        img[..., 0] = (xx * 4 + 20 * i) % 256
        img[..., 1] = yy * 5
        img[..., 2] = 200 - yy * 2
        m = np.roll(_mask(), 3 * i, axis=1)
        img[..., 3] = np.rint(m * 255).astype(np.uint8)
        frames.append(img)
    return frames


def _write_video(path: Path, frames: list[np.ndarray], **kw) -> None:
    info = StreamInfo(W, H, Fraction(1, 24), Fraction(24))
    with VideoFileSink(path, info, alpha=True, **kw) as sink:
        for i, img in enumerate(frames):
            sink.write(Frame(i, i, Fraction(1, 24), 0.0, img))
        sink.finish()


def read_alpha_frames(path: Path) -> list[np.ndarray]:
    """BGRA frames of a video; VP9 through the libvpx-vp9 decoder, the one that reads the
    alpha (FFmpeg's native vp9 decoder drops it)."""
    with av.open(str(path)) as c:
        st = c.streams.video[0]
        if st.codec_context.name == "vp9":
            dec = av.CodecContext.create("libvpx-vp9", "r")
            frames = [f for p in c.demux(st) for f in dec.decode(p if p.size else None)]
        else:
            frames = list(c.decode(st))
        return [f.to_ndarray(format="bgra") for f in frames]


@pytest.mark.parametrize("suffix,pix,tol_mean,tol_max", [
    (".webm", "yuva420p", 1.0, 12), (".mkv", "yuva420p", 1.0, 12),
    (".mov", "yuva444p", 0.6, 2)])
def test_alpha_video_round_trip_keeps_the_mask(tmp_path, suffix, pix, tol_mean, tol_max):
    frames = _bgra_frames()
    out = tmp_path / f"a{suffix}"
    _write_video(out, frames)
    back = read_alpha_frames(out)
    assert len(back) == len(frames)
    with av.open(str(out)) as c:
        name = c.streams.video[0].codec_context.name
    assert name == ("prores" if suffix == ".mov" else "vp9")
    for want, got in zip(frames, back):
        d = np.abs(got[..., 3].astype(int) - want[..., 3])
        assert d.mean() <= tol_mean and d.max() <= tol_max, (d.mean(), d.max())
        # colours too, within a lossy codec's usual error
        assert np.abs(got[..., :3].astype(int) - want[..., :3]).mean() < 12


def test_png_sequence_and_stills_keep_alpha_exactly(tmp_path):
    frames = _bgra_frames(3)
    sink = PngSequenceSink(tmp_path / "seq" / "%05d.png")
    with sink:
        for i, img in enumerate(frames):
            sink.write(Frame(i, i, Fraction(1, 24), 0.0, img))
        assert not (tmp_path / "seq").exists()  # only the temporary folder so far
        sink.finish()
    names = sorted(p.name for p in (tmp_path / "seq").iterdir())
    assert names == ["00001.png", "00002.png", "00003.png"]
    for want, name in zip(frames, names):
        assert (cv2.imread(str(tmp_path / "seq" / name), cv2.IMREAD_UNCHANGED) == want).all()
    for suffix, tol in ((".png", 0), (".webp", 1)):
        write_image(frames[0], tmp_path / f"still{suffix}")
        got = cv2.imread(str(tmp_path / f"still{suffix}"), cv2.IMREAD_UNCHANGED)
        assert got.shape == (H, W, 4)
        assert np.abs(got[..., 3].astype(int) - frames[0][..., 3]).max() <= tol
    with pytest.raises(OutputError, match="cannot carry an alpha channel"):
        write_image(frames[0], tmp_path / "still.jpg")
    assert not (tmp_path / "still.jpg").exists()


def test_unfinished_png_sequence_leaves_nothing(tmp_path):
    sink = PngSequenceSink(tmp_path / "seq" / "f%03d.png")
    sink.write(Frame(0, 0, Fraction(1, 24), 0.0, _bgra_frames(1)[0]))
    sink.close()
    assert list(tmp_path.iterdir()) == []


# --- end to end -----------------------------------------------------------------------------

def _clip_with_opus(path: Path, n: int = 6) -> Path:
    """A tiny 64x48 clip: a bright block on a dark ground, with Opus audio (fits WebM)."""
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=24)
        v.width, v.height, v.pix_fmt = 96, 64, "yuv420p"
        a = c.add_stream("libopus", rate=48000)
        a.layout = "mono"
        for i in range(n):
            img = np.full((64, 96, 3), 40, np.uint8)
            img[10:60, 30 + i:60 + i] = (180, 200, 230)
            f = av.VideoFrame.from_ndarray(img, "bgr24")
            f.pts = i
            c.mux(v.encode(f))
        c.mux(v.encode())
        t = np.arange(int(48000 * n / 24)) / 48000
        wave = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for s in range(0, len(wave), 960):
            af = av.AudioFrame.from_ndarray(wave[None, s:s + 960], format="flt", layout="mono")
            af.sample_rate, af.pts = 48000, s
            c.mux(a.encode(af))
        c.mux(a.encode())
    return path


def test_cli_transparent_webm_keeps_audio_and_its_alpha_is_the_png_sequences(tmp_path):
    clip = _clip_with_opus(tmp_path / "in.mkv")
    common = ["--background", "transparent", "--faces", "off", "--style", "anime", "-y"]
    res = _run("run_video.py", str(clip), "-o", str(tmp_path / "out.webm"), *common)
    assert res.returncode == 0, res.stderr
    res = _run("run_video.py", str(clip), "-o", str(tmp_path / "seq" / "%04d.png"), *common)
    assert res.returncode == 0, res.stderr
    assert "holds no audio" in res.stderr
    seq = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted((tmp_path / "seq").iterdir())]
    webm = read_alpha_frames(tmp_path / "out.webm")
    assert len(seq) == len(webm) == 6
    assert all(f.shape == (64, 96, 4) for f in seq)
    for a, b in zip(seq, webm):
        d = np.abs(a[..., 3].astype(int) - b[..., 3])
        assert d.mean() <= 2.0, d.mean()
    with av.open(str(tmp_path / "out.webm")) as c:
        assert [s.codec_context.name for s in c.streams.audio] == ["opus"]
        assert sum(1 for _ in c.demux(c.streams.audio[0])) > 5


def test_cli_color_is_the_keep_output_over_the_colour_where_the_alpha_says(media_dir, tmp_path):
    src = media_dir / "luciano.png"
    outs = {}
    for name, bg in (("keep", "keep"), ("alpha", "transparent"), ("color", "color:#ff00ff")):
        outs[name] = tmp_path / f"{name}.png"
        res = _run("run_video.py", str(src), "-o", str(outs[name]), "--faces", "off",
                   "--background", bg)
        assert res.returncode == 0, res.stderr
    keep = cv2.imread(str(outs["keep"])).astype(np.float64)
    bgra = cv2.imread(str(outs["alpha"]), cv2.IMREAD_UNCHANGED)
    color = cv2.imread(str(outs["color"])).astype(np.float64)
    assert (bgra[..., :3] == keep).all()  # transparent keeps the cartoon's colours
    a = bgra[..., 3:].astype(np.float64) / 255
    assert 0.2 < (a > 0.5).mean() < 0.9  # a person and a room
    want = a * keep + (1 - a) * np.array([255, 0, 255], np.float64)
    assert np.abs(color - want).max() <= 2.0


# --- live -----------------------------------------------------------------------------------

def test_live_transparent_recording_keeps_alpha_and_other_sinks_get_the_key_colour(tmp_path):
    from streamer.live.parts import open_sinks
    from streamer.config import LiveSettings
    from streamer.sinks.flatten import FlattenSink

    s = LiveSettings(source="synthetic", sinks=("null", str(tmp_path / "rec.webm"),
                                                str(tmp_path / "rec.mp4")),
                     background="transparent", key_color="#00ff00")
    info = StreamInfo(W, H, Fraction(1, 1000), Fraction(24))
    sinks = open_sinks(s, info, lambda: "")
    try:
        kinds = [type(k).__name__ for k in sinks]
        assert kinds == ["NullSink", "VideoFileSink", "FlattenSink"]
        assert sinks[1].alpha and not sinks[2].inner.alpha
        assert "no alpha: the person over #00ff00" in sinks[2].describe()
        frames = _bgra_frames(3)
        for i, img in enumerate(frames):
            f = Frame(i, i * 40, Fraction(1, 1000), 0.0, img)
            for k in sinks:
                k.write(f)
            assert f.image is img  # flattening one sink's copy leaves the others' alpha
        for k in sinks:
            k.finish()
    finally:
        for k in sinks:
            k.close()
    back = read_alpha_frames(tmp_path / "rec.webm")
    assert np.abs(back[0][..., 3].astype(int) - frames[0][..., 3]).mean() <= 1.0
    with av.open(str(tmp_path / "rec.mp4")) as c:
        flat = next(c.decode(video=0)).to_ndarray(format="bgr24").astype(int)
    m = frames[0][..., 3] == 0
    assert np.abs(flat[m] - [0, 255, 0]).mean() < 12  # green where the room was


def test_run_stream_transparent_reports_the_segmentation_cost(tmp_path):
    stats = tmp_path / "s.json"
    res = _run("run_stream.py", "--synthetic", "--camera-size", "160x96", "--camera-fps", "10",
               "--work", "96", "--sink", "null", "--sink", str(tmp_path / "rec.mov"),
               "--background", "transparent", "--faces", "off", "--seconds", "3",
               "--no-commands", "--stats-json", str(stats), "--status-every", "0")
    assert res.returncode == 0, res.stderr
    assert "background transparent (person mask: selfie segmentation" in res.stderr
    import json
    data = json.loads(stats.read_text())
    assert data["seg_ms_median"] is not None and data["seg_ms_median"] > 0
    back = read_alpha_frames(tmp_path / "rec.mov")
    assert back and back[0].shape == (96, 160, 4)


# --- NDI ------------------------------------------------------------------------------------

def test_ndi_sink_sends_bgra_frames(monkeypatch):
    pytest.importorskip("cyndilib")
    from streamer.sinks.ndi import NdiSink

    sink = NdiSink("toonstream-test", W, H, 24.0)
    try:
        frames = _bgra_frames(2)
        assert (sink.to_bgra(frames[0]) == frames[0]).all()
        opaque = sink.to_bgra(frames[0][..., :3].copy())
        assert (opaque[..., 3] == 255).all() and (opaque[..., :3] == frames[0][..., :3]).all()
        for i, img in enumerate(frames):
            sink.write(Frame(i, i, Fraction(1, 24), 0.0, img))
        assert sink.frames == 2
        assert sink.connections() == 0  # nobody listens in the test
        assert "BGRA, alpha kept" in sink.describe()
    finally:
        sink.close()


NDI_SEND = """
import sys, threading, time
from fractions import Fraction
import numpy as np
sys.path.insert(0, {tests!r})
from ndi_receive import receive
from streamer.frame import Frame
from streamer.sinks.ndi import NdiSink
img = np.load({src!r})
sink = NdiSink("toonstream-loop", img.shape[1], img.shape[0], 24.0)
stop = threading.Event()
def send():
    i = 0
    while not stop.is_set():
        sink.write(Frame(i, i, Fraction(1, 24), time.monotonic(), img)); i += 1
        time.sleep(1 / 24)
threading.Thread(target=send, daemon=True).start()
got = receive("toonstream-loop", 30.0)
stop.set(); time.sleep(0.1); sink.close()
np.save({dst!r}, got)
"""


def test_an_ndi_receiver_on_this_machine_reads_the_alpha_back(tmp_path):
    """The NdiSink's frames read back by a real NDI receiver (what OBS's NDI source does),
    through NDI's own compressed transport: the alpha is the mask within a few levels."""
    pytest.importorskip("cyndilib")
    sys.path.insert(0, str(ROOT / "tests"))
    from ndi_receive import ndi_config

    src = _bgra_frames(1)[0]
    np.save(tmp_path / "src.npy", src)
    script = NDI_SEND.format(tests=str(ROOT / "tests"), src=str(tmp_path / "src.npy"),
                             dst=str(tmp_path / "got.npy"))
    env = {**__import__("os").environ, "NDI_CONFIG_DIR": str(ndi_config(tmp_path / "ndi"))}
    res = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    got = np.load(tmp_path / "got.npy", allow_pickle=True)
    assert got.shape == src.shape
    d = np.abs(got[..., 3].astype(int) - src[..., 3])
    assert d.mean() <= 2.0, d.mean()
    assert np.abs(got[..., :3].astype(int) - src[..., :3]).mean() <= 8


def test_run_stream_ndi_sink_sends_the_person_with_transparent_surroundings(media_dir,
                                                                            tmp_path):
    """run_stream --sink ndi:NAME --background transparent on a clip of a real portrait,
    received by an NDI receiver in another process: alpha 255 on the person, 0 on the room."""
    pytest.importorskip("cyndilib")
    sys.path.insert(0, str(ROOT / "tests"))
    from ndi_receive import ndi_config

    clip = tmp_path / "me.mp4"
    person = cv2.resize(cv2.imread(str(media_dir / "luciano.png")), (240, 240))
    with av.open(str(clip), "w") as c:
        v = c.add_stream("libx264", rate=24)
        v.width, v.height, v.pix_fmt = 320, 240, "yuv420p"
        for i in range(48):
            img = np.full((240, 320, 3), (60, 140, 90), np.uint8)
            img[:, 40:280] = person
            f = av.VideoFrame.from_ndarray(img, "bgr24")
            f.pts = i
            c.mux(v.encode(f))
        c.mux(v.encode())
    env = {**__import__("os").environ, "NDI_CONFIG_DIR": str(ndi_config(tmp_path / "ndi"))}
    stream = subprocess.Popen(
        [sys.executable, str(ROOT / "run_stream.py"), "--source", str(clip), "--loop",
         "--sink", "ndi:toonstream-e2e", "--background", "transparent", "--faces", "off",
         "--work", "144", "--seconds", "40", "--no-commands", "--status-every", "0"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        res = subprocess.run([sys.executable, str(ROOT / "tests" / "ndi_receive.py"),
                              "toonstream-e2e", "60", str(tmp_path / "got.npy")],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    finally:
        stream.terminate()
        _, err = stream.communicate(timeout=60)
    assert res.returncode == 0, (res.stdout, err)
    assert "NDI source 'toonstream-e2e' (320x240 BGRA, alpha kept)" in err
    got = np.load(tmp_path / "got.npy")
    alpha = got[..., 3]
    assert got.shape == (240, 320, 4)
    assert alpha[:, :30].mean() < 20  # the room beside the portrait
    assert alpha[120:, 120:200].mean() > 235  # the shirt


def test_ndi_without_cyndilib_says_what_to_install(monkeypatch):
    import builtins

    from streamer.sinks.ndi import NdiError, NdiSink
    real = builtins.__import__

    def no_cyndilib(name, *a, **kw):
        if name.startswith("cyndilib"):
            raise ImportError(name)
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_cyndilib)
    with pytest.raises(NdiError, match=r"toonstream\[ndi\]"):
        NdiSink("x", W, H, 24.0)


# --- web ------------------------------------------------------------------------------------

def test_web_page_offers_the_background_and_its_png_has_alpha(models_dir, media_dir):
    from web.harness import require_web, shared_service
    require_web()
    from streamer.web.app import BACKGROUNDS, build_app

    service = shared_service(models_dir)
    demo = build_app(service)
    radios = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "background"]
    assert radios and [c[0] if isinstance(c, tuple) else c for c in radios[0].choices] == \
        list(BACKGROUNDS)
    out = service.photo(media_dir / "bryan_115px.png", "anime", False, "transparent")
    img = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert out.suffix == ".png" and img.shape[2] == 4
    assert img[..., 3].min() < 20 and img[..., 3].max() > 235


def test_presets_carry_the_background_like_the_command_line(tmp_path):
    from streamer.config import LiveSettings, VideoSettings, build_settings
    overlay = build_settings(LiveSettings, "live-overlay")
    assert overlay.background_spec().alpha and overlay.key_bgr() == (0, 255, 0)
    assert "ndi:Toonstream" in overlay.sinks
    preset = tmp_path / "call.yaml"
    preset.write_text("background: 'color:#336699'\nseg-model: general\n")
    s = build_settings(VideoSettings, str(preset), {"style": "3d"})
    assert s.background_spec().color == (0x99, 0x66, 0x33) and s.seg_model == "general"
    assert build_settings(VideoSettings, str(preset), {"background": "blur"}).background == "blur"
    preset.write_text("background: stripes\n")
    from streamer.config import ConfigError
    with pytest.raises(ConfigError, match="--background must be"):
        build_settings(VideoSettings, str(preset))


def test_default_output_names_pick_a_format_with_alpha(media_dir, tmp_path):
    src = tmp_path / "me.jpg"
    cv2.imwrite(str(src), cv2.imread(str(media_dir / "bryan_115px.png")))
    clip = _clip_with_opus(tmp_path / "clip.mkv", n=2)
    for inp, want in ((src, "me_anime.png"), (clip, "clip_anime.mkv")):
        res = _run("run_video.py", str(inp), "--background", "transparent", "--faces", "off")
        assert res.returncode == 0, res.stderr
        assert (tmp_path / want).is_file()
    assert cv2.imread(str(tmp_path / "me_anime.png"), cv2.IMREAD_UNCHANGED).shape[2] == 4
    mp4 = _clip_with_opus(tmp_path / "c.mp4", n=2)
    res = _run("run_video.py", str(mp4), "--background", "transparent", "--faces", "off")
    assert res.returncode == 0, res.stderr
    assert len(read_alpha_frames(tmp_path / "c_anime.webm")) == 2


def test_web_video_with_a_transparent_background_is_webm_with_alpha(models_dir, tmp_path):
    from web.harness import require_web, shared_service
    require_web()
    service = shared_service(models_dir)
    clip = _clip_with_opus(tmp_path / "in.mkv", n=3)
    out = service.video(clip, "anime", False, None, "transparent")
    assert out.suffix == ".webm"
    frames = read_alpha_frames(out)
    assert len(frames) == 3 and frames[0].shape == (64, 96, 4)


# --- background images a user can throw at it (issue 23, item 17) ----------------------------

def _png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that declares `width` x `height` (its pixels cut short: only the header counts)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = zlib.compress(b"\0" * (width * 3 + 1) * 4)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", row)
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("what", ["huge", "folder"])
def test_cli_background_image_too_large_or_a_folder_says_so_in_one_line(media_dir, tmp_path,
                                                                        what):
    if what == "huge":
        arg, want = _png_header(tmp_path / "room.png", 40000, 40000), "is 40000x40000 (1600 MP), too large"
    else:
        arg, want = tmp_path / "rooms", "is a folder; give an image file"
        arg.mkdir()
    out = tmp_path / "out" / "toon.png"
    out.parent.mkdir()
    res = _run("run_video.py", str(media_dir / "bryan_115px.png"), "-o", str(out),
               "--background", f"image:{arg}")
    last = res.stderr.strip().splitlines()[-1]
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert last == f"error: background image {arg} {want}" + (
        ": background images may have up to 128 MP; scale it down (it is scaled to the "
        "frame anyway)" if what == "huge" else " (PNG, JPEG, WebP, BMP or TIFF)")
    assert list(out.parent.iterdir()) == []


def test_background_image_over_the_decoders_limit_in_another_format_is_one_line(tmp_path):
    # a format whose header is not read here: OpenCV's own refusal, without its assertion text
    from streamer.toon.background import load_background_image

    ppm = tmp_path / "room.ppm"
    ppm.write_bytes(b"P6\n40000 40000\n255\n\0\0\0")
    with pytest.raises(BackgroundError) as e:
        load_background_image(ppm)
    text = str(e.value)
    assert text.startswith(f"background image {ppm} cannot be decoded (OpenCV: ")
    assert "error:" not in text and "\n" not in text


def test_background_image_changed_on_disk_is_read_again(tmp_path):
    from streamer.toon.background import load_background_image

    room = tmp_path / "room.png"
    cv2.imwrite(str(room), np.full((8, 12, 3), 10, np.uint8))
    assert load_background_image(room).shape == (8, 12, 3)
    assert load_background_image(room) is load_background_image(room)  # decoded once
    cv2.imwrite(str(room), np.full((16, 20, 3), 200, np.uint8))
    import os
    os.utime(room, ns=(0, room.stat().st_mtime_ns + 10**9))  # a new mtime on any filesystem
    again = load_background_image(room)
    assert again.shape == (16, 20, 3) and int(again[0, 0, 0]) == 200


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".bmp", ".tif"])
def test_image_headers_give_the_size_the_decoder_finds(tmp_path, suffix):
    from streamer.sources.image_size import declared_size

    path = tmp_path / f"x{suffix}"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 256, (37, 53, 3), np.uint8))
    with open(path, "rb") as f:
        assert declared_size(f) == (53, 37)
    with open(tmp_path / "x.txt", "wb+") as f:
        f.write(b"not an image")
        f.seek(0)
        assert declared_size(f) is None


# --- TIFF, and the pixel formats the README names (issue 23, item 12) -----------------------


def test_transparent_still_to_tiff_has_the_pngs_alpha(media_dir, tmp_path):
    # .tif/.tiff with --background transparent was refused (after the model had run)
    src = str(media_dir / "bryan_115px.png")
    common = ["--background", "transparent", "--faces", "off", "--size", "96"]
    for name in ("a.png", "a.tif", "a.tiff"):
        res = _run("run_video.py", src, "-o", str(tmp_path / name), *common)
        assert res.returncode == 0, res.stderr
    png = cv2.imread(str(tmp_path / "a.png"), cv2.IMREAD_UNCHANGED)
    assert png.shape[2] == 4 and png[..., 3].min() < 20 and png[..., 3].max() > 235
    for name in ("a.tif", "a.tiff"):
        assert np.array_equal(cv2.imread(str(tmp_path / name), cv2.IMREAD_UNCHANGED), png)


def test_the_readme_names_the_pixel_formats_alpha_video_decodes_as(tmp_path):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("Outputs with alpha:")
    para = " ".join(text[start:text.index("\n\n", start)].split())
    for suffix in (".mov", ".webm"):
        out = tmp_path / f"a{suffix}"
        _write_video(out, _bgra_frames(2))
        with av.open(str(out)) as c:
            st = c.streams.video[0]
            if st.codec_context.name == "vp9":  # the decoder that reads VP9's alpha
                dec = av.CodecContext.create("libvpx-vp9", "r")
                first = next(f for p in c.demux(st) for f in dec.decode(p))
            else:
                first = next(c.decode(st))
        assert f"`{first.format.name}`" in para, (first.format.name, para)
