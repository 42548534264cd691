"""The GPU path, checked and measured on one CUDA GPU (run through bench/gpu_check.sh).

    python -m bench.gpu_check [--data gpu_data] [--sections parity,fast,model,offline,live]
                              [--live-seconds 10] [--json PATH]

Run from the checkout's root: `-m` puts it on the path, so `streamer` and the sibling
benches import without an installed package (the GPU machine has none).

`--device torch-cpu` with small `--model-size`, `--batches`, `--frames`, `--live-work` runs the
same script on a CPU, to check the script itself where no GPU is lent; its figures mean
nothing for the goals.

Sections, each reported on its own (a section that cannot run says why and the rest go on):
- parity:  torch-cuda exact (fp32, TF32 off) against TensorFlow's golden outputs, 7 styles x
           4 images, goal max |diff| <= 1; plus the same with TF32 left on (PyTorch's default)
           for comparison, and batches through the two-halves copy overlap and page-locked
           buffers equal to single runs.
- fast:    torch-cuda fast (fp16 generator, channels-last, cuDNN benchmark, CUDA graphs):
           mean |diff| to the golden over the same 28 images (goal <= 0.5).
- model:   model-only fps at 1280x720, batch 1/4/8/16, exact and fast: engine.run from and
           to page-locked host buffers (copies included), and the bare network on frames
           already on the GPU. Goal on an H200: fast >= 600 fps.
- offline: the run_video pipeline against model-only on a clip (the 720p copy of the shared
           tears clip, and the shared 640x360 one), with the decoder's and the encoder's own
           fps, so a pipeline held back by the encoder is named as such. Goal: pipeline >=
           0.9 x model-only, or encoder-bound.
- live:    the live path with the paced synthetic camera at 1080p30 and 720p60 (working size
           720), p50/p95 capture-to-sink latency. Goal: p95 <= one frame interval + model time.

Needs torch with CUDA and numpy; offline and live also need OpenCV and PyAV.
"""
from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STYLES = ("anime", "3d", "handdrawn", "sketch", "artstyle", "sd-design", "sd-illustration")
IMAGES = ("astronaut", "luciano", "event", "tears")
RESULTS: dict = {}
DEVICE = "torch-cuda"


def say(text: str = "") -> None:
    print(text, flush=True)


def prepare(data: Path) -> Path:
    """Unpack the weights into a model store under `data` and make the pure-Python
    fallbacks importable; returns the store root."""
    store = data / "models"
    (store / "dctnet").mkdir(parents=True, exist_ok=True)
    for gz in sorted((data / "pb").glob("*.pb.gz")):
        dst = store / "dctnet" / gz.name[:-3]
        if not dst.is_file():
            with gzip.open(gz, "rb") as f, open(dst, "wb") as out:
                shutil.copyfileobj(f, out)
    for mod in ("yaml", "tqdm"):  # the model store's catalog needs them
        if importlib.util.find_spec(mod) is None:
            sys.path.append(str(data / "pylib"))
    os.environ["TOONSTREAM_MODELS"] = str(store)
    return store


def environment() -> None:
    import torch
    gpu = torch.cuda.get_device_name(0) if DEVICE == "torch-cuda" else "none (torch-cpu)"
    say(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN "
        f"{torch.backends.cudnn.version()}, GPU: {gpu}, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    have = {m: importlib.util.find_spec(m) is not None
            for m in ("numpy", "cv2", "av", "yaml", "onnxruntime")}
    say("modules: " + ", ".join(f"{m} {'yes' if ok else 'NO'}" for m, ok in have.items()))
    RESULTS["gpu"] = gpu
    RESULTS["torch"] = torch.__version__


def _golden(data: Path) -> dict:
    import numpy as np
    with np.load(data / "golden_dctnet.npz") as z:
        return {k: z[k] for k in z.files}


def _flows(precision: str):
    from streamer.models import open_store
    from streamer.toon.engine import EngineSettings
    from streamer.toon.styles import StyleFlows
    return StyleFlows(open_store(), EngineSettings(device=DEVICE, precision=precision),
                      faces="off")


