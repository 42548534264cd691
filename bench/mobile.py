"""Mobile-DCTNet measured (issue 26): time against the official network, fidelity to it.

    python -m bench.mobile speed [--arch 16-32-64x3 ...] [--reps 20]
        light / official time at 288x288 and 640x360 (run at 656x368, the official
        padding), same precision, ONNX Runtime (fp32) and OpenVINO (fp32, and bf16 where
        the CPU has it; with --int8 also int8: the store's official int8 model, built if
        missing, against the student quantized as the store does, models/mobile/int8.py),
        one thread per core, median of --reps runs after a warm-up.
    python -m bench.mobile fidelity --style STYLE --frames VIDEO [--unseen IMAGE ...]
        mean |diff| and SSIM against the official output on frames held out of the
        distillation (the trainer's held_out rule) and on people it never saw: the whole
        frame, and the head part on those images' aligned faces.

    python -m bench.mobile blend --style anime --with 3d --images A.png B.png --sheet S.png
        a student holding both styles at blend weights 0, 0.25, 0.5, 0.75, 1: the contact
        sheet (input | official A | the five | official B, one row per image), how far each
        weight lands from the two ends (mean |diff|), and the time of a blended run and of a
        switch against a single style's run, side by side on one session.

Official weights come from the model store (--models / TOONSTREAM_MODELS).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

from bench.cpu import cpu_name
from streamer.models.mobile.graph import STYLE_INPUT, build_student_onnx
from streamer.models.mobile.net import Arch, init_weights, macs_per_pixel
from streamer.signals import keep_signal_stack

SIZES = ((288, 288), (368, 656))
OFFICIAL_MACS = 124_608


def _ort(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def run(x, code):
        feed = {"input_image": x}
        if code is not None:
            feed[STYLE_INPUT] = code
        return s.run(None, feed)[0]
    return run


def _ov(path: Path, shape, hint: str):
    import openvino as ov

    core = ov.Core()
    m = core.read_model(str(path))
    m.reshape({0: list(shape)})
    with keep_signal_stack():  # else a Ctrl+C after two Cores may segfault
        req = core.compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": hint,
                                            "PERFORMANCE_HINT": "LATENCY",
                                            "NUM_STREAMS": "1"}).create_infer_request()

    def run(x, code):
        feed = {0: x} if code is None else {0: x, 1: code}
        req.infer(feed, share_inputs=True)
        return req.get_output_tensor(0).data
    return run


def _time(run, x, code, reps: int) -> float:
    run(x, code)
    run(x, code)
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        run(x, code)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def speed(args) -> None:
    import onnx
    import openvino as ov

    from streamer.models import open_store

    store = open_store(args.models)
    official = store.onnx_model_path(args.style, "bg", "fp32")
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    students = {}
    for tag in args.arch:
        arch = Arch.parse(tag)
        p = work / f"student_{tag}.onnx"
        onnx.save(build_student_onnx(init_weights(arch, 4), arch, 4), str(p))
        students[tag] = p
    int8 = {}
    if args.int8:
        from streamer.models.calibration import SYNTHETIC, frames_for
        from streamer.models.dctnet.int8 import weight_levels
        from streamer.models.mobile.int8 import quantize_student

        int8[None] = store.onnx_model_path(args.style, "bg", "int8")
        for tag, p in students.items():
            q = work / f"student_{tag}_int8.onnx"
            onnx.save(quantize_student(p, frames_for(SYNTHETIC), weight_levels())[0], str(q))
            int8[tag] = q
    with keep_signal_stack():
        caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    hints = ["f32"] + (["bf16"] if "BF16" in caps else [])
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores")
    print(f"official: {OFFICIAL_MACS} MACs/px; " + ", ".join(
        f"{t}: {macs_per_pixel(Arch.parse(t)):.0f} MACs/px ({macs_per_pixel(Arch.parse(t)) / OFFICIAL_MACS:.3f}x)"
        for t in args.arch))
    code = np.eye(4, dtype=np.float32)[0]
    for h, w in SIZES:
        x = np.random.default_rng(0).integers(0, 256, (1, h, w, 3), np.uint8)
        backends = [("onnxruntime fp32", lambda p: _ort(p))] + \
            [(f"openvino {hint}", lambda p, hint=hint: _ov(p, (1, h, w, 3), hint)) for hint in hints]
        if int8:  # the float layers of an int8 model run as the engine runs them
            backends.append((f"openvino int8+{hints[-1]}",
                             lambda p, hint=hints[-1]: _ov(p, (1, h, w, 3), hint)))
        for label, make in backends:
            models = int8 if "int8" in label else {None: official, **students}
            t_off = _time(make(models[None]), x, None, args.reps)
            row = [f"{w}x{h} {label}: official {t_off * 1e3:.1f} ms"]
            for tag in students:
                t = _time(make(models[tag]), x, code, args.reps)
                row.append(f"{tag} {t * 1e3:.1f} ms ({t / t_off:.2f}x)")
            print("; ".join(row), flush=True)


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM over the channels (Gaussian 11x11, sigma 1.5, the usual constants)."""
    import cv2

    a, b = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    blur = lambda t: cv2.GaussianBlur(t, (11, 11), 1.5)  # noqa: E731
    ma, mb = blur(a), blur(b)
    va, vb, cov = blur(a * a) - ma * ma, blur(b * b) - mb * mb, blur(a * b) - ma * mb
    return float((((2 * ma * mb + c1) * (2 * cov + c2)) /
                  ((ma * ma + mb * mb + c1) * (va + vb + c2))).mean())


