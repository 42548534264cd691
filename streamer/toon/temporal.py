"""The temporal step: stylised frames that do not flicker, for any style and any engine.

DCT-Net stylises each frame on its own, so it redraws texture (hair strands, highlights, the
eyes) a little differently on every frame, even when nothing moves. This step, which needs
no training, blends the previous *output*, carried along the image motion, into the current
one wherever that motion can be trusted, weighted by how far it can be trusted:

    out_t = p_t + w * (warp(out_t-1) - p_t),  w = strength * reliability in [0, strength]

where `p_t` is the model's own output for frame t. Since `out_t-1` already holds the earlier
frames, this is an exponential average along motion trajectories: flicker shrinks, real
change passes. The reliability of a pixel is the product of

- forward-backward consistency of the flow (occluded and badly matched pixels fail it),
- a small photometric residual between the warped previous INPUT and the current input (a
  new object, a revealed background, a blink, a light switched on: the input says the
  content changed, so the model's new drawing is taken as it is, with no trail),
- a bounded difference between the warped previous output and the new output (a guard: a
  change that large is no flicker), and being warped from inside the frame;
- and no trust either a few pixels around a pixel that fails a check outright (`margin`):
  the model's drawing reacts a few pixels around a change, and that halo must not trail a
  moving edge.

At a scene cut (and on a first frame, a size change, a `reset()`) nothing is blended.

Heads are stabilised in their own aligned 288x288 crop space (`HeadTemporal`): a tracked
face barely moves there, so the previous stylised head lines up with the new one. Their
motion is measured there too, between the previous and the current input crop (a DIS flow
on the grey crops): it sees the eyes and the mouth at the head model's own resolution,
whatever the frame's size, where the frame's flow on its small grey copy gives a close-up's
eye a handful of pixels. A face that appears (a new track) starts fresh, and so does every
head where the frame does (a cut, a first frame).

The motion itself (the DIS flows, the warp of any image along them, and scene cuts) is the
motion module's (streamer.toon.motion), shared with the face tracker and the live path's
background reuse.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from streamer.buffers import Scratch

from .link import Link, WrappingLink
from .motion import (CUT_THRESHOLD, DIS_PRESETS, Motion, MotionStep, dis_flow, flow_step,
                     pixel_grid, remap_maps, warp)


@dataclass(frozen=True)
class TemporalSettings:
    """How strongly and where the previous output is blended in.

    `strength`: the weight of the warped previous output where the motion is fully
    reliable (0: off; 1 would freeze a static scene). `flow_side`: the long side, in
    pixels, of the grey copy the frame's flow runs on; `flow_preset`: its DIS settings (a
    name in motion.DIS_PRESETS). `residual`: levels of photometric residual (warped
    previous input vs current input, largest over the colour channels) over which the
    weight falls from full to zero. `change`: the same for the output difference guard
    (levels, max over channels). `margin`: pixels around a pixel that fails a check
    outright that are not trusted either. `head_flow_side`, `head_flow_preset`: the size
    of the grey head crops the heads' own flow runs on, and its DIS settings."""

    strength: float = 0.7
    flow_side: int = 320
    residual: tuple[float, float] = (6.0, 24.0)
    change: tuple[float, float] = (40.0, 80.0)
    margin: int = 3
    cut_threshold: float = CUT_THRESHOLD
    flow_preset: str = "fine"
    head_flow_side: int = 288
    head_flow_preset: str = "fine"
    smooth_residual: bool = True  # compare the inputs after a 3x3 blur (see _motion_or_still)

    def __post_init__(self) -> None:
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError("temporal strength must be in 0..1")
        if self.flow_preset not in DIS_PRESETS or self.head_flow_preset not in DIS_PRESETS:
            raise ValueError(f"flow preset must be one of {', '.join(DIS_PRESETS)}")
        if self.flow_side < 16 or self.head_flow_side < 16:
            raise ValueError("the flow's side must be at least 16 pixels")
        for lo, hi in (self.residual, self.change):
            if not 0 <= lo < hi:
                raise ValueError("a ramp needs 0 <= low < high")


