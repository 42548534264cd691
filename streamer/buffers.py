"""Work buffers that last from frame to frame. The per-frame path asks for a buffer by name
and shape and gets the same array back until the shape changes, so a stream of one size
allocates its buffers once."""
from __future__ import annotations

import numpy as np


class Scratch:
    """Named buffers of an exact shape and dtype, made on first use or when either changes."""

    def __init__(self) -> None:
        self._bufs: dict[str, np.ndarray] = {}
        self.allocations = 0

    def get(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        buf = self._bufs.get(name)
        if buf is None or buf.shape != tuple(shape) or buf.dtype != dtype:
            buf = self._bufs[name] = np.empty(shape, dtype)
            self.allocations += 1
        return buf