def fidelity(args) -> None:
    """Light against official on the held-out frames of the footage the student was
    distilled on (the trainer's held_out rule, same --video-frames) and on unseen images,
    whole frames through the ONNX Runtime engines at the official padding."""
    from streamer.models import open_store
    from streamer.models.mobile.store import students
    from streamer.train.data import held_out, read_media
    from streamer.toon.engine import EngineSettings
    from streamer.toon.styles import StyleFlows

    store = open_store(args.models)
    off = StyleFlows(store, EngineSettings(device="cpu"), faces="off")
    light = StyleFlows(store, EngineSettings(device="cpu"), faces="off", net="mobile")
    name = students(store).holding([args.style])
    from streamer.models import ModelNotInstalled
    from streamer.toon.faces.detect import FaceDetector
    from streamer.train.data import align_faces
    try:
        detector = FaceDetector(store.file_path("yunet.onnx"), max_side=1280)
    except ModelNotInstalled:
        detector = None  # no head figures
    frames = read_media([Path(p) for p in args.frames], video_frames=args.video_frames).images
    _, held = held_out(frames, 3)
    sets = {"held-out frames": held}
    if args.unseen:
        sets["people never seen"] = read_media([Path(p) for p in args.unseen]).images
    for label, imgs in sets.items():
        diffs, ssims = [], []
        for img in imgs:
            h, w = img.shape[0] // 16 * 16, img.shape[1] // 16 * 16
            x = np.ascontiguousarray(img[:h, :w])[None]
            a = off.engine(args.style).run(x)[0]
            b = light.engine(args.style).run(x)[0]
            diffs.append(np.abs(a.astype(int) - b).mean())
            ssims.append(_ssim(a, b))
        print(f"{name} {args.style} {label} ({len(imgs)}): mean |diff| "
              f"{np.mean(diffs):.2f} levels, SSIM {np.mean(ssims):.3f}", flush=True)
        faces = align_faces(imgs, detector) if detector is not None else []
        if faces:  # the head part, on the same images' aligned faces, against the official head
            hd, hs = [], []
            for face in faces:
                a = off.head_engine(args.style).run(face[None])[0]
                b = light.head_engine(args.style).run(face[None])[0]
                hd.append(np.abs(a.astype(int) - b).mean())
                hs.append(_ssim(a, b))
            print(f"{name} {args.style} {label}, heads ({len(faces)} aligned faces): mean "
                  f"|diff| {np.mean(hd):.2f} levels, SSIM {np.mean(hs):.3f}", flush=True)


WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def _square(img: np.ndarray) -> np.ndarray:
    """The centre square (the sheet's tiles are square), sides multiples of 16."""
    h, w = img.shape[:2]
    side = min(h, w) // 16 * 16
    y, x = (h - side) // 2, (w - side) // 2
    return np.ascontiguousarray(img[y:y + side, x:x + side])


