"""The live path end to end, with no camera and no virtual camera device: the paced
synthetic camera -> LiveToon (real model at a tiny working size, or a stand-in with a known
speed) -> a fake pyvirtualcam backend / the null sink.

Latency bounds compare against the model time measured in the same test, never against an
absolute wall-clock limit (these machines are noisy)."""
from __future__ import annotations

import statistics
import threading
import time

import numpy as np
import pytest

from streamer.config import LiveSettings
from streamer.live.session import LiveSession
from streamer.toon.styles import StyleFlows
from streamer.live.controls import Command
from streamer.live.toon import LiveToon, style_factory, working_size
from streamer.toon.link import Link
from streamer.sinks.null import NullSink
from streamer.sinks.virtualcam import VirtualCamSink
from streamer.sources.synthetic import SyntheticSource
from streamer.toon.stage import ring_size

STYLES = ("anime", "3d", "handdrawn", "sketch", "artstyle", "sd-design", "sd-illustration")


class FakeCam:
    instances: list["FakeCam"] = []

    def __init__(self, *, width, height, fps, fourcc, device, **kw):
        self.width, self.height = width, height
        self.frames: list[np.ndarray] = []
        self.closed = False
        FakeCam.instances.append(self)

    def send(self, frame):
        self.frames.append(frame.reshape(self.height, self.width, 3).copy())

    def close(self):
        self.closed = True

    def device(self):
        return "/dev/fake"

    def native_fourcc(self):
        return None


@pytest.fixture
def fake_vcam(monkeypatch):
    from pyvirtualcam.camera import BACKENDS
    FakeCam.instances = []
    # registered for this test only: a later test must still find no virtual camera
    monkeypatch.setitem(BACKENDS, "toonstream-test", FakeCam)
    return FakeCam


