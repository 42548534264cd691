"""Face-first live comparison (`python -m bench.live --compare`): a shared clip with a face
played live as a 1280x720 camera, at the clip's own rate and at 30 fps, through three
live settings side by side:

  A. faces off, working size 144, bf16            (the old live-cpu preset)
  B. faces on, working size 144, bf16, no scheduler
  C. faces on, precision auto, face-first scheduler, work auto (the live-cpu preset now;
     the chosen precision and every candidate's times are printed)

For each: output fps / camera fps, capture-to-output latency p95 against its goal (1.5 frame
intervals plus the per-frame model time, the median toon call in the same run), memory at
start and end; face quality in the face box (SSIM and mean |diff| of the live output against
the offline exact faces-on output of the same frames, which is the official algorithm:
fp32, per-frame detection, official 720 working size), the same numbers for the background
(outside the face box; no goal); and, where dlib is installed (`dlib-bin`,
`face-recognition-models`, dev extras), the identity distance between the input face and
the output face with dlib's 128-d descriptor, for the live and the official output.
"""
from __future__ import annotations

import multiprocessing
import statistics
from contextlib import contextmanager
from dataclasses import replace
from typing import Iterator, Sequence

import cv2
import numpy as np

from streamer.config import LiveSettings
from streamer.models.catalog import load_catalog
from streamer.frame import Frame
from streamer.live.app import live_toon, output_stream
from streamer.live.session import LiveSession
from streamer.sinks.null import NullSink
from streamer.sources.synthetic import SyntheticSource
from streamer.toon.faces.track import TrackerSettings
from streamer.toon.styles import StyleFlows

from bench.memory import run_with_memory

STYLES = load_catalog().styles  # the official seven, from the catalog

VARIANTS = (
    ("A faces off 144 bf16", dict(faces="off", work="144", precision="fast", schedule="off")),
    ("B faces on 144 bf16", dict(faces="on", work="144", precision="fast", schedule="off")),
    ("C faces on auto-prec face-first auto", dict(faces="on", work="auto",
                                                  precision="auto", schedule="face-first")),
)


def load_clip(path: str) -> list[np.ndarray]:
    import av
    with av.open(path) as c:
        return [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]


class ClipCamera(SyntheticSource):
    """The clip's frames, looped, resized to the camera size, paced at `fps` like a camera."""

    def __init__(self, clip: list[np.ndarray], width: int, height: int, fps: float,
                 seconds: float):
        super().__init__(width, height, fps, seconds=seconds)
        self.clip = clip

    def render(self, i: int) -> np.ndarray:
        return cv2.resize(self.clip[i % len(self.clip)], (self.width, self.height),
                          interpolation=cv2.INTER_LINEAR)

    def describe(self) -> str:
        return f"clip camera {self.width}x{self.height} @ {self.fps:g} fps"


class CaptureSink(NullSink):
    """Keeps a copy of the first output at or after every `every`-th frame index (at most
    `limit`): spread over the run whatever frames the live path dropped."""

    def __init__(self, every: int, limit: int):
        super().__init__()
        self.every, self.limit = every, limit
        self.kept: dict[int, np.ndarray] = {}
        self._due = every  # skip the first frames: faces fade in over 0.2 s

    def write(self, frame: Frame) -> None:
        super().write(frame)
        if frame.index >= self._due and len(self.kept) < self.limit:
            self.kept[frame.index] = frame.image.copy()
            self._due = frame.index + self.every


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two grey images (Gaussian window 11, sigma 1.5, as Wang et al.)."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    blur = lambda x: cv2.GaussianBlur(x, (11, 11), 1.5)  # noqa: E731
    ma, mb = blur(a), blur(b)
    va, vb, cov = blur(a * a) - ma * ma, blur(b * b) - mb * mb, blur(a * b) - ma * mb
    s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))
    return float(s.mean())


# The face inside the aligned 288x288 crop: the official reference points put the eyes at
# y 137, the mouth corners at y 216 and x 112..180; this box holds brows to chin, ear to ear.
FACE_IN_CROP = (80, 90, 208, 250)


def face_box(m_inv: np.ndarray, w: int, h: int) -> tuple[int, int, int, int]:
    """The image box of a face (FACE_IN_CROP of its aligned crop, mapped to the image)."""
    a, b, c, d = FACE_IN_CROP
    corners = np.array([[a, b, 1], [c, b, 1], [a, d, 1], [c, d, 1]], np.float64) @ m_inv.T
    x0, y0 = np.clip(corners.min(0), 0, [w, h]).astype(int)
    x1, y1 = np.clip(corners.max(0), 0, [w, h]).astype(int)
    return x0, y0, x1, y1


