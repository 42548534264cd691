"""The live background between model runs, and working-size changes off the toon thread.

With face-first scheduling (live/schedule.py) the background model does not run on every
frame: `BackgroundReuse` keeps the last result and carries it along the image motion to the
frames in between, and runs the model at once when the scheduler says so, when the style
changed, or at a scene cut (the motion module's one cut detector: a warp cannot carry a
picture across a cut). `WorkSizeChange` warms the background engine up at a new working
size in a thread, so a compile never stalls the stream; the toon thread takes the new
size at its next batch.
"""
from __future__ import annotations

import threading
import time
from typing import Sequence

import numpy as np

from streamer.toon.engine_api import Engine
from streamer.toon.link import FaceLayer, blank_frame
from streamer.toon.motion import SceneCut, thumbnail

from .schedule import BackgroundWarp, FaceFirstScheduler, motion_grey


class BackgroundReuse:
    """The scheduled background of a face layer: a model run or the last one, warped."""

    def __init__(self, schedule: FaceFirstScheduler):
        self.schedule = schedule
        self._last: np.ndarray | None = None  # last background run, at the working size
        self._grey: np.ndarray | None = None  # its input, small and grey, for the motion
        self._thumb: np.ndarray | None = None  # and its thumbnail, for scene cuts
        self._owner: FaceLayer | None = None  # whose picture it is
        self._scene = SceneCut()
        self._warp = BackgroundWarp()
        self._warp_buf: np.ndarray | None = None
        self.reused = 0  # frames that got a warped background

    def forget(self) -> None:
        """Drop the kept background (the working size changed)."""
        self._last = None

    def __call__(self, layer: FaceLayer, inputs: Sequence[np.ndarray]
                 ) -> tuple[list[np.ndarray], float | None]:
        """The background for this batch, and the model's seconds (None: reused)."""
        greys = [motion_grey(img) for img in inputs]
        now = greys[-1]
        if (self.schedule.run_background() or self._last is None or self._owner is not layer
                or self._grey.shape != now.shape
                or self._scene.between(self._thumb, thumbnail(now))):
            t = time.perf_counter()
            results = layer.background(list(inputs))
            bg_s = time.perf_counter() - t
            if self._last is None or self._last.shape != results[-1].shape:
                self._last = np.empty_like(results[-1])
            np.copyto(self._last, results[-1])  # results are ring views: keep a copy
            self._owner = layer  # a style switch must not reuse the old style's picture
            self._grey, self._thumb = now, thumbnail(now)
            return list(results), bg_s
        shape = self._last.shape
        if self._warp_buf is None or self._warp_buf.shape[1:] != shape \
                or len(self._warp_buf) < len(inputs):
            self._warp_buf = np.empty((len(inputs),) + shape, np.uint8)
        self.reused += len(inputs)
        return [self._warp(self._last, self._grey, grey, self._warp_buf[i])
                for i, grey in enumerate(greys)], None


class WorkSizeChange:
    """A new working size, warmed up in a thread; `take()` hands it over when ready."""

    def __init__(self) -> None:
        self._ready: tuple[int, int] | None = None
        self._thread: threading.Thread | None = None

    @property
    def pending(self) -> bool:
        return self._thread is not None

    def start(self, engine: Engine, w: int, h: int) -> None:
        """Warm `engine` at w x h (only an engine that compiles per shape needs it; ONNX
        Runtime's CPU engine shares one I/O binding between calls: no second thread
        there), then offer the size. One change at a time."""
        if self._thread is not None:
            return

        def warm() -> None:
            try:
                if engine.shape_bound:
                    engine.run(blank_frame(w, h)[None])
            finally:
                self._ready = (w, h)

        self._thread = threading.Thread(target=warm, name="toonstream-resize", daemon=True)
        self._thread.start()

    def take(self) -> tuple[int, int] | None:
        """The warmed-up (width, height), once, or None while none is ready."""
        ready = self._ready
        if ready is None:
            return None
        self._ready, self._thread = None, None
        return ready

    def wait(self, timeout: float = 30.0) -> None:
        """Wait until a change being warmed up is ready (tests)."""
        t = self._thread
        if t is not None:
            t.join(timeout)