def _engine(style: str, precision: str):
    """A fresh engine (own CUDA graphs and buffers) through the composition layer."""
    return _flows(precision).engine(style)


def _diff(a, b):
    import numpy as np
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


def section_parity(data: Path) -> None:
    import numpy as np
    import torch
    gold = _golden(data)
    worst = 0
    for style in STYLES:
        engine = _engine(style, "exact")
        row = []
        for name in IMAGES:
            out = engine.run(np.ascontiguousarray(gold[name][None]))[0]
            row.append(int(_diff(out, gold[f"{name}__{style}"]).max()))
        worst = max(worst, *row)
        say(f"  {style:16s} max |diff| per image {row}   [{engine.describe()}]")
    RESULTS["parity_exact_max"] = worst
    say(f"parity, {DEVICE} exact vs TensorFlow golden, 7 styles x 4 images: max |diff| "
        f"{worst}  ({'PASS' if worst <= 1 else 'FAIL'}: goal <= 1)")

    # The same with TF32 on (PyTorch's default for cuDNN convolutions), to show why it is off.
    engine = _engine("anime", "exact")
    if DEVICE == "torch-cuda":
        conv = torch.backends.cudnn.conv
        conv.fp32_precision = "tf32"
        try:
            d = [_diff(engine.run(np.ascontiguousarray(gold[n][None]))[0], gold[f"{n}__anime"])
                 for n in IMAGES]
        finally:
            conv.fp32_precision = "ieee"
        tf32 = max(int(x.max()) for x in d)
        RESULTS["parity_tf32_max"] = tf32
        say(f"  for comparison, TF32 on (PyTorch's default), anime: max |diff| {tf32}, mean "
            f"{statistics.mean(float(x.mean()) for x in d):.3f}")

    # Batches: the two halves, page-locked or plain buffers, give the single-run pixels.
    img = gold["luciano"]
    single = engine.run(np.ascontiguousarray(img[None]))[0]
    batch = engine.host_buffer((5, *img.shape))
    batch[:] = img
    out = engine.host_buffer(batch.shape)
    engine.run(batch, out)
    plain = engine.run(np.ascontiguousarray(batch.copy()))
    worst_b = max(int(_diff(x[i], single).max()) for x in (out, plain) for i in range(5))
    gold_b = max(int(_diff(x[i], gold["luciano__anime"]).max()) for x in (out, plain)
                 for i in range(5))
    RESULTS["batch_vs_single_max"] = worst_b
    RESULTS["batch_vs_golden_max"] = gold_b
    say(f"  batch of 5 (halves 3 + 2, page-locked and plain buffers): max |diff| to the "
        f"single run {worst_b} (0 unless cuDNN picks other kernels per batch size), to the "
        f"golden {gold_b}  ({'PASS' if gold_b <= 1 else 'FAIL'}: goal <= 1)")


def section_fast(data: Path) -> None:
    import numpy as np
    gold = _golden(data)
    means, worst = [], 0
    for style in STYLES:
        engine = _engine(style, "fast")
        for name in IMAGES:
            d = _diff(engine.run(np.ascontiguousarray(gold[name][None]))[0],
                      gold[f"{name}__{style}"])
            means.append(float(d.mean()))
            worst = max(worst, int(d.max()))
    mean = statistics.mean(means)
    RESULTS["fast_mean_diff"] = round(mean, 3)
    RESULTS["fast_max_diff"] = worst
    say(f"fast ({engine.describe()}): mean |diff| to the golden {mean:.3f} over 28 images "
        f"(worst image {max(means):.3f}, max {worst})  "
        f"({'PASS' if mean <= 0.5 else 'FAIL'}: goal mean <= 0.5)")


def _fps(fn, frames: int, min_s: float = 1.5, min_iter: int = 10) -> float:
    for _ in range(3):
        fn()  # warm-up: cuDNN autotuning, graph capture, page-locked buffers
    n, t0 = 0, time.perf_counter()
    while n < min_iter or time.perf_counter() - t0 < min_s:
        fn()
        n += 1
    return frames * n / (time.perf_counter() - t0)


