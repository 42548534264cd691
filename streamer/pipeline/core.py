"""Three threads joined by bounded queues: source -> toon -> sink.

    source thread: iterate the source's frames, put them on queue 1
    toon thread:   take a batch from queue 1, stylise it, put the frames on queue 2
    sink thread:   take frames from queue 2 and write them

Offline (`live=False`) the queues block when full, so nothing is dropped and the slowest
stage sets the pace while the others overlap with it. Live (`live=True`) a full queue drops
its oldest frame (counted per queue) so latency never grows, and the toon stage takes
whatever is waiting instead of waiting for a full batch.

The first error in any stage aborts all three queues; every thread unwinds and `run()`
raises one PipelineError naming the stage. KeyboardInterrupt in the caller's thread (the
one inside `run()`) aborts the same way and is re-raised once the threads have stopped, so
the caller can clean up (e.g. remove a partial output file). No lock is held while a stage
works: the queues lock only around their own bookkeeping.

`run()` never returns or raises with a stage thread still running: a thread left inside a
model call when Python exits is torn down mid-call and the process aborts ("terminate
called without an active exception"). So the threads start and are joined with stop
signals held back (streamer.signals.deferred): a second Ctrl+C while they wind down waits
until they have, and is then delivered. An aborted stage stops at its next queue operation;
`abort()` also asks the source to stop, so a source waiting on a device wakes up. The sink's
`finish()` (flush and commit) is not cut short: a stream whose end reached the sink is
written completely even if an interrupt comes meanwhile (`sink_finished` says so).
"""
from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Callable, Protocol

from streamer.frame import Frame
from streamer.signals import deferred
from streamer.stages import Sink, Source


class Stopped(Exception):
    """Raised inside a stage when the pipeline was aborted; the stage unwinds quietly."""


class PipelineError(RuntimeError):
    """One stage failed; `stage` names it and `error` is the original exception."""

    def __init__(self, stage: str, error: BaseException):
        super().__init__(f"{stage} stage failed: {error}")
        self.stage = stage
        self.error = error


class _End:
    __slots__ = ()

    def __repr__(self) -> str:
        return "END"


END = _End()  # marks the end of the stream; never dropped


class FrameQueue:
    """A bounded FIFO between two stage threads.

    Blocking mode (offline): `put` waits while the queue is full. Drop mode (live): `put`
    on a full queue discards the oldest waiting item and counts it in `dropped`. The END
    marker is never dropped and never waits. `abort()` wakes every waiter; afterwards
    `put` and `get` raise Stopped.
    """

    def __init__(self, maxsize: int, drop_oldest: bool = False):
        if maxsize < 1:
            raise ValueError("a queue holds at least one frame")
        self.maxsize = maxsize
        self.drop_oldest = drop_oldest
        self.dropped = 0
        self._items: deque = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._aborted = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item) -> None:
        with self._lock:
            if item is not END:
                while len(self._items) >= self.maxsize and not self._aborted:
                    if self.drop_oldest:
                        self._items.popleft()
                        self.dropped += 1
                    else:
                        self._not_full.wait()
            if self._aborted:
                raise Stopped()
            self._items.append(item)
            self._not_empty.notify()

    def get(self, block: bool = True):
        """The next item (END at the end); None when `block` is False and nothing waits."""
        with self._lock:
            while not self._items:
                if self._aborted:
                    raise Stopped()
                if not block:
                    return None
                self._not_empty.wait()
            if self._aborted:
                raise Stopped()
            item = self._items.popleft()
            self._not_full.notify()
            return item

    def close(self) -> None:
        """Mark the end of the stream for the consumer."""
        self.put(END)

    def abort(self) -> None:
        with self._lock:
            self._aborted = True
            self._items.clear()
            self._not_empty.notify_all()
            self._not_full.notify_all()


class Stage(Protocol):
    batch_size: int

    def __call__(self, frames: list[Frame]) -> list[Frame]:
        """Process a batch (1..batch_size frames); runs in the toon thread."""
        ...


@dataclass
class PipelineStats:
    """Counters the three threads update; read them at any time (e.g. for a progress bar)."""

    frames_in: int = 0  # frames the source produced
    frames_out: int = 0  # frames the sink consumed
    last_time: float | None = None  # presentation time (s) of the last frame written
    busy_s: dict[str, float] = field(default_factory=lambda: {"source": 0.0, "toon": 0.0,
                                                              "sink": 0.0})
    latency_sum_s: float = 0.0  # capture -> sink hand-off, summed over frames_out
    latency_max_s: float = 0.0
    started: float = 0.0
    elapsed_s: float = 0.0
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames_out / self.elapsed_s if self.elapsed_s > 0 else 0.0


