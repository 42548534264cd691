"""Fan one stream out to several sinks, and measure latency for every frame.

The sinks are written one after the other in the pipeline's sink thread. That keeps one
ordering and one clock for latency (capture -> the moment the last sink took the frame) and
needs no copies: images after the toon stage live in a reused ring, valid only until the
stage has made a few more frames. A slow sink therefore slows all of them, which the live
queue turns into counted drops rather than growing latency; per-sink write times are kept
(`busy_s`) so the status can say which sink is slow.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

from streamer.frame import Frame
from streamer.stages import Sink


class MultiSink(Sink):
    """Write every frame to each of `sinks` in turn (see the module docstring)."""

    name = "multi"

    def __init__(self, sinks: Sequence, on_written: Callable[[float], None] | None = None):
        if not sinks:
            raise ValueError("at least one sink")
        self.sinks = list(sinks)
        self.on_written = on_written  # called with the frame's latency in seconds
        self.busy_s = [0.0] * len(self.sinks)
        self.frames = 0

    def write(self, frame: Frame) -> None:
        busy = self.busy_s
        for i, sink in enumerate(self.sinks):
            t0 = time.perf_counter()
            sink.write(frame)
            busy[i] += time.perf_counter() - t0
        self.frames += 1
        if self.on_written is not None:
            self.on_written(time.monotonic() - frame.capture_time)

    def finish(self) -> None:
        """Finish every sink; the first failure is raised after all were tried."""
        first: BaseException | None = None
        for sink in self.sinks:
            try:
                sink.finish()
            except BaseException as exc:  # noqa: BLE001 - finish the others first
                first = first or exc
        if first is not None:
            raise first

    def _release(self) -> None:
        """Release every sink (after an error, an abort, or a finish); never raises."""
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass

    def describe(self) -> str:
        return ", ".join(sink.describe() for sink in self.sinks)
