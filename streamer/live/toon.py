"""The live toon callable: camera frames -> working size -> the current style -> output size.

The working size is its own setting: the model can run at 256x144 while a 1280x720 virtual
camera gets the result upscaled. Input frames are reduced (INTER_AREA) into a buffer made
once; the style's stylise callable (whatever `style -> stylise` the factory returns: the
official full-frame flow, or the face-aware flow) runs at that size; the result is enlarged
(bilinear: the cartoon output is flat-shaded, bicubic buys nothing visible) into a ring of
output buffers made once. With faces on, the face-aware flow runs in two halves
(`FaceLayer`): its background at the working size, then its heads cut from, and pasted onto,
the frames at the output size, so a face keeps the camera's detail however small the
working size. Returned images are views into that ring and stay valid
for `ring` calls, more than the frames in flight after the toon stage.

Switching style never stops the stream and never blocks the toon thread: `switch()` starts
a background thread that builds the new style's callable and runs it once on a blank frame
(OpenVINO compiles per shape, ONNX Runtime allocates its arena on the first run), then
swaps it in with one reference assignment; the toon thread reads that reference once per
batch, so no lock is held across inference. Built styles are cached (the last
`cache_size`), so switching back is instant. Requests made while a style loads are
coalesced: the last one wins.
"""
from __future__ import annotations

import statistics
import threading
import time
from collections import OrderedDict, deque
from typing import Callable, Protocol, Sequence, runtime_checkable

import cv2
import numpy as np

from streamer.buffers import Scratch
from streamer.toon.background import Background, Compositor
from streamer.toon.segment import PersonSegmenter
from streamer.toon.faces.flow import FaceTimings
from streamer.toon.flow import FullFrameFlow
from streamer.toon.stage import Stylise

from .schedule import BackgroundWarp, FaceFirstScheduler, motion_grey


@runtime_checkable
class FaceLayer(Protocol):
    """A stylise callable in two halves (FaceAwareFlow): the background at the working
    size, then heads pasted onto the enlarged result."""

    def background(self, frames: list[np.ndarray]) -> Sequence[np.ndarray]: ...

    def paste_faces(self, frames: Sequence[np.ndarray], outs: Sequence[np.ndarray],
                    times: Sequence[float] | None = None) -> Sequence[np.ndarray]: ...

    def warm_up(self) -> None: ...

    last_faces: list  # per frame of the latest call: the faces pasted
    timings: FaceTimings  # running totals: faces stylised, head-model seconds
    max_heads: int | None  # head-model runs per call (the face-first scheduler's budget)
    bg: FullFrameFlow  # the background half, whose engine a new working size warms up


def style_factory(flows, work_wh: tuple[int, int], fps: float = 30.0,
                  short_side: int | None = None) -> Callable[[str], Stylise]:
    """style -> stylise callable at the working size, from the composition layer
    (streamer.toon.styles.StyleFlows): what LiveToon builds each style with. `short_side`:
    the largest working size the flow may be given (the scheduler changes it while
    streaming); by default the working size itself."""
    def factory(style: str) -> Stylise:
        # The background treatment is LiveToon's own last step, at the output size.
        return flows.flow(style, short_side=short_side or min(work_wh), ring=2, fps=fps,
                          background=Background("keep"))
    return factory


def working_size(frame_w: int, frame_h: int, spec: int | tuple[int, int]) -> tuple[int, int]:
    """(width, height) the model runs at. A short side keeps the frame's aspect with both
    sides rounded to multiples of 16 (so the official flow adds no white padding), and is
    never larger than the frame; (width, height) is taken as given, rounded to 16."""
    def r16(v: float) -> int:
        return max(16, int(round(v / 16.0)) * 16)

    if isinstance(spec, tuple):
        # Never above the frame: a larger working size only costs memory and time (a
        # 3000x3000 request took 4.4 GB) for a picture that is enlarged from the camera's.
        return r16(min(spec[0], frame_w)), r16(min(spec[1], frame_h))
    short = min(int(spec), frame_w, frame_h)
    if frame_w >= frame_h:
        return r16(short * frame_w / frame_h), r16(short)
    return r16(short), r16(short * frame_h / frame_w)