def section_model(data: Path, size: tuple[int, int], batches: list[int]) -> None:
    import numpy as np
    import torch
    gold = _golden(data)
    src = gold["tears"]  # a real frame, 360x640 -> 720x1280
    h, w = size
    frame = np.repeat(np.repeat(src, 2, axis=0), 2, axis=1)[:h, :w]
    rows = {}
    say(f"model-only fps at {w}x{h} (engine.run, page-locked host buffers in and out, copies "
        f"included | the bare network, eager, on frames already on the device)")
    for precision in ("exact", "fast"):
        engine = _engine("anime", precision)
        for n in batches:
            batch = engine.host_buffer((n, h, w, 3))
            batch[:] = frame
            out = engine.host_buffer(batch.shape)
            e2e = _fps(lambda: engine.run(batch, out), n)
            dev = torch.from_numpy(batch).to(engine.net.c127_5.device)

            def bare():
                with torch.inference_mode():
                    engine.net(dev)
                if dev.is_cuda:
                    torch.cuda.synchronize()

            gpu = _fps(bare, n)
            rows[f"{precision}_b{n}"] = {"engine_fps": round(e2e, 1), "gpu_only_fps": round(gpu, 1)}
            say(f"  {engine.precision:5s} batch {n:2d}: {e2e:7.1f} fps | {gpu:7.1f} fps")
            del batch, out, dev
        del engine
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    RESULTS[f"model_{w}x{h}"] = rows
    best = max(v["engine_fps"] for k, v in rows.items() if k.startswith("fast"))
    say(f"model-only {w}x{h} fast, best batch: {best:.1f} fps  "
        f"({'PASS' if best >= 600 else 'FAIL'}: goal >= 600 on an H200)")


def section_offline(data: Path, frames_limit: int) -> None:
    import av  # noqa: F401  (PyAV: a clear ImportError here when it is missing)
    from streamer.config import VideoSettings
    from streamer.frame import Frame
    from streamer.report import Log
    from streamer.sinks.video_file import VideoFileSink
    from streamer.sources.video_file import VideoFileSource
    from streamer.video.convert import Job, engine_batch
    from bench.video import cut_clip, decode_all, model_only, pipeline

    settings = VideoSettings(style="anime", size=720, device=DEVICE, precision="fast",
                             overwrite=True, progress=False, faces="off")
    job = Job(settings, Log(open(os.devnull, "w")), _flows("fast"))  # one engine for all
    engine = job.engine()
    batch = engine_batch(settings, engine)
    results = {}
    for full in (data / "media" / "tears_1280x720.mp4", data / "media" / "tears_640x360.mp4"):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            clip = full
            if frames_limit:
                clip = tmp / full.name
                cut_clip(full, clip, frames_limit)
            images = decode_all(clip)
            job.stylise(ring=2)(images[:batch])  # warm-up for this shape
            a, c = [], []
            for r in range(3):  # interleaved, medians
                a.append(model_only(job.stylise(ring=2), images, batch)[0])
                c.append(pipeline(job, clip, tmp / "out.mp4"))
            # the decoder alone
            t0 = time.perf_counter()
            with VideoFileSource(clip) as source:
                info = source.info
                n_dec = sum(1 for _ in source.frames())
            dec = n_dec / (time.perf_counter() - t0)
            # the encoder alone (run_video's VideoFileSink, libx264 defaults) on stylised frames
            flow = job.stylise(ring=2)
            styled = [flow([img])[0].copy() for img in images]
            tb = info.time_base
            frames = [Frame(i, int(round(i / (info.fps * tb))), tb, 0.0, img)
                      for i, img in enumerate(styled)]
            with VideoFileSink(tmp / "enc.mp4", info, None, overwrite=True) as sink:
                t0 = time.perf_counter()
                for f in frames:
                    sink.write(f)
                sink.finish()
                enc = len(frames) / (time.perf_counter() - t0)
        ma, mc = statistics.median(a), statistics.median(c)
        h, w = images[0].shape[:2]
        side = "encoder" if enc <= dec else "decoder"
        bound = side if min(enc, dec) < ma and mc >= 0.85 * min(enc, dec) else "model/pipeline"
        results[full.name] = {"size": f"{w}x{h}", "batch": batch, "model_only_fps": round(ma, 1),
                              "pipeline_fps": round(mc, 1), "ratio": round(mc / ma, 3),
                              "decoder_fps": round(dec, 1), "encoder_fps": round(enc, 1),
                              "limited_by": bound}
        ok = mc / ma >= 0.9 or bound == "encoder"
        say(f"offline {full.name} ({w}x{h}, {len(images)} frames, batch {batch}, run_video's "
            f"default encoder libx264 crf 18 medium): model-only {ma:.1f} fps, pipeline {mc:.1f} fps "
            f"(ratio {mc / ma:.3f}); decoder alone {dec:.1f} fps, encoder alone {enc:.1f} fps; "
            f"limited by the {bound}  ({'PASS' if ok else 'FAIL'}: goal ratio >= 0.9 or "
            f"encoder-bound)")
    RESULTS["offline"] = results


