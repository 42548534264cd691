"""The live toon callable: camera frames -> working size -> the current style's chain ->
output size -> the background treatment.

The working size is its own setting: the model can run at 256x144 while a 1280x720 virtual
camera gets the result upscaled. Input frames are reduced (INTER_AREA) into a buffer made
once; the style's chain (toon.link) runs at that size; the result is enlarged (bilinear:
the cartoon output is flat-shaded, bicubic buys nothing visible) into a ring of output
buffers made once (live/buffers.py). When the chain is a face layer (faces on), it runs in
two halves: its background at the working size, then its heads cut from, and pasted onto,
the frames at the output size, so a face keeps the camera's detail however small the
working size; with face-first scheduling the background between model runs is the last
one carried along the motion (live/reuse.py). Returned images are views into the ring and
stay valid for `ring` calls.

Style switching (live/switch.py) never stops the stream and never blocks the toon thread.
"""
from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from typing import Callable, Protocol, Sequence

import cv2
import numpy as np

from streamer.toon.background import Background
from streamer.toon.link import Link
from streamer.toon.segment import PersonSegmenter

from .buffers import LiveBuffers
from .reuse import BackgroundReuse, WorkSizeChange
from .schedule import FaceFirstScheduler
from .switch import StyleSwitcher
from .treatment import LiveTreatment

# The least time between two measurings of `--precision auto`'s candidates (each compiles
# and times every candidate once: seconds of CPU).
REMEASURE_EVERY_S = 30.0


class Remeasured(Protocol):
    """What LiveToon needs of `--precision auto`'s chooser (live/precision.py)."""

    def remeasure(self, style: str) -> bool: ...