class Sleepy(Link):
    """A stand-in model that takes `seconds` per call and returns its input."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds

    def __call__(self, images, times=None):
        time.sleep(self.seconds)
        return [img.copy() for img in images]


def _session(source, sinks, toon, **kw) -> LiveSession:
    kw.setdefault("status_every", 0)
    return LiveSession(source, sinks, toon, styles=STYLES, log=lambda line: None, **kw)


def live_factory(settings: LiveSettings, work_wh):
    """style -> stylise at the working size, as run_stream builds it."""
    return style_factory(StyleFlows.from_settings(settings), work_wh)


def _toon(factory, work=(112, 64), out=(320, 180), style="anime"):
    return LiveToon(factory, style, work, out, ring=ring_size(1, 1))


@pytest.fixture(scope="module")
def real_factory(models_dir):
    settings = LiveSettings(models=str(models_dir), device="auto", precision="fast",
                            sinks=("null",))
    return live_factory(settings, (112, 64))


def test_working_size_keeps_the_aspect_on_multiples_of_16():
    assert working_size(1280, 720, 144) == (256, 144)
    assert working_size(640, 480, 144) == (192, 144)
    assert working_size(720, 1280, 128) == (128, 224)
    assert working_size(320, 180, 720) == (320, 176)  # never enlarged
    assert working_size(1280, 720, (250, 140)) == (256, 144)


def test_frames_flow_end_to_end_through_the_real_model_to_the_virtual_camera(
        real_factory, fake_vcam):
    src = SyntheticSource(320, 180, 30.0, seconds=1.5)
    toon = _toon(real_factory)
    toon.warm_up()
    vcam = VirtualCamSink(320, 180, 30, backend="toonstream-test")
    null = NullSink()
    session = _session(src, [vcam, null], toon)
    result = session.run()
    cam = fake_vcam.instances[-1]
    assert len(cam.frames) == null.frames == result["frames_out"] > 5
    assert cam.frames[-1].shape == (180, 320, 3)
    assert result["frames_in"] == src.produced
    # every frame's latency was measured
    assert session.stats.histogram.count == result["frames_out"]
    assert result["latency_ms"]["p50"] > 0
    # the model changed the picture (a cartoon, not the input scaled down and up)
    plain = src.render(0)
    assert np.abs(cam.frames[0].astype(int) - plain).mean() > 3
    assert cam.closed  # finished cleanly


def test_latency_stays_bounded_and_drops_are_counted_when_inference_is_slower():
    fps = 30.0
    interval = 1 / fps
    src = SyntheticSource(320, 180, fps, seconds=2.5)
    toon = _toon(lambda style: Sleepy(0.1))  # ~10 fps against a 30 fps camera
    session = _session(src, [NullSink()], toon)
    result = session.run()
    model_s = statistics.median(toon.model_s)
    lat = result["latency_ms"]
    drops = result["drops"]
    assert drops["toon"] > result["frames_out"]  # most frames dropped, and counted
    assert result["frames_in"] == result["frames_out"] + drops["toon"] + drops["sink"]
    # the frame the model starts on waited at most about one interval: generous bound
    bound_ms = 2 * (model_s + 2 * interval) * 1000
    assert lat["p95"] <= bound_ms, (lat, model_s)
    # and latency does not grow over the run (it would with a growing queue)
    window = [x for _, x in session.stats.window]
    half = len(window) // 2
    assert statistics.median(window[half:]) < 1.5 * statistics.median(window[:half]) + interval


def test_latency_stays_bounded_with_the_real_model_slower_than_the_camera(models_dir):
    """The real model at a working size where it is slower than a 60 fps camera."""
    settings = LiveSettings(models=str(models_dir), device="auto", precision="fast",
                            sinks=("null",))
    factory = live_factory(settings, (448, 256))
    toon = LiveToon(factory, "anime", (448, 256), (640, 360), ring=ring_size(1, 1))
    toon.warm_up()
    fps = 60.0
    src = SyntheticSource(640, 360, fps, seconds=2.0)
    session = _session(src, [NullSink()], toon)
    result = session.run()
    model_s = statistics.median(toon.model_s)
    if model_s < 1.5 / fps:
        pytest.skip(f"the model ({model_s * 1000:.0f} ms) is not slower than the camera here")
    assert result["drops"]["toon"] > 0
    assert result["latency_ms"]["p95"] <= 2 * (model_s + 2 / fps) * 1000


def test_nothing_is_dropped_when_inference_is_faster_than_the_camera():
    src = SyntheticSource(320, 180, 15.0, seconds=1.5)
    toon = _toon(lambda style: Sleepy(0.005))
    sink = NullSink()
    session = _session(src, [sink], toon)
    result = session.run()
    assert result["drops"]["toon"] == 0 and result["drops"]["sink"] == 0
    assert sink.frames == result["frames_in"] == src.produced
    assert result["frames_out"] == src.produced


def _run_with(session: LiveSession, control) -> dict:
    """Run the session in this thread while `control(session)` drives it from another."""
    failure = []

    def drive():
        try:
            control(session)
        except BaseException as exc:  # noqa: BLE001
            failure.append(exc)
        finally:
            session.stop("test")

    t = threading.Thread(target=drive, daemon=True)
    t.start()
    result = session.run()
    t.join(5)
    if failure:
        raise failure[0]
    return result


def _wait_for(cond, timeout=60.0):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def test_switching_style_mid_stream_changes_the_output_without_reopening_the_camera(
        real_factory, fake_vcam):
    src = SyntheticSource(320, 180, 30.0, motion=False, counter=False)  # a still picture
    toon = _toon(real_factory)
    toon.warm_up()
    vcam = VirtualCamSink(320, 180, 30, backend="toonstream-test")
    session = _session(src, [vcam], toon)
    cam = fake_vcam.instances[-1]
    marks = {}

    def control(s: LiveSession):
        _wait_for(lambda: len(cam.frames) >= 5)
        marks["before"] = len(cam.frames)
        s.handle(Command("style", "sketch"))
        _wait_for(lambda: toon.style == "sketch")
        marks["switched"] = len(cam.frames)
        _wait_for(lambda: len(cam.frames) >= marks["switched"] + 5)

    result = _run_with(session, control)
    assert len(fake_vcam.instances) == 1  # one virtual camera for the whole run
    first, last = cam.frames[0], cam.frames[-1]
    assert np.array_equal(first, cam.frames[marks["before"] - 1])  # a still scene, one style
    assert np.abs(first.astype(int) - last).mean() > 5  # the style changed the picture
    # sketch is near grey: its channels agree far more than anime's
    spread = lambda img: np.abs(img.astype(int) - img.mean(axis=2, keepdims=True)).mean()  # noqa: E731
    assert spread(last) < spread(first)
    assert result["style"] == "sketch"
    assert [(s["from"], s["to"]) for s in result["style_switches"]] == [("anime", "sketch")]


def test_next_and_prev_step_through_the_styles_and_a_bad_style_keeps_streaming():
    made = []

    def factory(style):
        if style == "broken":
            raise RuntimeError("no such model")
        made.append(style)
        return Sleepy(0.001)

    toon = LiveToon(factory, "anime", (64, 48), (64, 48), ring=4)
    src = SyntheticSource(64, 48, 30.0)
    session = _session(src, [NullSink()], toon)

    def control(s: LiveSession):
        _wait_for(lambda: s.stats.frames_out >= 3)
        s.handle(Command("next"))
        _wait_for(lambda: toon.style == "3d")
        s.handle(Command("prev"))
        s.handle(Command("prev"))
        _wait_for(lambda: toon.style == "sd-illustration" and toon.loading is None)
        toon.switch("broken")
        _wait_for(lambda: toon.errors)
        n = s.stats.frames_out
        _wait_for(lambda: s.stats.frames_out >= n + 3)

    result = _run_with(session, control)
    assert result["style"] == "sd-illustration"
    assert "broken" in toon.errors[0] and "keeping sd-illustration" in toon.errors[0]
    assert made.count("anime") == 1  # cached: switching back did not rebuild it


def _loading_3d(made: list[str] | None = None) -> tuple[LiveToon, threading.Event]:
    """A live toon on anime whose switch to 3d is loading, held until the event is set;
    `made` collects the styles its factory built."""
    gate = threading.Event()

    def factory(style):
        if made is not None:
            made.append(style)
        if style != "anime":
            gate.wait(5)
        return Sleepy(0)

    toon = LiveToon(factory, "anime", (32, 32), (32, 32), ring=2)
    toon.switch("3d")
    _wait_for(lambda: toon.loading == "3d")
    return toon, gate


def test_style_requests_while_loading_are_coalesced_to_the_last():
    made: list[str] = []
    toon, gate = _loading_3d(made)
    toon.switch("sketch")
    toon.switch("artstyle")
    gate.set()
    assert toon.wait_idle(10)
    assert toon.style == "artstyle"
    assert made == ["anime", "3d", "artstyle"]


def test_live_toon_outputs_the_output_size_from_a_ring_of_buffers():
    toon = LiveToon(lambda s: Sleepy(0), "anime", (64, 48), (160, 120), ring=3)
    img = np.zeros((90, 120, 3), np.uint8)
    outs = [toon([img])[0] for _ in range(4)]
    assert outs[0].shape == (160, 120, 3)[:0] + (120, 160, 3)
    assert outs[0].base is not None and np.shares_memory(outs[0], outs[3])  # ring of 3
    assert not np.shares_memory(outs[0], outs[1])


def test_settle_waits_for_a_style_still_loading_when_the_run_ends():
    """A run that ends (Ctrl+C, q, --seconds) while a style loads in the background waits
    for the loader: Python exiting with it inside a model build aborts the process."""
    toon, gate = _loading_3d()
    threading.Timer(0.3, gate.set).start()
    toon.settle(10)
    assert toon.loading is None and toon.style == "3d"
