"""Temporal stability of the face-aware flow, and what the face path costs.

    python bench/stability.py [--models DIR] [--style anime] [--frames N] [--sheet PNG]

On real clips (media/tears_640x360.mp4, media/event_640x480.mp4, full size), three outputs
are made from the same background-model frames:

- bg-only: the background model alone (FullFrameFlow);
- per-frame: the official face algorithm, stateless (YuNet on the full frame every frame,
  no tracking, smoothing or fades);
- tracked: FaceAwareFlow's defaults (detection every k frames on a copy of at most
  --detect-side px, optical-flow carry, One-Euro smoothing, fades).

Printed, per clip and over both:

1. Jitter of the aligned transform, for every face followed from one frame to the next
   within a shot (pairs across a scene cut are left out), in crop sizes (relative to the
   face): the headline is the change of the crop's centre minus the content's own motion
   (the median of the input's DIS flow over the face), which is the plain change on a steady
   shot and does not count a face that really moves as jitter. Also printed: the plain
   change on steady faces only (content motion under 0.5 px/frame), the plain change over
   all pairs, and the change of log-scale. Ratio tracked / per-frame: the goal is <= 0.5.
2. Warping error along the input's optical flow: DIS flow from frame t to t-1 on the input,
   output t-1 warped to t, mean |difference| over pixels whose flow is forward-backward
   consistent, divided by the same for the input. On the whole frame and on the face region
   (pixels under either face path's pasted mask). Goal: tracked no worse than bg-only.
   Pairs across a scene cut are left out.
3. Speed: the face path's own cost (detection, tracking, smoothing, crops, paste-back:
   everything except the model runs) per frame and per face, next to the head model's time
   per face. Goal: overhead per face <= 10% of the head model's time per face.

--sheet writes a contact sheet (input | bg-only | face-aware) for a few frames.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamer.toon.engine import EngineSettings, create_engine  # noqa: E402
from streamer.toon.faces.flow import FaceAwareFlow  # noqa: E402
from streamer.toon.faces.track import (TrackerSettings, crop_size_px,  # noqa: E402
                                       transform_params)
from streamer.toon.flow import FullFrameFlow  # noqa: E402

CLIPS = ("tears_640x360.mp4", "event_640x480.mp4")


def _decode(path: Path, limit: int | None):
    import av

    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames, times = [], []
        for f in c.decode(stream):
            if limit is not None and len(frames) >= limit:
                break
            frames.append(f.to_ndarray(format="bgr24"))
            times.append(float(f.pts * f.time_base) if f.pts is not None else len(times) / 30.0)
    return frames, times


def _thumb(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.resize(frame, (32, 18), interpolation=cv2.INTER_AREA),
                        cv2.COLOR_BGR2GRAY).astype(np.float32)


STEADY_PX = 0.5  # content motion (px/frame) under which a face counts as steady


@dataclass
class Jitter:
    """Frame-to-frame change of each followed face's crop transform, within a shot."""

    comp: list = field(default_factory=list)      # |centre step - content motion| / crop size
    step: list = field(default_factory=list)      # |centre step| / crop size
    scale: list = field(default_factory=list)     # |log-scale step|
    steady: list = field(default_factory=list)    # |centre step| / crop, steady faces only
    steady_s: list = field(default_factory=list)  # |log-scale step|, steady faces only

    def add(self, history: dict, faces, flow: np.ndarray | None) -> None:
        """history: track id -> (params, landmarks) on the previous frame; `flow`: the
        input's DIS flow from the previous frame to this one (None at a cut / the start)."""
        if flow is None:
            history.clear()
        cur = {}
        for f in faces:
            p = transform_params(f.m_inv)
            cur[f.track_id] = (p, f.landmarks)
            if f.track_id not in history:
                continue
            a, lm = history[f.track_id]
            size = crop_size_px(p)
            # The content's own motion: median flow over the face's landmark box.
            x0, y0 = np.maximum(np.floor(lm.min(axis=0)).astype(int), 0)
            x1, y1 = np.ceil(lm.max(axis=0)).astype(int) + 1
            motion = np.median(flow[y0:y1, x0:x1].reshape(-1, 2), axis=0)
            step = p[:2] - a[:2]
            ds = abs(math.log(size / crop_size_px(a)))
            self.comp.append(float(np.hypot(*(step - motion))) / size)
            self.step.append(float(np.hypot(*step)) / size)
            self.scale.append(ds)
            if np.hypot(*motion) < STEADY_PX:
                self.steady.append(float(np.hypot(*step)) / size)
                self.steady_s.append(ds)
        history.clear()
        history.update(cur)

    KEYS = ("comp", "steady", "steady_s", "step", "scale")

    def means(self) -> dict:
        out = {k: float(np.mean(getattr(self, k))) if getattr(self, k) else float("nan")
               for k in self.KEYS}
        out["pairs"], out["steady_pairs"] = len(self.step), len(self.steady)
        return out

    def extend(self, other: "Jitter") -> None:
        for k in self.KEYS:
            getattr(self, k).extend(getattr(other, k))


