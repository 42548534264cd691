"""`--precision auto`: the live path's precision (and network) chosen by measurement.

The same int8 model ran at 0.78x the bf16 time on one x86 CPU and at 4x on another, so no
rule fitted to one CPU family can pick a precision. Instead the candidates this machine has
are started and timed side by side, at the head's 288x288 crop and the background's working
sizes, and checked for the face's quality on a real face (the sample photo's, aligned as the
face pipeline aligns it) against the exact fp32 head:

- `fast`: bf16 where the CPU has it, else the fp32 model (always a candidate);
- `int8`: OpenVINO's quantized model, where it is already built for the style (building one
  takes about a minute: `python -m streamer.models path STYLE --precision int8`);
- `mobile`: the light network, where an installed one holds the style.

The fastest candidate whose face keeps SSIM >= FACE_SSIM wins; `fast` meets the bound by
construction, so the choice is never slower than it. The choice is measured again when the
load changes (the scheduler changes the working size), and the stream moves to another
candidate only when it is clearly faster then (SWITCH_GAIN), through the same switch as a
style change. What was measured and chosen goes to the log, the status line and
`--stats-json`.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import cv2
import numpy as np

from streamer.toon.faces.align import CROP_SIZE, similarity_transform, warp_crop
from streamer.toon.styles import flows_variant

if TYPE_CHECKING:
    from streamer.toon.styles import StyleFlows

FACE_SSIM = 0.9     # the face-quality bound: SSIM to the exact head on the probe face
SWITCH_GAIN = 0.85  # a re-measure moves to a candidate only below this share of the current time


@dataclass
class Measured:
    """One candidate's figures (seconds) and whether its face meets the bound."""

    label: str            # "fast", "int8" or "mobile"
    precision: str        # what its engines actually run ("bf16", "fp32", "int8+fp32", ...)
    head_s: float
    bg_s: dict[int, float]
    face_ssim: float
    with_head: bool = True  # faces on: the head runs every frame


    @property
    def ok(self) -> bool:
        return self.face_ssim >= FACE_SSIM

    def frame_s(self) -> float:
        """The per-frame model cost the scheduler pays first: one head and the background
        at the smallest measured size (the size the background falls back to)."""
        return self.head_s * self.with_head + self.bg_s[min(self.bg_s)]

    def as_dict(self) -> dict:
        return {"candidate": self.label, "precision": self.precision,
                "head_ms": round(self.head_s * 1e3, 1),
                "bg_ms": {str(k): round(v * 1e3, 1) for k, v in self.bg_s.items()},
                "face_ssim": round(self.face_ssim, 4), "meets_face_bound": self.ok}


