"""Paste stylised heads back over the full-frame result, the official way.

The official code warps each head and the soft mask back over the whole frame and blends
in float32: `res = m * head + (1 - m) * res`. Here the same warps run only over the
bounding box of the crop in the frame (the result outside it is unchanged, since the mask
there is 0), which is what keeps the face path cheap at any frame size.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .align import CROP_SIZE


def load_head_mask(path: Path | str, size: int = CROP_SIZE) -> np.ndarray:
    """The official soft head mask: `alpha.jpg` read as 3 channels, resized to `size` with
    INTER_AREA, converted to grey, /255 -> float32 [size, size] in 0..1."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"{path}: cannot read the head mask image")
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32) / np.float32(255.0)


def paste_roi(m_inv: np.ndarray, frame_hw: tuple[int, int], size: int = CROP_SIZE
              ) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1): the part of the frame that the crop covers under `m_inv`
    (crop -> image), with a pixel of margin for bilinear taps; None when it is outside."""
    h, w = frame_hw
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64)
    pts = corners @ np.asarray(m_inv, np.float64).T
    x0 = max(0, int(np.floor(pts[:, 0].min())) - 1)
    y0 = max(0, int(np.floor(pts[:, 1].min())) - 1)
    x1 = min(w, int(np.ceil(pts[:, 0].max())) + 2)
    y1 = min(h, int(np.ceil(pts[:, 1].max())) + 2)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


class PasteScratch:
    """Grow-only work buffers for the paste-back: each paste takes views of the size its
    face needs, so once the largest face has been seen the paste allocates nothing."""

    def __init__(self) -> None:
        self._bufs: dict[str, np.ndarray] = {}
        self.allocations = 0

    def view(self, name: str, h: int, w: int, channels: int, dtype) -> np.ndarray:
        buf = self._bufs.get(name)
        if buf is None or buf.shape[0] < h or buf.shape[1] < w:
            hh = max(h, buf.shape[0] if buf is not None else 0)
            ww = max(w, buf.shape[1] if buf is not None else 0)
            buf = self._bufs[name] = np.empty((hh, ww, channels), dtype)
            self.allocations += 1
        return buf[:h, :w]


def paste_head(out: np.ndarray, head: np.ndarray, m_inv: np.ndarray, mask: np.ndarray,
               alpha: float = 1.0, scratch: PasteScratch | None = None) -> None:
    """Blend one stylised 288x288 `head` into the uint8 BGR image `out`, in place:
    `out = m * head + (1 - m) * out` with `m` the mask warped by `m_inv` (crop -> image,
    bilinear, border 0) times `alpha` (the track's fade), truncated to uint8. `scratch`
    holds the work buffers between calls (a fresh one per call when None)."""
    roi = paste_roi(m_inv, out.shape[:2], head.shape[0])
    if roi is None or alpha <= 0.0:
        return
    scratch = scratch if scratch is not None else PasteScratch()
    x0, y0, x1, y1 = roi
    shifted = np.array(m_inv, np.float64, copy=True)
    shifted[0, 2] -= x0
    shifted[1, 2] -= y0
    w, h = x1 - x0, y1 - y0
    head_w = cv2.warpAffine(head, shifted, (w, h), dst=scratch.view("head", h, w, 3, np.uint8),
                            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                            borderValue=(0, 0, 0))
    m1 = cv2.warpAffine(mask, shifted, (w, h), dst=scratch.view("mask", h, w, 1, np.float32)[..., 0],
                        flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if alpha < 1.0:
        m1 *= np.float32(alpha)
    # The blend runs on three-channel float32 views with OpenCV's vector kernels: numpy's
    # broadcast of a one-channel mask and its uint8 -> float32 casts made this step 2x
    # slower for a close-up face (bench/second_core.py). Every value is the same float32
    # product and sum as the official formula, so the result is bit-identical.
    m = cv2.merge((m1, m1, m1), dst=scratch.view("mask3", h, w, 3, np.float32))
    dst = out[y0:y1, x0:x1]
    res = cv2.multiply(m, head_w, dst=scratch.view("res", h, w, 3, np.float32), dtype=cv2.CV_32F)
    rest = np.subtract(np.float32(1.0), m, out=scratch.view("rest", h, w, 3, np.float32))
    tmp = cv2.multiply(rest, dst, dst=scratch.view("tmp", h, w, 3, np.float32), dtype=cv2.CV_32F)
    cv2.add(res, tmp, dst=res)
    # The official result is clipped and cast (truncated) to uint8.
    np.clip(res, 0, 255, out=res)
    dst[...] = res
