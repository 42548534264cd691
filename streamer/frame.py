"""The unit that travels through the pipeline: one picture and when it belongs."""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np


@dataclass(slots=True)
class Frame:
    """One video frame on its way from a source to a sink.

    `pts` is in units of `time_base` (None when the source has no timestamps); `duration`
    is in the same units when known. `capture_time` is `time.monotonic()` when the source
    produced the frame: a sink measures latency from it. `image` is uint8 BGR `[H, W, 3]`;
    after the toon stage it may be a view into a reused buffer (see ToonStage), so a sink
    must finish with it before taking more frames than the stage's ring allows.
    """

    index: int
    pts: int | None
    time_base: Fraction | None
    capture_time: float
    image: np.ndarray
    duration: int | None = None

    @property
    def time(self) -> float | None:
        """Presentation time in seconds, when known."""
        if self.pts is None or self.time_base is None:
            return None
        return float(self.pts * self.time_base)
