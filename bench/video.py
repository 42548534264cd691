"""Offline pipeline throughput: the run_video pipeline against the model alone and against a
plain one-frame-at-a-time loop, on one clip at one working size, in one run.

    python -m bench.video [CLIP] [--frames 24] [--size 720] [--device auto]
                          [--precision exact] [--batch 1] [--repeat 5] [--models DIR]
                          [--faces off|on]

(a) model only: the frames are decoded beforehand; the official full-frame flow (resize,
    white padding, engine, crop) runs on them one call at a time; nothing is encoded.
(b) plain loop: decode a frame, stylise it, encode it, in sequence on one thread (what the
    official video script does with cv2.VideoCapture / cv2.VideoWriter), written with the
    same encoder settings as run_video.
(c) the run_video pipeline (streamer.video.app.convert_video): three threads,
    audio remux, timestamps, temporary file and rename.

All three run the same stylise callable that run_video builds (`Job.stylise`): the
official full-frame flow with --faces off (the default), the face-aware flow with --faces on
(a fresh one per run, so face tracks start alike). All three share one engine, warmed up first, and the first --frames frames of the clip
(re-encoded once to a temporary clip so (c) reads exactly those). Each variant runs --repeat
times, interleaved (the order rotating) so machine noise hits them alike; medians and ratios are printed. The
goal: (c) >= 90% of (a), and (c) faster than (b).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av

from streamer.config import VideoSettings
from streamer.models import open_store
from streamer.report import Log
from streamer.toon.flow import padded_size, work_size
from streamer.toon.styles import StyleFlows
from streamer.video.convert import Job, convert_video


def cut_clip(src: Path, dst: Path, frames: int) -> int:
    """The first `frames` frames of `src`'s video, re-encoded near-losslessly (timestamps
    kept), so every variant reads the same short clip."""
    n = 0
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        v = inp.streams.video[0]
        o = out.add_stream("libx264", rate=v.average_rate or Fraction(25),
                           options={"crf": "12", "preset": "veryfast"})
        o.width, o.height, o.pix_fmt = v.codec_context.width, v.codec_context.height, "yuv420p"
        o.time_base = o.codec_context.time_base = v.time_base
        for f in inp.decode(v):
            f.pict_type = 0
            out.mux(o.encode(f))
            n += 1
            if n >= frames:
                break
        out.mux(o.encode())
    return n


def decode_all(path: Path) -> list:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="bgr24") for f in c.decode(c.streams.video[0])]


def model_only(flow, images: list, batch: int) -> tuple[float, float]:
    """(frames per second, median ms per frame) of the flow on decoded frames."""
    per_frame = []
    t0 = time.perf_counter()
    for i in range(0, len(images), batch):
        chunk = images[i: i + batch]
        t = time.perf_counter()
        flow(chunk)
        per_frame.append((time.perf_counter() - t) * 1000 / len(chunk))
    total = time.perf_counter() - t0
    return len(images) / total, statistics.median(per_frame)


def plain_loop(flow, src: Path, dst: Path, crf: str, preset: str) -> float:
    """Decode, stylise, encode, one frame at a time on this thread; frames per second."""
    n = 0
    t0 = time.perf_counter()
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        v = inp.streams.video[0]
        o = out.add_stream("libx264", rate=v.average_rate or Fraction(25),
                           options={"crf": crf, "preset": preset})
        o.width, o.height, o.pix_fmt = v.codec_context.width, v.codec_context.height, "yuv420p"
        o.time_base = o.codec_context.time_base = v.time_base
        for f in inp.decode(v):
            img = flow([f.to_ndarray(format="bgr24")])[0]
            frame = av.VideoFrame.from_ndarray(img, "bgr24")
            frame.pts, frame.time_base = f.pts, f.time_base
            out.mux(o.encode(frame))
            n += 1
        out.mux(o.encode())
    return n / (time.perf_counter() - t0)


def pipeline(job: Job, src: Path, dst: Path) -> float:
    return convert_video(src, dst, job).fps


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("clip", nargs="?", default=None,
                   help="video file (default: tears_640x360.mp4 of the shared test media)")
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--size", type=int, default=720)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="exact")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--style", default="anime")
    p.add_argument("--models", default=None)
    p.add_argument("--faces", default="off", choices=("off", "on"),
                   help="the face-aware flow in all three variants (default off)")
    args = p.parse_args()

    store = open_store(args.models)
    clip = Path(args.clip) if args.clip else store.root.parent / "media" / "tears_640x360.mp4"
    settings = VideoSettings(style=args.style, models=args.models, size=args.size,
                             batch=args.batch, device=args.device, precision=args.precision,
                             overwrite=True, progress=False, faces=args.faces)
    job = Job(settings, Log(open(os.devnull, "w")), StyleFlows.from_settings(settings, store=store))
    engine = job.engine()
    crf, preset = "18", "medium"  # run_video's libx264 defaults

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        short = tmp / "clip.mp4"
        n = cut_clip(clip, short, args.frames)
        images = decode_all(short)
        h, w = images[0].shape[:2]
        wh, ww = work_size(h, w, args.size)
        ph, pw = padded_size(wh, ww)
        print(f"clip: {clip.name}, first {n} frames, {w}x{h} -> model {pw}x{ph}; "
              f"engine: {engine.describe()}; batch {args.batch}; faces {args.faces}; "
              f"{os.cpu_count()} CPUs")
        job.stylise(ring=2)(images[: args.batch])  # warm-up: compiles for this shape
        a, a_ms, b, c = [], [], [], []

        def run_a():
            fps, ms = model_only(job.stylise(ring=2), images, args.batch)
            a.append(fps)
            a_ms.append(ms)

        def run_b():
            b.append(plain_loop(job.stylise(ring=2), short, tmp / "plain.mp4", crf, preset))

        def run_c():
            c.append(pipeline(job, short, tmp / "pipeline.mp4"))

        order = [run_a, run_b, run_c]
        for r in range(args.repeat):
            for fn in order[r % 3:] + order[: r % 3]:  # rotate, so no variant always runs first
                fn()
        ma, mb, mc = statistics.median(a), statistics.median(b), statistics.median(c)
        print(f"(a) model only         {ma:7.3f} fps   median {statistics.median(a_ms):7.1f} "
              f"ms/frame   runs: {', '.join(f'{x:.3f}' for x in a)}")
        print(f"(b) one-at-a-time loop {mb:7.3f} fps   runs: {', '.join(f'{x:.3f}' for x in b)}")
        print(f"(c) run_video pipeline {mc:7.3f} fps   runs: {', '.join(f'{x:.3f}' for x in c)}")
        print(f"(c)/(a) = {mc / ma:.3f}  (goal >= 0.90)")
        print(f"(c)/(b) = {mc / mb:.3f}  (goal > 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
