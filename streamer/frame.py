"""What travels between the stages: frames, the one description of their stream, and the
audio that rides beside them. Sources produce these, sinks consume them; neither knows the
other's type."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Mapping

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


@dataclass(frozen=True)
class ColorTags:
    """How the pixels are to be read, as FFmpeg numbers them (AVColorSpace, AVColorRange,
    AVColorPrimaries, AVColorTransferCharacteristic). The defaults say "unspecified"
    (range 0), which players read as BT.601/709 limited range."""

    space: int = 2
    range: int = 0
    primaries: int = 2
    transfer: int = 2


@dataclass(frozen=True)
class StreamInfo:
    """One description of a stream of frames, from the source that makes it to the sinks
    that write it: size (upright, as frames are delivered), rate, time base, colour tags,
    and what a file carries over (metadata, start, duration, frame count when known)."""

    width: int
    height: int
    time_base: Fraction
    rate: Fraction | None = None  # average frames per second; None: unknown (VFR)
    colors: ColorTags = ColorTags()
    sample_aspect_ratio: Fraction | None = None  # of the frames as delivered
    start_time: float | None = None  # seconds
    duration: float | None = None  # seconds
    frames: int = 0  # 0: the source does not say
    metadata: Mapping[str, str] = field(default_factory=dict)  # container tags
    stream_metadata: Mapping[str, str] = field(default_factory=dict)  # video stream tags

    @property
    def fps(self) -> float:
        """The nominal rate in frames per second (30 when the source does not say)."""
        return float(self.rate) if self.rate else 30.0


@dataclass
class AudioTrack:
    """Audio that rides beside the frames as the source read it: the input's audio streams
    (templates for the output's, and their decoders) and their packets in file order, never
    decoded on the way. The sink copies each packet or re-encodes it, as its container
    needs (streamer/sinks/audio_out.py). The source appends packets as it demuxes them and
    the sink takes them as it writes; a deque's append and popleft are thread-safe, so the
    two stage threads share it without a lock."""

    streams: list[Any]
    packets: deque = field(default_factory=deque)
