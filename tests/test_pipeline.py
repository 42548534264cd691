"""The three-thread pipeline: queues, batching, error propagation, interrupts, settings.

Mechanics tests use a fake stage (no model); the buffer-reuse test runs the real model.
"""
from __future__ import annotations

import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from streamer.config import ConfigError, VideoSettings, build_settings
from streamer.frame import Frame
from streamer.pipeline import END, FrameQueue, Pipeline, PipelineError, Stopped
from streamer.stages import Sink, Source
from streamer.toon.flow import FullFrameFlow
from streamer.toon.stage import ToonStage, ring_size

TB = Fraction(1, 25)


def _frames(n: int, h: int = 8, w: int = 8):
    for i in range(n):
        yield Frame(index=i, pts=i, time_base=TB, capture_time=time.monotonic(),
                    image=np.full((h, w, 3), i % 256, np.uint8))


class ListSource(Source):
    def __init__(self, n: int, fail_at: int | None = None, delay: float = 0.0):
        self.n, self.fail_at, self.delay = n, fail_at, delay

    def frames(self):
        for f in _frames(self.n):
            if f.index == self.fail_at:
                raise ValueError(f"bad frame {f.index}")
            if self.delay:
                time.sleep(self.delay)
            yield f


class Invert:
    """A stand-in stylise callable."""

    def __init__(self, fail_at_call: int | None = None, delay: float = 0.0):
        self.calls = []
        self.fail_at_call, self.delay = fail_at_call, delay

    def __call__(self, images, times=None):
        self.calls.append(len(images))
        if self.fail_at_call is not None and len(self.calls) == self.fail_at_call:
            raise RuntimeError("engine exploded")
        if self.delay:
            time.sleep(self.delay)
        return [255 - img for img in images]


class ListSink(Sink):
    def __init__(self, fail_at: int | None = None, delay: float = 0.0):
        self.frames: list[Frame] = []
        self.images: list[np.ndarray] = []
        self.finished = 0
        self.fail_at, self.delay = fail_at, delay

    def write(self, frame):
        if frame.index == self.fail_at:
            raise OSError(28, "No space left on device")
        if self.delay:
            time.sleep(self.delay)
        self.frames.append(frame)
        self.images.append(frame.image.copy())

    def finish(self):
        self.finished += 1


# --- queues -------------------------------------------------------------------------------


def test_blocking_queue_waits_for_room_and_drops_nothing():
    q = FrameQueue(2)
    q.put(1)
    q.put(2)
    done = threading.Event()

    def producer():
        q.put(3)  # blocks until the consumer takes one
        done.set()

    t = threading.Thread(target=producer)
    t.start()
    assert not done.wait(0.2)
    assert q.get() == 1
    t.join(5)
    assert done.is_set()
    assert [q.get(), q.get()] == [2, 3]
    assert q.dropped == 0


def test_drop_mode_queue_drops_the_oldest_and_counts_it():
    q = FrameQueue(2, drop_oldest=True)
    for i in range(5):
        q.put(i)
    q.close()  # END is never dropped, even when the queue is full
    assert q.dropped == 3
    assert [q.get(), q.get(), q.get()] == [3, 4, END]


def test_abort_wakes_blocked_producers_and_consumers():
    q = FrameQueue(1)
    q.put(0)
    errors = []

    def blocked(fn):
        try:
            fn()
        except Stopped:
            errors.append(fn.__name__)

    empty = FrameQueue(1)
    ts = [threading.Thread(target=blocked, args=(lambda: q.put(1),)),
          threading.Thread(target=blocked, args=(empty.get,))]
    for t in ts:
        t.start()
    time.sleep(0.1)
    q.abort()
    empty.abort()
    for t in ts:
        t.join(5)
    assert len(errors) == 2


# --- the pipeline -------------------------------------------------------------------------


def test_offline_pipeline_delivers_every_frame_in_order_when_the_sink_is_slow():
    sink = ListSink(delay=0.002)
    stage = ToonStage(Invert(), batch_size=3)
    st = Pipeline(ListSource(20), stage, sink, queue_size=2).run()
    assert [f.index for f in sink.frames] == list(range(20))
    assert [int(img[0, 0, 0]) for img in sink.images] == [255 - i for i in range(20)]
    assert st.frames_in == st.frames_out == 20
    assert st.dropped == {"toon_in": 0, "sink_in": 0}
    assert sink.finished == 1


def test_toon_stage_fills_batches_up_to_the_batch_size():
    stylise = Invert()
    Pipeline(ListSource(10), ToonStage(stylise, batch_size=4), ListSink()).run()
    assert stylise.calls == [4, 4, 2]


