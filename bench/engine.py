"""Engine speed: median ms per frame for each backend and precision, next to the TFLite
reference (ai-edge-litert with XNNPACK) measured in the same run.

    python -m bench.engine [--models DIR] [--style anime] [--repeat 5]

With int8 (NNCF installed) it also prints int8 time / bf16 time per size and, for every
reference image, the mean |difference| of each engine's output against TensorFlow's golden
output (`--golden DIR`, default the store's sibling golden/dctnet).

The TFLite conversions have fixed inputs (288x288 head, 720x720 background): the 288x288
row runs the head model as is; the other sizes run the 720x720 model on the frame padded
(640x360) or resized (1280x720) to 720x720, so the reference's pixel count is printed and
the ratio is also given per megapixel.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from bench.golden import differences, golden_dir, reference_images
from streamer.toon.engine import EngineSettings, EngineUnavailable, create_engine

SIZES = ((288, 288), (360, 640), (720, 1280))


def _interleaved_medians(calls: list, repeat: int) -> list[float]:
    """Median ms of each call, timed round-robin so load from other processes on a shared
    machine hits every candidate alike."""
    for fn in calls:
        fn()  # warm-up: compiles kernels, allocates arenas
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(repeat):
        for i, fn in enumerate(calls):
            t = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t)
    return [statistics.median(t) * 1000 for t in times]


def _reference(models: Path, threads: int):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        print("note: ai-edge-litert is not installed (pip install ai-edge-litert): no reference")
        return None
    interps = {}
    for name, side in (("sketch_head288", 288), ("anime_bg720", 720)):
        path = models / "dctnet" / "tflite" / f"{name}.tflite"
        if not path.exists():
            return None
        it = Interpreter(model_path=str(path), num_threads=threads)
        it.allocate_tensors()
        interps[side] = it

    def run(h: int, w: int, batch: int):
        side = 288 if (h, w) == (288, 288) else 720
        it = interps[side]
        inp = np.full((side, side, 3), 255, np.float32)
        frame = np.random.default_rng(0).integers(0, 256, (h, w, 3)).astype(np.float32)
        if h <= side and w <= side:
            inp[:h, :w] = frame
        else:
            import cv2
            inp[:] = cv2.resize(frame, (side, side), interpolation=cv2.INTER_AREA)
        index = it.get_input_details()[0]["index"]

        def call():
            for _ in range(batch):  # the conversion has no batch axis
                it.set_tensor(index, inp)
                it.invoke()
        return call, side * side
    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=os.environ.get("TOONSTREAM_MODELS"))
    ap.add_argument("--style", default="anime")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--devices", default="cpu,openvino",
                    help="comma-separated engine devices (torch-cpu, torch-cuda too)")
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--parity-only", metavar="STYLES", default=None,
                    help="skip the timings; print the golden parity of bf16 and int8 for "
                         "these styles (comma-separated, or all)")
    ap.add_argument("--golden", default=None,
                    help="TensorFlow reference outputs (default: the store's ../golden/dctnet)")
    args = ap.parse_args()
    if not args.models:
        ap.error("give --models DIR or set TOONSTREAM_MODELS")
    models = Path(args.models)

    from streamer.models.store import Store  # the store builds and caches the ONNX graphs
    store = Store(models)
    golden = Path(args.golden) if args.golden else golden_dir(models)
    if args.parity_only:
        styles = store.catalog.styles if args.parity_only == "all" else args.parity_only.split(",")
        for style in styles:
            engines = [create_engine(lambda p, s=style: store.onnx_model_path(s, "bg", p),
                                     EngineSettings(device="openvino", precision=prec,
                                                    threads=args.threads))
                       for prec in ("fast", "int8")]
            _parity(engines, golden, style)
        return 0
    model_for = lambda precision: store.onnx_model_path(args.style, "bg", precision)  # noqa: E731

    engines = []
    for device in args.devices.split(","):
        for precision in ("exact", "fast", "int8"):
            try:
                e = create_engine(model_for, EngineSettings(device=device, precision=precision,
                                                            threads=args.threads),
                                  weights=lambda: store.weights(args.style, "bg"))  # torch-*
            except EngineUnavailable as exc:
                print(f"skip {device}/{precision}: {exc}")
                continue
            if any(x.describe() == e.describe() for x in engines):
                continue  # fast == exact on this backend
            engines.append(e)
    reference = _reference(models, args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    print(f"threads {args.threads}; median of {args.repeat}; ms per frame; "
          f"ratio = ours / TFLite reference (XNNPACK fp32)")
    header = f"{'size':>10} {'batch':>5} {'engine':<34} {'ms/frame':>9} {'ref ms':>8} {'ratio':>6} {'ratio/MP':>8}"
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(0)
    by_size: dict[tuple[int, int, int], dict[str, float]] = {}
    for h, w in SIZES:
        for n in batches:
            batch = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
            out = np.empty_like(batch)
            calls = [lambda e=e: e.run(batch, out) for e in engines]
            ref_px = None
            if reference:
                call, ref_px = reference(h, w, n)
                calls.append(call)
            medians = [m / n for m in _interleaved_medians(calls, args.repeat)]
            ref_ms = medians[-1] if reference else None
            by_size[(h, w, n)] = {e.precision: ms for e, ms in zip(engines, medians)
                                  if e.backend == "openvino"}
            for e, ms in zip(engines, medians):
                ratio = f"{ms / ref_ms:6.2f}" if ref_ms else "     -"
                per_mp = f"{(ms / (h * w)) / (ref_ms / ref_px):8.2f}" if ref_ms else "       -"
                print(f"{w:>4}x{h:<5} {n:>5} {e.describe():<34} {ms:9.1f} "
                      f"{ref_ms or 0:8.1f} {ratio} {per_mp}", flush=True)
    int8 = next((p for e in engines for p in [e.precision] if p.startswith("int8")), None)
    if int8:
        print("\nint8 time / bf16 time (OpenVINO, same run): " + ", ".join(
            f"{w}x{h} b{n} {t[int8] / t['bf16']:.2f}" for (h, w, n), t in by_size.items()
            if "bf16" in t and int8 in t))
    _parity(engines, golden, args.style)
    return 0


def _parity(engines: list, golden: Path, style: str) -> None:
    """Mean and max |difference| against TensorFlow's output for each reference image."""
    images = reference_images(golden)
    if not images:
        print(f"note: no golden images in {golden}: parity not printed")
        return
    print(f"\nmean |diff| (max) against TensorFlow's {style} output, uint8 levels:")
    print(f"{'engine':<34} " + " ".join(f"{p.stem:>14}" for p in images))
    for e in engines:
        diffs = differences(lambda x: e.run(x[None])[0], golden, style)
        cells = [f"{d.mean():7.3f} ({d.max():3d})" for d in diffs.values()]
        print(f"{e.describe():<34} " + " ".join(f"{c:>14}" for c in cells), flush=True)


if __name__ == "__main__":
    sys.exit(main())
