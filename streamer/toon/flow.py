"""The official full-frame flow: shrink to the working size, pad white, stylise, crop back.

Frames of one size are batched; the padded input batch and the output batches are kept and
reused, so the per-frame path allocates nothing once the size is known.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from .engine import Engine
from .link import Link

OFFICIAL_SHORT_SIDE = 720


def work_size(height: int, width: int, short_side: int = OFFICIAL_SHORT_SIDE) -> tuple[int, int]:
    """(h, w) the model sees before padding: the short side reduced to `short_side`, never
    enlarged (as the official code does)."""
    short = min(height, width)
    if short <= short_side:
        return height, width
    # The official resize_size() computes the long side as int(size * long / short).
    if height <= width:
        return short_side, int(short_side * width / height)
    return int(short_side * height / width), short_side


def padded_size(height: int, width: int) -> tuple[int, int]:
    """The official padTo16x: if either side is off a multiple of 16, BOTH grow to the next
    multiple (so an aligned side still gains 16 pixels: 640x360 runs at 656x368)."""
    if height % 16 == 0 and width % 16 == 0:
        return height, width
    return (height // 16 + 1) * 16, (width // 16 + 1) * 16


@dataclass
class _Buffers:
    frame_hw: tuple[int, int]
    work_hw: tuple[int, int]
    batch_in: np.ndarray  # [N, Hp, Wp, 3], white outside the work area
    batch_out: list[np.ndarray]  # ring of [N, Hp, Wp, 3]
    resized_out: list[np.ndarray] | None  # ring of [N, H, W, 3] when the frame was shrunk


class FullFrameFlow(Link):
    """Stylise whole frames with the background model, the official way: the first link of
    a chain without faces (it keeps no state between frames, so `reset` has nothing to do).

    Returned images are views into a ring of `ring` output batches: a result stays valid
    until `ring` more calls have been made, so keep `ring` above the number of batches the
    consumer holds at once.
    """

    def __init__(self, engine: Engine, short_side: int = OFFICIAL_SHORT_SIDE, ring: int = 4):
        if short_side < 16:
            raise ValueError("the working short side must be at least 16 pixels")
        super().__init__()
        self.engine = engine
        self.short_side = short_side
        self.ring = max(1, ring)
        self._buf: _Buffers | None = None
        self._turn = 0

    def _buffers(self, n: int, h: int, w: int) -> _Buffers:
        buf = self._buf
        if buf is None or buf.frame_hw != (h, w) or buf.batch_in.shape[0] != n:
            wh, ww = work_size(h, w, self.short_side)
            ph, pw = padded_size(wh, ww)
            # From the engine: page-locked on a GPU, so frames are resized straight into
            # memory the GPU copies from (and results land where the GPU writes).
            batch_in = self.engine.host_buffer((n, ph, pw, 3))
            batch_in.fill(255)
            outs = [self.engine.host_buffer(batch_in.shape) for _ in range(self.ring)]
            resized = None
            if (wh, ww) != (h, w):
                resized = [np.empty((n, h, w, 3), np.uint8) for _ in range(self.ring)]
            buf = self._buf = _Buffers((h, w), (wh, ww), batch_in, outs, resized)
        return buf

    def __call__(self, frames: list[np.ndarray], times: Sequence[float] | None = None
                 ) -> list[np.ndarray]:
        """Stylise same-size uint8 BGR frames in one batch (`times` is not needed: the
        full-frame flow keeps no state between frames)."""
        if not frames:
            return []
        h, w = frames[0].shape[:2]
        for f in frames:
            if f.shape != (h, w, 3) or f.dtype != np.uint8:
                raise ValueError(f"a batch needs uint8 BGR frames of one size, got {f.shape} {f.dtype}")
        t0 = time.perf_counter()
        buf = self._buffers(len(frames), h, w)
        wh, ww = buf.work_hw
        for i, f in enumerate(frames):
            if (wh, ww) == (h, w):
                buf.batch_in[i, :h, :w] = f
            else:
                cv2.resize(f, (ww, wh), dst=buf.batch_in[i, :wh, :ww], interpolation=cv2.INTER_AREA)
        turn = self._turn
        self._turn = (turn + 1) % self.ring
        out = self.engine.run(buf.batch_in, buf.batch_out[turn])
        if buf.resized_out is None:
            results = [out[i, :h, :w] for i in range(len(frames))]
        else:
            dst = buf.resized_out[turn]
            for i in range(len(frames)):
                # The official code resizes back with the default (bilinear) interpolation.
                cv2.resize(out[i, :wh, :ww], (w, h), dst=dst[i])
            results = [dst[i] for i in range(len(frames))]
        self._timings.frames += len(frames)
        self._timings.bg_s += time.perf_counter() - t0
        return results