class Identity:
    """dlib's 128-d face descriptor (the face_recognition models); None when missing."""

    def __init__(self) -> None:
        import importlib.util
        from pathlib import Path

        import dlib
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None:
            raise ImportError("face-recognition-models")
        models = Path(spec.submodule_search_locations[0]) / "models"
        self.detect = dlib.get_frontal_face_detector()
        self.shape = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self.net = dlib.face_recognition_model_v1(
            str(models / "dlib_face_recognition_resnet_model_v1.dat"))
        self.dlib = dlib

    def face_rect(self, bgr: np.ndarray, box: tuple[int, int, int, int]):
        """dlib's own face rectangle on the INPUT (largest face inside `box`), else None."""
        rgb = np.ascontiguousarray(bgr[..., ::-1])
        x0, y0, x1, y1 = box
        found = [r for r in self.detect(rgb, 0)
                 if x0 <= r.center().x <= x1 and y0 <= r.center().y <= y1]
        return max(found, key=lambda r: r.area()) if found else None

    def descriptor(self, bgr: np.ndarray, rect) -> np.ndarray:
        # The same rectangle (found on the input) for input and outputs: a stylised face
        # that dlib's HOG detector misses still gets a descriptor at the same place.
        rgb = np.ascontiguousarray(bgr[..., ::-1])
        return np.array(self.net.compute_face_descriptor(rgb, self.shape(rgb, rect)))


def run_variant(label: str, base: LiveSettings, clip: list[np.ndarray], cam_wh, fps: float,
                seconds: float, log) -> dict:
    s = replace(base, **dict(VARIANTS)[label])
    flows = StyleFlows.from_settings(s, log=lambda line: None)
    every = max(1, int(fps * seconds / 16))
    src = ClipCamera(clip, *cam_wh, fps, seconds)
    out = output_stream(s, src)
    lines: list[str] = []
    toon = live_toon(s, flows, src, out, lines.append)
    sink = CaptureSink(every, 16)
    session = LiveSession(src, [sink], toon, styles=STYLES, status_every=0,
                          log=lambda line: None)
    calls_before = toon.calls
    result, rss_settled, rss_end = run_with_memory(session, seconds)
    model_ms = result["model_ms_median"] or 0.0
    interval = 1000 / fps
    sched = toon.schedule.stats() if toon.schedule is not None else None
    # The toon thread's busy share, as bench/live.py reports it.
    calls = toon.calls - calls_before
    busy = sum(list(toon.model_s)[-calls:]) / result["seconds"] if calls else 0.0
    return {"label": label, "fps": fps, "toon_busy": round(busy, 3), "fps_ratio": round(result["fps_out"] / fps, 3),
            "fps_out": result["fps_out"], "p95_ms": result["latency_ms"]["p95"],
            "goal_p95_ms": round(model_ms + 1.5 * interval, 1), "model_ms": model_ms,
            "rss_mb": [round(rss_settled) if rss_settled is not None else -1, round(rss_end)],
            "engine": (toon.precision or flows).describe(s.style),
            "precision_auto": toon.precision.choice.stats() if toon.precision else None,
            "schedule": sched, "bg_reused": toon.bg_reused, "notes": lines,
            "kept": sink.kept}


def quality(rows: list[dict], clip: list[np.ndarray], base: LiveSettings, cam_wh) -> None:
    """Adds face/background SSIM, mean |diff| and identity to each row, against the
    official (offline exact, per-frame detection) output of the same frames."""
    w, h = cam_wh
    ref_flows = StyleFlows.from_settings(replace(base, precision="exact", faces="on"))
    ref_flows.tracker = TrackerSettings.official()
    cache: dict[int, tuple[np.ndarray, np.ndarray, list]] = {}
    try:
        ident = Identity()
    except ImportError:
        ident = None
    for row in rows:
        face_s, face_d, bg_s, bg_d, id_live, id_off = [], [], [], [], [], []
        for index, got in row.pop("kept").items():
            k = index % len(clip)
            if k not in cache:
                inp = cv2.resize(clip[k], (w, h), interpolation=cv2.INTER_LINEAR)
                flow = ref_flows.flow(base.style, faces=True)  # fresh: per-frame, official
                ref = flow([inp])[0].copy()
                cache[k] = (inp, ref, [f.m_inv for f in flow.last_faces[0]])
            inp, ref, faces = cache[k]
            if not faces:
                continue
            x0, y0, x1, y1 = face_box(faces[0], w, h)
            mask = np.zeros((h, w), bool)
            mask[y0:y1, x0:x1] = True
            g_got, g_ref = cv2.cvtColor(got, cv2.COLOR_BGR2GRAY), cv2.cvtColor(ref, cv2.COLOR_BGR2GRAY)
            face_s.append(ssim(g_got[y0:y1, x0:x1], g_ref[y0:y1, x0:x1]))
            face_d.append(float(np.abs(got[mask].astype(int) - ref[mask]).mean()))
            bg_s.append(ssim(np.where(mask, 0, g_got), np.where(mask, 0, g_ref)))
            bg_d.append(float(np.abs(got[~mask].astype(int) - ref[~mask]).mean()))
            rect = ident.face_rect(inp, (x0, y0, x1, y1)) if ident is not None else None
            if rect is not None:
                d_in = ident.descriptor(inp, rect)
                id_live.append(float(np.linalg.norm(ident.descriptor(got, rect) - d_in)))
                id_off.append(float(np.linalg.norm(ident.descriptor(ref, rect) - d_in)))
        med = lambda v: round(statistics.median(v), 3) if v else None  # noqa: E731
        row.update({"samples": len(face_s), "face_ssim": med(face_s), "face_diff": med(face_d),
                    "bg_ssim": med(bg_s), "bg_diff": med(bg_d),
                    "id_live": med(id_live), "id_official": med(id_off)})


