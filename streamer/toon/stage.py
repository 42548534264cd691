"""The toon stage: batches of frames in, stylised frames out.

The per-batch work is one callable, `stylise(images, times) -> images`: offline, a style's
chain of links (toon/link.py: the official full-frame flow or the face-aware one, which
tracks faces over time and so needs each frame's time in seconds, then the temporal step
and the background treatment); live, the LiveToon that runs such a chain at its working
size. The stage needs nothing of it but the call. Images it returns may be views into
buffers it reuses, so it must keep a ring of output buffers longer than the frames in
flight after this stage (`ring_size`).
"""
from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from streamer.frame import Frame


class Stylise(Protocol):
    def __call__(self, images: list[np.ndarray], times: Sequence[float] | None = None
                 ) -> Sequence[np.ndarray]:
        """Stylise same-size uint8 BGR images, given in order with their times in seconds;
        returns one image per input, same size."""
        ...


def ring_size(queue_size: int, batch: int) -> int:
    """Output batches a reusing stylise callable must keep: more than the frames in flight
    after the stage (the sink's queue, the batch being made, the frame being written)."""
    return queue_size + batch + 2 + 1


def frame_time(frame: Frame) -> float:
    """A frame's time in seconds for the face tracker: its presentation time, else (a
    camera without timestamps) when it was captured."""
    t = frame.time
    return t if t is not None else frame.capture_time


class ToonStage:
    """Batch frames for `stylise` and put the results back on the frames.

    Frames of one batch must share a size for the engine; a batch that straddles a size
    change (rare: a stream that changes resolution) is split in two calls.
    """

    def __init__(self, stylise: Stylise, batch_size: int = 1):
        if batch_size < 1:
            raise ValueError("batch size must be at least 1")
        self.stylise = stylise
        self.batch_size = batch_size
        self.frames = 0
        self.batches = 0

    def __call__(self, frames: list[Frame]) -> list[Frame]:
        start = 0
        n = len(frames)
        while start < n:
            shape = frames[start].image.shape
            end = start + 1
            while end < n and frames[end].image.shape == shape:
                end += 1
            run = frames[start:end] if (start, end) != (0, n) else frames
            images = self.stylise([f.image for f in run], [frame_time(f) for f in run])
            if len(images) != len(run):
                raise RuntimeError(f"stylise returned {len(images)} images for {len(run)}")
            for f, img in zip(run, images):
                f.image = img
            self.batches += 1
            start = end
        self.frames += n
        return frames
