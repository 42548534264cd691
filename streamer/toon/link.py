"""The link contract: what every step of the toon chain is and offers (docs/ARCHITECTURE.md
section 5.1).

The toon stage runs one callable per batch, built as a short chain of links: the official
full-frame flow or the face-aware flow, the temporal step, the background treatment. Each
link is a `Link`: called with same-size uint8 BGR frames (and their times in seconds), it
returns one image per frame. Beside the call, every link answers the same few questions,
with the defaults given here, so no app or stage has to probe a flow for optional parts:

- `reset()`: forget everything carried between frames (tracks, previous outputs, the
  previous mask): a seek, a new stream, or after a warm-up frame;
- `warm_up(width, height)`: run once on a blank frame of that size (runtimes compile per
  shape or size their arenas on the first run), then reset, so the blank frame leaves no
  trace;
- `timings`: the chain's running totals (`Timings`), shared along the chain;
- `face_layer`: the link that pastes heads (a `FaceLayer`), if the chain has one;
- `needs_mask` / `needs_motion`: whether the link computes a person mask or the motion
  between frames (what a scheduler or a report may want to know before it runs).

A link that wraps another (`WrappingLink`) answers for the whole chain below it: it resets
and warms up the inner link along with itself, shares its timings, and hands on its face
layer. Nothing is forwarded by name: a question not in this contract is not asked.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from .engine_api import Engine


@dataclass
class Timings:
    """Where the time goes, summed since the chain started (seconds)."""

    frames: int = 0
    faces: int = 0        # head crops stylised
    bg_s: float = 0.0     # background model, with its resize and padding
    head_s: float = 0.0   # head model runs
    face_s: float = 0.0   # detection, tracking, smoothing, crops, paste-back
    temporal_s: float = 0.0  # the temporal step (flow, warps, blends), frames and heads
    treatment_s: float = 0.0  # person mask and background treatment

    def summary(self) -> str:
        per_face = self.head_s / self.faces if self.faces else float("nan")
        return (f"{self.frames} frames, {self.faces} faces; bg {1e3 * self.bg_s / max(1, self.frames):.1f} "
                f"ms/frame, head {1e3 * per_face:.1f} ms/face, face path "
                f"{1e3 * self.face_s / max(1, self.frames):.1f} ms/frame, temporal "
                f"{1e3 * self.temporal_s / max(1, self.frames):.1f} ms/frame")


class FaceLayer(Protocol):
    """The link that pastes heads (FaceAwareFlow), in the two halves the live path runs
    apart: the background at the working size, then heads cut from, and pasted onto, the
    frames at the output size."""

    timings: Timings
    last_faces: list  # per frame of the latest call: the faces pasted
    max_heads: int | None  # head-model runs per call (the face-first scheduler's budget)
    bg_engine: Engine  # the background half's engine, which a new working size warms up

    def background(self, frames: list[np.ndarray]) -> Sequence[np.ndarray]: ...

    def paste_faces(self, frames: Sequence[np.ndarray], outs: Sequence[np.ndarray],
                    times: Sequence[float] | None = None) -> Sequence[np.ndarray]: ...


class Link(ABC):
    """One link of the toon chain; see the module docstring."""

    def __init__(self) -> None:
        self._timings = Timings()

    @abstractmethod
    def __call__(self, images: list[np.ndarray], times: Sequence[float] | None = None
                 ) -> Sequence[np.ndarray]:
        """Stylise same-size uint8 BGR images, given in order with their times in
        seconds; returns one image per input, same size (views into buffers the link
        reuses: see toon.stage.ring_size)."""

    def reset(self) -> None:
        """Forget what is carried between frames (nothing, by default)."""

    def warm_up(self, width: int, height: int) -> None:
        """Run once on a blank frame of this size, then forget it."""
        self([blank_frame(width, height)])
        self.reset()

    @property
    def timings(self) -> Timings:
        return self._timings

    @property
    def face_layer(self) -> FaceLayer | None:
        """The link that pastes heads, if any (None: faces off)."""
        return None

    @property
    def needs_mask(self) -> bool:
        """The link computes a person mask on the input frames."""
        return False

    @property
    def needs_motion(self) -> bool:
        """The link measures the motion between consecutive frames."""
        return False


class WrappingLink(Link):
    """A link that runs `inner` first and then its own step on the results: it answers
    the contract for the chain below it (see the module docstring). A subclass with state
    or a model of its own extends `reset` / `warm_up` and calls these."""

    def __init__(self, inner: Link):
        super().__init__()
        self.inner = inner

    def reset(self) -> None:
        self.inner.reset()

    def warm_up(self, width: int, height: int) -> None:
        self.inner.warm_up(width, height)

    @property
    def timings(self) -> Timings:
        return self.inner.timings

    @property
    def face_layer(self) -> FaceLayer | None:
        return self.inner.face_layer

    @property
    def needs_mask(self) -> bool:
        return self.inner.needs_mask

    @property
    def needs_motion(self) -> bool:
        return self.inner.needs_motion


def blank_frame(width: int, height: int) -> np.ndarray:
    """The white frame links warm up on (white: the official padding colour)."""
    return np.full((height, width, 3), 255, np.uint8)
