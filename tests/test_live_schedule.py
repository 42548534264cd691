"""Face-first scheduling in the live path: with a background model made slow (a stand-in
engine that sleeps), the scheduler keeps the head model on every frame and every face, and
gives the background a smaller size or a lower rate (reusing it warped along the motion);
`--work auto` picks a working size from measured times and reports it.

Nothing here asserts a wall-clock time: the tests check what the scheduler chose, and that
the face ran on every frame. The face frames are a real portrait (luciano.png) moving
slowly across a 640x360 camera frame, so the real detector and tracker find a real face.
"""
from __future__ import annotations

import json

import threading
import time

import cv2
import numpy as np
import pytest

from streamer.config import LiveSettings
from streamer.live.schedule import (BackgroundWarp, FaceFirstScheduler, ScheduleSettings,
                                    motion_grey)
from streamer.live.session import LiveSession
from streamer.live.toon import LiveToon, style_factory, working_size
from streamer.sinks.null import NullSink
from streamer.sources.synthetic import SyntheticSource
from streamer.toon.engine import EngineSettings
from streamer.toon.faces.align import CROP_SIZE
from streamer.toon.stage import ring_size
from streamer.toon.styles import StyleFlows
from streamer.models import Store
from streamer.toon.engine_api import Engine

STYLES = ("anime", "3d", "handdrawn", "sketch", "artstyle", "sd-design", "sd-illustration")


class SleepEngine(Engine):
    """A stand-in engine: `head_s` per 288x288 crop, `bg_s(h, w)` per whole frame, and an
    inverted image as its 'style'. Counts what it ran, by kind."""

    backend = "standin"
    device = "cpu"
    precision = "fp32"
    shape_bound = False

    def __init__(self, head_s: float, bg_s):
        self.head_s = head_s
        self.bg_s = bg_s
        self.heads = 0
        self.bg_runs = 0
        self.bg_shapes: list[tuple[int, int]] = []
        self._lock = threading.Lock()

    def run(self, batch, out=None):
        n, h, w = batch.shape[:3]
        if (h, w) == (CROP_SIZE, CROP_SIZE):
            time.sleep(self.head_s * n)
            with self._lock:
                self.heads += n
        else:
            time.sleep(self.bg_s(h, w) * n)
            with self._lock:
                self.bg_runs += n
                self.bg_shapes.append((h, w))
        if out is None:
            out = np.empty_like(batch)
        np.subtract(255, batch, out=out)
        return out

    def describe(self) -> str:
        return "stand-in (sleeps)"


def _face_frame(portrait: np.ndarray, i: int, w: int = 640, h: int = 360) -> np.ndarray:
    """The portrait at 340x340 on a grey 640x360 frame, drifting one pixel per frame."""
    frame = np.full((h, w, 3), 128, np.uint8)
    face = cv2.resize(portrait, (340, 340), interpolation=cv2.INTER_AREA)
    x = 120 + (i % 60)
    frame[10:350, x:x + 340] = face
    return frame


@pytest.fixture(scope="module")
def portrait(media_dir) -> np.ndarray:
    return cv2.imread(str(media_dir / "luciano.png"))


def _flows(models_dir, engine: SleepEngine) -> StyleFlows:
    flows = StyleFlows(Store(models_dir), EngineSettings(device="cpu"), faces="on")
    flows.adopt("anime", engine)  # the store's anime has no separate head: one engine serves
    return flows


def _scheduled_toon(models_dir, engine, *, fps=30.0, work_short=144, auto=False,
                    out=(640, 360)) -> tuple[LiveToon, FaceFirstScheduler]:
    flows = _flows(models_dir, engine)
    sched = FaceFirstScheduler(ScheduleSettings(fps=fps, auto_size=auto, hold_s=0.0),
                               work_short=work_short)
    sched.set_aspect(*out)
    work_wh = working_size(*out, work_short)
    toon = LiveToon(style_factory(flows, work_wh, fps, short_side=720), "anime", work_wh, out,
                    ring=ring_size(1, 1), schedule=sched)
    return toon, sched


def test_a_slow_background_runs_less_often_and_the_face_runs_on_every_frame(
        models_dir, portrait):
    # A 10 fps camera: 100 ms a frame. Heads take 5 ms, the background 600 ms: it cannot
    # run on every frame, the face must. (Rates are low so that the face path's own time on
    # a loaded test machine cannot change what the scheduler must choose.)
    engine = SleepEngine(head_s=0.005, bg_s=lambda h, w: 0.600)
    toon, sched = _scheduled_toon(models_dir, engine, fps=10.0)
    frames = 30
    for i in range(frames):
        out = toon([_face_frame(portrait, i)], [i / 10.0])
        assert out[0].shape == (360, 640, 3)
        assert len(toon.current.last_faces[0]) == 1, f"no face pasted on frame {i}"
    assert engine.heads == frames  # the head model ran on every frame: never degraded
    assert toon.faces_pasted == frames
    assert sched.choice.bg_every >= 7  # 600 ms over what 85 ms leaves after the faces
    assert engine.bg_runs < frames / 2
    assert toon.bg_reused == frames - engine.bg_runs  # the rest reused the last background
    assert "every" in toon.schedule_text() and "reused" in toon.schedule_text()


