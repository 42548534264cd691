"""Face-aware stylisation: the background model on the whole frame, the head model on every
aligned face, pasted back with the soft head mask. Same call as FullFrameFlow.

Per batch of frames: the full-frame flow (official 720 short side and white padding), then per
frame the tracker's faces (see track.py), then ALL head crops of the batch through the head
model in one run (in a few power-of-two runs on engines that compile per shape, see
`head_batches`), then the paste-back, largest face first, as the official code pastes them.

One choice differs from the official code for frames whose short side is over 720: the
official code crops the heads from, and pastes them onto, the reduced working frame and then
resizes the whole result back up. Here the crop is taken from the full-size frame and pasted
onto the full-size result: the head model sees the same 288x288 crop at the same cost, but
the head is resampled once instead of three times, so it stays sharper. At 720p and below
(and for every reference image) the two are the same.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..engine import Engine
from ..flow import OFFICIAL_SHORT_SIDE, FullFrameFlow, work_size
from ..link import FaceLayer, Link, blank_frame
from ..temporal import FrameTemporal, HeadTemporal, TemporalSettings
from .align import CROP_SIZE, warp_crop
from .compose import PasteScratch, load_head_mask, paste_head
from .detect import FaceDetector
from .track import FaceRender, FaceTracker, TrackerSettings


class FaceAwareFlow(Link):
    """Stylise frames with the background model and paste stylised, aligned heads over them.

    - `bg_engine` runs the style's `_bg` model on whole frames, `head_engine` its `_h` model
      on 288x288 crops (they may be the same engine).
    - `detector_model`: the YuNet `.onnx`; `head_mask`: the style's `alpha.jpg`.
    - `detect_side`: the detector sees a copy whose long side is at most this (None: full
      size); `tracker`: detection interval, smoothing and fades (TrackerSettings.official()
      for the stateless official behaviour).
    - `fps`: the frame rate used for time when `__call__` gets no timestamps (pass the
      frames' presentation times in seconds where known: smoothing and fades are timed).
    - `official`: compose the way the official compound code does (exact precision,
      offline): faces are detected on the official working image itself (short side at most
      720, never a smaller copy: a 640 px copy moves the five points by several pixels and
      the head with them), heads are cut and pasted there, and the result is resized back
      to the frame's size when the frame was larger. Otherwise (`--precision fast`, live)
      the detector sees a copy of at most `detect_side` px, and `__call__` pastes heads on
      the frame at its own size.

    - `temporal`: the temporal step's settings (streamer.toon.temporal), None for none: the
      whole-frame result is stabilised along the image motion in `background`, and each
      head in its aligned crop space before it is pasted, along the crops' own motion.

    Frames must come in order: the flow keeps tracks between calls (`reset()` forgets them,
    e.g. on a seek). Results are views into the full-frame flow's ring of `ring` buffers.
    """

    def __init__(self, bg_engine: Engine, head_engine: Engine, detector_model: Path | str,
                 head_mask: Path | str, *, tracker: TrackerSettings = TrackerSettings(),
                 detect_side: int | None = 640, short_side: int = OFFICIAL_SHORT_SIDE,
                 ring: int = 4, fps: float = 30.0, official: bool = False,
                 temporal: TemporalSettings | None = None):
        if fps <= 0:
            raise ValueError("fps must be positive")
        super().__init__()
        self.official = official
        self.ring = max(1, ring)
        self._work_in: np.ndarray | None = None  # the frame at the official working size
        self._resized: list[np.ndarray] = []  # ring of results resized back (official)
        self._turn = 0
        self.bg = FullFrameFlow(bg_engine, short_side=short_side, ring=ring)
        self.bg_engine = bg_engine
        self.head_engine = head_engine
        self.detector = FaceDetector(detector_model, max_side=None if official else detect_side)
        self.tracker = FaceTracker(self.detector, tracker)
        self.mask = load_head_mask(head_mask)
        self._scratch = PasteScratch()
        self.short_side = short_side
        self.fps = fps
        self._index = 0
        self._last_t: float | None = None
        self._crops = np.empty((0, CROP_SIZE, CROP_SIZE, 3), np.uint8)
        self._heads = np.empty_like(self._crops)
        self.last_faces: list[list[FaceRender]] = []  # per frame of the latest call
        self.frame_temporal = FrameTemporal(temporal) if temporal is not None else None
        self.head_temporal = HeadTemporal(temporal) if temporal is not None else None
        # Live budget (set by the face-first scheduler): at most this many head-model runs
        # per call; the other faces reuse their last stylised head, pasted with this frame's
        # transform (so it follows the face). None: every face, every frame (offline).
        self.max_heads: int | None = None
        self._head_cache: dict[int, tuple[np.ndarray, int]] = {}  # track id -> (head, call)
        self._calls = 0
        self.heads_reused = 0

    def reset(self) -> None:
        """Forget all tracks (the next frame is treated like a first frame)."""
        self.tracker.reset()
        self._last_t = None
        if self.frame_temporal is not None:
            self.frame_temporal.reset()
            self.head_temporal.reset()

    def __call__(self, frames: list[np.ndarray], times: Sequence[float] | None = None
                 ) -> list[np.ndarray]:
        """Stylise same-size uint8 BGR frames (in order); `times` in seconds, optional."""
        if not frames:
            return []
        h, w = frames[0].shape[:2]
        wh, ww = work_size(h, w, OFFICIAL_SHORT_SIDE)
        if not self.official or (wh, ww) == (h, w):
            return self.paste_faces(frames, self.background(frames), times)
        # Official composite of a frame larger than the working size: everything happens
        # on the working image, then the result is enlarged back, as the official code does.
        buf = self._work_in
        if buf is None or buf.shape[1:3] != (wh, ww) or len(buf) < len(frames):
            buf = self._work_in = np.empty((len(frames), wh, ww, 3), np.uint8)
        work = [cv2.resize(f, (ww, wh), dst=buf[i], interpolation=cv2.INTER_AREA)
                for i, f in enumerate(frames)]
        outs = self.paste_faces(work, self.background(work), times)
        n = len(frames)
        if not self._resized or self._resized[0].shape[:3] != (n, h, w):
            self._resized = [np.empty((n, h, w, 3), np.uint8) for _ in range(self.ring)]
        dst = self._resized[self._turn]
        self._turn = (self._turn + 1) % self.ring
        for i, out in enumerate(outs):
            cv2.resize(out, (w, h), dst=dst[i])  # the official default: bilinear
        return [dst[i] for i in range(n)]

    def describe_detection(self) -> str:
        """Where faces are detected, for the log line that says what runs."""
        return describe_detection(self.official, self.detector.max_side)

    def background(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """The whole-frame half alone: the official full-frame flow."""
        if not frames:
            return []
        t0 = time.perf_counter()
        outs = self.bg(frames)
        t1 = time.perf_counter()
        self.timings.bg_s += t1 - t0
        if self.frame_temporal is not None:
            self.frame_temporal(frames, outs)
            self.timings.temporal_s += time.perf_counter() - t1
        return outs

    def warm_up(self, width: int, height: int) -> None:
        """The background model once on a blank frame of this size, and the head model once
        on a blank crop, so the first face does not stall the stream while the runtime
        compiles or sizes its buffers; then nothing of it is kept."""
        self.background([blank_frame(width, height)])
        self.head_engine.run(np.full((1, CROP_SIZE, CROP_SIZE, 3), 255, np.uint8))
        self.reset()

    @property
    def face_layer(self) -> FaceLayer:
        return self

    @property
    def needs_motion(self) -> bool:
        return self.frame_temporal is not None

    def paste_faces(self, frames: Sequence[np.ndarray], outs: Sequence[np.ndarray],
                    times: Sequence[float] | None = None) -> Sequence[np.ndarray]:
        """The face half alone: track faces in `frames` and paste stylised heads onto the
        matching full-frame results `outs` (same size as `frames`), in place. Returns
        `outs`. The live path calls this on camera-size frames after enlarging a
        small-working-size background, so heads keep the camera's detail."""
        if times is not None and len(times) != len(frames):
            raise ValueError("give one timestamp per frame")
        t0 = time.perf_counter()
        h, w = frames[0].shape[:2]
        # min_face counts pixels of the official working size (short side at most 720),
        # whatever working size this flow's background model runs at: the head crop comes
        # from the full frame, so a reduced bg size should not drop more faces.
        min_face_scale = work_size(h, w, OFFICIAL_SHORT_SIDE)[0] / h
        faces: list[list[FaceRender]] = []
        for i, frame in enumerate(frames):
            t = times[i] if times is not None else self._index / self.fps
            if self._last_t is not None and t <= self._last_t:
                # Repeated or backward stamps (one stamp for a whole batch, a loop): keep time
                # moving at the nominal rate so smoothing and fades still advance.
                t = self._last_t + 1.0 / self.fps
            self._last_t = t
            self._index += 1
            faces.append(self.tracker.update(frame, t, min_face_scale))
        n = sum(len(f) for f in faces)
        self.last_faces = faces
        self.timings.frames += len(frames)
        if n == 0:
            if self.head_temporal is not None:
                self.head_temporal.reset()  # no face carries over a frame without faces
            self.timings.face_s += time.perf_counter() - t0
            return outs
        self._calls += 1
        flat = [(i, face) for i, frame_faces in enumerate(faces) for face in frame_faces]
        run = self._faces_to_run(flat)
        m = len(run)
        if len(self._crops) < max(1, m):
            self._crops = self.head_engine.host_buffer((max(1, m), CROP_SIZE, CROP_SIZE, 3))
            self._heads = self.head_engine.host_buffer(self._crops.shape)
        for k, j in enumerate(run):
            i, face = flat[j]
            warp_crop(frames[i], face.m, out=self._crops[k])
        t1 = time.perf_counter()
        heads = self._heads[:m]
        if m:
            runs = head_batches(m) if self.head_engine.shape_bound else [(0, m)]
            for start, stop in runs:
                self.head_engine.run(self._crops[start:stop], heads[start:stop])
        t2 = time.perf_counter()
        if self.head_temporal is not None and m:
            self._stabilise_heads(frames, [flat[j] for j in run], heads)
        t2b = time.perf_counter()
        slot = {j: k for k, j in enumerate(run)}
        for j, (i, face) in enumerate(flat):  # largest first: smaller faces end up on top
            if j in slot:
                head = heads[slot[j]]
                if self.max_heads is not None:
                    self._keep_head(face.track_id, head)
            else:
                head = self._head_cache[face.track_id][0]
                self.heads_reused += 1
            paste_head(outs[i], head, face.m_inv, self.mask, face.alpha, self._scratch)
        t3 = time.perf_counter()
        self.timings.faces += m
        self.timings.head_s += t2 - t1
        self.timings.face_s += (t1 - t0) + (t3 - t2b)
        self.timings.temporal_s += t2b - t2
        return outs

    def _faces_to_run(self, flat: list) -> list[int]:
        """Indices into `flat` of the faces whose head runs this call: all of them, unless
        `max_heads` is set and there are more faces than that; then the faces with no
        stylised head yet, then those whose head is oldest (round robin), up to the limit."""
        if self.max_heads is None or len(flat) <= self.max_heads:
            return list(range(len(flat)))
        seen = {face.track_id for _, face in flat}
        for tid in [t for t in self._head_cache if t not in seen]:
            del self._head_cache[tid]  # a face that left: forget its head
        never = [j for j, (_, f) in enumerate(flat) if f.track_id not in self._head_cache]
        cached = sorted((self._head_cache[f.track_id][1], j) for j, (_, f) in enumerate(flat)
                        if f.track_id in self._head_cache)
        chosen = never + [j for _, j in cached]
        # A new face always gets its head, even past the limit: there is nothing to reuse.
        return sorted(chosen[:max(self.max_heads, len(never))])

    def _keep_head(self, track_id: int, head: np.ndarray) -> None:
        kept = self._head_cache.get(track_id)
        if kept is None:
            kept = (np.empty_like(head), 0)
        np.copyto(kept[0], head)
        self._head_cache[track_id] = (kept[0], self._calls)

    def _stabilise_heads(self, frames: Sequence[np.ndarray],
                         picked: list[tuple[int, FaceRender]], heads: np.ndarray) -> None:
        """The temporal step on the heads that ran this call (`picked`: (frame index, face),
        in the order of `heads`), in crop space, with the crops' own motion; a head starts
        fresh wherever the whole-frame step did (in `background`, on the same frames, maybe
        smaller: a first frame, a scene cut, a size change)."""
        steps = self.frame_temporal.steps
        if len(steps) != len(frames):  # background() was not run on these frames
            steps = [None] * len(frames)
        ids = [face.track_id for _, face in picked]
        crops = [self._crops[k] for k in range(len(picked))]
        carry = [steps[i] is not None for i, _ in picked]
        self.head_temporal(ids, crops, [heads[k] for k in range(len(picked))], carry)


def describe_detection(official: bool, detect_side: int | None = 640) -> str:
    """Where a FaceAwareFlow detects faces, in the words the apps print."""
    if official:
        return "detection on the official working image"
    if detect_side:
        return f"fast detection on a copy of at most {detect_side} px"
    return "detection at full size"


def head_batches(n: int, largest: int = 8) -> list[tuple[int, int]]:
    """Split `n` head crops into runs of power-of-two sizes (at most `largest`), for an
    engine that builds per input shape (OpenVINO, TensorRT): it then meets at most four
    batch sizes, so a face entering the shot does not stall the stream on a new compile.
    Other engines take all the crops in one run."""
    runs, start = [], 0
    while start < n:
        size = min(largest, 1 << ((n - start).bit_length() - 1))
        runs.append((start, start + size))
        start += size
    return runs