def work_note(frame_w: int, frame_h: int, spec: int | tuple[int, int]) -> str | None:
    """A note when the working size asked for is larger than the frame and was capped."""
    if isinstance(spec, tuple):
        if spec[0] <= frame_w and spec[1] <= frame_h:
            return None
        asked = f"{spec[0]}x{spec[1]}"
    else:
        if spec <= min(frame_w, frame_h):
            return None
        asked = f"a short side of {spec}"
    w, h = working_size(frame_w, frame_h, spec)
    return (f"working size (--work) {asked} is larger than the {frame_w}x{frame_h} frame; the model runs at "
            f"{w}x{h} (a working size is never above the frame's)")


class LiveToon:
    """Stylise callable for ToonStage with a working size, an output size and style switching."""

    def __init__(self, factory: Callable[[str], Stylise], style: str,
                 work_wh: tuple[int, int], out_wh: tuple[int, int], *, ring: int = 6,
                 cache_size: int = 3, on_event: Callable[[str], None] | None = None,
                 initial: Stylise | None = None, background: Background = Background(),
                 segmenter: PersonSegmenter | None = None,
                 schedule: FaceFirstScheduler | None = None):
        """`background`/`segmenter`: the background treatment, applied at the output size
        with the person mask of the camera frame (None: keep). `schedule`: face-first
        scheduling of the background (live/schedule.py), with a face-aware flow only."""
        self.factory = factory
        self.work_w, self.work_h = work_wh
        self.out_w, self.out_h = out_wh
        self.ring = max(2, ring)
        self.cache_size = max(1, cache_size)
        self.on_event = on_event
        self.style = style
        first = initial if initial is not None else factory(style)
        # (stylise, whether it is a FaceLayer): one reference, so the toon thread reads a
        # consistent pair in one step, and the type check runs per switch, not per frame
        self._active: tuple[Stylise, bool] = (first, isinstance(first, FaceLayer))
        self._cache: OrderedDict[str, Stylise] = OrderedDict([(style, first)])
        self._work_buf: np.ndarray | None = None
        self._out_ring: list[np.ndarray] | None = None
        self._src_buf: np.ndarray | None = None
        self._turn = 0
        self._lock = threading.Lock()  # guards the switch bookkeeping only
        self._wanted: str | None = None
        self._loader: threading.Thread | None = None
        self._loader_running = False  # under _lock: a loader will still look at _wanted
        self.loading: str | None = None
        self.switches: list[dict] = []
        self.errors: list[str] = []
        self.model_s: deque = deque(maxlen=2048)  # seconds per stylise call (work size)
        self.calls = 0
        self.faces_pasted = 0  # head crops pasted, over all styles
        self.background = background
        if background.needs_mask and segmenter is None:
            raise ValueError(f"background {background} needs a person segmenter")
        self.segmenter = segmenter if background.needs_mask else None
        self._compositor = Compositor(background)
        self._treated_ring: list[np.ndarray] | None = None
        self._scratch = Scratch()  # the refined mask, used at once
        self.seg_s: deque = deque(maxlen=2048)  # seconds per call: segmentation model + smoothing
        self.treat_s: deque = deque(maxlen=2048)  # edge refinement and compositing
        # Face-first scheduling (with a FaceLayer flow only): see live/schedule.py
        self.schedule = schedule
        self._bg_last: np.ndarray | None = None  # last background run, at the working size
        self._bg_grey: np.ndarray | None = None  # its input, small and grey, for the motion
        self._bg_warp = BackgroundWarp()
        self._bg_owner: object | None = None
        self._warp_buf: np.ndarray | None = None
        self._resize_to: tuple[int, int] | None = None  # warmed up, switch at the next batch
        self._resizing: threading.Thread | None = None
        self.bg_reused = 0

    # --- per batch (toon thread) -----------------------------------------------------

    def _buffers(self, n: int) -> None:
        if self._work_buf is None or self._work_buf.shape[:3] != (n, self.work_h, self.work_w):
            self._work_buf = np.empty((n, self.work_h, self.work_w, 3), np.uint8)
            self._out_ring = [np.empty((n, self.out_h, self.out_w, 3), np.uint8)
                              for _ in range(self.ring)]
            self._src_buf = None
            if self.segmenter is not None:
                c = 4 if self.background.alpha else 3
                self._treated_ring = [np.empty((n, self.out_h, self.out_w, c), np.uint8)
                                      for _ in range(self.ring)]

    def _at_output_size(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """The input frames at the output size, for cutting heads (no copy when they are)."""
        if all(img.shape[:2] == (self.out_h, self.out_w) for img in images):
            return images
        if self._src_buf is None:
            self._src_buf = np.empty_like(self._out_ring[0])
        for i, img in enumerate(images):
            cv2.resize(img, (self.out_w, self.out_h), dst=self._src_buf[i],
                       interpolation=cv2.INTER_AREA if img.shape[0] > self.out_h
                       else cv2.INTER_LINEAR)
        return [self._src_buf[i] for i in range(len(images))]

    def __call__(self, images: list[np.ndarray], times: Sequence[float] | None = None
                 ) -> list[np.ndarray]:
        n = len(images)
        if n == 0:
            return []
        self._apply_resize()
        self._buffers(n)
        work = self._work_buf
        ww, wh = self.work_w, self.work_h
        inputs = []
        for i, img in enumerate(images):
            if img.shape[:2] == (wh, ww):
                work[i] = img
            else:
                cv2.resize(img, (ww, wh), dst=work[i], interpolation=cv2.INTER_AREA)
            inputs.append(work[i])
        stylise, layered = self._active  # one read: a switch lands between batches
        t0 = time.perf_counter()
        sched = self.schedule if layered else None
        bg_s = None
        if sched is None:
            results = stylise.background(inputs) if layered else stylise(inputs, times)
        else:
            results, bg_s = self._scheduled_background(stylise, inputs)
        turn = self._turn
        self._turn = (turn + 1) % self.ring
        out = self._out_ring[turn]
        for i, res in enumerate(results):
            if res.shape[:2] == (self.out_h, self.out_w):
                out[i] = res
            else:
                cv2.resize(res, (self.out_w, self.out_h), dst=out[i],
                           interpolation=cv2.INTER_LINEAR)
        outs = [out[i] for i in range(n)]
        # The camera frames at the output size, once: the heads are cut from them and the
        # mask is refined against them.
        src = self._at_output_size(images) if layered or self.segmenter is not None else None
        faces = heads = 0
        head_s = 0.0
        if layered:
            timings = stylise.timings
            runs_before, head_s_before = timings.faces, timings.head_s
            if sched is not None:
                stylise.max_heads = sched.heads_per_frame()
            stylise.paste_faces(src, outs, times)
            faces = sum(len(f) for f in stylise.last_faces)
            heads = timings.faces - runs_before
            head_s = timings.head_s - head_s_before
            self.faces_pasted += faces
        total = time.perf_counter() - t0
        self.model_s.append(total)
        self.calls += 1
        if sched is not None:
            sched.observe(bg_s=bg_s, head_s=head_s, faces=faces, heads=heads,
                          other_s=max(0.0, total - head_s - (bg_s or 0.0)) / n)
            if sched.pending_size is not None:
                self._start_resize(stylise, sched.pending_size)
        if self.segmenter is not None:
            outs = self._treat(images, src, outs, turn)
        return outs

    def _treat(self, images: list[np.ndarray], guides: list[np.ndarray],
               outs: list[np.ndarray], turn: int) -> list[np.ndarray]:
        """The background treatment: the mask of each camera frame, refined at the output
        size with `guides` (the frames at that size) as guide, applied to the cartoon."""
        t0 = time.perf_counter()
        smalls = self.segmenter.step(images)
        t1 = time.perf_counter()
        dst = self._treated_ring[turn]
        size = (self.out_w, self.out_h)
        # the compositor uses the mask at once: one buffer serves every frame
        mask_buf = self._scratch.get("mask", (self.out_h, self.out_w), np.float32)
        for i, (small, guide, cartoon) in enumerate(zip(smalls, guides, outs)):
            mask = self.segmenter.refine(small, guide, size, out=mask_buf)
            self._compositor(cartoon, mask, dst[i])
        self.seg_s.append(t1 - t0)
        self.treat_s.append(time.perf_counter() - t1)
        return [dst[i] for i in range(len(outs))]

    # --- face-first scheduling (toon thread) -------------------------------------------

    def _scheduled_background(self, stylise, inputs: list[np.ndarray]
                              ) -> tuple[list[np.ndarray], float | None]:
        """The background for this batch: a model run when the scheduler says so (or none
        is kept yet), else the last one carried along the motion to each frame."""
        sched = self.schedule
        greys = [motion_grey(img) for img in inputs]
        if (sched.run_background() or self._bg_last is None or self._bg_owner is not stylise
                or _scene_changed(self._bg_grey, greys[-1])):
            t = time.perf_counter()
            results = stylise.background(inputs)
            bg_s = time.perf_counter() - t
            if self._bg_last is None or self._bg_last.shape != results[-1].shape:
                self._bg_last = np.empty_like(results[-1])
            np.copyto(self._bg_last, results[-1])  # results are ring views: keep a copy
            self._bg_owner = stylise  # a style switch must not reuse the old style's picture
            self._bg_grey = greys[-1]
            return list(results), bg_s
        if self._warp_buf is None or self._warp_buf.shape[1:] != self._bg_last.shape \
                or len(self._warp_buf) < len(inputs):
            self._warp_buf = np.empty((len(inputs),) + self._bg_last.shape, np.uint8)
        self.bg_reused += len(inputs)
        return [self._bg_warp(self._bg_last, self._bg_grey, grey, self._warp_buf[i])
                for i, grey in enumerate(greys)], None

    def _start_resize(self, stylise, short: int) -> None:
        """Warm the background engine at the scheduler's new working size in a thread
        (OpenVINO compiles per shape: seconds on the toon thread would stall the stream);
        the switch happens at the first batch after it is ready."""
        if self._resizing is not None:
            return
        w, h = working_size(self.out_w, self.out_h, short)
        engine = stylise.bg.engine  # the scheduler runs with a face-aware flow only

        def warm() -> None:
            try:
                # Only engines that compile per shape need it (and ONNX Runtime's CPU
                # engine shares one I/O binding between calls: no second thread there).
                if engine.shape_bound:
                    engine.run(np.full((1, h, w, 3), 255, np.uint8))
            finally:
                self._resize_to = (w, h)

        self._resizing = threading.Thread(target=warm, name="toonstream-resize", daemon=True)
        self._resizing.start()

    def _apply_resize(self) -> None:
        target = self._resize_to
        if target is None:
            return
        self._resize_to, self._resizing = None, None
        old = (self.work_w, self.work_h)
        self.work_w, self.work_h = target
        self._bg_last = None
        if self.schedule is not None:
            self.schedule.size_applied(min(target))
        if self.on_event and target != old:
            self.on_event(f"work size: {old[0]}x{old[1]} -> {target[0]}x{target[1]} "
                          f"({self.schedule.describe() if self.schedule else ''})")

    def wait_resize(self, timeout: float = 30.0) -> None:
        """Wait until a working-size change being warmed up is ready (tests)."""
        t = self._resizing
        if t is not None:
            t.join(timeout)

    def schedule_text(self) -> str:
        """The scheduler's choice for the status line ('' when it is off)."""
        if self.schedule is None or not self._active[1]:
            return ""
        return self.schedule.describe()

    def warm_up(self) -> None:
        """Run the current style once on a blank frame (compiles kernels, sizes arenas)."""
        _warm(self.current, self.work_w, self.work_h)

    @property
    def current(self) -> Stylise:
        """The stylise callable of the current style."""
        return self._active[0]

    def model_ms(self) -> float | None:
        """Median stylise time per call at the working size, over recent calls."""
        vals = list(self.model_s)
        return statistics.median(vals) * 1000 if vals else None

    def seg_ms(self) -> float | None:
        """Median segmentation time per call (model and smoothing), over recent calls."""
        vals = list(self.seg_s)
        return statistics.median(vals) * 1000 if vals else None

    def treat_ms(self) -> float | None:
        """Median time of the edge refinement and compositing per call."""
        vals = list(self.treat_s)
        return statistics.median(vals) * 1000 if vals else None

    # --- switching (any thread) --------------------------------------------------------

    def switch(self, style: str) -> None:
        """Ask for `style`; returns at once. The swap happens when it is ready."""
        with self._lock:
            if style == self.style and self.loading is None:
                return
            cached = self._cache.get(style)
            if cached is not None and self.loading is None:
                self._swap(style, cached, 0.0)
                return
            self._wanted = style
            if not self._loader_running:
                self._loader_running = True
                self._loader = threading.Thread(target=self._load, name="toonstream-style",
                                                daemon=True)
                self._loader.start()

    def _swap(self, style: str, stylise: Stylise, load_s: float) -> None:
        previous = self.style
        self._active = (stylise, isinstance(stylise, FaceLayer))
        self.style = style
        self._cache[style] = stylise
        self._cache.move_to_end(style)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        self.switches.append({"from": previous, "to": style, "load_s": round(load_s, 3),
                              "at_call": self.calls})
        if self.on_event:
            self.on_event(f"style: {previous} -> {style}"
                          + (f" (loaded in {load_s:.1f} s)" if load_s else ""))

    def _load(self) -> None:
        while True:
            with self._lock:
                style, self._wanted = self._wanted, None
                if style is None:
                    self.loading = None
                    self._loader_running = False
                    return
                self.loading = style
                cached = self._cache.get(style)
            t0 = time.perf_counter()
            try:
                stylise = cached if cached is not None else self.factory(style)
                if cached is None:
                    # warm up at the working size so the first live frame is not slow
                    _warm(stylise, self.work_w, self.work_h)
            except Exception as exc:  # noqa: BLE001 - keep streaming the old style
                msg = f"style {style!r} failed to load, keeping {self.style}: {' '.join(str(exc).split())}"
                self.errors.append(msg)
                if self.on_event:
                    self.on_event(msg)
                continue
            with self._lock:
                if self._wanted is None or self._wanted == style:
                    self._wanted = None
                    if style != self.style:
                        self._swap(style, stylise, time.perf_counter() - t0)
                else:
                    self._cache[style] = stylise  # superseded: keep it for later

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until no style is loading (tests, benchmarks)."""
        t = self._loader
        if t is not None:
            t.join(timeout)
            return not t.is_alive()
        return True


# Mean grey-level change (0..255) between the frame a background was made from and the
# current one beyond which the scene is taken to have changed (a cut, a camera switched):
# a warp cannot carry a background across that, so the model runs at once. Motion within a
# shot stays far below it (a 6 px pan of a textured scene changes about 10 levels).
SCENE_CHANGE = 40.0


def _scene_changed(before: np.ndarray | None, now: np.ndarray) -> bool:
    if before is None or before.shape != now.shape:
        return True
    return float(cv2.absdiff(before, now).mean()) > SCENE_CHANGE


def _warm(stylise: Stylise, w: int, h: int) -> None:
    blank = np.full((h, w, 3), 255, np.uint8)
    if isinstance(stylise, FaceLayer):
        stylise.background([blank])
        stylise.warm_up()
    else:
        stylise([blank])
    reset = getattr(stylise, "reset", None)
    if reset is not None:  # the blank frame must not become the temporal step's previous one
        reset()
