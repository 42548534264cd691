"""Heads sized to the face: does the head model keep the face on a crop smaller than 288?

    python -m bench.head_sizes [--models DIR] [--styles anime 3d ...] [--sizes 160 192 224 256]

A face that is small in the output frame is pasted from the 288x288 head, shrunk. Running
the head on a smaller aligned crop (the same alignment, scaled) would cost less. For each
style, face and size the crop takes in the output frame (`o`), the head's output at crop
size `s` shrunk to `o` is compared with the official 288 head's shrunk to `o` (SSIM on grey,
the face-quality bound of issue 24 is 0.9), and the head's time at `s` against 288 is
measured side by side (OpenVINO, the fast precision). Printed: the CPU, the worst SSIM over
the faces per (style, o, s), and the time ratios.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import cv2
import numpy as np

from bench.cpu import cpu_name
from streamer.live.precision import FACE_SSIM, ssim
from streamer.models import open_store
from streamer.toon.engine import EngineSettings, create_engine
from streamer.toon.faces.align import CROP_SIZE, similarity_transform, warp_crop
from streamer.toon.faces.detect import FaceDetector

FACES = ("luciano.png", "astronaut.png", "bryan_115px.png")
OUT_SIZES = (96, 128, 160, 192)


def timed(engine, size: int, repeat: int = 7) -> float:
    x = np.full((1, size, size, 3), 200, np.uint8)
    engine.run(x)
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        engine.run(x)
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=os.environ.get("TOONSTREAM_MODELS"))
    ap.add_argument("--styles", nargs="+", default=None)
    ap.add_argument("--sizes", nargs="+", type=int, default=[160, 192, 224, 256])
    a = ap.parse_args(argv)
    store = open_store(a.models)
    media = store.root.parent / "media"
    detector = FaceDetector(store.file_path("yunet.onnx"), max_side=1280)
    faces = []
    for name in FACES:
        img = cv2.imread(str(media / name))
        if img is None:
            continue
        found = detector.detect(img).select(max_faces=1)
        if len(found.landmarks):
            faces.append((name, img, similarity_transform(found.landmarks[0])[0]))
    styles = a.styles or [s for s in store.styles if store.source_for(s, "bg") is not None]
    print(f"CPU: {cpu_name()}; faces: {', '.join(n for n, _, _ in faces)}; bound SSIM >= {FACE_SSIM}")
    print("worst SSIM over the faces, at the crop's size in the output frame (o) for a head "
          "run at crop size s")
    header = [f"o{o} s{s}" for o in OUT_SIZES for s in a.sizes if s > o]
    print("| style | " + " | ".join(header) + " | " + " | ".join(f"time {s}/288" for s in a.sizes) + " |")
    print("|---" * (1 + len(header) + len(a.sizes)) + "|")
    for style in styles:
        engine = create_engine(lambda p: store.onnx_model_path(style, "h", p),
                               EngineSettings(device="auto", precision="fast"))
        worst: dict[tuple[int, int], float] = {}
        for _, img, m in faces:
            ref = engine.run(warp_crop(img, m)[None])[0]
            for s in a.sizes:
                k = s / CROP_SIZE
                crop = cv2.warpAffine(img, (m * k).astype(np.float32), (s, s),
                                      flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                out = engine.run(crop[None])[0]
                for o in OUT_SIZES:
                    if s <= o:
                        continue
                    got = ssim(cv2.resize(out, (o, o), interpolation=cv2.INTER_AREA),
                               cv2.resize(ref, (o, o), interpolation=cv2.INTER_AREA))
                    worst[(o, s)] = min(worst.get((o, s), 1.0), got)
        # Interleaved, so a load that comes and goes weighs on every size alike.
        t = {s: [] for s in (*a.sizes, CROP_SIZE)}
        for _ in range(3):
            for s in t:
                t[s].append(timed(engine, s))
        full = statistics.median(t[CROP_SIZE])
        cells = [f"{worst[(o, s)]:.3f}" + ("" if worst[(o, s)] >= FACE_SSIM else " x")
                 for o in OUT_SIZES for s in a.sizes if s > o]
        ratios = [f"{statistics.median(t[s]) / full:.2f}" for s in a.sizes]
        print(f"| {style} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |", flush=True)
    print("x: below the bound")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
