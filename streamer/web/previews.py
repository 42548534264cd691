"""Style preview thumbnails from a small built-in test pattern.

The page shows every installed style as a thumbnail. No photo is shipped for that (media
licences, package size): the thumbnails are the styles applied to a portrait-like pattern
drawn here (a gradient background, shoulders, a face with hair, eyes, brows, nose and mouth),
which is enough to show each style's palette, line work and shading. It is drawn once, at
128x128 (a multiple of 16: no padding), and each style stylises it once, at start-up.
"""
from __future__ import annotations

import cv2
import numpy as np

PATTERN_SIZE = 128


def test_pattern(size: int = PATTERN_SIZE) -> np.ndarray:
    """A portrait-like uint8 BGR test image, `size` x `size` (deterministic)."""
    s = size / 128.0

    def p(x: float, y: float) -> tuple[int, int]:
        return int(round(x * s)), int(round(y * s))

    def r(v: float) -> int:
        return max(1, int(round(v * s)))

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(1, size - 1)
    img = np.empty((size, size, 3), np.float32)
    # sky-to-warm background gradient, with a soft diagonal light
    img[..., 0] = 235 - 120 * yy + 10 * xx   # B
    img[..., 1] = 200 - 60 * yy + 20 * xx    # G
    img[..., 2] = 150 + 70 * yy + 15 * xx    # R
    img = np.clip(img, 0, 255).astype(np.uint8)
    lt = cv2.LINE_AA
    cv2.ellipse(img, p(64, 138), (r(58), r(40)), 0, 180, 360, (120, 70, 40), -1, lt)  # shoulders
    cv2.rectangle(img, p(54, 88), p(74, 104), (130, 170, 215), -1, lt)  # neck
    cv2.ellipse(img, p(64, 52), (r(34), r(38)), 0, 0, 360, (40, 50, 70), -1, lt)  # hair
    cv2.ellipse(img, p(64, 62), (r(27), r(33)), 0, 0, 360, (150, 185, 230), -1, lt)  # face
    cv2.ellipse(img, p(64, 36), (r(28), r(12)), 0, 180, 360, (40, 50, 70), -1, lt)  # fringe
    for ex in (53, 75):
        cv2.ellipse(img, p(ex, 58), (r(6), r(3.5)), 0, 0, 360, (245, 245, 245), -1, lt)
        cv2.circle(img, p(ex, 58), r(2.5), (60, 40, 30), -1, lt)
        cv2.line(img, p(ex - 6, 50), p(ex + 6, 49), (40, 50, 70), r(1.5), lt)  # brow
    cv2.line(img, p(64, 60), p(62, 72), (110, 140, 190), r(1.5), lt)  # nose
    cv2.ellipse(img, p(64, 80), (r(9), r(4)), 0, 0, 180, (80, 80, 190), r(2), lt)  # mouth
    cv2.circle(img, p(50, 72), r(4), (140, 160, 235), -1, lt)  # cheeks
    cv2.circle(img, p(78, 72), r(4), (140, 160, 235), -1, lt)
    return img