def test_a_fast_background_runs_on_every_frame(models_dir, portrait):
    engine = SleepEngine(head_s=0.002, bg_s=lambda h, w: 0.002)
    toon, sched = _scheduled_toon(models_dir, engine, fps=4.0)  # 250 ms a frame
    for i in range(12):
        toon([_face_frame(portrait, i)], [i / 4.0])
    assert sched.choice.bg_every == 1
    assert engine.bg_runs == 12 and toon.bg_reused == 0
    assert engine.heads == 12


def test_when_the_machine_gets_slower_the_background_degrades_and_the_face_does_not(
        models_dir, portrait):
    slow = {"on": False}
    engine = SleepEngine(head_s=0.004,
                         bg_s=lambda h, w: 0.800 if slow["on"] else 0.004)
    toon, sched = _scheduled_toon(models_dir, engine, fps=4.0)
    for i in range(10):
        toon([_face_frame(portrait, i)], [i / 4.0])
    assert sched.choice.bg_every == 1
    slow["on"] = True  # another process takes the cores: the background now costs 800 ms
    for i in range(10, 26):
        toon([_face_frame(portrait, i)], [i / 4.0])
    assert sched.choice.bg_every > 1
    assert engine.heads == 26


def test_work_auto_picks_the_largest_size_that_fits_and_steps_down_under_load(
        models_dir, portrait):
    # Background time proportional to its pixels: 10 ms at 256x144, 40 ms at 512x288.
    scale = {"k": 1.0}

    def bg_s(h, w):
        return scale["k"] * 0.010 * (h * w) / (256 * 144)

    engine = SleepEngine(head_s=0.004, bg_s=bg_s)
    sched = FaceFirstScheduler(ScheduleSettings(fps=30.0, auto_size=True, hold_s=0.0),
                               work_short=144)
    sched.set_aspect(640, 360)
    chosen = sched.calibrate({144: 0.010, 288: 0.040}, head_s=0.004)
    # 33 ms x 0.85 - 4 ms for the head leaves 24 ms: 192p (17.8 ms) fits, 240p (27.8) not
    assert chosen == 192
    assert "192p" in sched.describe() and "every frame" in sched.describe()
    flows = _flows(models_dir, engine)
    work_wh = working_size(640, 360, chosen)
    toon = LiveToon(style_factory(flows, work_wh, 30.0, short_side=720), "anime", work_wh,
                    (640, 360), ring=ring_size(1, 1), schedule=sched)
    scale["k"] = 4.0  # the machine gets four times slower
    for i in range(40):
        toon([_face_frame(portrait, i)], [i / 30.0])
        toon.wait_resize()
    assert sched.choice.work_short < 192  # stepped down (the next batch applied it)
    assert sched.choice.changes and sched.choice.changes[0]["from"] == 192
    assert engine.bg_shapes[-1][0] < 192
    assert engine.heads == 40  # the face never skipped a frame


def test_a_second_face_over_the_budget_reuses_its_head_instead_of_slowing_every_face(
        models_dir, portrait):
    # Two faces, 60 ms per head against a 10 fps camera (85 ms planned): one head fits per
    # frame. Both faces are pasted on every frame; the heads take turns, the other face's
    # last head is pasted with its current transform.
    engine = SleepEngine(head_s=0.060, bg_s=lambda h, w: 0.004)
    toon, sched = _scheduled_toon(models_dir, engine, fps=10.0)
    face = cv2.resize(portrait, (300, 300), interpolation=cv2.INTER_AREA)
    frames = 14
    for i in range(frames):
        frame = np.full((360, 640, 3), 128, np.uint8)
        frame[30:330, 10 + i % 4:310 + i % 4] = face
        frame[30:330, 330:630] = face[:, ::-1]
        toon([frame], [i / 10.0])
        assert len(toon.current.last_faces[0]) == 2, f"frame {i}"
    flow = toon.current
    assert toon.faces_pasted == 2 * frames
    assert sched.heads_per_frame() == 1
    assert flow.heads_reused > 0
    assert engine.heads < 2 * frames  # not every face every frame ...
    assert engine.heads >= frames  # ... but at least one head on every frame