def blend(args) -> None:
    from streamer.models import open_store
    from streamer.models.mobile.store import students
    from streamer.toon.engine import EngineSettings
    from streamer.toon.styles import StyleFlows
    from streamer.train.data import read_media
    from streamer.train.sheets import preview_sheet, write_png

    a, b = args.style, args.other
    store = open_store(args.models)
    off = StyleFlows(store, EngineSettings(device="cpu"), faces="off")
    light = StyleFlows(store, EngineSettings(device="cpu"), faces="off", net="mobile")
    name = students(store).holding([a, b])
    engine = light.engine(a)  # one session; the blend weight is the style code's value
    imgs = [_square(img) for img in read_media([Path(p) for p in args.images]).images]
    rows, dist = [], {t: ([], []) for t in WEIGHTS}
    for img in imgs:
        x = img[None]
        outs = []
        for t in WEIGHTS:
            engine.set_style_mix({a: 1.0 - t, b: t})
            outs.append(engine.run(x)[0].copy())
        for t, o in zip(WEIGHTS, outs):
            dist[t][0].append(np.abs(o.astype(int) - outs[0]).mean())
            dist[t][1].append(np.abs(o.astype(int) - outs[-1]).mean())
        rows.append([img, off.engine(a).run(x)[0].copy(), *outs, off.engine(b).run(x)[0].copy()])
    titles = ["input", f"official {a}", *[f"{a}+{b}:{t:g}" if 0 < t < 1 else
                                           f"light {a if t == 0 else b}" for t in WEIGHTS],
              f"official {b}"]
    sheet = preview_sheet(rows, titles, tile=args.tile)
    write_png(Path(args.sheet), sheet)
    print(f"{name}: {a} -> {b} on {len(imgs)} image(s); contact sheet {args.sheet}; "
          f"CPU {cpu_name()}")
    for t in WEIGHTS:
        print(f"  weight {t:4.2f}: mean |diff| to light {a} {np.mean(dist[t][0]):5.2f}, "
              f"to light {b} {np.mean(dist[t][1]):5.2f} levels")
    # Time: a blended code against a one-style code, and the switch itself, in turns
    x = imgs[0][None]
    single, mixed, switch = [], [], []
    for _ in range(args.reps):
        engine.set_style_mix({a: 1.0})
        t0 = time.perf_counter()
        engine.run(x)
        single.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        engine.set_style_mix({a: 0.7, b: 0.3})
        switch.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        engine.run(x)
        mixed.append(time.perf_counter() - t0)
    t1, t2 = statistics.median(single), statistics.median(mixed)
    print(f"  {x.shape[2]}x{x.shape[1]}: one style {t1 * 1e3:.1f} ms, blend {t2 * 1e3:.1f} ms "
          f"({t2 / t1:.2f}x); switching the code {statistics.median(switch) * 1e6:.0f} us "
          f"(no rebuild: the same session)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.mobile")
    ap.add_argument("--models", default=None)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("speed")
    sp.add_argument("--arch", nargs="+", default=["16-32-64x3"])
    sp.add_argument("--style", default="anime")
    sp.add_argument("--reps", type=int, default=20)
    sp.add_argument("--workdir", default="out/bench_mobile")
    sp.add_argument("--int8", action="store_true", help="also int8 on OpenVINO")
    fp = sub.add_parser("fidelity")
    fp.add_argument("--style", default="anime")
    fp.add_argument("--frames", nargs="+", required=True)
    fp.add_argument("--video-frames", type=int, default=60)
    fp.add_argument("--unseen", nargs="*", default=[])
    bp = sub.add_parser("blend")
    bp.add_argument("--style", default="anime")
    bp.add_argument("--with", dest="other", default="3d")
    bp.add_argument("--images", nargs="+", required=True)
    bp.add_argument("--sheet", default="out/bench_mobile/blend_sheet.png")
    bp.add_argument("--tile", type=int, default=192)
    bp.add_argument("--reps", type=int, default=15)
    args = ap.parse_args(argv)
    if args.cmd == "blend":
        blend(args)
    if args.cmd == "fidelity":
        fidelity(args)
    if args.cmd == "speed":
        speed(args)


if __name__ == "__main__":
    main()