def test_toon_stage_splits_a_batch_where_the_frame_size_changes():
    stylise = Invert()
    frames = list(_frames(2, 8, 8)) + list(_frames(1, 4, 6))
    out = ToonStage(stylise, batch_size=3)(frames)
    assert stylise.calls == [2, 1]
    assert [f.image.shape for f in out] == [(8, 8, 3), (8, 8, 3), (4, 6, 3)]


def test_live_pipeline_drops_oldest_frames_when_the_sink_is_slow_and_counts_them():
    sink = ListSink(delay=0.02)
    st = Pipeline(ListSource(60), ToonStage(Invert(), 1), sink, queue_size=1, live=True).run()
    dropped = sum(st.dropped.values())
    assert dropped > 0
    assert len(sink.frames) + dropped == 60
    assert [f.index for f in sink.frames] == sorted(f.index for f in sink.frames)
    assert sink.frames[-1].index == 59  # the newest frame always gets through


@pytest.mark.parametrize("where", ["source", "toon", "sink"])
def test_an_error_in_any_stage_stops_all_three_and_is_reported_once(where):
    source = ListSource(1000, fail_at=5 if where == "source" else None)
    stylise = Invert(fail_at_call=5 if where == "toon" else None)
    sink = ListSink(fail_at=5 if where == "sink" else None)
    pipe = Pipeline(source, ToonStage(stylise, 1), sink, queue_size=2)
    with pytest.raises(PipelineError) as info:
        pipe.run()
    assert info.value.stage == where
    assert str(info.value).count("failed") == 1
    assert not any(t.is_alive() for t in pipe._threads)
    assert sink.finished == 0  # an aborted stream is not finalised
    assert len(sink.frames) < 1000


def test_keyboard_interrupt_stops_the_threads_and_is_re_raised():
    sink = ListSink()
    pipe = Pipeline(ListSource(10_000, delay=0.001), ToonStage(Invert(), 2), sink)

    def interrupt(stats):
        if stats.frames_out >= 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pipe.run(on_tick=interrupt, tick_s=0.01)
    assert not any(t.is_alive() for t in pipe._threads)
    assert sink.finished == 0
    assert len(sink.frames) < 10_000


def test_request_stop_drains_what_is_in_flight_and_finishes_the_sink():
    sink = ListSink()
    pipe = Pipeline(ListSource(10_000, delay=0.001), ToonStage(Invert(), 1), sink)

    def stop(stats):
        if stats.frames_out >= 3:
            pipe.request_stop()

    st = pipe.run(on_tick=stop, tick_s=0.01)
    assert sink.finished == 1
    assert st.frames_out == st.frames_in < 10_000


def test_stylised_frames_stay_valid_until_the_sink_has_written_them(models_dir):
    """The full-frame flow returns views into a ring of reused buffers; with the ring sized
    by ring_size(), a slow sink still sees every frame's own result."""
    from streamer.models import open_store
    from streamer.toon.engine import EngineSettings
    from streamer.toon.styles import StyleFlows

    engine = StyleFlows(open_store(str(models_dir)), EngineSettings(device="cpu")).engine("anime")
    queue, batch = 2, 2
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 56, 3), np.uint8) for _ in range(12)]
    reference = FullFrameFlow(engine, 32, ring=1)
    expected = [reference([img])[0].copy() for img in images]

    class Images(Source):
        def frames(self):
            for i, img in enumerate(images):
                yield Frame(i, i, TB, time.monotonic(), img)

    sink = ListSink(delay=0.01)
    stage = ToonStage(FullFrameFlow(engine, 32, ring=ring_size(queue, batch)), batch)
    Pipeline(Images(), stage, sink, queue_size=queue).run()
    assert len(sink.images) == len(images)
    for got, want in zip(sink.images, expected):
        np.testing.assert_array_equal(got, want)


# --- settings -----------------------------------------------------------------------------


def test_settings_come_from_defaults_then_the_preset_then_the_command_line(tmp_path: Path):
    preset = tmp_path / "mine.yaml"
    preset.write_text("size: 512\nprecision: fast\nstats-json: s.json\n")
    s = build_settings(VideoSettings, str(preset), {"size": 256})
    assert (s.size, s.precision, s.stats_json, s.style) == (256, "fast", "s.json", "anime")
    assert build_settings(VideoSettings).size == 720


def test_presets_in_configs_load_by_name():
    for name in ("video-hq", "cpu", "gpu"):
        assert isinstance(build_settings(VideoSettings, name), VideoSettings)
    assert build_settings(VideoSettings, "video-hq").crf == 14


