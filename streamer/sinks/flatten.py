"""A sink that carries no alpha, fed BGRA frames (--background transparent): the person over
a solid key colour, then on to the sink. Virtual cameras (OBS's and Windows' are NV12 /
UYVY), H.264 streams and MP4 recordings have no alpha plane, so the surroundings become a
colour a chroma key removes (green by default, --key-color)."""
from __future__ import annotations

import dataclasses

import numpy as np

from streamer.frame import Frame
from streamer.stages import Sink
from streamer.toon.background import blend, split_alpha


class FlattenSink(Sink):
    def __init__(self, inner: Sink, color: tuple[int, int, int]):
        self.inner = inner
        self.color = color  # BGR
        self.name = inner.name
        self._plate: np.ndarray | None = None
        self._out: np.ndarray | None = None
        self._inv: np.ndarray | None = None

    def describe(self) -> str:
        b, g, r = self.color
        return f"{self.inner.describe()}, no alpha: the person over #{r:02x}{g:02x}{b:02x}"

    def write(self, frame: Frame) -> None:
        img = frame.image
        if img.ndim == 3 and img.shape[2] == 4:
            h, w = img.shape[:2]
            if self._plate is None or self._plate.shape[:2] != (h, w):
                self._plate = np.empty((h, w, 3), np.uint8)
                self._plate[...] = self.color
                self._out = np.empty((h, w, 3), np.uint8)
                self._inv = np.empty((h, w), np.float32)
            bgr, mask = split_alpha(img)
            flat = blend(bgr, self._plate, mask, self._out, self._inv)
            # A copy of the frame: the other sinks of a MultiSink still get the alpha.
            frame = dataclasses.replace(frame, image=flat)
        self.inner.write(frame)

    def finish(self) -> None:
        self.inner.finish()

    def _release(self) -> None:
        self.inner.close()