class WarpError:
    """Sums of |out_t - warp(out_t-1)| over consistent pixels, whole frame and face region."""

    def __init__(self, names):
        self.sum = {n: [0.0, 0.0] for n in names}  # name -> [whole, face]
        self.count = [0, 0]

    def add(self, prev: dict, cur: dict, back: np.ndarray, fwd: np.ndarray, face_mask) -> None:
        """`back`: the input's flow t -> t-1, `fwd`: t-1 -> t."""
        h, w = back.shape[:2]
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        mx, my = gx + back[..., 0], gy + back[..., 1]
        # Forward-backward consistency: occluded and badly matched pixels are left out.
        fwd_at = cv2.remap(fwd, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        err = np.hypot(back[..., 0] + fwd_at[..., 0], back[..., 1] + fwd_at[..., 1])
        valid = (err < 1.0) & (mx >= 0) & (my >= 0) & (mx <= w - 1) & (my <= h - 1)
        face = valid & face_mask
        self.count[0] += int(valid.sum())
        self.count[1] += int(face.sum())
        for name in self.sum:
            warped = cv2.remap(prev[name], mx, my, cv2.INTER_LINEAR)
            d = np.abs(cur[name].astype(np.float32) - warped).mean(axis=2)
            self.sum[name][0] += float(d[valid].sum())
            self.sum[name][1] += float(d[face].sum())

    def ratios(self) -> dict:
        out = {}
        for name, (whole, face) in self.sum.items():
            iw, iff = self.sum["input"]
            out[name] = (whole / iw if iw else float("nan"), face / iff if iff else float("nan"))
        return out

    def extend(self, other: "WarpError") -> None:
        for n in self.sum:
            self.sum[n][0] += other.sum[n][0]
            self.sum[n][1] += other.sum[n][1]
        self.count[0] += other.count[0]
        self.count[1] += other.count[1]


def _face_mask(faces, mask288: np.ndarray, hw) -> np.ndarray:
    h, w = hw
    acc = np.zeros((h, w), np.float32)
    for f in faces:
        m = cv2.warpAffine(mask288, f.m_inv, (w, h), flags=cv2.INTER_LINEAR)
        np.maximum(acc, m * f.alpha, out=acc)
    return acc > 0.1


def _label(img: np.ndarray, text: str) -> np.ndarray:
    img = img.copy()
    cv2.putText(img, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def _write_sheet(rows, path: Path, max_bytes: int = 1_000_000) -> None:
    tile_w = 320
    while True:
        lines = []
        for cells in rows:
            h, w = cells[0][1].shape[:2]
            th = round(h * tile_w / w)
            lines.append(np.hstack([_label(cv2.resize(img, (tile_w, th), interpolation=cv2.INTER_AREA), t)
                                    for t, img in cells]))
        sheet = np.vstack(lines)
        ok, buf = cv2.imencode(".png", sheet, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        if len(buf) <= max_bytes or tile_w <= 160:
            break
        tile_w = int(tile_w * 0.9)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.tobytes())
    print(f"contact sheet: {path} ({sheet.shape[1]}x{sheet.shape[0]}, {len(buf) // 1024} KiB)")


def run_clip(path: Path, limit, engine, yunet, alpha, args, sheet_rows):
    frames, times = _decode(path, limit)
    ours_settings = TrackerSettings(detect_every=args.k, min_cutoff=args.min_cutoff,
                                    beta=args.beta, fade_s=args.fade)
    flows = {
        "per-frame": FaceAwareFlow(engine, engine, yunet, alpha, detect_side=None,
                                   tracker=TrackerSettings.official()),
        "tracked": FaceAwareFlow(engine, engine, yunet, alpha, detect_side=args.detect_side,
                                 tracker=ours_settings),
    }
    bg = FullFrameFlow(engine, ring=2)
    names = ["input", "bg-only", *flows]
    jit = {n: Jitter() for n in flows}
    hist = {n: {} for n in flows}
    warp = WarpError(names)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    prev = None
    prev_gray = None
    prev_thumb = None
    bg_s = 0.0
    keep = []
    for i, (frame, t) in enumerate(zip(frames, times)):
        t0 = time.perf_counter()
        base = bg([frame])[0]
        bg_s += time.perf_counter() - t0
        cur = {"input": frame, "bg-only": base.copy()}
        faces = {}
        for name, fl in flows.items():
            out = fl.paste_faces([frame], [base.copy()], [t])[0]
            cur[name] = out
            faces[name] = fl.last_faces[0]
        thumb = _thumb(frame)
        cut = prev_thumb is not None and float(np.abs(thumb - prev_thumb).mean()) > 30.0
        prev_thumb = thumb
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        fwd = back = None
        if prev is not None and not cut:
            fwd = dis.calc(prev_gray, gray, None)   # t-1 -> t
            back = dis.calc(gray, prev_gray, None)  # t -> t-1
        for name in flows:
            jit[name].add(hist[name], faces[name], fwd)
        if fwd is not None:
            fm = _face_mask([f for n in flows for f in faces[n]], flows["tracked"].mask,
                            frame.shape[:2])
            warp.add(prev, cur, back, fwd, fm)
        prev, prev_gray = cur, gray
        if faces["tracked"]:
            keep.append((i, {k: cur[k] for k in ("input", "bg-only", "tracked")}))
    # Two frames with faces per clip for the sheet, spread over the clip.
    if keep:
        for j in np.linspace(0, len(keep) - 1, min(2, len(keep))).round().astype(int):
            i, imgs = keep[j]
            sheet_rows.append([(f"{path.stem} #{i} input", imgs["input"]), ("bg-only", imgs["bg-only"]),
                               ("face-aware (tracked)", imgs["tracked"])])
    return len(frames), bg_s, jit, warp, {n: fl.timings for n, fl in flows.items()}, \
        {n: fl.tracker.detections for n, fl in flows.items()}


def _print_jitter(title: str, jit: dict) -> None:
    a, b = jit["per-frame"].means(), jit["tracked"].means()
    print(f"  jitter of the crop transform, {title}: {a['pairs']} / {b['pairs']} face pairs "
          f"(per-frame / tracked), of which steady {a['steady_pairs']} / {b['steady_pairs']}")
    for key, what in (("comp", "centre step - content motion"), ("steady", "centre step, steady faces"),
                      ("steady_s", "log-scale step, steady"), ("step", "centre step, all"),
                      ("scale", "log-scale step, all")):
        ratio = b[key] / a[key] if a[key] else float("nan")
        unit = "" if "scale" in what else " (crop sizes)"
        print(f"    {what + unit:44s} per-frame {a[key]:.5f}  tracked {b[key]:.5f}  ratio {ratio:.3f}")


def _print_warp(title: str, warp: WarpError) -> None:
    r = warp.ratios()
    print(f"  warping error / input's, {title} (whole frame | face region, "
          f"{warp.count[1]} face px):")
    for name in ("bg-only", "per-frame", "tracked"):
        print(f"    {name:10s} {r[name][0]:.3f} | {r[name][1]:.3f}")
    if r["bg-only"][1] == r["bg-only"][1]:
        print(f"    tracked / bg-only: whole {r['tracked'][0] / r['bg-only'][0]:.3f}, "
              f"face {r['tracked'][1] / r['bg-only'][1]:.3f};  per-frame / bg-only: face "
              f"{r['per-frame'][1] / r['bg-only'][1]:.3f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=os.environ.get("TOONSTREAM_MODELS"))
    ap.add_argument("--style", default="anime")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="exact")
    ap.add_argument("--frames", type=int, default=None, help="at most this many frames per clip")
    ap.add_argument("--clips", default=",".join(CLIPS))
    ap.add_argument("--k", type=int, default=TrackerSettings.detect_every, help="detect every k frames")
    ap.add_argument("--detect-side", type=int, default=640)
    ap.add_argument("--min-cutoff", type=float, default=TrackerSettings.min_cutoff)
    ap.add_argument("--beta", type=float, default=TrackerSettings.beta)
    ap.add_argument("--fade", type=float, default=TrackerSettings.fade_s)
    ap.add_argument("--sheet", type=Path, default=None, help="write a contact sheet PNG here")
    args = ap.parse_args()
    if not args.models:
        ap.error("give --models DIR or set TOONSTREAM_MODELS")
    models = Path(args.models)
    media = models.parent / "media"

    from streamer.models.store import Store

    store = Store(models)
    engine = create_engine(lambda p: store.onnx_model_path(args.style, "bg", p),
                           EngineSettings(device=args.device, precision=args.precision))
    yunet, alpha = store.file_path("yunet.onnx"), store.file_path("alpha.jpg")
    print(f"engine: {engine.describe()}; style {args.style} (bg model as head model); "
          f"tracked: k={args.k}, detect side {args.detect_side}, One-Euro min_cutoff "
          f"{args.min_cutoff} Hz beta {args.beta}, fade {args.fade} s")
    all_jit = {"per-frame": Jitter(), "tracked": Jitter()}
    all_warp = WarpError(["input", "bg-only", "per-frame", "tracked"])
    sheet_rows: list = []
    speed = {}
    for clip in args.clips.split(","):
        n, bg_s, jit, warp, timings, dets = run_clip(media / clip, args.frames, engine, yunet, alpha,
                                                     args, sheet_rows)
        print(f"{clip}: {n} frames, bg model {1e3 * bg_s / n:.0f} ms/frame; detector runs "
              f"per-frame {dets['per-frame']}, tracked {dets['tracked']}")
        _print_jitter(clip, jit)
        _print_warp(clip, warp)
        for name in jit:
            all_jit[name].extend(jit[name])
        all_warp.extend(warp)
        for name, t in timings.items():
            print(f"  speed {name}: {t.summary()}")
            s = speed.setdefault(name, [0, 0, 0.0, 0.0])
            s[0] += t.frames
            s[1] += t.faces
            s[2] += t.face_s
            s[3] += t.head_s
    print("both clips:")
    _print_jitter("both clips", all_jit)
    _print_warp("both clips", all_warp)
    for name, (frames, faces, face_s, head_s) in speed.items():
        head = head_s / max(1, faces)
        over_face = face_s / max(1, faces)
        print(f"  speed {name}: face path {1e3 * face_s / frames:.2f} ms/frame = "
              f"{1e3 * over_face:.2f} ms per face vs head model {1e3 * head:.1f} ms/face: "
              f"overhead {100 * over_face / head:.1f}% of the head model (goal <= 10%)")
    a, b = all_jit["per-frame"].means(), all_jit["tracked"].means()
    r = all_warp.ratios()
    print(f"SUMMARY jitter ratio tracked/per-frame: centre {b['comp'] / a['comp']:.3f} "
          f"(motion-compensated), {b['steady'] / a['steady']:.3f} (steady faces), scale "
          f"{b['scale'] / a['scale']:.3f} (goal <= 0.5); face-region warping error "
          f"tracked/bg-only {r['tracked'][1] / r['bg-only'][1]:.3f}, per-frame/bg-only "
          f"{r['per-frame'][1] / r['bg-only'][1]:.3f} (goal tracked <= 1)")
    if args.sheet:
        _write_sheet(sheet_rows, args.sheet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
