"""Live sources: the paced synthetic camera, a camera (through a fake VideoCapture: no
camera here), and a clip played at its own frame rate."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from streamer.sources import camera as camera_mod
from streamer.sources.camera import CameraError, CameraSource, probe_cameras
from streamer.sources.playback import PlaybackSource
from streamer.sources.synthetic import SyntheticSource


# --- synthetic ------------------------------------------------------------------------------

def test_synthetic_source_is_paced_at_30_fps_on_absolute_deadlines():
    src = SyntheticSource(320, 180, 30.0, frames=45)
    seen = []
    t_start = time.monotonic()
    for f in src.frames():
        seen.append((f.index, f.capture_time, time.monotonic(), f.pts))
    elapsed = time.monotonic() - t_start
    assert src.produced + src.skipped == 45
    first_capture = seen[0][1]
    for index, capture, released, pts in seen:
        # capture time is the slot's due time: exactly index / fps after the first (no drift)
        assert capture - first_capture == pytest.approx(index / 30.0, abs=1e-6)
        assert released >= capture - 1e-3  # never early
        assert pts == index  # time base 1/30
    assert elapsed >= 44 / 30.0 - 0.005
    # the run takes its nominal time; a late thread skips slots instead of drifting
    assert elapsed < 44 / 30.0 + 0.5


def test_synthetic_source_skips_and_counts_slots_it_was_too_late_for():
    offset = [0.0]
    src = SyntheticSource(160, 96, 30.0, frames=20,
                          clock=lambda: time.monotonic() + offset[0])
    indices = []
    for f in src.frames():
        indices.append(f.index)
        if f.index == 3:
            offset[0] += 0.2  # the thread was held up for 200 ms (6 frames)
    assert src.skipped >= 5
    assert indices[:4] == [0, 1, 2, 3] and indices[4] >= 9
    assert len(indices) + src.skipped == 20


def test_synthetic_frames_move_and_a_static_pattern_does_not():
    moving = SyntheticSource(320, 180, 30.0)
    a, b = moving.render(0), moving.render(15)
    assert a.shape == (180, 320, 3) and a.dtype == np.uint8
    assert np.abs(a.astype(int) - b).mean() > 2
    still = SyntheticSource(320, 180, 30.0, motion=False, counter=False)
    assert np.array_equal(still.render(0), still.render(15))


def test_synthetic_source_stops_promptly():
    src = SyntheticSource(160, 96, 2.0)  # one frame every 500 ms
    it = src.frames()
    next(it)
    t0 = time.monotonic()
    src.stop()
    assert list(it) == []
    assert time.monotonic() - t0 < 0.45


# --- camera (fake capture) ----------------------------------------------------------------

class FakeCapture:
    """cv2.VideoCapture stand-in: `frames` good reads, then failures; fixed mode."""

    def __init__(self, frames: int = 1000, size=(320, 240), fps=30.0, opened=True,
                 fourcc="MJPG"):
        self.left = frames
        self.w, self.h = size
        self.fps = fps
        self.opened = opened
        self.fourcc = fourcc
        self.props = {}
        self.released = False

    def isOpened(self):
        return self.opened

    def set(self, prop, value):
        self.props[prop] = value
        return True

    def get(self, prop):
        import cv2
        return {cv2.CAP_PROP_FRAME_WIDTH: self.w, cv2.CAP_PROP_FRAME_HEIGHT: self.h,
                cv2.CAP_PROP_FPS: self.fps,
                cv2.CAP_PROP_FOURCC: cv2.VideoWriter_fourcc(*self.fourcc)}.get(prop, 0)

    def read(self):
        if self.left <= 0:
            return False, None
        self.left -= 1
        time.sleep(0.002)
        return True, np.full((self.h, self.w, 3), 128, np.uint8)

    def release(self):
        self.released = True


def test_camera_asks_for_mjpg_size_fps_and_a_one_frame_buffer_and_reports_the_mode():
    import cv2
    caps = []

    def opener(device, api):
        caps.append(FakeCapture(size=(1280, 720)))
        return caps[-1]

    src = CameraSource(0, 1280, 720, 30, opener=opener)
    p = caps[0].props
    assert p[cv2.CAP_PROP_FOURCC] == cv2.VideoWriter_fourcc(*"MJPG")
    assert (p[cv2.CAP_PROP_FRAME_WIDTH], p[cv2.CAP_PROP_FRAME_HEIGHT]) == (1280, 720)
    assert p[cv2.CAP_PROP_FPS] == 30 and p[cv2.CAP_PROP_BUFFERSIZE] == 1
    assert (src.width, src.height, src.fps) == (1280, 720, 30)
    assert src.describe() == "camera 0: 1280x720 @ 30 fps MJPG, 1-frame buffer"
    src.close()


def test_a_camera_that_gives_another_mode_is_used_and_said_or_refused_with_exact():
    opener = lambda device, api: FakeCapture(size=(640, 480), fps=15, fourcc="YUYV")  # noqa: E731
    src = CameraSource(0, 1280, 720, 30, opener=opener)
    assert "640x480 @ 15 fps YUYV (asked 1280x720 @ 30 fps MJPG)" in src.describe()
    src.close()
    with pytest.raises(CameraError) as info:
        CameraSource(0, 1280, 720, 30, exact=True, opener=opener)
    msg = str(info.value)
    assert "refused 1280x720 @ 30 fps MJPG" in msg and "it gives 640x480 @ 15 fps YUYV" in msg
    assert "--camera-size 640x480" in msg


def test_a_camera_that_opens_but_delivers_nothing_says_which_mode_failed():
    with pytest.raises(CameraError, match="delivered no frame in the requested mode"):
        CameraSource(0, 1280, 720, 30, opener=lambda d, a: FakeCapture(frames=0))


def test_no_camera_lists_the_cameras_found_by_probing():
    def opener(device, api):
        return FakeCapture(opened=device in (1, 4))

    with pytest.raises(CameraError) as info:
        CameraSource(3, opener=opener)
    assert str(info.value).startswith("no camera at index 3: cameras found (probing 0..9): 1, 4")
    assert probe_cameras(opener=opener) == [1, 4]


def test_no_camera_here_probes_quickly_and_says_none(monkeypatch):
    if any(Path(f"/dev/video{i}").exists() for i in range(10)):
        pytest.skip("this machine has video devices")
    t0 = time.monotonic()
    with pytest.raises(CameraError) as info:
        CameraSource(0)
    assert "no camera at index 0: cameras found (probing 0..9): none" in str(info.value)
    assert time.monotonic() - t0 < 5


def test_an_unplugged_camera_is_retried_then_the_stream_ends_cleanly_with_a_reason():
    opened = []

    def opener(device, api):
        cap = FakeCapture(frames=12) if not opened else FakeCapture(opened=False)
        opened.append(cap)
        return cap

    src = CameraSource(0, 320, 240, 30, reconnect_s=0.6, opener=opener)
    t0 = time.monotonic()
    frames = list(src.frames())
    waited = time.monotonic() - t0
    assert len(frames) == 12
    assert len(opened) >= 2  # it tried to reopen
    assert waited >= 0.5
    assert "stopped delivering frames" in src.ended_reason
    assert "did not come back within 0.6 s" in src.ended_reason
    assert opened[0].released


def test_a_camera_that_comes_back_keeps_streaming():
    opened = []

    def opener(device, api):
        opened.append(FakeCapture(frames=5))
        return opened[-1]

    src = CameraSource(0, 320, 240, 30, reconnect_s=2.0, opener=opener)
    frames = []
    for f in src.frames():
        frames.append(f)
        if len(frames) == 12:
            src.stop()
    assert src.reconnects >= 2
    assert [f.index for f in frames] == list(range(12))
    assert src.ended_reason is None  # stopped by us, not lost


# --- playback -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clip(models_dir) -> Path:
    path = models_dir.parent / "media" / "tears_640x360.mp4"
    if not path.is_file():
        pytest.skip(f"no test clip at {path}")
    return path


def test_a_clip_plays_at_its_own_frame_rate(clip):
    src = PlaybackSource(str(clip))
    assert (src.width, src.height, round(src.fps)) == (640, 360, 24)
    t0 = time.monotonic()
    got = []
    for f in src.frames():
        got.append(f)
        if len(got) == 13:
            src.stop()
    elapsed = time.monotonic() - t0
    assert elapsed >= 12 / 24 - 0.01  # not faster than real time
    times = [f.time for f in got[:13]]
    assert all(b > a for a, b in zip(times, times[1:]))


def test_a_looped_clip_keeps_timestamps_increasing(clip, tmp_path):
    import av
    short = tmp_path / "short.mp4"
    with av.open(str(clip)) as src, av.open(str(short), "w") as dst:
        s = dst.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = 160, 96, "yuv420p"
        for i, fr in enumerate(src.decode(video=0)):
            if i == 6:
                break
            for p in s.encode(fr.reformat(160, 96)):
                dst.mux(p)
        for p in s.encode(None):
            dst.mux(p)
    src = PlaybackSource(str(short), loop=True)
    got = []
    for f in src.frames():
        got.append(f.time)
        if len(got) == 14:
            src.stop()
    assert len(got) >= 13
    assert all(b > a for a, b in zip(got, got[1:]))


def test_a_missing_file_source_is_a_one_line_error():
    from streamer.sources.video_file import MediaError
    with pytest.raises(MediaError, match="no such file"):
        PlaybackSource("/nonexistent/clip.mp4")


def test_default_opener_is_looked_up_at_call_time(monkeypatch):
    calls = []
    monkeypatch.setattr(camera_mod, "open_capture",
                        lambda d, a: calls.append(d) or FakeCapture(size=(320, 240)))
    CameraSource("/dev/video5", 320, 240, 30).close()
    assert calls == ["/dev/video5"]
