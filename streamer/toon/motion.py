"""The one motion module: what moves between consecutive frames, measured once per frame.

- `Motion`: dense optical flow (DIS) from each frame back to the previous one, on a small
  grey copy, with the forward-backward check; `MotionStep` is one frame's result, and
  `remap_maps` / `flow_maps` / `warp` carry any image along it (the temporal step's
  previous output, a head in its crop space, the live path's last background).
- `SceneCut`: whether two frames belong to different shots, judged on 32x18 grey
  thumbnails. It is the one cut detector: the motion (no flow across a cut), the face
  tracker (no track across a cut) and the live background reuse (no background carried
  across a cut) all ask it.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: mean |diff| of 32x18 grey thumbnails that marks a scene cut (the face tracker's value)
CUT_THRESHOLD = 30.0
#: DIS settings by name: OpenCV's presets, and `fine`, the fast preset with its finest scale
#: one step finer (the flow is fitted on a grid of half the image's size instead of a
#: quarter: on a close-up it follows the eyes, the mouth and a moving background's edges
#: where `fast` smears them; medium costs about twice as much again)
DIS_PRESETS = {"ultrafast": (cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, None),
               "fast": (cv2.DISOPTICAL_FLOW_PRESET_FAST, None),
               "fine": (cv2.DISOPTICAL_FLOW_PRESET_FAST, 1),
               "medium": (cv2.DISOPTICAL_FLOW_PRESET_MEDIUM, None)}


def dis_flow(preset: str) -> cv2.DISOpticalFlow:
    """A DIS optical flow object with the settings named `preset` (see DIS_PRESETS)."""
    base, finest = DIS_PRESETS[preset]
    dis = cv2.DISOpticalFlow_create(base)
    if finest is not None:
        dis.setFinestScale(finest)
    return dis


def thumbnail(frame: np.ndarray) -> np.ndarray:
    """The 32x18 grey thumbnail that scene cuts are judged on (as the face tracker does)."""
    grey = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    return cv2.resize(grey, (32, 18), interpolation=cv2.INTER_AREA).astype(np.float32)


class SceneCut:
    """Scene cuts between consecutive frames (`update`) or between any two frames
    (`between`): the mean |difference| of their 32x18 grey thumbnails over `threshold`
    grey levels. Motion within a shot stays far below it; a cut, a camera switched or a
    light turned off goes over it."""

    def __init__(self, threshold: float = CUT_THRESHOLD):
        self.threshold = threshold
        self._prev: np.ndarray | None = None
        self.cuts = 0

    def reset(self) -> None:
        self._prev = None

    def between(self, before: np.ndarray, now: np.ndarray) -> bool:
        """Two thumbnails (see `thumbnail`) of different shots."""
        return float(np.abs(now - before).mean()) > self.threshold

    def update(self, frame: np.ndarray) -> bool:
        """Whether `frame` (grey or BGR, any size) starts a new shot after the previous
        one given here; a first frame after a reset is not a cut."""
        thumb = thumbnail(frame)
        prev, self._prev = self._prev, thumb
        cut = prev is not None and self.between(prev, thumb)
        self.cuts += cut
        return cut


@dataclass
class MotionStep:
    """The motion from the previous frame to this one, on the flow's small grey copy.

    `back`: flow t -> t-1 ([h, w, 2] float32, small pixels); `ok`: forward-backward
    consistent and warped from inside the frame ([h, w] float32 0/1); `frame_hw`: the size
    of the frame it was measured on."""

    back: np.ndarray
    ok: np.ndarray
    frame_hw: tuple[int, int]


_GRIDS: dict[tuple[int, int], np.ndarray] = {}


def pixel_grid(hw: tuple[int, int]) -> np.ndarray:
    """[h, w, 2] float32 (x, y) coordinates of every pixel, made once per size (read-only)."""
    grid = _GRIDS.get(hw)
    if grid is None:
        gx, gy = np.meshgrid(np.arange(hw[1], dtype=np.float32), np.arange(hw[0], dtype=np.float32))
        grid = np.dstack([gx, gy])
        grid.setflags(write=False)
        _GRIDS[hw] = grid
    return grid


def remap_maps(step: MotionStep, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """For every pixel of an image of size `hw` at time t (the measured frame's view, any
    size): where it was at t-1 (a [h, w, 2] map for `warp`), and its reliability (0..1)
    from the flow's checks. The small flow is enlarged with cv2.resize (pixel centres
    aligned, as `MotionStep.sample` does) and scaled to this image's pixels."""
    h, w = hw
    ok = cv2.resize(step.ok, (w, h), interpolation=cv2.INTER_LINEAR)
    return flow_maps(step.back, hw), ok


