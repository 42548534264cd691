"""Temporal stability of the face-aware flow and of the person mask, and what the face path
and the temporal step cost.

    python -m bench.stability [--models DIR] [--style anime] [--precision exact|fast]
                              [--frames N] [--clips A,B] [--sheet PNG]

Three clips, full size: media/tears_640x360.mp4 (film, close-ups and cuts, 24 fps),
media/event_640x480.mp4 (4-5 small faces, 30 fps) and closeup_talking_30fps, a close-up
talking head made from tears by bench/closeup.py (a person filling half of a 30 fps
frame; how it is made is in that module). `--precision exact` (the default, as the apps)
builds the face flows as an exact offline run does (official composition: detection on
the official working image); `fast` detects on a copy of at most --detect-side px. Each
clip gives, from the same background-model frames:

- bg-only: the background model alone (FullFrameFlow);
- per-frame: the official face algorithm, stateless (YuNet on the full frame every frame,
  no tracking, smoothing or fades);
- tracked: FaceAwareFlow's defaults without the temporal step;
- temporal: the same with the temporal step (the apps' defaults); bg+temporal is its
  whole-frame step alone, before the heads are pasted.

Printed, per clip and over all:

1. Jitter of the aligned transform, for every face followed from one frame to the next
   within a shot, in crop sizes: the change of the crop's centre minus the content's own
   motion (the median of the input's DIS flow over the face); also on steady faces only,
   plain, and of log-scale. Ratio tracked / per-frame: the goal is <= 0.5.
2. Warping error (docs/ARCHITECTURE.md section 11.1) on the whole frame (yardstick: the
   input's own; goal <= 1) and on the face region, the eyes and the mouth of the largest
   face (yardstick: bg-only's; goal <= 0.7 for the face region on every clip, and for the
   eyes and the mouth on the close-up). The eyes: a square of 0.6 eye distances about each
   eye point; the mouth: the box through the mouth corners grown 0.25 eye distances each
   side, 0.6 eye distances tall. Pairs across a scene cut are left out.
3. Faithfulness: mean |diff| of temporal vs tracked and bg+temporal vs bg-only (goal <= 3).
4. The person mask (PersonSegmenter on the input frames, refined at the frame's size):
   the warping error of the mask (squared difference, in 0..1) over the edge band (pixels
   within 5 px of the per-frame mask's 0.5 outline), MediaPipe's smoothing rule (the
   previous mask where it was) against the motion-following one; goal <= 0.7. And the
   mean IoU (p >= 0.5, model size) of each against MediaPipe's per-frame mask and of the
   new one against MediaPipe's rule.
5. Speed: the face path's own cost per face next to the head model's time per face (goal
   <= 10%), and the temporal step's time (flows, warps, blends; frame and heads) against
   the model time, background and heads (goal <= 10%).

--sheet writes a contact sheet: input | bg-only | face-aware for a few frames, then for
every clip two consecutive frames of its stillest large face without and with the
temporal step, and their difference.
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

from bench import closeup
from streamer.toon.engine import EngineSettings, create_engine
from streamer.toon.faces.flow import FaceAwareFlow
from streamer.toon.faces.track import (TrackerSettings, crop_size_px,
                                       transform_params)
from streamer.toon.flow import FullFrameFlow
from streamer.toon.segment import PersonSegmenter, SegRunner
from streamer.toon.temporal import TemporalSettings

CLIPS = ("tears_640x360.mp4", "event_640x480.mp4", closeup.NAME)
REGIONS = ("whole", "face", "eyes", "mouth")


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


def load_clip(media: Path, name: str, limit: int | None):
    """(frames, times) of a clip by name: a file in `media`, or the close-up made from one."""
    if name == closeup.NAME:
        return closeup.closeup_frames(media, limit)
    return _decode(media / name, limit)


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
    t-1 warped onto t along the INPUT's flow, over consistent pixels, per region (REGIONS:
    the whole frame, and the largest face's box x1.6, eyes and mouth). The same figure for
    the input itself is the yardstick."""

    def __init__(self, names):
        self.sum = {n: dict.fromkeys(REGIONS, 0.0) for n in names}
        self.count = dict.fromkeys(REGIONS, 0)

    def add(self, prev: dict, cur: dict, maps, regions: dict) -> None:
        """`maps`: (map_x, map_y, valid) from `consistent`; `regions`: region -> bool mask
        (the whole frame is the valid pixels)."""
        mx, my, valid = maps
        sel = {r: valid & regions[r] if r in regions else valid for r in REGIONS}
        for r in REGIONS:
            self.count[r] += int(sel[r].sum())
        for name in self.sum:
            warped = cv2.remap(prev[name], mx, my, cv2.INTER_LINEAR).astype(np.float32)
            d = ((cur[name].astype(np.float32) - warped) / 255.0) ** 2
            d = d.mean(axis=2)
            for r in REGIONS:
                self.sum[name][r] += float(d[sel[r]].sum())

    def values(self) -> dict:
        """name -> region -> mean squared error per consistent pixel (nan: no pixels)."""
        return {n: {r: v[r] / self.count[r] if self.count[r] else float("nan") for r in REGIONS}
                for n, v in self.sum.items()}

    def extend(self, other: "WarpError") -> None:
        for n in self.sum:
            for r in REGIONS:
                self.sum[n][r] += other.sum[n][r]
        for r in REGIONS:
            self.count[r] += other.count[r]