def style_factory(flows, work_wh: tuple[int, int], fps: float = 30.0,
                  short_side: int | None = None, *, faces: bool | None = None,
                  temporal: bool | None = None) -> Callable[[str], Link]:
    """style -> chain at the working size, from the composition layer
    (streamer.toon.styles.StyleFlows): what LiveToon builds each style with, for the live
    app and the web page's webcam alike. `short_side`: the largest working size the flow
    may be given (the scheduler changes it while streaming); by default the working size
    itself. `faces`, `temporal`: override the settings (the web page's switches)."""
    def factory(style: str) -> Link:
        # The background treatment is LiveToon's own last step, at the output size.
        return flows.flow(style, short_side=short_side or min(work_wh), ring=2, fps=fps,
                          faces=faces, temporal=temporal, background=Background("keep"))
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
    """The live stylise callable for ToonStage: a working size, an output size, style
    switching, face-first scheduling and the background treatment."""

    def __init__(self, factory: Callable[[str], Link], style: str,
                 work_wh: tuple[int, int], out_wh: tuple[int, int], *, ring: int = 6,
                 cache_size: int = 3, on_event: Callable[[str], None] | None = None,
                 initial: Link | None = None, background: Background = Background(),
                 segmenter: PersonSegmenter | None = None,
                 schedule: FaceFirstScheduler | None = None,
                 precision: Remeasured | None = None):
        """`background`/`segmenter`: the background treatment, applied at the output size
        with the person mask of the camera frame (None: keep). `schedule`: face-first
        scheduling of the background (live/schedule.py), with a face layer only.
        `precision`: `--precision auto`'s chooser (live/precision.py), measured again on a
        working-size change (the load changed), in a thread of its own."""
        self.work_w, self.work_h = work_wh
        self.out_w, self.out_h = out_wh
        self.on_event = on_event
        if background.needs_mask and segmenter is None:
            raise ValueError(f"background {background} needs a person segmenter")
        self.background = background
        self.treatment = LiveTreatment(background, segmenter) if background.needs_mask else None
        self._buffers = LiveBuffers(max(2, ring), out_wh,
                                    self.treatment.channels if self.treatment else None)
        self.schedule = schedule
        self._reuse = BackgroundReuse(schedule) if schedule is not None else None
        self._resize = WorkSizeChange()
        self.precision = precision
        self._remeasure: threading.Thread | None = None
        self._remeasured_at = -REMEASURE_EVERY_S
        self.model_s: deque = deque(maxlen=2048)  # seconds per stylise call (work size)
        self.calls = 0
        self.faces_pasted = 0  # head crops pasted, over all styles
        first = initial if initial is not None else factory(style)
        self.styles = StyleSwitcher(factory, style, first, self._warm, cache_size=cache_size,
                                    on_event=on_event, calls=lambda: self.calls)

    # --- what the session and the apps read ----------------------------------------------

    @property
    def style(self) -> str:
        return self.styles.style

    @property
    def loading(self) -> str | None:
        return self.styles.loading

    @property
    def switches(self) -> list[dict]:
        return self.styles.switches

    @property
    def errors(self) -> list[str]:
        return self.styles.errors

    @property
    def current(self) -> Link:
        """The current style's chain."""
        return self.styles.active

    @property
    def segmenter(self) -> PersonSegmenter | None:
        return self.treatment.segmenter if self.treatment is not None else None

    @property
    def bg_reused(self) -> int:
        """Frames that got the last background, warped, instead of a model run."""
        return self._reuse.reused if self._reuse is not None else 0

    def switch(self, style: str) -> None:
        """Ask for `style`; returns at once (see live/switch.py)."""
        self.styles.switch(style)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until no style is loading (tests, benchmarks)."""
        return self.styles.wait_idle(timeout)

    # --- per batch (toon thread) -----------------------------------------------------

    def __call__(self, images: list[np.ndarray], times: Sequence[float] | None = None
                 ) -> list[np.ndarray]:
        n = len(images)
        if n == 0:
            return []
        self._apply_resize()
        bufs = self._buffers
        work = bufs.ensure(n, (self.work_w, self.work_h))
        ww, wh = self.work_w, self.work_h
        inputs = []
        for i, img in enumerate(images):
            if img.shape[:2] == (wh, ww):
                work[i] = img
            else:
                cv2.resize(img, (ww, wh), dst=work[i], interpolation=cv2.INTER_AREA)
            inputs.append(work[i])
        chain = self.styles.active  # one read: a switch lands between batches
        # The chain runs in two halves only when it is the face layer itself; a chain with
        # links around its face layer runs whole, at the working size.
        layer = chain.face_layer if chain.face_layer is chain else None
        t0 = time.perf_counter()
        sched = self.schedule if layer is not None else None
        bg_s = None
        if sched is not None:
            results, bg_s = self._reuse(layer, inputs)
        elif layer is not None:
            results = layer.background(inputs)
        else:
            results = chain(inputs, times)
        turn = bufs.next_turn()
        out = bufs.out(turn)
        for i, res in enumerate(results):
            if res.shape[:2] == (self.out_h, self.out_w):
                out[i] = res
            else:
                cv2.resize(res, (self.out_w, self.out_h), dst=out[i],
                           interpolation=cv2.INTER_LINEAR)
        outs = [out[i] for i in range(n)]
        # The camera frames at the output size, once: the heads are cut from them and the
        # mask is refined against them.
        src = bufs.at_output_size(images) if layer is not None or self.treatment else None
        faces = heads = 0
        head_s = 0.0
        if layer is not None:
            timings = layer.timings
            runs_before, head_s_before = timings.faces, timings.head_s
            if sched is not None:
                layer.max_heads = sched.heads_per_frame()
            layer.paste_faces(src, outs, times)
            faces = sum(len(f) for f in layer.last_faces)
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
                w, h = working_size(self.out_w, self.out_h, sched.pending_size)
                self._resize.start(layer.bg_engine, w, h)
        if self.treatment is not None:
            outs = self.treatment(images, src, outs, bufs.treated(turn))
        return outs

    # --- working size ------------------------------------------------------------------

    def _apply_resize(self) -> None:
        target = self._resize.take()
        if target is None:
            return
        old = (self.work_w, self.work_h)
        self.work_w, self.work_h = target
        if self._reuse is not None:
            self._reuse.forget()
        if self.schedule is not None:
            self.schedule.size_applied(min(target))
        if self.on_event and target != old:
            self.on_event(f"work size: {old[0]}x{old[1]} -> {target[0]}x{target[1]} "
                          f"({self.schedule.describe() if self.schedule else ''})")
        if self.precision is not None and target != old:
            self._start_remeasure()

    def _start_remeasure(self) -> None:
        """The load changed: measure the precision candidates again off the toon thread,
        and rebuild the style on the new engines if the choice moves."""
        if self._remeasure is not None and self._remeasure.is_alive():
            return
        if time.monotonic() - self._remeasured_at < REMEASURE_EVERY_S:
            return  # a load that flaps must not make the measuring a load of its own
        self._remeasured_at = time.monotonic()
        chooser, style = self.precision, self.style

        def run() -> None:
            try:
                if chooser.remeasure(style):
                    self.styles.rebuild()
            except Exception as exc:  # noqa: BLE001 - keep streaming on the current engines
                if self.on_event:
                    self.on_event(f"precision auto: measuring again failed, keeping the "
                                  f"current precision: {' '.join(str(exc).split())}")

        self._remeasure = threading.Thread(target=run, name="toonstream-precision", daemon=True)
        self._remeasure.start()

    def wait_resize(self, timeout: float = 30.0) -> None:
        """Wait until a working-size change being warmed up is ready (tests)."""
        self._resize.wait(timeout)

    def settle(self, timeout: float = 30.0) -> None:
        """Wait for a style still loading and a working size still warming up, at the end
        of a run: their threads are daemons, and Python exiting while one of them is inside
        a model build or call aborts the process (exit 134) instead of exiting cleanly."""
        if self._remeasure is not None:
            self._remeasure.join(timeout)
        self.styles.wait_idle(timeout)
        self._resize.wait(timeout)

    def schedule_text(self) -> str:
        """The scheduler's choice for the status line ('' when it is off)."""
        if self.schedule is None or self.current.face_layer is not self.current:
            return ""
        return self.schedule.describe()

    def _warm(self, chain: Link) -> None:
        chain.warm_up(self.work_w, self.work_h)

    def warm_up(self) -> None:
        """Run the current style once on a blank frame (compiles kernels, sizes arenas)."""
        self._warm(self.current)

    # --- medians for the status line ---------------------------------------------------

    def model_ms(self) -> float | None:
        """Median stylise time per call at the working size, over recent calls."""
        vals = list(self.model_s)
        return statistics.median(vals) * 1000 if vals else None

    def seg_ms(self) -> float | None:
        """Median segmentation time per call (model and smoothing), over recent calls."""
        return self.treatment.seg_ms() if self.treatment is not None else None

    def treat_ms(self) -> float | None:
        """Median time of the edge refinement and compositing per call."""
        return self.treatment.treat_ms() if self.treatment is not None else None