class Pipeline:
    """Run `source -> stage -> sink` on three threads; see the module docstring."""

    def __init__(self, source: Source, stage: Stage, sink: Sink, *, queue_size: int = 4,
                 live: bool = False, side_nice: int = 0):
        """`side_nice`: raise the source and sink threads' nice value by this much (Linux:
        per thread), so that on a CPU-bound machine the inference threads come first and
        decoding / encoding fill the gaps."""
        self.side_nice = side_nice
        self.source, self.stage, self.sink = source, stage, sink
        self.queue_size = queue_size
        self.live = live
        self.q_in = FrameQueue(queue_size, drop_oldest=live)
        self.q_out = FrameQueue(queue_size, drop_oldest=live)
        self.stats = PipelineStats()
        self._error: tuple[str, BaseException] | None = None
        self._error_lock = threading.Lock()
        self._stop_requested = threading.Event()
        self._threads: list[threading.Thread] = []
        self._running = 0
        self._all_done = threading.Event()
        self.sink_finished = False  # the sink's finish() returned: the output is complete

    # --- control ---------------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop taking new frames; what is in flight still reaches the sink, which then
        finishes normally (live mode's clean stop). Any thread."""
        self._stop_requested.set()
        self.source.stop()

    def abort(self) -> None:
        """Stop all three stages now; in-flight frames are discarded. Any thread."""
        self._stop_requested.set()
        self.q_in.abort()
        self.q_out.abort()
        self.source.stop()  # a source blocked on a device read wakes up and ends

    def _fail(self, stage: str, exc: BaseException) -> None:
        with self._error_lock:
            if self._error is None:
                self._error = (stage, exc)
        self.abort()

    # --- the three threads -----------------------------------------------------------

    def _run_source(self) -> None:
        busy = self.stats.busy_s
        frames = self.source.frames()
        try:
            t0 = time.perf_counter()
            for frame in frames:
                busy["source"] += time.perf_counter() - t0
                self.stats.frames_in += 1
                self.q_in.put(frame)
                if self._stop_requested.is_set():
                    break
                t0 = time.perf_counter()
            self.q_in.close()
        finally:
            if isinstance(frames, Generator):
                frames.close()  # runs the source's own cleanup now, in this thread

    def _run_toon(self) -> None:
        busy = self.stats.busy_s
        q_in, q_out, stage = self.q_in, self.q_out, self.stage
        size = max(1, int(stage.batch_size))
        block = not self.live
        ended = False
        while not ended:
            first = q_in.get()
            if first is END:
                break
            batch = [first]
            while len(batch) < size:
                item = q_in.get(block)
                if item is None:
                    break
                if item is END:
                    ended = True
                    break
                batch.append(item)
            t0 = time.perf_counter()
            out = stage(batch)
            busy["toon"] += time.perf_counter() - t0
            for frame in out:
                q_out.put(frame)
        q_out.close()

    def _run_sink(self) -> None:
        st = self.stats
        busy = st.busy_s
        q_out, sink = self.q_out, self.sink
        while True:
            frame = q_out.get()
            if frame is END:
                break
            t0 = time.perf_counter()
            sink.write(frame)
            t1 = time.perf_counter()
            busy["sink"] += t1 - t0
            latency = time.monotonic() - frame.capture_time
            st.latency_sum_s += latency
            if latency > st.latency_max_s:
                st.latency_max_s = latency
            st.last_time = frame.time
            st.frames_out += 1
        t0 = time.perf_counter()
        sink.finish()
        self.sink_finished = True
        busy["sink"] += time.perf_counter() - t0

    def _lower_priority(self) -> None:
        if self.side_nice <= 0 or not hasattr(os, "setpriority"):
            return
        try:
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid,
                           os.getpriority(os.PRIO_PROCESS, tid) + self.side_nice)
        except OSError:
            pass  # not permitted or not per-thread here: run at the normal priority

    def _guard(self, name: str, body: Callable[[], None]) -> None:
        try:
            if name != "toon":
                self._lower_priority()
            body()
        except Stopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - every failure stops the pipeline once
            self._fail(name, exc)
        finally:
            with self._error_lock:
                self._running -= 1
                if self._running == 0:
                    self._all_done.set()

    # --- running ---------------------------------------------------------------------

    def run(self, on_tick: Callable[[PipelineStats], None] | None = None,
            tick_s: float = 0.2) -> PipelineStats:
        """Run to the end of the source. Calls `on_tick(stats)` from this thread about every
        `tick_s` seconds. Raises PipelineError for the first failing stage, and re-raises
        KeyboardInterrupt after stopping the threads."""
        st = self.stats
        st.started = time.perf_counter()
        bodies = (("source", self._run_source), ("toon", self._run_toon),
                  ("sink", self._run_sink))
        self._threads = [threading.Thread(target=self._guard, args=(name, body),
                                          name=f"toonstream-{name}", daemon=True)
                         for name, body in bodies]
        self._running = len(self._threads)
        try:
            with deferred():  # an interrupt between two starts would strand the first
                self._start_all()
            self._wait(on_tick, tick_s)
        except BaseException:  # Ctrl+C, or on_tick failed: the threads must not go on
            self.abort()
            raise
        finally:
            with deferred():  # a second Ctrl+C must not abandon threads still in a model call
                self._join_all()
            self._finish_stats()
        if self._error is not None:
            stage, exc = self._error
            raise PipelineError(stage, exc) from exc
        return st

    def _start_all(self) -> None:
        for i, t in enumerate(self._threads):
            try:
                t.start()
            except BaseException:  # no thread left to start one (RuntimeError)
                with self._error_lock:  # the ones never started never count down
                    self._running -= len(self._threads) - i
                    if self._running == 0:
                        self._all_done.set()
                self._threads = self._threads[:i]
                raise

    # Completion is tracked with our own Event, not Thread.join/is_alive: on Python 3.11 a
    # KeyboardInterrupt that lands inside Thread.join() can mark a still-running thread as
    # stopped, and the caller would then tear down what that thread is still using.

    def _wait(self, on_tick, tick_s: float) -> None:
        while not self._all_done.wait(tick_s):
            self.stats.elapsed_s = time.perf_counter() - self.stats.started
            if on_tick is not None:
                on_tick(self.stats)
        self._join_all()

    def _join_all(self) -> None:
        while not self._all_done.wait(0.1):
            pass
        for t in self._threads:
            t.join(5.0)  # each has left its body; this only waits for the thread to exit

    def _finish_stats(self) -> None:
        st = self.stats
        st.elapsed_s = time.perf_counter() - st.started
        st.dropped = {"toon_in": self.q_in.dropped, "sink_in": self.q_out.dropped}