@pytest.mark.parametrize("text, words", [
    ("sise: 512\n", "unknown setting"),
    ("size: big\n", "whole number"),
    ("batch: -1\n", "batch must be a whole number from 0 to 64"),
    ("- a\n- b\n", "mapping"),
    ("size: [\n", "not valid YAML"),
])
def test_bad_presets_are_one_line_errors(tmp_path: Path, text, words):
    preset = tmp_path / "bad.yaml"
    preset.write_text(text)
    with pytest.raises(ConfigError) as info:
        build_settings(VideoSettings, str(preset))
    assert words in str(info.value) and "\n" not in str(info.value)


def test_an_unknown_preset_name_lists_the_presets():
    with pytest.raises(ConfigError, match="presets: .*cpu"):
        build_settings(VideoSettings, "nope")


# --- stopping in order (issue 23 items 3 and 15) --------------------------------------------


class Gate:
    """A stand-in stylise callable whose third call waits for `release` (a model call that
    takes a while), so a test can act while a stage thread is inside it."""

    def __init__(self):
        self.inside = threading.Event()
        self.release = threading.Event()
        self.returned = threading.Event()
        self.calls = 0

    def __call__(self, images, times=None):
        self.calls += 1
        if self.calls == 3:
            self.inside.set()
            self.release.wait(10)
            self.returned.set()
        return [255 - img for img in images]


@pytest.fixture
def sigint_raises():
    """SIGINT raises KeyboardInterrupt in this thread (Python's default), whatever the test
    runner installed; restored afterwards."""
    import signal
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def test_a_second_ctrl_c_while_stopping_waits_for_the_threads(sigint_raises):
    """The first interrupt aborts; a second one lands while the toon thread is still inside
    its model call. run() must not give up on that thread (at exit Python would tear it
    down mid-call: "terminate called without an active exception"): it waits, then raises."""
    import os
    import signal
    gate = Gate()
    pipe = Pipeline(ListSource(10_000), ToonStage(gate, 1), ListSink(), queue_size=2)

    def first(stats):
        if gate.inside.is_set():
            raise KeyboardInterrupt

    def second():
        gate.inside.wait(10)
        time.sleep(0.3)  # the first interrupt has been raised and the stop is waiting
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.5)
        gate.release.set()  # the model call ends only after the second Ctrl+C

    helper = threading.Thread(target=second)
    helper.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            pipe.run(on_tick=first, tick_s=0.01)
        alive = [t.name for t in pipe._threads if t.is_alive()]
        assert gate.returned.is_set() and alive == []  # nothing left inside a call
    finally:
        gate.release.set()
        helper.join(10)


def test_an_on_tick_that_fails_stops_the_threads_before_the_error_goes_up():
    sink = ListSink()
    pipe = Pipeline(ListSource(10_000, delay=0.001), ToonStage(Invert(), 1), sink)

    def broken(stats):
        if stats.frames_out >= 3:
            raise ValueError("progress callback broke")

    with pytest.raises(ValueError, match="progress callback broke"):
        pipe.run(on_tick=broken, tick_s=0.01)
    assert not any(t.is_alive() for t in pipe._threads)
    assert sink.finished == 0 and len(sink.frames) < 10_000


class DeviceSource(ListSource):
    """A camera-like source: after one frame it waits for the device until stop() wakes it
    (a reconnect loop, a blocking read)."""

    def __init__(self):
        super().__init__(1)
        self.woken = threading.Event()

    def frames(self):
        yield from super().frames()
        self.woken.wait(10)

    def stop(self):
        super().stop()
        self.woken.set()


def test_an_abort_wakes_a_source_that_waits_on_its_device():
    source = DeviceSource()
    pipe = Pipeline(source, ToonStage(Invert(), 1), ListSink(fail_at=0))
    with pytest.raises(PipelineError):
        pipe.run()
    assert source.stop_requested and source.woken.is_set()
    assert not any(t.is_alive() for t in pipe._threads)


def test_an_interrupt_while_the_sink_finishes_lets_the_output_complete():
    """The end of the stream reached the sink and it is committing when Ctrl+C comes: the
    commit is not cut in two, and the pipeline says it happened (the app then keeps the
    output and says so rather than "removed")."""
    entered, release = threading.Event(), threading.Event()

    class Committing(ListSink):
        def finish(self):
            entered.set()
            release.wait(10)
            super().finish()

    sink = Committing()
    pipe = Pipeline(ListSource(5), ToonStage(Invert(), 1), sink)

    def interrupt(stats):
        if entered.is_set():
            release.set()
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pipe.run(on_tick=interrupt, tick_s=0.01)
    assert sink.finished == 1 and len(sink.frames) == 5
    assert pipe.sink_finished
