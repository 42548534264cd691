"""The person mask: MediaPipe selfie segmentation on the input frame, steady over time and
refined at the output size.

Three steps per frame, each chosen for what a call or an overlay shows:

1. **Model**: the frame is resized straight to the model's input (no letterbox) with the
   same mapping MediaPipe's ImageToTensor uses (corners to corners, bilinear, zero border:
   `cv2.warpAffine`), so the raw mask matches MediaPipe's own within 0.001 mean
   (tests/test_segment.py against ../shared/golden/seg).
2. **Over time**: MediaPipe's own SegmentationSmoothingCalculator rule, on the model-size
   mask: a pixel the model is sure of (near 0 or 1) takes the new value at once, so a
   moving arm never trails; an unsure pixel (the flickering edge) is mixed with the
   previous mask, by up to `smoothing` (0.7, MediaPipe's selfie graph value). MediaPipe
   mixes in the previous mask where it was, so a moving outline is pulled back towards
   where it was. Here (`follow_motion`, the default) the previous mask is first carried
   along the image motion (the motion module's DIS flow, on a grey copy of the frame at
   the model's size), and, now that it sits where the person is, unsure pixels lean on it
   more (up to 0.9). The carry is not trusted where the frame's colour at the carried
   place is far from the new frame's (an arm that moved faster than the flow, a revealed
   background): there the mix falls to nothing. The flow's forward-backward check is not
   asked: a person's outline is a motion boundary, where that check fails on one side of
   it, and gating by it left the outline's flicker at 0.9x MediaPipe's rule instead of
   about 0.6x (bench/stability.py, the mask's edge).
3. **Edges**: a fast guided filter (He and Sun, 2015) with the grey frame as guide: the
   linear coefficients are fitted at a reduced size and applied at the output size, so
   hair and shoulders follow the frame's edges instead of the model's 256-pixel grid, at
   the cost of two resizes and a multiply-add per output pixel.

The model runs in fp32 (it is tiny next to DCT-Net, and its mask, not its speed, is what
shows): on a GPU device with that device's ONNX Runtime provider; on the CPU (devices cpu and
openvino) with ONNX Runtime on one thread, which measured 1.3 ms per frame for the landscape
model on this project's 2-core CPU against 4-10 ms for OpenVINO, whose per-call overhead
dominates so small a graph, and one thread leaves the other cores to DCT-Net.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from streamer.buffers import Scratch
from streamer.models.selfie import INPUT_NAME, OUTPUT_NAME

from .engine import EngineSettings, EngineUnavailable, _ORT_PROVIDERS, auto_device
from .motion import Motion, remap_maps, warp

SEG_MODELS = ("auto", "general", "landscape")
SMOOTHING = 0.7  # MediaPipe selfie_segmentation graph: combine_with_previous_ratio
MOTION_SMOOTHING = 0.9  # the same, when the previous mask is carried along the motion
# MediaPipe's polynomial for the squared uncertainty of a probability p, in t = (p - 0.5)^2.
_UNCERTAINTY_POLY = (5.68842, -0.748699, -57.8051, 291.309, -624.717)


def choose_variant(mode: str, width: int, height: int) -> str:
    """`auto`: the landscape model (144x256, cheaper) for frames wider than 4:3, else the
    general one (256x256)."""
    if mode != "auto":
        return mode
    return "landscape" if width * 3 > height * 4 + 1e-6 else "general"


class SegRunner:
    """The segmentation ONNX graph on one backend: uint8 BGR `[N, h, w, 3]` at the model's
    input size -> float32 probabilities `[N, h, w]`."""

    def __init__(self, path: Path, height: int, width: int, settings: EngineSettings):
        self.height, self.width = height, width
        device = auto_device() if settings.device == "auto" else settings.device
        if device == "openvino":
            device = "cpu"  # see the module docstring
        import onnxruntime as ort

        if device.startswith("torch-"):
            # The mask model is an ONNX graph, run by ONNX Runtime beside a torch engine: on
            # its CUDA provider where this ONNX Runtime has one, else on the CPU (it is small).
            gpu = device == "torch-cuda" and "CUDAExecutionProvider" in ort.get_available_providers()
            device = "cuda" if gpu else "cpu"
        provider, install = _ORT_PROVIDERS[device]
        if provider not in ort.get_available_providers():
            raise EngineUnavailable(f"device {device!r} needs ONNX Runtime's {provider}: {install}")
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1 if device == "cpu" else (settings.threads or 0)
        so.inter_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = [provider] if device != "tensorrt" else ["CUDAExecutionProvider"]
        self._session = ort.InferenceSession(str(path), so, providers=providers)
        self.backend, self.device = "onnxruntime", device

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]

    def describe(self) -> str:
        return f"{self.backend} on {self.device} (fp32)"


def to_model_input(image: np.ndarray, height: int, width: int,
                   out: np.ndarray | None = None) -> np.ndarray:
    """MediaPipe's ImageToTensor mapping for a whole-image region: pixel corners (0, 0) and
    (W, H) go to (0, 0) and (w, h), bilinear, zero border."""
    h, w = image.shape[:2]
    m = np.array([[width / w, 0, 0], [0, height / h, 0]], np.float64)
    return cv2.warpAffine(image[..., :3], m, (width, height), dst=out, flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def smooth(new: np.ndarray, previous: np.ndarray | None, ratio: float = SMOOTHING,
           reliability: np.ndarray | None = None) -> np.ndarray:
    """MediaPipe's temporal rule (see the module docstring); `new` is changed in place.
    `reliability` (0..1 per pixel, optional) scales the mix further: how far `previous`
    (then the previous mask carried along the motion) can be trusted at each pixel."""
    if previous is None or previous.shape != new.shape or ratio <= 0:
        return new
    t = new - 0.5
    x = t * t
    c1, c2, c3, c4, c5 = _UNCERTAINTY_POLY
    certainty = x * (c1 + x * (c2 + x * (c3 + x * (c4 + x * c5))))
    mix = (1.0 - np.minimum(certainty, 1.0)) * ratio
    if reliability is not None:
        mix *= reliability
    new += (previous - new) * mix
    return new


def guided_refine(mask_small: np.ndarray, guide_bgr: np.ndarray, *, eps: float = 1e-3,
                  work_long: int = 320, scratch: Scratch | None = None,
                  out: np.ndarray | None = None) -> np.ndarray:
    """The mask at the guide's size with edges that follow the guide (fast guided filter:
    coefficients fitted at a reduced size, at most `work_long` pixels on the long side,
    applied at full size). 320 keeps the fit a little finer than the model's own 256 grid
    and costs under a millisecond at 640x360 (512 cost 6 ms: its maps leave the cache).
    `scratch` keeps the full-size work maps (grey guide, offset map) between calls; `out` (float32, the guide's
    height and width) receives the mask, else a new array does."""
    H, W = guide_bgr.shape[:2]
    scratch = scratch if scratch is not None else Scratch()
    if out is None:
        out = np.empty((H, W), np.float32)
    elif out.shape != (H, W) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 {H}x{W}, not {out.dtype} {out.shape}")
    grey = cv2.cvtColor(guide_bgr[..., :3], cv2.COLOR_BGR2GRAY,
                        dst=scratch.get("grey", (H, W), np.uint8))
    scale = min(1.0, work_long / max(H, W))
    lh, lw = max(1, round(H * scale)), max(1, round(W * scale))
    g_lo = cv2.resize(grey, (lw, lh), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    p_lo = cv2.resize(mask_small, (lw, lh), interpolation=cv2.INTER_LINEAR)
    # A window of about 1/64 of the long side: wide enough to span the model's own edge
    # blur (one model pixel is 1/256 of the frame), narrow enough to keep fingers apart.
    r = max(1, round(max(lh, lw) / 64))
    k = (2 * r + 1, 2 * r + 1)

    def box(a: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(a, -1, k, borderType=cv2.BORDER_REFLECT)

    mean_i, mean_p = box(g_lo), box(p_lo)
    cov_ip = box(g_lo * p_lo) - mean_i * mean_p
    var_i = box(g_lo * g_lo) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    q = cv2.resize(box(a), (W, H), dst=out, interpolation=cv2.INTER_LINEAR)  # mean of a
    mean_b = cv2.resize(box(b), (W, H), dst=scratch.get("mean_b", (H, W), np.float32),
                        interpolation=cv2.INTER_LINEAR)
    # q = mean_a * guide + mean_b, in place
    q *= grey
    q *= 1 / 255
    q += mean_b
    np.clip(q, 0.0, 1.0, out=q)
    return q


#: levels of colour difference (3x3-blurred frames at the model's size, largest over the
#: channels) between the carried previous frame and the current one over which the
#: carried mask goes from fully to not at all trusted: wide, since the mask changes slowly
#: across an outline and only a gross miss of the flow must be caught
MASK_RESIDUAL = (24.0, 72.0)


class MaskMotion:
    """The previous model-size mask carried onto the current frame: DIS flow (the motion
    module's `Motion`) on a grey copy of each frame at about the model's size, and how far
    the carry can be trusted per mask pixel. One per stream."""

    def __init__(self, side: int = 256, residual: tuple[float, float] = MASK_RESIDUAL):
        # The finer DIS grid (half the copy's size): on the fast preset's quarter-size grid
        # the outline's motion is smeared, and the edge's flicker fell to 0.69x MediaPipe's
        # rule on the close-up clip instead of 0.63x (2 ms vs 7 ms a frame on the 2-core CPU).
        self.motion = Motion(side, preset="fine")
        self.residual = residual
        self._prev_view: np.ndarray | None = None

    def reset(self) -> None:
        self.motion.reset()
        self._prev_view = None

    def carry(self, frame: np.ndarray, previous: np.ndarray | None, hw: tuple[int, int]
              ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(the previous mask carried onto `frame`, its reliability), both at the mask's
        size `hw`; (None, None) when nothing can be carried (a first frame, a scene cut, a
        size change): then the new mask is taken as it is."""
        step = self.motion.update(frame[..., :3])
        small = cv2.resize(frame[..., :3], (hw[1], hw[0]), interpolation=cv2.INTER_AREA)
        view = cv2.blur(small, (3, 3))
        prev_view, self._prev_view = self._prev_view, view
        if (step is None or previous is None or previous.shape != hw or prev_view is None
                or prev_view.shape != view.shape):
            return None, None
        maps, _ = remap_maps(step, hw)
        c = cv2.split(cv2.absdiff(warp(prev_view, maps), view))
        res = cv2.max(cv2.max(c[0], c[1]), c[2]).astype(np.float32)
        lo, hi = self.residual
        # 1 up to lo levels, 0 from hi, linear between
        reliability = np.clip((np.float32(hi) - res) * np.float32(1.0 / (hi - lo)), 0.0, 1.0)
        return warp(previous, maps), reliability


class PersonSegmenter:
    """Masks for one stream: keeps the previous mask for the temporal step, so make one per
    stream (the flows do)."""

    def __init__(self, runner: SegRunner | Callable[[str], SegRunner], *, model: str = "auto",
                 smoothing: float | None = None, refine: bool = True,
                 follow_motion: bool = True):
        """`runner`: a started SegRunner, or `runner(variant)` that starts one once the
        first frame's shape has chosen the variant (`model`: auto, general, landscape);
        `follow_motion`: carry the previous mask along the image motion before it is mixed
        in (else MediaPipe's rule as it is: the previous mask where it was); `smoothing`:
        the largest share of the previous mask (0: none, each frame's own mask; None: 0.9
        with `follow_motion`, else MediaPipe's 0.7)."""
        self._runner_for = runner if callable(runner) and not isinstance(runner, SegRunner) else None
        self.runner: SegRunner | None = None if self._runner_for else runner  # type: ignore[assignment]
        self.model = model
        if smoothing is None:
            smoothing = MOTION_SMOOTHING if follow_motion else SMOOTHING
        self.smoothing = smoothing
        self.refine_edges = refine
        self.motion = MaskMotion() if follow_motion else None
        self._previous: np.ndarray | None = None
        self._input = np.empty((0, 0, 0, 3), np.uint8)
        self._scratch = Scratch()

    def raw(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """The model's probabilities at its own size, `[N, h, w]`, no smoothing."""
        if self.runner is None:
            h, w = images[0].shape[:2]
            self.runner = self._runner_for(choose_variant(self.model, w, h))
        n = len(images)
        if self._input.shape != (n, self.runner.height, self.runner.width, 3):
            self._input = np.empty((n, self.runner.height, self.runner.width, 3), np.uint8)
        for i, img in enumerate(images):
            to_model_input(img, self.runner.height, self.runner.width, out=self._input[i])
        return self.runner.run(self._input)

    def step(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The model-size masks of `images`, in order, smoothed over the frames so far."""
        out = []
        for small, image in zip(self.raw(images), images):
            previous, reliability = self._previous, None
            if self.motion is not None:
                previous, reliability = self.motion.carry(image, previous, small.shape)
            small = smooth(np.array(small), previous, self.smoothing, reliability)
            self._previous = small
            out.append(small)
        return out

    def refine(self, small: np.ndarray, image: np.ndarray,
               size: tuple[int, int] | None = None, out: np.ndarray | None = None
               ) -> np.ndarray:
        """A model-size mask at `size` (width, height; default the image's), edges
        following `image`; written into `out` (float32, that size) when given, which a
        caller that uses the mask at once reuses from frame to frame."""
        w, h = size if size is not None else (image.shape[1], image.shape[0])
        if not self.refine_edges:
            return cv2.resize(small, (w, h), dst=out, interpolation=cv2.INTER_LINEAR)
        guide = image if image.shape[:2] == (h, w) else cv2.resize(image[..., :3], (w, h))
        return guided_refine(small, guide, scratch=self._scratch, out=out)

    def __call__(self, images: Sequence[np.ndarray], size: tuple[int, int] | None = None
                 ) -> list[np.ndarray]:
        """Masks in 0..1 (float32) at `size` (width, height; default each image's own), in
        order, smoothed over the frames given so far."""
        return [self.refine(s, img, size) for s, img in zip(self.step(images), images)]

    def reset(self) -> None:
        self._previous = None
        if self.motion is not None:
            self.motion.reset()