def flow_maps(back: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """The [h, w, 2] map for `warp` from a flow measured on a small copy (`back`, in small
    pixels, each pixel -> where it was): enlarged to an image of size `hw` with
    cv2.resize (pixel centres aligned) and scaled to its pixels."""
    h, w = hw
    sx, sy = back.shape[1] / w, back.shape[0] / h
    # Scaled before it is enlarged (the same, as resizing is linear, on fewer pixels).
    small = cv2.multiply(back, (1.0 / sx, 1.0 / sy, 0.0, 0.0))
    flow = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.add(flow, pixel_grid(hw), dst=flow)


def warp(img: np.ndarray, maps: np.ndarray, dst: np.ndarray | None = None) -> np.ndarray:
    """`img` (the previous frame's, any channels) carried onto the current frame along the
    [h, w, 2] map from `remap_maps` (bilinear; edges replicated: the reliability is 0 there)."""
    return cv2.remap(img, maps, None, cv2.INTER_LINEAR, dst=dst,
                     borderMode=cv2.BORDER_REPLICATE)


class Motion:
    """Dense optical flow between consecutive frames, once per frame: DIS (`preset`, a name
    in DIS_PRESETS) on a grey copy whose long side is at most `side`, both ways, with the
    forward-backward check.

    `update(frame)` returns the MotionStep from the previous frame to this one, or None on
    a first frame, a scene cut or a size change (nothing to carry over)."""

    def __init__(self, side: int = 320, cut_threshold: float = CUT_THRESHOLD,
                 preset: str = "fast"):
        self.side = side
        self.scene = SceneCut(cut_threshold)
        self._dis = dis_flow(preset)
        self._prev: np.ndarray | None = None
        self._hw: tuple[int, int] | None = None

    @property
    def cuts(self) -> int:
        return self.scene.cuts

    def reset(self) -> None:
        self._prev = None
        self.scene.reset()

    def small_size(self, hw: tuple[int, int]) -> tuple[int, int]:
        """The flow's grey copy: long side at most `side` and at most half the frame's (the
        flow is smooth where it matters and DIS's cost grows with the pixels; a live 256x144
        working frame gets a 128x72 flow)."""
        h, w = hw
        s = min(0.5, self.side / max(h, w))
        return max(8, round(h * s)), max(8, round(w * s))

    def update(self, frame: np.ndarray) -> MotionStep | None:
        hw = frame.shape[:2]
        grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
        sh, sw = self.small_size(hw)
        small = grey if (sh, sw) == hw else cv2.resize(grey, (sw, sh), interpolation=cv2.INTER_AREA)
        prev, self._prev = self._prev, small
        if prev is None or self._hw != hw:
            self._hw = hw
            self.scene.reset()
            self.scene.update(small)
            return None
        if self.scene.update(small):
            return None
        return flow_step(self._dis, small, prev, hw)


def flow_step(dis: cv2.DISOpticalFlow, cur: np.ndarray, prev: np.ndarray,
              hw: tuple[int, int]) -> MotionStep:
    """The motion from grey image `prev` to grey image `cur` (same size): DIS both ways and
    the forward-backward check. `hw`: the size of the images they are small copies of."""
    sh, sw = cur.shape[:2]
    back = dis.calc(cur, prev, None)  # t -> t-1
    fwd = dis.calc(prev, cur, None)   # t-1 -> t
    grid = pixel_grid((sh, sw))
    mx, my = grid[..., 0] + back[..., 0], grid[..., 1] + back[..., 1]
    fwd_at = cv2.remap(fwd, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # The usual forward-backward test (Sundaram et al. 2010): b + f(x + b) ~ 0, with a
    # tolerance that grows with the motion.
    ex, ey = back[..., 0] + fwd_at[..., 0], back[..., 1] + fwd_at[..., 1]
    err = ex * ex + ey * ey
    tol = 0.01 * (back[..., 0] ** 2 + back[..., 1] ** 2 + fwd_at[..., 0] ** 2
                  + fwd_at[..., 1] ** 2) + 0.5
    ok = (err <= tol) & (mx >= 0) & (my >= 0) & (mx <= sw - 1) & (my <= sh - 1)
    return MotionStep(back, ok.astype(np.float32), hw)