def _ramp(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """1 at or below `lo`, 0 at or above `hi`, linear between (float32, in place on x)."""
    x -= np.float32(hi)
    x *= np.float32(-1.0 / (hi - lo))
    np.clip(x, 0.0, 1.0, out=x)
    return x


def _max_channels(img: np.ndarray) -> np.ndarray:
    """The largest value over the channels (cv2: numpy's max over an axis is slow)."""
    if img.ndim == 2:
        return img
    c = cv2.split(img)
    return cv2.max(cv2.max(c[0], c[1]), c[2])


def compare_view(frame: np.ndarray, smooth: bool = True, dst: np.ndarray | None = None
                 ) -> np.ndarray:
    """The copy of an input that the photometric check compares: in colour (two colours of
    one grey level must not pass for each other) and, with `smooth`, after a 3x3 box blur:
    sensor and codec noise and a warp's resampling differ pixel by pixel and mostly
    average out, a real change does not (on the two sample clips this lets about a third
    more of the picture be steadied). `dst`: a buffer of the frame's shape to write it to."""
    if dst is None or dst.shape != frame.shape:
        return cv2.blur(frame, (3, 3)) if smooth else frame.copy()
    if smooth:
        return cv2.blur(frame, (3, 3), dst=dst)
    np.copyto(dst, frame)
    return dst


def _motion_or_still(maps: np.ndarray, ok: np.ndarray, prev_in: np.ndarray,
                     cur_in: np.ndarray) -> np.ndarray:
    """Per pixel, the flow's motion or none, whichever explains the input better (inputs
    from `compare_view`); `maps` and `ok` are updated in place; returns the photometric
    residual (uint8, largest over the channels). A pixel that did not move is copied, not
    resampled: the flow is never exactly zero, and repeated bilinear warps along its noise
    would blur a still picture frame after frame."""
    res_w = _max_channels(cv2.absdiff(warp(prev_in, maps), cur_in))
    res_0 = _max_channels(cv2.absdiff(prev_in, cur_in))
    still = res_0 <= res_w
    np.copyto(maps, pixel_grid(cur_in.shape[:2]), where=still[..., None])
    ok[still] = 1.0
    return cv2.min(res_0, res_w)


def _reliability(step_ok: np.ndarray, res: np.ndarray, prev_out_w: np.ndarray,
                 cur_out: np.ndarray, st: TemporalSettings) -> np.ndarray:
    """The blend weight (float32 [h, w], 0..strength) of the warped previous output, from
    the flow's checks `step_ok` and the photometric residual `res`."""
    w = _ramp(res.astype(np.float32), *st.residual)
    w *= step_ok
    if st.margin > 0:
        # The model's output reacts to the input a few pixels around a change (its
        # receptive field), so pixels near a failed check are not trusted either: without
        # this margin a faint halo of the old content trails a moving edge. Only outright
        # failures (no weight left) grow the margin: a partial weight (a residual between
        # the ramp's ends: sensor noise, a codec's blocks, an enlarged picture's blur)
        # stays where it is. Spreading its minimum over the margin's square too left the
        # close-up clip's whole frame (bench/closeup.py) at 1.07x the input's warping
        # error instead of 0.99x, and the trails test finds no halo either way.
        k = 2 * st.margin + 1
        sound = cv2.compare(w, 0.0, cv2.CMP_GT)  # 255 where some weight is left
        sound = cv2.erode(sound, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
        w[sound == 0] = 0.0
    change = _max_channels(cv2.absdiff(prev_out_w, cur_out))
    w *= _ramp(change.astype(np.float32), *st.change)
    w *= np.float32(st.strength)
    return w


def _blend(prev_w: np.ndarray, cur: np.ndarray, weight: np.ndarray,
           inv: np.ndarray | None = None) -> None:
    """cur = weight * prev_w + (1 - weight) * cur, in place (rounded to uint8); `inv`: a
    buffer of the weight's shape for 1 - weight (else a new one)."""
    cv2.blendLinear(prev_w, cur, weight, np.subtract(np.float32(1.0), weight, out=inv), dst=cur)


class FrameTemporal:
    """The temporal step on whole frames: `(inputs, outputs)` of each call, in order, and
    the outputs are stabilised in place. Keeps one previous input and output."""

    def __init__(self, settings: TemporalSettings = TemporalSettings(),
                 motion: Motion | None = None):
        self.settings = settings
        self.motion = motion if motion is not None else Motion(
            settings.flow_side, settings.cut_threshold, settings.flow_preset)
        self.steps: list[MotionStep | None] = []  # per frame of the latest call
        self._prev_in: np.ndarray | None = None  # compare_view of the previous input
        self._spare_in: np.ndarray | None = None  # the other compare_view buffer (swapped)
        self._scratch = Scratch()  # 1 - blend weight
        self._prev_out: np.ndarray | None = None
        self.blended = 0.0  # sum over frames of the mean blend weight (for the stats)
        self.frames = 0
        self.seconds = 0.0  # time spent here, flow included (for the benchmarks)

    def reset(self) -> None:
        self.motion.reset()
        self._prev_in = self._prev_out = None

    def __call__(self, inputs: Sequence[np.ndarray], outputs: Sequence[np.ndarray]) -> None:
        t0 = time.perf_counter()
        self.steps = []
        for frame, out in zip(inputs, outputs):
            self.steps.append(self.step(frame, out))
        self.seconds += time.perf_counter() - t0

    def step(self, frame: np.ndarray, out: np.ndarray) -> MotionStep | None:
        """Stabilise one output in place; returns the frame's motion (None: not blended)."""
        if out.shape[:2] != frame.shape[:2]:
            raise ValueError("the temporal step needs the output at the input's size")
        step = self.motion.update(frame)
        cur_in = compare_view(frame, self.settings.smooth_residual, self._spare_in)
        prev_out, prev_in = self._prev_out, self._prev_in
        self.frames += 1
        if (step is not None and prev_out is not None and prev_out.shape == out.shape
                and self.settings.strength > 0):
            maps, ok = remap_maps(step, out.shape[:2])
            res = _motion_or_still(maps, ok, prev_in, cur_in)
            prev_out_w = warp(prev_out, maps)
            weight = _reliability(ok, res, prev_out_w, out, self.settings)
            _blend(prev_out_w, out, weight, self._scratch.get("inv", weight.shape, weight.dtype))
            self.blended += float(weight.mean())
        else:
            step = None
        if prev_out is None or prev_out.shape != out.shape:
            self._prev_out = out.copy()
        else:
            np.copyto(prev_out, out)
        self._spare_in, self._prev_in = self._prev_in, cur_in
        return step


@dataclass
class _HeadState:
    head: np.ndarray   # the stabilised 288x288 head output of the previous frame
    crop: np.ndarray   # compare_view of the previous frame's input crop
    grey: np.ndarray   # the previous input crop, grey, at the head flow's size


class HeadTemporal:
    """The temporal step on head crops, per face track, in the aligned crop space.

    `__call__(track_ids, crops, heads, carry)`: for each face, its track id, input crop and
    stylised head (stabilised in place), and whether anything may be carried over from the
    previous frame (False: a first frame, a scene cut, a size change: start again). Tracks
    not seen in a call are forgotten, so a new face (a new track) starts fresh.

    The motion is measured in the crop itself, between the previous and the current input
    crop (`head_flow_side`, `head_flow_preset`): a tracked face barely moves there, and the
    flow sees the eyes and the mouth at about the head model's own resolution. Composing
    the frame's flow (a few pixels of a small grey copy per eye) with the two crop
    transforms, as this step did first, left the eyes and the mouth of a close-up face
    unsteadied wherever that coarse flow missed them by more than the photometric check
    allows (docs/ARCHITECTURE.md section 5.5)."""

    def __init__(self, settings: TemporalSettings = TemporalSettings()):
        self.settings = settings
        self._state: dict[int, _HeadState] = {}
        self._dis = dis_flow(settings.head_flow_preset)
        self.blended = 0.0
        self.heads = 0
        self.seconds = 0.0

    def reset(self) -> None:
        self._state = {}

    def __call__(self, track_ids: Sequence[int], crops: Sequence[np.ndarray],
                 heads: Sequence[np.ndarray], carry: Sequence[bool]) -> None:
        t0 = time.perf_counter()
        new: dict[int, _HeadState] = {}
        for tid, crop, head, go_on in zip(track_ids, crops, heads, carry):
            cur_in = compare_view(crop, self.settings.smooth_residual)
            grey = self._grey(crop)
            old = self._state.get(tid) if go_on else None
            self.heads += 1
            if old is not None and old.head.shape == head.shape and self.settings.strength > 0:
                step = flow_step(self._dis, grey, old.grey, crop.shape[:2])
                maps, ok = remap_maps(step, head.shape[:2])
                res = _motion_or_still(maps, ok, old.crop, cur_in)
                prev_w = warp(old.head, maps)
                weight = _reliability(ok, res, prev_w, head, self.settings)
                _blend(prev_w, head, weight)
                self.blended += float(weight.mean())
            new[tid] = _HeadState(head.copy(), cur_in, grey)
        self._state = new
        self.seconds += time.perf_counter() - t0

    def _grey(self, crop: np.ndarray) -> np.ndarray:
        """The crop as the head flow sees it: grey, `head_flow_side` pixels square."""
        grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
        side = self.settings.head_flow_side
        if grey.shape[:2] != (side, side):
            grey = cv2.resize(grey, (side, side), interpolation=cv2.INTER_AREA)
        return grey


class TemporalFlow(WrappingLink):
    """The temporal step as a link after a flow without faces (FullFrameFlow); the face-aware
    flow runs the step inside, on its background and on each head. Same call; results are
    the inner flow's buffers, stabilised in place."""

    def __init__(self, inner: Link, settings: TemporalSettings = TemporalSettings()):
        super().__init__(inner)
        self.temporal = FrameTemporal(settings)

    def reset(self) -> None:
        super().reset()
        self.temporal.reset()

    def warm_up(self, width: int, height: int) -> None:
        super().warm_up(width, height)
        self.temporal.reset()

    @property
    def needs_motion(self) -> bool:
        return True

    def __call__(self, frames: list[np.ndarray], times: Sequence[float] | None = None
                 ) -> list[np.ndarray]:
        outs = self.inner(frames, times)
        t0 = time.perf_counter()
        self.temporal(frames, outs)
        self.timings.temporal_s += time.perf_counter() - t0
        return outs
