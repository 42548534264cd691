"""Which DCT-Net layers to keep out of int8, measured: the golden parity (and optionally the
time) of the int8 model with one layer moved into or out of the float set at a time.

    python -m bench.int8_layers --style handdrawn [--models DIR] [--time] [--ranges MEAN_QUANTILE] [--shipped-only]

The model is equalised and every convolution's weights GPTQ-rounded once
(`streamer/models/dctnet/int8.py`); each row then quantizes the activations with NNCF for
one float set and prints the mean |difference| from TensorFlow's golden output per reference
image (uint8 levels), and with --time the int8 / bf16 time at 288x288 and 640x360 (medians,
interleaved in one run). The shipped set is `float_layers(style)` in int8.py.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.golden import differences, golden_dir, reference_images
from streamer.models.dctnet.int8 import (equalize_model, float_layers, gptq_levels,
                                         int8_layers, quantize_rounded, weight_levels)
from streamer.toon.engine import OpenVinoEngine
from streamer.toon.engine_api import EngineSettings

SIZES = ((288, 288), (360, 640))


def _parity(engine, golden: Path, style: str) -> list[float]:
    diffs = differences(lambda x: engine.run(x[None])[0], golden, style)
    return [float(d.mean()) for d in diffs.values()]


def _ratios(int8, bf16, repeat: int) -> list[float]:
    ratios = []
    for h, w in SIZES:
        x = np.random.default_rng(0).integers(0, 256, (1, h, w, 3), dtype=np.uint8)
        out = np.empty_like(x)
        times: list[list[float]] = [[], []]
        for e in (bf16, int8):
            e.run(x, out)
        for _ in range(repeat):
            for i, e in enumerate((bf16, int8)):
                t = time.perf_counter()
                e.run(x, out)
                times[i].append(time.perf_counter() - t)
        ratios.append(statistics.median(times[1]) / statistics.median(times[0]))
    return ratios


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=os.environ.get("TOONSTREAM_MODELS"))
    ap.add_argument("--style", default="anime")
    ap.add_argument("--golden", default=None, help="default: the store's ../golden/dctnet")
    ap.add_argument("--time", action="store_true", help="also int8 / bf16 time per row")
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--ranges", default=None, metavar="ESTIMATOR",
                    choices=("MINMAX", "MEAN_MINMAX", "MEAN_QUANTILE", "MEDIAN_MINMAX",
                             "MEAN_NO_OUTLIERS_MINMAX", "HISTOGRAM"),
                    help="NNCF's activation range estimator for every row (MINMAX, "
                         "MEAN_QUANTILE, HISTOGRAM, ...; default NNCF's own)")
    ap.add_argument("--shipped-only", action="store_true",
                    help="only the shipped float set's row")
    args = ap.parse_args()
    if not args.models:
        ap.error("give --models DIR or set TOONSTREAM_MODELS")
    import logging

    import onnx

    from streamer.models.store import Store

    logging.getLogger("nncf").setLevel(logging.ERROR)
    store = Store(Path(args.models))
    golden = Path(args.golden) if args.golden else golden_dir(args.models)
    if not reference_images(golden):
        ap.error(f"no reference images in {golden}: give --golden DIR")
    fp32 = store.onnx_model_path(args.style, "bg", "fp32")
    settings = lambda p: EngineSettings(device="openvino", precision=p, threads=args.threads)  # noqa: E731
    bf16 = OpenVinoEngine(lambda p: fp32, settings("fast"))
    frames = store.calibration_frames()
    model = onnx.load(str(fp32))
    equalize_model(model, frames)
    every = int8_layers(model, ())
    rounded = gptq_levels(model, frames, every, weight_levels())
    base = float_layers(args.style)

    def row(label: str, keep: tuple[str, ...]) -> None:
        try:
            q = quantize_rounded(model, frames, keep,
                                 {k: rounded[k] for k in int8_layers(model, keep)},
                                 activation_ranges=args.ranges)
        except Exception as exc:  # NNCF's bias correction fails on some float sets
            print(f"{label:<36} NNCF failed: {type(exc).__name__}: {exc}", flush=True)
            return
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "int8.onnx"
            onnx.save(q, str(path))
            engine = OpenVinoEngine(lambda p: path, settings("int8"))
            diffs = _parity(engine, golden, args.style)
            times = _ratios(engine, bf16, args.repeat) if args.time else []
        print(f"{label:<36} " + " ".join(f"{d:9.2f}" for d in diffs) + f" {max(diffs):6.2f}"
              + "".join(f" {r:8.3f}" for r in times), flush=True)

    print(f"{args.style}: mean |diff| against TensorFlow (uint8 levels); shipped float set: "
          + (", ".join(k.removeprefix("generator/") for k in base) or "none")
          + f"; activation ranges: {args.ranges or 'NNCF default'}")
    print(f"{'float layers':<36} " + " ".join(f"{p.stem:>9}" for p in reference_images(golden)) + f" {'max':>6}"
          + ("".join(f" {f'{w}x{h}':>8}" for h, w in SIZES) if args.time else ""))
    row("shipped", base)
    if args.shipped_only:
        return 0
    row("none (every convolution int8)", ())
    for layer in every:
        name = f"generator/{layer}"
        if name in base:
            row(f"shipped - {layer}", tuple(k for k in base if k != name))
        else:
            row(f"shipped + {layer}", base + (name,))
    return 0


if __name__ == "__main__":
    sys.exit(main())
