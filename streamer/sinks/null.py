"""A sink that consumes frames and keeps nothing: for benchmarks and tests."""
from __future__ import annotations

from streamer.frame import Frame
from streamer.stages import Sink


class NullSink(Sink):
    name = "null"

    def __init__(self, keep_last: bool = False):
        self.frames = 0
        self.keep_last = keep_last
        self.last = None  # a copy of the last image when keep_last

    def write(self, frame: Frame) -> None:
        self.frames += 1
        if self.keep_last:
            self.last = frame.image.copy()

    def finish(self) -> None:
        pass

    def _release(self) -> None:
        pass

    def describe(self) -> str:
        return "null"
