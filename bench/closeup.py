"""A close-up talking head at 30 fps, made from the shared clip tears_640x360.mp4.

The shared clips have no close-up talking head of the kind a video call shows (a person
filling half of a 30 fps frame), so the stability benchmark makes one, the same way every
time, from the shared media (nothing is written to disk, nothing is committed):

- **Shot**: source frames 84..144 of tears (2.5 s at 24 fps): a man in glasses, talking,
  turning his head a little (his mouth, eyes behind the glasses and curly hair are the
  parts a head model redraws).
- **Close-up**: the fixed window x 213.3..640, y 0..240 (the right two thirds of the
  upper part of the frame, 1/1.5 of its size) enlarged 1.5x (bicubic) back to 640x360: his
  face box goes from about 115x175 to about 170x260 pixels, head and shoulders about half
  of the picture.
- **30 fps**: output frame k shows source time 84 + 0.8 k (in source frames): every fifth
  frame is a source frame, resampled once as above; the four in between are made by
  motion-compensated interpolation: DIS optical flow (medium preset) between the two
  source frames around it, both ways, on full-size grey frames; each of the two frames is
  carried to the in-between time with Super SloMo's linear approximation of the
  intermediate flow (Jiang et al. 2018, eq. 4), and the two are mixed by their distance in
  time. Every output pixel is sampled straight from the source frames (the crop, the
  enlargement and the carry are one bicubic remap), so the in-between frames are not
  softer than the others; where the motion is occluded (the mouth opening) they show the
  usual interpolation ghost, which the model then draws like any other input.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

SOURCE = "tears_640x360.mp4"
NAME = "closeup_talking_30fps"  # the clip's name in the benchmark's tables
FIRST, LAST = 84, 144  # source frames (24 fps), inclusive
ZOOM = 1.5
WINDOW_X0, WINDOW_Y0 = 640 - 640 / ZOOM, 0.0  # the close-up window's top-left corner
SIZE = (640, 360)  # output width, height
SOURCE_FPS, FPS = 24.0, 30.0


def _decode(path: Path, first: int, last: int) -> list[np.ndarray]:
    import av

    frames = []
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i > last:
                break
            if i >= first:
                frames.append(f.to_ndarray(format="bgr24"))
    if len(frames) != last - first + 1:
        raise ValueError(f"{path} has fewer than {last + 1} frames")
    return frames


def _window_grid() -> tuple[np.ndarray, np.ndarray]:
    """Source coordinates of every output pixel (pixel centres: x_src + 0.5 =
    x0 + (u + 0.5) / ZOOM)."""
    w, h = SIZE
    u, v = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    x = np.float32(WINDOW_X0) + (u + np.float32(0.5)) / np.float32(ZOOM) - np.float32(0.5)
    y = np.float32(WINDOW_Y0) + (v + np.float32(0.5)) / np.float32(ZOOM) - np.float32(0.5)
    return x, y


def _sample(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return cv2.remap(img, x, y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def _flow_at(flow: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return cv2.remap(flow, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def closeup_frames(media: Path, limit: int | None = None
                   ) -> tuple[list[np.ndarray], list[float]]:
    """The close-up clip's frames (uint8 BGR, 640x360) and their times in seconds (30 fps);
    at most `limit` frames."""
    src = _decode(media / SOURCE, FIRST, LAST)
    grey = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in src]
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    gx, gy = _window_grid()
    n = int((LAST - FIRST) * FPS / SOURCE_FPS) + 1
    if limit is not None:
        n = min(n, limit)
    flows: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    frames, times = [], []
    for k in range(n):
        pos = k * SOURCE_FPS / FPS  # in source frames since FIRST
        i = int(np.floor(pos + 1e-9))
        t = pos - i
        if t < 1e-6:
            frames.append(_sample(src[i], gx, gy))
        else:
            if i not in flows:
                flows = {i: (dis.calc(grey[i], grey[i + 1], None),   # i -> i+1
                             dis.calc(grey[i + 1], grey[i], None))}  # i+1 -> i
            f01, f10 = flows[i]
            # Super SloMo's intermediate flows from time t to 0 and to 1, from the two flows
            # taken at the same pixel.
            a01, a10 = _flow_at(f01, gx, gy), _flow_at(f10, gx, gy)
            ft0 = -(1 - t) * t * a01 + t * t * a10
            ft1 = (1 - t) * (1 - t) * a01 - t * (1 - t) * a10
            im0 = _sample(src[i], gx + ft0[..., 0], gy + ft0[..., 1]).astype(np.float32)
            im1 = _sample(src[i + 1], gx + ft1[..., 0], gy + ft1[..., 1]).astype(np.float32)
            frames.append(np.clip((1 - t) * im0 + t * im1 + 0.5, 0, 255).astype(np.uint8))
        times.append(k / FPS)
    return frames, times
