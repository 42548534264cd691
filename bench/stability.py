"""Temporal stability of the face-aware flow, and what the face path costs.

    python -m bench.stability [--models DIR] [--style anime] [--frames N] [--sheet PNG]

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

from streamer.toon.engine import EngineSettings, create_engine
from streamer.toon.faces.flow import FaceAwareFlow
from streamer.toon.faces.track import (TrackerSettings, crop_size_px,
                                       transform_params)
from streamer.toon.flow import FullFrameFlow
from streamer.toon.temporal import TemporalSettings

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


def consistent(back: np.ndarray, fwd: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(map_x, map_y, valid) for warping frame t-1 onto t along the input's flow: `back` is
    t -> t-1, `fwd` t-1 -> t. Left out (docs/ARCHITECTURE.md section 11.1): pixels
    failing the forward-backward check |b + f(x + b)|^2 > 0.01 (|b|^2 + |f(x + b)|^2) + 0.5,
    and pixels warped from outside the frame."""
    h, w = back.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    mx, my = gx + back[..., 0], gy + back[..., 1]
    fwd_at = cv2.remap(fwd, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    err = (back[..., 0] + fwd_at[..., 0]) ** 2 + (back[..., 1] + fwd_at[..., 1]) ** 2
    tol = 0.01 * ((back ** 2).sum(axis=2) + (fwd_at ** 2).sum(axis=2)) + 0.5
    valid = (err <= tol) & (mx >= 0) & (my >= 0) & (mx <= w - 1) & (my <= h - 1)
    return mx, my, valid


class WarpError:
    """Warping error: mean squared RGB difference (in [0, 1]) between output t and output
    t-1 warped onto t along the INPUT's flow, over consistent pixels; whole frame and face
    region (the largest face box, x1.6). The same figure for the input itself is the
    yardstick."""

    def __init__(self, names):
        self.sum = {n: [0.0, 0.0] for n in names}  # name -> [whole, face]
        self.count = [0, 0]

    def add(self, prev: dict, cur: dict, back: np.ndarray, fwd: np.ndarray, face_mask) -> None:
        mx, my, valid = consistent(back, fwd)
        face = valid & face_mask
        self.count[0] += int(valid.sum())
        self.count[1] += int(face.sum())
        for name in self.sum:
            warped = cv2.remap(prev[name], mx, my, cv2.INTER_LINEAR).astype(np.float32)
            d = ((cur[name].astype(np.float32) - warped) / 255.0) ** 2
            d = d.mean(axis=2)
            self.sum[name][0] += float(d[valid].sum())
            self.sum[name][1] += float(d[face].sum())

    def values(self) -> dict:
        """name -> (whole, face): mean squared error per consistent pixel."""
        c0, c1 = max(1, self.count[0]), max(1, self.count[1])
        return {n: (v[0] / c0, v[1] / c1 if self.count[1] else float("nan"))
                for n, v in self.sum.items()}

    def extend(self, other: "WarpError") -> None:
        for n in self.sum:
            self.sum[n][0] += other.sum[n][0]
            self.sum[n][1] += other.sum[n][1]
        self.count[0] += other.count[0]
        self.count[1] += other.count[1]


def _face_box_mask(faces, hw, grow: float = 1.6) -> np.ndarray:
    """The face region: the largest face's box, grown `grow` times about its centre."""
    h, w = hw
    mask = np.zeros((h, w), bool)
    boxed = [f for f in faces if f.box is not None]
    if not boxed:
        return mask
    x, y, bw, bh = max(boxed, key=lambda f: f.box[2] * f.box[3]).box
    cx, cy = x + bw / 2, y + bh / 2
    x0, x1 = int(max(0, cx - grow * bw / 2)), int(min(w, cx + grow * bw / 2 + 1))
    y0, y1 = int(max(0, cy - grow * bh / 2)), int(min(h, cy + grow * bh / 2 + 1))
    mask[y0:y1, x0:x1] = True
    return mask


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


NAMES = ("input", "bg-only", "per-frame", "tracked", "bg+temporal", "temporal")


def _zoom(box, hw, grow: float = 2.2):
    h, w = hw
    x, y, bw, bh = box
    side = grow * max(bw, bh)
    cx, cy = x + bw / 2, y + bh / 2
    x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    return slice(y0, int(min(h, cy + side / 2))), slice(x0, int(min(w, cx + side / 2)))


def _diff_tile(a: np.ndarray, b: np.ndarray, gain: float = 4.0) -> np.ndarray:
    return cv2.convertScaleAbs(cv2.absdiff(a, b), alpha=gain)


def run_clip(path: Path, limit, engine, yunet, alpha, args, temporal, pair_rows):
    frames, times = _decode(path, limit)
    ours_settings = TrackerSettings(detect_every=args.k, min_cutoff=args.min_cutoff,
                                    beta=args.beta, fade_s=args.fade)
    flows = {
        "per-frame": FaceAwareFlow(engine, engine, yunet, alpha, detect_side=None,
                                   tracker=TrackerSettings.official()),
        "tracked": FaceAwareFlow(engine, engine, yunet, alpha, detect_side=args.detect_side,
                                 tracker=ours_settings),
        "temporal": FaceAwareFlow(engine, engine, yunet, alpha, detect_side=args.detect_side,
                                  tracker=ours_settings, temporal=temporal),
    }
    bg = FullFrameFlow(engine, ring=2)
    jit = {n: Jitter() for n in ("per-frame", "tracked")}
    hist = {n: {} for n in jit}
    warp = WarpError(NAMES)
    faithful = {"bg+temporal": [0.0, 0], "temporal": [0.0, 0]}  # sum of mean |diff|, frames
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    prev = None
    prev_gray = None
    prev_thumb = None
    bg_s = 0.0
    frame_temporal_s = 0.0
    keep = []
    best_pair = (0.0, None)
    for i, (frame, t) in enumerate(zip(frames, times)):
        t0 = time.perf_counter()
        base = bg([frame])[0]
        bg_s += time.perf_counter() - t0
        cur = {"input": frame, "bg-only": base.copy()}
        faces = {}
        for name in ("per-frame", "tracked"):
            fl = flows[name]
            cur[name] = fl.paste_faces([frame], [base.copy()], [t])[0]
            faces[name] = fl.last_faces[0]
        # The temporal flow: its whole-frame step on the same background-model frame, then
        # its heads (stabilised in crop space with that step's motion).
        fl = flows["temporal"]
        based = base.copy()
        t1 = time.perf_counter()
        fl.frame_temporal([frame], [based])
        frame_temporal_s += time.perf_counter() - t1
        cur["bg+temporal"] = based.copy()
        cur["temporal"] = fl.paste_faces([frame], [based], [t])[0]
        for name, ref in (("bg+temporal", "bg-only"), ("temporal", "tracked")):
            faithful[name][0] += float(cv2.absdiff(cur[name], cur[ref]).mean())
            faithful[name][1] += 1
        thumb = _thumb(frame)
        cut = prev_thumb is not None and float(np.abs(thumb - prev_thumb).mean()) > 30.0
        prev_thumb = thumb
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        fwd = back = None
        if prev is not None and not cut:
            fwd = dis.calc(prev_gray, gray, None)   # t-1 -> t
            back = dis.calc(gray, prev_gray, None)  # t -> t-1
        for name in jit:
            jit[name].add(hist[name], faces[name], fwd)
        if fwd is not None:
            fm = _face_box_mask(faces["tracked"] or faces["per-frame"], frame.shape[:2])
            warp.add(prev, cur, back, fwd, fm)
            # The sheet's pair: the stillest large face of the clip (the least input change
            # around it), where any difference between the two outputs is flicker.
            big = max((f for f in faces["tracked"] if f.box is not None),
                      key=lambda f: f.box[2] * f.box[3], default=None)
            if big is not None and big.box[2] >= 80 and i > 5:
                ys, xs = _zoom(big.box, frame.shape[:2])
                change = float(cv2.absdiff(prev["input"][ys, xs], frame[ys, xs]).mean())
                if best_pair[1] is None or change < best_pair[0]:
                    best_pair = (change, {
                        k: (prev[k][ys, xs].copy(), cur[k][ys, xs].copy())
                        for k in ("input", "tracked", "temporal")} | {"index": i})
        prev, prev_gray = cur, gray
        if faces["tracked"]:
            keep.append((i, {k: cur[k] for k in ("input", "bg-only", "tracked")}))
    if best_pair[1] is not None:
        p = best_pair[1]
        i = p["index"]
        pair_rows.append([(f"#{i - 1} without temporal", p["tracked"][0]),
                          (f"#{i}", p["tracked"][1]),
                          ("|difference| x4", _diff_tile(*p["tracked"]))])
        pair_rows.append([(f"#{i - 1} temporal", p["temporal"][0]), (f"#{i}", p["temporal"][1]),
                          ("|difference| x4", _diff_tile(*p["temporal"]))])
    sheet = []
    if keep:
        for j in np.linspace(0, len(keep) - 1, min(2, len(keep))).round().astype(int):
            i, imgs = keep[j]
            sheet.append([(f"{path.stem} #{i} input", imgs["input"]), ("bg-only", imgs["bg-only"]),
                          ("face-aware (tracked)", imgs["tracked"])])
    timings = {n: f.timings for n, f in flows.items()}
    timings["temporal"].temporal_s += frame_temporal_s
    return (len(frames), bg_s, jit, warp, timings,
            {n: f.tracker.detections for n, f in flows.items()}, faithful, sheet)


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


def _print_warp(title: str, warp: WarpError) -> dict:
    v = warp.values()
    print(f"  warping error (mean squared, x1e-3), {title} (whole frame | face region, "
          f"{warp.count[1]} face px):")
    for name in NAMES:
        print(f"    {name:12s} {1e3 * v[name][0]:8.4f} | {1e3 * v[name][1]:8.4f}   "
              f"/input {v[name][0] / v['input'][0]:.3f} | {v[name][1] / v['input'][1]:.3f}")
    r = {"whole/input": v["temporal"][0] / v["input"][0],
         "bg+temporal whole/input": v["bg+temporal"][0] / v["input"][0],
         "bg-only whole/input": v["bg-only"][0] / v["input"][0],
         "face/bg-only": v["temporal"][1] / v["bg-only"][1],
         "tracked face/bg-only": v["tracked"][1] / v["bg-only"][1],
         "per-frame face/bg-only": v["per-frame"][1] / v["bg-only"][1]}
    print("    " + ", ".join(f"{k} {x:.3f}" for k, x in r.items()))
    return r


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
    ap.add_argument("--strength", type=float, default=TemporalSettings.strength,
                    help="temporal strength")
    ap.add_argument("--flow-side", type=int, default=TemporalSettings.flow_side)
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
    temporal = TemporalSettings(strength=args.strength, flow_side=args.flow_side)
    print(f"engine: {engine.describe()}; style {args.style} (bg model as head model); "
          f"tracked: k={args.k}, detect side {args.detect_side}, One-Euro min_cutoff "
          f"{args.min_cutoff} Hz beta {args.beta}, fade {args.fade} s; temporal: strength "
          f"{temporal.strength}, flow side {temporal.flow_side}")
    all_jit = {"per-frame": Jitter(), "tracked": Jitter()}
    all_warp = WarpError(NAMES)
    sheet_rows: list = []
    pair_rows: list = []
    speed = {}
    faithful = {"bg+temporal": [0.0, 0], "temporal": [0.0, 0]}
    per_clip = {}
    for clip in args.clips.split(","):
        n, bg_s, jit, warp, timings, dets, faith, sheet = run_clip(
            media / clip, args.frames, engine, yunet, alpha, args, temporal, pair_rows)
        sheet_rows += sheet
        print(f"{clip}: {n} frames, bg model {1e3 * bg_s / n:.0f} ms/frame; detector runs "
              f"per-frame {dets['per-frame']}, tracked {dets['tracked']}")
        _print_jitter(clip, jit)
        per_clip[clip] = _print_warp(clip, warp)
        print("  faithfulness, mean |diff| per frame (levels): " + ", ".join(
            f"{k} vs {'bg-only' if k == 'bg+temporal' else 'tracked'} {v[0] / max(1, v[1]):.2f}"
            for k, v in faith.items()) + " (goal <= 3)")
        for name in jit:
            all_jit[name].extend(jit[name])
        all_warp.extend(warp)
        for k in faithful:
            faithful[k][0] += faith[k][0]
            faithful[k][1] += faith[k][1]
        for name, t in timings.items():
            print(f"  speed {name}: {t.summary()}")
            s = speed.setdefault(name, [0, 0, 0.0, 0.0, 0.0, 0.0])
            s[0] += t.frames
            s[1] += t.faces
            s[2] += t.face_s
            s[3] += t.head_s
            s[4] += t.temporal_s
            s[5] += bg_s
    print("both clips:")
    _print_jitter("both clips", all_jit)
    r = _print_warp("both clips", all_warp)
    for name, (frames, faces, face_s, head_s, _, _) in speed.items():
        if not faces:
            continue
        head = head_s / faces
        over_face = face_s / faces
        print(f"  speed {name}: face path {1e3 * face_s / frames:.2f} ms/frame = "
              f"{1e3 * over_face:.2f} ms per face vs head model {1e3 * head:.1f} ms/face: "
              f"overhead {100 * over_face / head:.1f}% of the head model (goal <= 10%)")
    frames, faces, _, head_s, temporal_s, bg_s = speed["temporal"]
    model_s = bg_s + head_s
    cost = temporal_s / model_s
    print(f"  temporal step: {1e3 * temporal_s / frames:.2f} ms/frame vs model "
          f"{1e3 * model_s / frames:.1f} ms/frame (bg + heads): {100 * cost:.1f}% (goal <= 10%)")
    a, b = all_jit["per-frame"].means(), all_jit["tracked"].means()
    fa = {k: v[0] / max(1, v[1]) for k, v in faithful.items()}
    print(f"SUMMARY jitter ratio tracked/per-frame: centre {b['comp'] / a['comp']:.3f} "
          f"(motion-compensated), {b['steady'] / a['steady']:.3f} (steady faces), scale "
          f"{b['scale'] / a['scale']:.3f} (goal <= 0.5)")
    print(f"SUMMARY warping error, face region / bg-only's: per-frame {r['per-frame face/bg-only']:.3f}, "
          f"tracked {r['tracked face/bg-only']:.3f}, tracked+temporal {r['face/bg-only']:.3f} "
          f"(goal <= 0.7)")
    print("SUMMARY warping error, whole frame / input's: " + ", ".join(
          f"{clip} bg-only {v['bg-only whole/input']:.3f} temporal {v['whole/input']:.3f}"
          for clip, v in per_clip.items()) + f"; both clips temporal {r['whole/input']:.3f} "
          f"(goal <= 1)")
    print(f"SUMMARY faithfulness mean |diff| (levels): tracked+temporal vs tracked "
          f"{fa['temporal']:.2f}, bg+temporal vs bg-only {fa['bg+temporal']:.2f} (goal <= 3); "
          f"temporal cost {100 * cost:.1f}% of the model time (goal <= 10%)")
    if args.sheet:
        _write_sheet(sheet_rows + pair_rows, args.sheet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