def test_run_stream_reports_the_schedule_it_chose(models_dir, portrait):
    """The whole live session with a paced camera showing a face: the stats and the
    status text name the choice, and every frame that came out carried a face."""
    engine = SleepEngine(head_s=0.004, bg_s=lambda h, w: 0.500)
    toon, sched = _scheduled_toon(models_dir, engine, fps=10.0)

    class FaceCamera(SyntheticSource):
        def render(self, i: int) -> np.ndarray:
            return _face_frame(portrait, i)

    lines: list[str] = []
    session = LiveSession(FaceCamera(640, 360, 10.0, seconds=3.0), [NullSink()], toon,
                          styles=STYLES, status_every=0, log=lines.append,
                          describe=toon.schedule_text)
    result = session.run()
    assert result["frames_out"] > 0
    assert engine.heads == toon.calls  # one face, one head run, on every frame processed
    assert sched.choice.bg_every > 1
    assert "face-first" in session.describe()


def test_background_warp_follows_a_global_shift():
    """The reused background moves with the scene: a textured frame shifted by 6 px is
    matched far better by the warped background than by the stale one."""
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 256, (200, 360, 3), dtype=np.uint8), (0, 0), 3)
    src = base[:, :320].copy()
    cur = base[:, 6:326].copy()  # the camera panned: content moved 6 px left
    warp = BackgroundWarp()
    out = np.empty_like(src)
    warp(src, motion_grey(src), motion_grey(cur), out)
    inner = (slice(20, -20), slice(20, -20))
    stale = np.abs(src[inner].astype(int) - cur[inner]).mean()
    warped = np.abs(out[inner].astype(int) - cur[inner]).mean()
    assert warped < 0.5 * stale, (warped, stale)


def test_live_settings_take_work_auto_and_the_schedule_option():
    s = LiveSettings(work="auto", sinks=("null",))
    assert s.work_auto and s.work_spec() == 144
    assert LiveSettings(work="288", sinks=("null",)).work_auto is False
    from streamer.config import ConfigError
    with pytest.raises(ConfigError):
        LiveSettings(schedule="sometimes", sinks=("null",))


def test_the_presets_auto_precision_on_onnx_runtime_leaves_int8_out_with_a_note(models_dir,
                                                                                tmp_path):
    from streamer.live import app
    lines: list[str] = []
    stats = tmp_path / "stats.json"
    rc = app.main(["--models", str(models_dir), "--config", "live-cpu", "--synthetic",
                   "--camera-size", "320x180", "--device", "cpu", "--sink", "null",
                   "--seconds", "1", "--no-commands", "--status-every", "0",
                   "--stats-json", str(stats)], log=lines.append)
    assert rc == 0, lines
    assert any("int8 left out: int8 needs OpenVINO" in line for line in lines), lines
    chosen = json.loads(stats.read_text())["precision_auto"]
    assert chosen["chosen"] == "fast"
    assert [m["candidate"] for m in chosen["measured"]] == ["fast"]


def test_int8_asked_for_on_onnx_runtime_is_a_one_line_error(models_dir):
    from streamer.live import app
    lines: list[str] = []
    rc = app.main(["--models", str(models_dir), "--config", "live-cpu", "--synthetic",
                   "--camera-size", "320x180", "--device", "cpu", "--precision", "int8",
                   "--sink", "null", "--seconds", "1", "--no-commands", "--status-every", "0"],
                  log=lines.append)
    assert rc == 1
    assert lines[-1].startswith("error: ") and "int8 needs OpenVINO" in lines[-1], lines


def test_a_scene_cut_runs_the_background_at_once_instead_of_warping_the_old_scene(
        models_dir, portrait):
    engine = SleepEngine(head_s=0.005, bg_s=lambda h, w: 0.600)
    toon, sched = _scheduled_toon(models_dir, engine, fps=10.0)
    for i in range(4):
        toon([_face_frame(portrait, i)], [i / 10.0])
    assert sched.choice.bg_every > 1
    runs = engine.bg_runs
    cut = 255 - _face_frame(portrait, 4)  # a different picture altogether
    toon([cut], [0.4])
    assert engine.bg_runs == runs + 1


def test_work_auto_does_not_step_up_to_a_size_that_only_just_fits():
    now = [0.0]
    sched = FaceFirstScheduler(ScheduleSettings(fps=30.0, auto_size=True, hold_s=1.0),
                               work_short=144, clock=lambda: now[0])
    sched.set_aspect(640, 360)
    # 192p fits (17.8 ms of the 24.3 ms the head leaves); 240p (27.8 ms) does not
    assert sched.calibrate({144: 0.010, 288: 0.040}, head_s=0.004) == 192
    for _ in range(60):
        now[0] += 1.0
        sched.observe(bg_s=sched.bg_time(192), head_s=0.004, faces=1, other_s=0.0)
        assert sched.pending_size is None
    assert sched.choice.bg_every == 1 and not sched.choice.changes
    # the other load goes: the background now takes half the time, 240p (about 14 ms) fits
    # with room to spare, and the size steps up, one step
    fast = sched.bg_time(192) / 2
    for _ in range(30):
        now[0] += 1.0
        sched.observe(bg_s=fast, head_s=0.004, faces=1, other_s=0.0)
        if sched.pending_size is not None:
            break
    assert sched.pending_size == 240
