"""The live background treatment: the person mask of each camera frame, refined at the
output size against the camera frame, applied to the cartoon (keep / transparent / blur /
colour / image, toon/background.py). It runs after the style's chain, at the output size,
so a small working size does not blur the person's outline."""
from __future__ import annotations

import statistics
import time
from collections import deque
from typing import Sequence

import numpy as np

from streamer.buffers import Scratch
from streamer.toon.background import Background, Compositor
from streamer.toon.segment import PersonSegmenter


class LiveTreatment:
    """Masks camera frames and composites the cartoons; times both parts."""

    def __init__(self, background: Background, segmenter: PersonSegmenter):
        self.background = background
        self.segmenter = segmenter
        self._compositor = Compositor(background)
        self._scratch = Scratch()  # the refined mask, used at once
        self.seg_s: deque = deque(maxlen=2048)  # seconds per call: model + smoothing
        self.treat_s: deque = deque(maxlen=2048)  # edge refinement and compositing

    @property
    def channels(self) -> int:
        return 4 if self.background.alpha else 3

    def __call__(self, images: Sequence[np.ndarray], guides: Sequence[np.ndarray],
                 outs: Sequence[np.ndarray], dst: np.ndarray) -> list[np.ndarray]:
        """The treated `outs` in `dst` ([N, H, W, channels]); the mask of each camera frame
        in `images`, refined with `guides` (the frames at the output size)."""
        t0 = time.perf_counter()
        smalls = self.segmenter.step(images)
        t1 = time.perf_counter()
        h, w = dst.shape[1:3]
        mask_buf = self._scratch.get("mask", (h, w), np.float32)  # one serves every frame
        for i, (small, guide, cartoon) in enumerate(zip(smalls, guides, outs)):
            mask = self.segmenter.refine(small, guide, (w, h), out=mask_buf)
            self._compositor(cartoon, mask, dst[i])
        self.seg_s.append(t1 - t0)
        self.treat_s.append(time.perf_counter() - t1)
        return [dst[i] for i in range(len(outs))]

    def seg_ms(self) -> float | None:
        vals = list(self.seg_s)
        return statistics.median(vals) * 1000 if vals else None

    def treat_ms(self) -> float | None:
        vals = list(self.treat_s)
        return statistics.median(vals) * 1000 if vals else None
