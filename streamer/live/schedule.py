"""Face-first scheduling for the live path: the face never degrades, the background does.

Per camera frame the toon stage has one frame interval (`1 / fps`). The heads (every face,
the full 288x288 crop cut from the output-size frame) and the fixed per-frame work (resizes,
detection and tracking, paste-back) are paid first; the background model gets what is left:

1. its **working size** (`--work auto`): the largest candidate short side whose background
   run fits in what is left of the interval, from model times measured at start-up;
2. if even the smallest size does not fit, its **rate**: the model runs every `bg_every`-th
   frame and the frames in between reuse the last background, warped along the image motion
   (`warp_background`), so the cost of one run is spread over `bg_every` intervals.

Times are followed with moving averages while streaming, so when the machine gets slower
(another process, a second face) `bg_every` rises at once, and after a few seconds the
working size steps down (and back up when the headroom returns, again after a hold, so the
choice does not flap). The face work is never cut for the background: when the heads alone
exceed the interval, the background runs as rarely as allowed and the status line says so.

The scheduler is plain arithmetic over the times it is told (`observe`) and the clock it is
given, so tests drive it with a stand-in engine that sleeps and assert what it chose.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

from streamer.config import AUTO_SIZES
from streamer.toon.motion import flow_maps, warp

# A larger working size is taken only when its background run fits in this share of what
# the faces leave (hysteresis against stepping up and down in turn).
UP_MARGIN = 0.75


@dataclass
class ScheduleSettings:
    fps: float                          # the camera rate to hold
    sizes: tuple[int, ...] = AUTO_SIZES  # candidate working short sides (auto)
    auto_size: bool = True              # False: the working size is fixed (--work N)
    headroom: float = 0.85              # plan to use this share of the frame interval
    max_bg_every: int = 8               # reuse a background at most this many frames
    hold_s: float = 3.0                 # seconds between working-size changes
    smoothing: float = 0.2              # weight of a new sample in the moving averages


@dataclass
class _Ema:
    value: float | None = None

    def add(self, x: float, w: float) -> float:
        self.value = x if self.value is None else (1 - w) * self.value + w * x
        return self.value


@dataclass
class Choice:
    """What the scheduler runs now (also reported on the status line and in stats)."""

    work_short: int
    bg_every: int
    reason: str
    changes: list = field(default_factory=list)


class FaceFirstScheduler:
    """Decides, frame by frame, whether the background model runs, and at which size."""

    def __init__(self, settings: ScheduleSettings, work_short: int,
                 clock: Callable[[], float] = time.monotonic):
        if settings.fps <= 0:
            raise ValueError("fps must be positive")
        self.s = settings
        self.clock = clock
        self.budget_s = 1.0 / settings.fps
        self.choice = Choice(work_short, 1, "start")
        self._bg_px_s = _Ema()   # background seconds per working-size pixel (scales with area)
        self._bg_fixed_s = 0.0   # the size-independent part of a background run
        self._head_s = _Ema()    # head model seconds per face
        self._other_s = _Ema()   # everything else per frame (resizes, tracking, paste, warp)
        self._faces = _Ema()
        self._since_bg = 10**9   # frames since the last background run
        self._last_change = clock()
        self.frames = 0
        self.bg_runs = 0
        self.faces_run = 0
        self.pending_size: int | None = None  # a size change the owner should apply
        self._aspect = 16 / 9

    # --- start-up ---------------------------------------------------------------------

    def set_aspect(self, width: int, height: int) -> None:
        self._aspect = max(width, height) / min(width, height)

    def pixels(self, short: int) -> float:
        return short * short * self._aspect

    def calibrate(self, bg_times: dict[int, float], head_s: float, other_s: float = 0.0) -> int:
        """Seed the model of the machine with times measured at start-up (`bg_times`:
        working short side -> seconds per background run, at two sizes or more; `head_s`:
        seconds per face) and pick the working size. Returns the chosen short side."""
        sides = sorted(bg_times)
        if len(sides) >= 2:
            p0, p1 = self.pixels(sides[0]), self.pixels(sides[-1])
            t0, t1 = bg_times[sides[0]], bg_times[sides[-1]]
            per_px = max(1e-12, (t1 - t0) / (p1 - p0))
            self._bg_fixed_s = max(0.0, t0 - per_px * p0)
        else:
            per_px = bg_times[sides[0]] / self.pixels(sides[0])
        self._bg_px_s.value = per_px
        self._head_s.value = head_s
        self._other_s.value = other_s
        if self._faces.value is None:
            self._faces.value = 1.0  # plan for one face: the case this preset is for
        if self.s.auto_size:
            self.choice.work_short = self._best_size()
        self.choice.bg_every = self._needed_every(self.choice.work_short)
        self.choice.reason = self._reason()
        return self.choice.work_short

    # --- per frame --------------------------------------------------------------------

    def run_background(self) -> bool:
        """Whether this frame runs the background model (else it reuses the last one)."""
        return self._since_bg >= self.choice.bg_every

    def observe(self, *, bg_s: float | None, head_s: float, faces: int, other_s: float,
                heads: int | None = None) -> None:
        """The times of the frame just done: `bg_s` the background run (None when it was
        reused), `head_s` all its head runs, `faces` the faces pasted, `heads` how many of
        them ran the head model (default: all), `other_s` the rest."""
        w = self.s.smoothing
        heads = faces if heads is None else heads
        self.frames += 1
        self.faces_run += heads
        if bg_s is None:
            self._since_bg += 1
        else:
            self._since_bg = 1
            self.bg_runs += 1
            px = self.pixels(self.choice.work_short)
            self._bg_px_s.add(max(0.0, bg_s - self._bg_fixed_s) / px, w)
        if heads:
            self._head_s.add(head_s / heads, w)
        self._faces.add(float(faces), w)
        self._other_s.add(other_s, w)
        self._replan()

    # --- the plan ---------------------------------------------------------------------

    def heads_per_frame(self) -> int | None:
        """How many head-model runs a frame may have: None (all faces) while they fit in
        the frame time, else as many as fit but at least one; the other faces reuse their
        last head, warped along with the face (FaceAwareFlow.max_heads)."""
        head = self._head_s.value
        faces = self._faces.value or 0.0
        if not head or faces <= 1:
            return None
        fit = int((self.s.headroom * self.budget_s - (self._other_s.value or 0.0)) // head)
        return None if fit >= math.ceil(faces) else max(1, fit)

    def bg_time(self, short: int) -> float:
        return self._bg_fixed_s + (self._bg_px_s.value or 0.0) * self.pixels(short)

    def face_time(self) -> float:
        """Per-frame seconds that are paid first: the heads and the fixed work."""
        return (self._head_s.value or 0.0) * (self._faces.value or 0.0) + (self._other_s.value or 0.0)

    def _left(self) -> float:
        return self.s.headroom * self.budget_s - self.face_time()

    def _needed_every(self, short: int) -> int:
        """Frames one background run must be spread over to hold the rate at `short`."""
        left = self._left()
        if left <= 0:
            return self.s.max_bg_every  # the faces take it all: the background waits
        return max(1, min(self.s.max_bg_every, math.ceil(self.bg_time(short) / left)))

    def _best_size(self) -> int:
        fits = [z for z in self.s.sizes if self._needed_every(z) == 1]
        return max(fits) if fits else min(self.s.sizes)

    def _reason(self) -> str:
        left = self._left()
        if left <= 0:
            return "faces take the whole frame time"
        if self.choice.bg_every > 1:
            return "background slower than the frame time left after the faces"
        return "fits"

    def _replan(self) -> None:
        c = self.choice
        c.bg_every = self._needed_every(c.work_short)
        c.reason = self._reason()
        if not self.s.auto_size or self.pending_size is not None:
            return
        now = self.clock()
        if now - self._last_change < self.s.hold_s:
            return
        sizes = sorted(self.s.sizes)
        i = sizes.index(c.work_short) if c.work_short in sizes else 0
        # One step at a time, so a short spike does not throw away the detail at once.
        if c.bg_every > 1 and i > 0:
            self.pending_size = sizes[i - 1]
        elif (i + 1 < len(sizes) and now - self._last_change >= 2 * self.s.hold_s
              and self.bg_time(sizes[i + 1]) <= UP_MARGIN * self._left()):
            # Up only with room to spare and after a longer hold: a size that only just
            # fits would come straight back down (measured: 9 changes in 40 s without this).
            self.pending_size = sizes[i + 1]

    def size_applied(self, short: int) -> None:
        """The owner switched the working size (after warming the model at it)."""
        old = self.choice.work_short
        self.choice.work_short = short
        self.choice.changes.append({"frame": self.frames, "from": old, "to": short})
        self.pending_size = None
        self._last_change = self.clock()
        self._since_bg = 10**9  # the old background has the old size: run at once

    def describe(self) -> str:
        c = self.choice
        rate = "every frame" if c.bg_every == 1 else f"every {c.bg_every} frames (reused, warped)"
        head = self._head_s.value
        return (f"face-first: work {c.work_short}p, background {rate}; heads "
                f"{'-' if head is None else f'{head * 1e3:.0f} ms/face'}, background "
                f"{self.bg_time(c.work_short) * 1e3:.0f} ms ({c.reason})")

    def stats(self) -> dict:
        return {"work_short": self.choice.work_short, "bg_every": self.choice.bg_every,
                "reason": self.choice.reason, "frames": self.frames, "bg_runs": self.bg_runs,
                "faces_run": self.faces_run, "size_changes": list(self.choice.changes),
                "head_ms": None if self._head_s.value is None else round(self._head_s.value * 1e3, 1),
                "bg_ms": round(self.bg_time(self.choice.work_short) * 1e3, 1)}


# --- background reuse --------------------------------------------------------------------

MOTION_WIDTH = 160  # the flow runs on a small grey copy: cheap, and enough for a warp


def motion_grey(frame: np.ndarray, width: int = MOTION_WIDTH) -> np.ndarray:
    """A small grey copy of a frame for the motion estimate."""
    h, w = frame.shape[:2]
    small = cv2.resize(frame, (width, max(8, round(h * width / w))), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)


class BackgroundWarp:
    """Carries the last stylised background to the current frame along the image motion:
    dense DIS flow from the current frame back to the frame the background was made from,
    on small grey copies, turned into one remap by the motion module's helpers
    (streamer.toon.motion: flow_maps, warp)."""

    def __init__(self) -> None:
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)

    def __call__(self, background: np.ndarray, bg_grey: np.ndarray, cur_grey: np.ndarray,
                 out: np.ndarray) -> np.ndarray:
        flow = self._dis.calc(cur_grey, bg_grey, None)  # current pixel -> where it was
        return warp(background, flow_maps(flow, background.shape[:2]), dst=out)