def section_live(data: Path, seconds: float, work: int) -> None:
    from bench.live import run_one
    from streamer.config import LiveSettings
    settings = LiveSettings(device=DEVICE, precision="fast", style="anime",
                            sinks=("null",), faces="off")
    rows = {}
    for (w, h, fps) in ((1920, 1080, 30.0), (1280, 720, 60.0)):
        r = run_one(settings, w, h, fps, work, seconds, 30)
        goal = r["model_ms"] + 1000 / fps
        key = f"{h}p{fps:g}"
        rows[key] = {**{k: r[k] for k in ("work", "model_ms", "p50_ms", "p95_ms", "fps_in",
                                           "fps_out", "drops")}, "goal_p95_ms": round(goal, 1)}
        say(f"live {key} (synthetic camera {w}x{h} @ {fps:g}, work {r['work']}): p50 "
            f"{r['p50_ms']} ms, p95 {r['p95_ms']} ms, model {r['model_ms']} ms, fps out "
            f"{r['fps_out']}, drops {r['drops']}  ({'PASS' if r['p95_ms'] <= goal else 'FAIL'}: "
            f"goal p95 <= {goal:.1f} ms = one interval + model)")
    RESULTS["live"] = rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(ROOT / "gpu_data"))
    p.add_argument("--sections", default="parity,fast,model,offline,live")
    p.add_argument("--live-seconds", type=float, default=10.0)
    p.add_argument("--json", default=None)
    p.add_argument("--device", default="torch-cuda", choices=("torch-cuda", "torch-cpu"))
    p.add_argument("--model-size", default="720x1280", help="HxW for the model section")
    p.add_argument("--batches", default="1,4,8,16")
    p.add_argument("--frames", type=int, default=0, help="offline: first N frames (0: all)")
    p.add_argument("--live-work", type=int, default=720, help="live working short side")
    a = p.parse_args()
    global DEVICE
    DEVICE = a.device
    data = Path(a.data).resolve()
    if not (data / "golden_dctnet.npz").is_file():
        say(f"error: {data} has no golden_dctnet.npz: fill it with `bash bench/gpu_data.sh`")
        return 2
    prepare(data)
    import torch
    if DEVICE == "torch-cuda" and not torch.cuda.is_available():
        say(f"error: PyTorch {torch.__version__} sees no CUDA GPU")
        return 2
    environment()
    failed = []
    for name in a.sections.split(","):
        t0 = time.perf_counter()
        say(f"--- {name}")
        try:
            extra = {"live": (a.live_seconds, a.live_work), "offline": (a.frames,),
                     "model": (tuple(int(x) for x in a.model_size.split("x")),
                               [int(x) for x in a.batches.split(",")])}.get(name, ())
            globals()[f"section_{name}"](data, *extra)
        except Exception as exc:  # one section's failure must not hide the others' figures
            failed.append(name)
            say(f"SECTION {name} did not complete: {type(exc).__name__}: {exc}")
            traceback.print_exc(limit=6, file=sys.stdout)
        say(f"    ({time.perf_counter() - t0:.1f} s)")
    if a.json:
        Path(a.json).write_text(json.dumps(RESULTS, indent=2) + "\n")
    say(f"--- summary: {json.dumps(RESULTS)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
