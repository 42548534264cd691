"""The live toon's per-batch buffers, made once per batch size and working size: the frames
reduced to the working size, a ring of results at the output size (a result stays valid for
`ring` calls, more than the frames in flight after the toon stage), the camera frames at
the output size (heads are cut from them, the mask is refined against them), and a ring of
treated results when there is a background treatment."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np


class LiveBuffers:
    def __init__(self, ring: int, out_wh: tuple[int, int], treated_channels: int | None):
        self.ring = ring
        self.out_w, self.out_h = out_wh
        self.treated_channels = treated_channels  # None: no background treatment
        self.work: np.ndarray | None = None  # [N, work h, work w, 3]
        self._out: list[np.ndarray] = []
        self._treated: list[np.ndarray] = []
        self._src: np.ndarray | None = None
        self._turn = 0

    def ensure(self, n: int, work_wh: tuple[int, int]) -> np.ndarray:
        """The working-size batch for `n` frames (the rings are remade with it)."""
        ww, wh = work_wh
        if self.work is None or self.work.shape[:3] != (n, wh, ww):
            self.work = np.empty((n, wh, ww, 3), np.uint8)
            shape = (n, self.out_h, self.out_w)
            self._out = [np.empty(shape + (3,), np.uint8) for _ in range(self.ring)]
            self._src = None
            if self.treated_channels is not None:
                self._treated = [np.empty(shape + (self.treated_channels,), np.uint8)
                                 for _ in range(self.ring)]
        return self.work

    def next_turn(self) -> int:
        turn = self._turn
        self._turn = (turn + 1) % self.ring
        return turn

    def out(self, turn: int) -> np.ndarray:
        return self._out[turn]

    def treated(self, turn: int) -> np.ndarray:
        return self._treated[turn]

    def at_output_size(self, images: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
        """The camera frames at the output size (no copy when they are)."""
        size = (self.out_h, self.out_w)
        if all(img.shape[:2] == size for img in images):
            return images
        if self._src is None:
            self._src = np.empty_like(self._out[0])
        for i, img in enumerate(images):
            cv2.resize(img, (self.out_w, self.out_h), dst=self._src[i],
                       interpolation=cv2.INTER_AREA if img.shape[0] > self.out_h
                       else cv2.INTER_LINEAR)
        return [self._src[i] for i in range(len(images))]