class MaskEdge:
    """The person mask over time: MediaPipe's smoothing rule (`rule`) against the
    motion-following one (`motion`), both refined at the frame's size like the apps do;
    the per-frame mask (`frame`, no smoothing) defines the edge band."""

    KINDS = ("frame", "rule", "motion")

    def __init__(self, runner_for):
        self.seg = {"frame": PersonSegmenter(runner_for, smoothing=0.0, follow_motion=False),
                    "rule": PersonSegmenter(runner_for, follow_motion=False),
                    "motion": PersonSegmenter(runner_for)}
        self.sum = dict.fromkeys(self.KINDS, 0.0)
        self.count = 0
        self.iou: dict[str, list] = {"rule": [], "motion": [], "motion vs rule": []}
        self.seconds = dict.fromkeys(self.KINDS, 0.0)
        self._prev: dict | None = None

    def add(self, frame: np.ndarray, maps) -> None:
        """One frame, in order; `maps` from `consistent` (None: a first frame or a cut)."""
        small, full = {}, {}
        for k, seg in self.seg.items():
            t0 = time.perf_counter()
            small[k] = seg.step([frame])[0]
            self.seconds[k] += time.perf_counter() - t0
            full[k] = seg.refine(small[k], frame)
        sure = {k: m >= 0.5 for k, m in small.items()}
        for name, (a, b) in (("rule", ("rule", "frame")), ("motion", ("motion", "frame")),
                             ("motion vs rule", ("motion", "rule"))):
            union = (sure[a] | sure[b]).sum()
            if sure[b].mean() >= 0.005:  # (almost) nobody: IoU would measure noise
                self.iou[name].append(float((sure[a] & sure[b]).sum() / union))
        if maps is not None and self._prev is not None:
            mx, my, valid = maps
            inside = (full["frame"] >= 0.5).astype(np.uint8)
            outline = cv2.morphologyEx(inside, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
            band = valid & (cv2.dilate(outline, np.ones((11, 11), np.uint8)) > 0)
            self.count += int(band.sum())
            for k in self.KINDS:
                warped = cv2.remap(self._prev[k], mx, my, cv2.INTER_LINEAR)
                self.sum[k] += float(((full[k] - warped) ** 2)[band].sum())
        self._prev = full

    def values(self) -> dict:
        c = max(1, self.count)
        out = {k: self.sum[k] / c for k in self.KINDS}
        out["ratio"] = self.sum["motion"] / self.sum["rule"] if self.sum["rule"] else float("nan")
        for k, v in self.iou.items():
            out[f"iou {k}"] = float(np.mean(v)) if v else float("nan")
        return out

    def extend(self, other: "MaskEdge") -> None:
        for k in self.KINDS:
            self.sum[k] += other.sum[k]
            self.seconds[k] += other.seconds[k]
        self.count += other.count
        for k in self.iou:
            self.iou[k] += other.iou[k]


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


def _face_parts(faces, hw) -> dict:
    """The largest face's eyes and mouth, from its five landmarks (eyes, nose, mouth
    corners): a square of 0.6 eye distances about each eye; the box through the mouth
    corners, grown 0.25 eye distances each side and 0.6 eye distances tall."""
    eyes, mouth = np.zeros(hw, bool), np.zeros(hw, bool)
    boxed = [f for f in faces if f.box is not None]
    if boxed:
        lm = max(boxed, key=lambda f: f.box[2] * f.box[3]).landmarks
        d = float(np.hypot(*(lm[1] - lm[0])))
        for x, y in lm[:2]:
            eyes[max(0, int(y - 0.3 * d)):int(y + 0.3 * d) + 1,
                 max(0, int(x - 0.3 * d)):int(x + 0.3 * d) + 1] = True
        cx, cy = (lm[3] + lm[4]) / 2
        half = abs(lm[4][0] - lm[3][0]) / 2 + 0.25 * d
        mouth[max(0, int(cy - 0.3 * d)):int(cy + 0.3 * d) + 1,
              max(0, int(cx - half)):int(cx + half) + 1] = True
    return {"eyes": eyes, "mouth": mouth}


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


@dataclass
class ClipResult:
    frames: int
    bg_s: float
    jitter: dict
    warp: WarpError
    mask: MaskEdge
    timings: dict
    detections: dict
    faithful: dict
    sheet: list


def _face_flows(engine, yunet, alpha, args, temporal, head=None) -> dict:
    """The three face-aware variants, built as the apps build them at `args.precision`;
    `head`: the head engine (default: the bg model, as the official files hold)."""
    head = head if head is not None else engine
    official = args.precision == "exact"
    ours = TrackerSettings(detect_every=args.k, min_cutoff=args.min_cutoff, beta=args.beta,
                           fade_s=args.fade)
    side = None if official else args.detect_side
    return {
        "per-frame": FaceAwareFlow(engine, head, yunet, alpha, detect_side=None,
                                   tracker=TrackerSettings.official(), official=official),
        "tracked": FaceAwareFlow(engine, head, yunet, alpha, detect_side=side, tracker=ours,
                                 official=official),
        "temporal": FaceAwareFlow(engine, head, yunet, alpha, detect_side=side, tracker=ours,
                                  official=official, temporal=temporal),
    }


def run_clip(name: str, media: Path, engine, yunet, alpha, seg_runner, args, temporal,
             pair_rows, head=None) -> ClipResult:
    frames, times = load_clip(media, name, args.frames)
    flows = _face_flows(engine, yunet, alpha, args, temporal, head)
    bg = FullFrameFlow(engine, ring=2)
    jit = {n: Jitter() for n in ("per-frame", "tracked")}
    hist = {n: {} for n in jit}
    warp = WarpError(NAMES)
    mask = MaskEdge(seg_runner)
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
        for fname in ("per-frame", "tracked"):
            fl = flows[fname]
            cur[fname] = fl.paste_faces([frame], [base.copy()], [t])[0]
            faces[fname] = fl.last_faces[0]
        # The temporal flow: its whole-frame step on the same background-model frame, then
        # its heads (stabilised in crop space).
        fl = flows["temporal"]
        based = base.copy()
        t1 = time.perf_counter()
        fl.frame_temporal([frame], [based])
        frame_temporal_s += time.perf_counter() - t1
        cur["bg+temporal"] = based.copy()
        cur["temporal"] = fl.paste_faces([frame], [based], [t])[0]
        for fname, ref in (("bg+temporal", "bg-only"), ("temporal", "tracked")):
            faithful[fname][0] += float(cv2.absdiff(cur[fname], cur[ref]).mean())
            faithful[fname][1] += 1
        thumb = _thumb(frame)
        cut = prev_thumb is not None and float(np.abs(thumb - prev_thumb).mean()) > 30.0
        prev_thumb = thumb
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        fwd = back = maps = None
        if prev is not None and not cut:
            fwd = dis.calc(prev_gray, gray, None)   # t-1 -> t
            back = dis.calc(gray, prev_gray, None)  # t -> t-1
            maps = consistent(back, fwd)
        for jname in jit:
            jit[jname].add(hist[jname], faces[jname], fwd)
        mask.add(frame, maps)
        if maps is not None:
            followed = faces["tracked"] or faces["per-frame"]
            regions = {"face": _face_box_mask(followed, frame.shape[:2]),
                       **_face_parts(followed, frame.shape[:2])}
            warp.add(prev, cur, maps, regions)
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
        pair_rows.append([(f"{name} #{i - 1} step off", p["tracked"][0]),
                          (f"#{i}", p["tracked"][1]),
                          ("|difference| x4", _diff_tile(*p["tracked"]))])
        pair_rows.append([(f"#{i - 1} step on", p["temporal"][0]), (f"#{i}", p["temporal"][1]),
                          ("|difference| x4", _diff_tile(*p["temporal"]))])
    sheet = []
    if keep:
        for j in np.linspace(0, len(keep) - 1, min(2, len(keep))).round().astype(int):
            i, imgs = keep[j]
            sheet.append([(f"{name} #{i} input", imgs["input"]), ("bg-only", imgs["bg-only"]),
                          ("face-aware (tracked)", imgs["tracked"])])
    timings = {n: f.timings for n, f in flows.items()}
    timings["temporal"].temporal_s += frame_temporal_s
    return ClipResult(len(frames), bg_s, jit, warp, mask, timings,
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
    print(f"  warping error (mean squared, x1e-3), {title}; consistent px: " + ", ".join(
        f"{r} {warp.count[r]}" for r in REGIONS))
    print(f"    {'':12s} " + " ".join(f"{r:>9s}" for r in REGIONS))
    for name in NAMES:
        print(f"    {name:12s} " + " ".join(f"{1e3 * v[name][r]:9.4f}" for r in REGIONS))
    r = {"whole/input": v["temporal"]["whole"] / v["input"]["whole"],
         "bg+temporal whole/input": v["bg+temporal"]["whole"] / v["input"]["whole"],
         "bg-only whole/input": v["bg-only"]["whole"] / v["input"]["whole"]}
    for region in ("face", "eyes", "mouth"):
        for name in ("per-frame", "tracked", "temporal"):
            key = f"{region}/bg-only" if name == "temporal" else f"{name} {region}/bg-only"
            r[key] = v[name][region] / v["bg-only"][region]
    print("    " + ", ".join(f"{k} {x:.3f}" for k, x in r.items()))
    return r


def _print_mask(title: str, mask: MaskEdge) -> dict:
    v = mask.values()
    n = max(1, mask.count)
    print(f"  person mask, {title}: edge warping error (x1e-3, {n} px) per-frame "
          f"{1e3 * v['frame']:.3f}, MediaPipe's rule {1e3 * v['rule']:.3f}, following the "
          f"motion {1e3 * v['motion']:.3f}: {v['ratio']:.3f}x the rule's (goal <= 0.7); mean IoU "
          f"vs the per-frame mask: rule {v['iou rule']:.4f}, motion {v['iou motion']:.4f}; "
          f"motion vs rule {v['iou motion vs rule']:.4f}")
    return v


def _seg_runners(store, settings: EngineSettings):
    """`runner(variant)` for the person segmenters, one started runner per variant."""
    started: dict = {}

    def runner(variant: str) -> SegRunner:
        if variant not in started:
            h, w = (144, 256) if variant == "landscape" else (256, 256)
            started[variant] = SegRunner(store.seg_model_path(variant), h, w, settings)
        return started[variant]
    return runner


def _print_speed(speed: dict) -> float:
    """The face path's and the temporal step's cost over all clips; returns the step's share
    of the model time."""
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
    return cost


def _summary_table(rows: dict) -> None:
    """One line per clip (and all of them): the goals' figures."""
    cols = (("whole/input", "whole/in"), ("face/bg-only", "face/bg"), ("eyes/bg-only", "eyes/bg"),
            ("mouth/bg-only", "mouth/bg"), ("faithful", "|diff|"), ("cost", "cost"),
            ("mask", "mask edge"), ("iou", "IoU mask"))
    print("SUMMARY " + f"{'clip':24s}" + "".join(f"{h:>10s}" for _, h in cols))
    for clip, v in rows.items():
        print("SUMMARY " + f"{clip:24s}" + "".join(
            f"{v[k]:10.3f}" if k != "cost" else f"{100 * v[k]:9.1f}%" for k, _ in cols))
    print("SUMMARY goals: whole <= 1 (the input's), face <= 0.7 (eyes, mouth: on the close-up), "
          "|diff| <= 3 levels vs the step off, cost <= 10% of the model time (bg + heads), "
          "mask edge <= 0.7 (MediaPipe's rule's), IoU = following the motion vs the "
          "per-frame mask (MediaPipe's rule: see above)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=os.environ.get("TOONSTREAM_MODELS"))
    ap.add_argument("--style", default="anime")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="exact", choices=("exact", "fast"))
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
    ap.add_argument("--head-flow-side", type=int, default=TemporalSettings.head_flow_side,
                    help="the heads' own flow's side (the apps use the light network's head "
                         "size with --net mobile)")
    ap.add_argument("--net", default="official", choices=("official", "mobile"),
                    help="mobile: the installed light network that holds --style")
    ap.add_argument("--sheet", type=Path, default=None, help="write a contact sheet PNG here")
    args = ap.parse_args()
    if not args.models:
        ap.error("give --models DIR or set TOONSTREAM_MODELS")
    models = Path(args.models)
    media = Path(os.environ.get("TOONSTREAM_MEDIA", models.parent / "media"))

    from streamer.models.store import Store

    store = Store(models)
    settings = EngineSettings(device=args.device, precision=args.precision)
    head = None
    if args.net == "mobile":  # the light network that holds the style, bg and head parts
        from streamer.toon.styles import StyleFlows

        light = StyleFlows(store, settings, faces="off", net="mobile")
        engine, head = light.engine(args.style), light.head_engine(args.style)
    else:
        engine = create_engine(lambda p: store.onnx_model_path(args.style, "bg", p), settings)
    yunet, alpha = store.file_path("yunet.onnx"), store.file_path("alpha.jpg")
    seg_runner = _seg_runners(store, settings)
    temporal = TemporalSettings(strength=args.strength, flow_side=args.flow_side,
                                head_flow_side=args.head_flow_side)
    where = ("official composition, detection on the official working image"
             if args.precision == "exact" else f"detect side {args.detect_side}")
    print(f"engine: {engine.describe()} (--precision {args.precision}: {where}); style "
          f"{args.style} ({'the light network' if head is not None else 'bg model as head model'}); tracked: k={args.k}, One-Euro min_cutoff "
          f"{args.min_cutoff} Hz beta {args.beta}, fade {args.fade} s; temporal: {temporal}")
    all_jit = {"per-frame": Jitter(), "tracked": Jitter()}
    all_warp = WarpError(NAMES)
    all_mask = MaskEdge(seg_runner)
    sheet_rows: list = []
    pair_rows: list = []
    speed = {}
    faithful = {"bg+temporal": [0.0, 0], "temporal": [0.0, 0]}
    rows = {}
    for clip in args.clips.split(","):
        res = run_clip(clip, media, engine, yunet, alpha, seg_runner, args, temporal, pair_rows,
                       head)
        sheet_rows += res.sheet
        n = res.frames
        print(f"{clip}: {n} frames, bg model {1e3 * res.bg_s / n:.0f} ms/frame; detector runs "
              f"per-frame {res.detections['per-frame']}, tracked {res.detections['tracked']}")
        _print_jitter(clip, res.jitter)
        r = _print_warp(clip, res.warp)
        m = _print_mask(clip, res.mask)
        faith = {k: v[0] / max(1, v[1]) for k, v in res.faithful.items()}
        print("  faithfulness, mean |diff| per frame (levels): " + ", ".join(
            f"{k} vs {'bg-only' if k == 'bg+temporal' else 'tracked'} {v:.2f}"
            for k, v in faith.items()) + " (goal <= 3)")
        for name in res.jitter:
            all_jit[name].extend(res.jitter[name])
        all_warp.extend(res.warp)
        all_mask.extend(res.mask)
        for k in faithful:
            faithful[k][0] += res.faithful[k][0]
            faithful[k][1] += res.faithful[k][1]
        clip_speed = {}
        for name, t in res.timings.items():
            print(f"  speed {name}: {t.summary()}")
            for acc in (speed, clip_speed):
                s = acc.setdefault(name, [0, 0, 0.0, 0.0, 0.0, 0.0])
                s[0] += t.frames
                s[1] += t.faces
                s[2] += t.face_s
                s[3] += t.head_s
                s[4] += t.temporal_s
                s[5] += res.bg_s
        _, _, _, head_s, temporal_s, bg_s = clip_speed["temporal"]
        rows[clip] = r | {"faithful": faith["temporal"], "cost": temporal_s / (bg_s + head_s),
                          "mask": m["ratio"], "iou": m["iou motion"]}
    print("all clips:")
    _print_jitter("all clips", all_jit)
    r = _print_warp("all clips", all_warp)
    m = _print_mask("all clips", all_mask)
    cost = _print_speed(speed)
    a, b = all_jit["per-frame"].means(), all_jit["tracked"].means()
    fa = {k: v[0] / max(1, v[1]) for k, v in faithful.items()}
    rows["all"] = r | {"faithful": fa["temporal"], "cost": cost, "mask": m["ratio"],
                       "iou": m["iou motion"]}
    print(f"SUMMARY jitter ratio tracked/per-frame: centre {b['comp'] / a['comp']:.3f} "
          f"(motion-compensated), {b['steady'] / a['steady']:.3f} (steady faces), scale "
          f"{b['scale'] / a['scale']:.3f} (goal <= 0.5)")
    print(f"SUMMARY warping error, face region / bg-only's (all clips): per-frame "
          f"{r['per-frame face/bg-only']:.3f}, tracked {r['tracked face/bg-only']:.3f}, "
          f"tracked+temporal {r['face/bg-only']:.3f}; bg+temporal vs bg-only |diff| "
          f"{fa['bg+temporal']:.2f} levels")
    print(f"SUMMARY person mask (all clips): MediaPipe's rule's IoU vs the per-frame mask "
          f"{m['iou rule']:.4f}, following the motion {m['iou motion']:.4f}, the two "
          f"{m['iou motion vs rule']:.4f}")
    _summary_table(rows)
    if args.sheet:
        _write_sheet(sheet_rows + pair_rows, args.sheet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