@dataclass
class Choice:
    label: str
    measured: list[Measured]
    reason: str
    history: list[dict] = field(default_factory=list)

    def describe(self) -> str:
        times = ", ".join(
            f"{m.label} ({m.precision}) head {m.head_s * 1e3:.0f} ms + bg "
            f"{m.bg_s[min(m.bg_s)] * 1e3:.0f} ms, face SSIM {m.face_ssim:.3f}"
            + ("" if m.ok else " (below the face bound)") for m in self.measured)
        return f"precision auto: {self.label} ({self.reason}); measured {times}"

    def stats(self) -> dict:
        return {"chosen": self.label, "reason": self.reason,
                "measured": [m.as_dict() for m in self.measured],
                "changes": list(self.history)}


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two uint8 BGR images on their grey copies (Gaussian 11x11, sigma 1.5)."""
    x = cv2.cvtColor(a, cv2.COLOR_BGR2GRAY).astype(np.float64)
    y = cv2.cvtColor(b, cv2.COLOR_BGR2GRAY).astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(im: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(im, (11, 11), 1.5)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())


def probe_face(flows: StyleFlows) -> np.ndarray:
    """A real face as the head model sees it: the sample photo's largest face, aligned to
    the 288x288 crop by the project's detector; the photo's centre when no detector is
    installed (the face fills it)."""
    from streamer.samples import SAMPLE

    img = cv2.imread(str(SAMPLE))
    files = flows.face_files(True) if _has_face_files(flows) else None
    if files is not None:
        from streamer.toon.faces.detect import FaceDetector

        found = FaceDetector(files.detector, max_side=1280).detect(img).select(max_faces=1)
        if len(found.landmarks):
            m, _ = similarity_transform(found.landmarks[0])
            return warp_crop(img, m)
    h, w = img.shape[:2]
    side = min(h, w)
    y, x = (h - side) // 2, (w - side) // 2
    return cv2.resize(img[y:y + side, x:x + side], (CROP_SIZE, CROP_SIZE),
                      interpolation=cv2.INTER_AREA)


def _has_face_files(flows: StyleFlows) -> bool:
    from streamer.models import ModelNotInstalled

    try:
        return flows.face_files(True) is not None
    except ModelNotInstalled:
        return False


def candidates(flows: StyleFlows, style: str, why_not_int8: str | None) -> tuple[
        list[tuple[str, StyleFlows]], list[str]]:
    """(label, flows) for every candidate this machine and store have, and a note for each
    one left out (and why)."""
    out = [("fast", flows_variant(flows, precision="fast", net="official"))]
    notes = []
    if why_not_int8:
        notes.append(f"int8 left out: {why_not_int8}")
    elif not flows.store.int8_built(style, "bg"):
        notes.append(f"int8 left out: not built for {style} (build it once with "
                     f"`python -m streamer.models path {style} --precision int8`, "
                     f"and the head with --part h)")
    else:
        out.append(("int8", flows_variant(flows, precision="int8", net="official")))
    mobile = flows_variant(flows, precision="fast", net="mobile")
    if style in mobile.mobile_styles():
        out.append(("mobile", mobile))
    else:
        notes.append(f"mobile left out: no light network holds {style}")
    return out, notes


def int8_unavailable(device: str) -> str | None:
    """Why int8 cannot run with `device` here, or None."""
    import importlib.util

    from streamer.toon.engine import auto_device
    real = auto_device() if device == "auto" else device
    if real != "openvino":
        return f"int8 needs OpenVINO, the model runs on {real}"
    if importlib.util.find_spec("nncf") is None:
        return "int8 needs NNCF: pip install nncf"
    return None


def time_engine(engine, shape: tuple[int, ...], repeat: int = 3) -> float:
    """Median seconds of `engine` on a batch of `shape`, after one warm-up run (which also
    compiles the shape)."""
    x = np.full(shape, 255, np.uint8)
    out = np.empty_like(x)
    engine.run(x, out)
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        engine.run(x, out)
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def measure(pool: list[tuple[str, StyleFlows]], style: str, shapes: dict[int, tuple[int, ...]],
            probe: np.ndarray, reference: np.ndarray, rounds: int = 2, faces: bool = True
            ) -> list[Measured]:
    """Every candidate's head and background times, taken in turn over `rounds` rounds (so a
    load that comes and goes weighs on all of them alike), and its face SSIM against
    `reference` (the exact head's output on `probe`)."""
    head: dict[str, list[float]] = {k: [] for k, _ in pool}
    bg: dict[str, dict[int, list[float]]] = {k: {s: [] for s in shapes} for k, _ in pool}
    for _ in range(rounds):
        for label, f in pool:
            head[label].append(time_engine(f.head_engine(style), (1, CROP_SIZE, CROP_SIZE, 3)))
            for side, shape in shapes.items():
                bg[label][side].append(time_engine(f.engine(style), shape))
    result = []
    for label, f in pool:
        face = np.empty_like(probe)
        f.head_engine(style).run(probe[None], face[None])
        result.append(Measured(label, f.head_engine(style).precision,
                               statistics.median(head[label]),
                               {s: statistics.median(v) for s, v in bg[label].items()},
                               ssim(face, reference), faces))
    return result


def pick(measured: list[Measured], current: str | None = None) -> tuple[str, str]:
    """(label, reason): the fastest candidate that meets the face bound; with `current`
    (a re-measure) another one only when it takes less than SWITCH_GAIN of its time."""
    fine = [m for m in measured if m.ok]
    best = min(fine, key=Measured.frame_s)
    if current is not None:
        now = next((m for m in fine if m.label == current), None)
        if now is not None and best.frame_s() >= SWITCH_GAIN * now.frame_s():
            return current, "still the fastest, or within the switch margin"
    others = [m.label for m in measured if m.label != best.label]
    why = "the fastest" + (f" of {', '.join([best.label, *others])}" if others else
                           ", the only candidate")
    below = [m.label for m in measured if not m.ok]
    if below:
        why += f"; {', '.join(below)} below the face bound"
    return best.label, why


class PrecisionChooser:
    """The candidates' flows and the one in use. `flow()` is what the live factory builds
    styles with; `remeasure()` runs on a thread of its own (LiveToon starts it), never on
    the toon thread."""

    def __init__(self, flows: StyleFlows, style: str, shapes: Callable[[], dict[int, tuple]],
                 why_not_int8: str | None, log: Callable[[str], None], *, faces: bool = True):
        self._shapes, self._log, self._faces = shapes, log, faces
        self.pool, self.notes = candidates(flows, style, why_not_int8)
        exact = flows_variant(flows, precision="exact", net="official")
        self.probe = probe_face(flows)
        self.reference = np.empty_like(self.probe)
        exact.head_engine(style).run(self.probe[None], self.reference[None])
        measured = measure(self.pool, style, shapes(), self.probe, self.reference,
                           faces=faces)
        label, reason = pick(measured)
        self.choice = Choice(label, measured, reason)
        self._keep_only(label)
        for n in self.notes:
            log(f"note: {n}")
        log(self.choice.describe())

    @property
    def current(self) -> StyleFlows:
        return dict(self.pool)[self.choice.label]

    @property
    def chosen(self) -> Measured:
        return next(m for m in self.choice.measured if m.label == self.choice.label)

    def flows_for(self, style: str) -> StyleFlows:
        """The chosen candidate's flows for `style`, or `fast`'s where the choice does not
        hold that style (a style switched to whose int8 model is not built, or that no
        light network holds): a switch never starts a minute-long int8 build."""
        cur, label = self.current, self.choice.label
        if label == "int8" and not cur.store.int8_built(style, "bg"):
            return dict(self.pool)["fast"]
        if label == "mobile" and style not in cur.mobile_styles():
            return dict(self.pool)["fast"]
        return cur

    def flow(self, style: str, **kw):
        """The style's flow on the current choice (the live factory calls this, so a
        precision move reaches the next build)."""
        return self.flows_for(style).flow(style, **kw)

    def describe(self, style: str) -> str:
        return f"{self.flows_for(style).describe(style)}, auto: {self.choice.label}"

    def _keep_only(self, label: str) -> None:
        """Free the other candidates' engines (a re-measure starts them again)."""
        self.pool = [(k, f if k == label else flows_variant(f)) for k, f in self.pool]

    def remeasure(self, style: str) -> bool:
        """Measure again (the load changed); True when the choice moved. Every candidate
        is measured on engines of its own: the toon thread keeps running the current ones
        meanwhile (an engine's infer request serves one thread at a time)."""
        if len(self.pool) < 2:
            return False
        fresh = [(k, flows_variant(f)) for k, f in self.pool]
        measured = measure(fresh, style, self._shapes(), self.probe, self.reference,
                           rounds=1, faces=self._faces)
        label, reason = pick(measured, current=self.choice.label)
        old = self.choice.label
        self.choice.measured, self.choice.reason = measured, reason
        if label != old:
            self.choice.history.append({"from": old, "to": label, "at": time.time(),
                                        "reason": reason})
            # The new choice's measured engines are warm and used by no one yet.
            self.pool = [(k, dict(fresh)[k] if k == label else flows_variant(f))
                         for k, f in self.pool]
            self.choice.label = label
        self._log(self.choice.describe())
        return label != old


def engine_shapes(frame_wh: tuple[int, int], sides: tuple[int, ...]
                  ) -> dict[int, tuple[int, int, int, int]]:
    from .toon import working_size

    shapes = {}
    for side in sides:
        w, h = working_size(*frame_wh, side)
        shapes[side] = (1, h, w, 3)
    return shapes