@contextmanager
def busy_load(n: int) -> Iterator[None]:
    """`n` processes spinning on the CPU while the block runs: another program taking `n`
    cores, the same every run (the shared machines' own load is not)."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_spin, daemon=True) for _ in range(n)]
    for p in procs:
        p.start()
    try:
        yield
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.join()


def _spin() -> None:
    while True:
        pass


def compare(base: LiveSettings, clip_path: str, cam_wh: tuple[int, int], seconds: float,
            rates: list[float], variants: Sequence[str] = ("A", "B", "C"), load: int = 0,
            log=print) -> list[dict]:
    """Runs the chosen VARIANTS (by letter) at each rate, `load` busy processes beside them
    (not during the offline reference), then measures quality; returns one row per run."""
    unknown = set(variants) - {label[0] for label, _ in VARIANTS}
    if unknown:
        raise SystemExit(f"--variants: unknown {', '.join(sorted(unknown))}; pick from A, B, C")
    clip = load_clip(clip_path)
    rows = []
    with busy_load(load):
        for fps in rates:
            for label, _ in VARIANTS:
                if label[0] not in variants:
                    continue
                log(f"  running {label} at {fps:g} fps for {seconds:g} s ...")
                rows.append(run_variant(label, base, clip, cam_wh, fps, seconds, log))
    quality(rows, clip, base, cam_wh)
    hdr = (f"{'variant':<33} {'cam fps':>7} {'out/cam':>7} {'p95 ms':>7} {'goal':>6} "
           f"{'face SSIM':>9} {'face |d|':>8} {'bg SSIM':>7} {'bg |d|':>6} "
           f"{'id live':>7} {'id off':>6} {'RSS 5s/end':>10}")
    log(hdr)
    for r in rows:
        f = lambda v, fmt: "-" if v is None else format(v, fmt)  # noqa: E731
        log(f"{r['label']:<33} {r['fps']:7.2f} {r['fps_ratio']:7.3f} {r['p95_ms']:7.1f} "
            f"{r['goal_p95_ms']:6.1f} {f(r['face_ssim'], '9.3f')} {f(r['face_diff'], '8.2f')} "
            f"{f(r['bg_ssim'], '7.3f')} {f(r['bg_diff'], '6.2f')} {f(r['id_live'], '7.3f')} "
            f"{f(r['id_official'], '6.3f')} {r['rss_mb'][0]:>4}/{r['rss_mb'][1]:<4}")
        if r["schedule"]:
            sc = r["schedule"]
            log(f"{'':<33} scheduler: work {sc['work_short']}p, background every "
                f"{sc['bg_every']} ({sc['bg_runs']} runs, {r['bg_reused']} reused), "
                f"head {sc['head_ms']} ms/face, bg {sc['bg_ms']} ms, size changes "
                f"{[(c['from'], c['to']) for c in sc['size_changes']]}; {r['engine']}; "
                f"toon thread {100 * r['toon_busy']:.0f}% busy")
        if r.get("precision_auto"):
            pa = r["precision_auto"]
            log(f"{'':<33} precision auto: {pa['chosen']} ({pa['reason']}); " + "; ".join(
                f"{m['candidate']} ({m['precision']}) head {m['head_ms']} ms, bg "
                f"{m['bg_ms']} ms, face SSIM {m['face_ssim']}" for m in pa["measured"])
                + (f"; moves {[(c['from'], c['to']) for c in pa['changes']]}" if pa["changes"] else ""))
    log("goals (issue 13): out/cam >= 0.95; p95 <= goal (1.5 intervals + the median toon "
        "call in the run); face SSIM >= 0.9 and face |d| <= 6 against the official output; "
        "identity: live within 0.05 of official")
    return rows
