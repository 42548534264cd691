"""A paced synthetic camera: a moving face-like shape on a drifting gradient, with a frame
counter, delivered at a chosen frame rate.

Pacing follows a monotonic clock with absolute deadlines (frame i is due at t0 + i / fps),
so sleep overshoot never accumulates: over any stretch the rate is exactly `fps`. When the
thread is held up for more than a frame interval (a loaded machine), the slots that passed
are skipped and counted in `skipped`, as a real camera's driver drops frames nobody read.

A frame's `capture_time` is its due time, so lateness of this thread counts as latency (a
camera's exposure happens on time whether or not the reader is late). `pts` is the slot
number in a time base of 1/fps.
"""
from __future__ import annotations

import math
import threading
import time
from fractions import Fraction
from typing import Callable, Iterator

import cv2
import numpy as np

from streamer.frame import Frame, StreamInfo
from streamer.stages import Source


def _gradient(h: int, w: int) -> np.ndarray:
    y = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
    b = 90 + 110 * x + 0 * y
    g = 70 + 80 * y + 0 * x
    r = 150 - 60 * x + 60 * y
    return np.clip(np.stack([b, g, r], axis=-1), 0, 255).astype(np.uint8)


class SyntheticSource(Source):
    """Frames of `width` x `height` at `fps`, forever or for `frames` / `seconds`."""

    name = "synthetic"

    def __init__(self, width: int = 1280, height: int = 720, fps: float = 30.0, *,
                 frames: int | None = None, seconds: float | None = None,
                 motion: bool = True, counter: bool = True,
                 clock: Callable[[], float] = time.monotonic):
        if width < 16 or height < 16:
            raise ValueError("a synthetic frame is at least 16x16")
        if fps <= 0:
            raise ValueError("fps must be positive")
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        self.limit = frames if frames is not None else (
            None if seconds is None else max(1, round(seconds * fps)))
        self.motion, self.counter = motion, counter
        self.clock = clock
        self.skipped = 0
        self.produced = 0
        self.time_base = Fraction(1, round(fps)) if float(fps).is_integer() else Fraction(1, 1000)
        self._stop = threading.Event()
        self._margin = max(8, min(width, height) // 10)
        self._background = _gradient(self.height + 2 * self._margin,
                                     self.width + 2 * self._margin)
        self.ended_reason: str | None = None

    @property
    def info(self) -> StreamInfo:
        return StreamInfo(self.width, self.height, self.time_base,
                          Fraction(self.fps).limit_denominator(1001))

    def describe(self) -> str:
        return f"synthetic camera {self.width}x{self.height} @ {self.fps:g} fps"

    def stop(self) -> None:
        self._stop.set()

    def render(self, i: int) -> np.ndarray:
        """The picture of slot `i` (a new array)."""
        h, w, m = self.height, self.width, self._margin
        t = i / self.fps if self.motion else 0.0
        ox = int(m + m * math.sin(t * 0.7))
        oy = int(m + m * math.cos(t * 0.5))
        img = self._background[oy:oy + h, ox:ox + w].copy()
        s = min(h, w)
        cx = int(w / 2 + 0.25 * w * math.sin(t * 1.1))
        cy = int(h / 2 + 0.12 * h * math.sin(t * 1.7))
        ax, ay = max(4, int(s * 0.17)), max(5, int(s * 0.23))
        # shoulders, hair, face, eyes, nose, mouth: enough structure for the model
        cv2.ellipse(img, (cx, cy + 2 * ay), (int(ax * 2.2), ay), 0, 180, 360, (80, 60, 40), -1)
        cv2.ellipse(img, (cx, cy - ay // 6), (int(ax * 1.12), int(ay * 1.1)), 0, 0, 360,
                    (30, 40, 60), -1)
        cv2.ellipse(img, (cx, cy), (ax, ay), 0, 0, 360, (150, 180, 225), -1)
        blink = self.motion and (i % max(1, int(self.fps * 3))) < 3
        ex, ey = int(ax * 0.4), cy - int(ay * 0.15)
        er = max(1, ax // 7)
        for sx in (-1, 1):
            if blink:
                cv2.line(img, (cx + sx * ex - er, ey), (cx + sx * ex + er, ey), (40, 30, 30), 2)
            else:
                cv2.circle(img, (cx + sx * ex, ey), er, (255, 255, 255), -1)
                cv2.circle(img, (cx + sx * ex, ey), max(1, er // 2), (60, 40, 30), -1)
        cv2.line(img, (cx, cy), (cx - ax // 10, cy + ay // 4), (110, 130, 180), 2)
        mouth = int(ay * 0.05 * (1 + math.sin(t * 4))) + 1
        cv2.ellipse(img, (cx, cy + int(ay * 0.5)), (ax // 3, mouth), 0, 0, 360, (60, 60, 170), -1)
        if self.counter:
            scale = max(0.4, s / 720)
            cv2.putText(img, f"{i:06d}", (int(10 * scale), int(40 * scale)),
                        cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), max(1, int(2 * scale)),
                        cv2.LINE_AA)
        return img

    def frames(self) -> Iterator[Frame]:
        interval = 1.0 / self.fps
        t0 = self.clock()
        slot = 0
        tb = self.time_base
        step = round(1 / (self.fps * tb)) if tb != Fraction(1, 1000) else None
        while self.limit is None or slot < self.limit:
            due = t0 + slot * interval
            now = self.clock()
            if now < due:
                if self._stop.wait(due - now):
                    break
            elif now - due > interval:
                # Held up for more than a frame: skip the slots a camera would have dropped.
                late = int((now - t0) / interval) - slot
                if self.limit is not None:
                    late = min(late, self.limit - slot)
                self.skipped += late
                slot += late
                continue
            if self._stop.is_set():
                break
            img = self.render(slot)
            pts = slot * step if step is not None else round(slot * interval * 1000)
            self.produced += 1
            yield Frame(index=slot, pts=pts, time_base=tb, capture_time=due, image=img,
                        duration=step)
            slot += 1
        self.ended_reason = "stopped" if self._stop.is_set() else "end"
