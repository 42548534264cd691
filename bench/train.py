"""Personal styles: does a short training run move an official style towards another one?

    python -m bench.train [--models DIR] [--base anime] [--target 3d] [--steps 300]
                          [--size 128] [--ablation] [--out DIR] [--parts auto|bg|h]
                          [--lr 2e-3] [--batch 2] [--loss NAME=WEIGHT ...]

The setup (issue 25's): the exemplars are the TARGET official style's own outputs on frames
of one shared clip; the content photos are other frames of the clips; the adapters start
from the BASE style. On held-out frames and faces (never trained on) the target style's
official output is the reference:

    ratio = mean |new - target| / mean |start - target|      (goal <= 0.6)

for the whole-frame model on held-out frames and for the head model on held-out aligned
faces. Identity: dlib's own 128-d descriptor distance from the input face to the output
face (the head model's output on the aligned crop), for the start and for the new style
(goal: new <= start + 0.05). `--ablation` trains again with each loss off in turn.
Printed: the CPU, each run's time, adapter size, and the figures; `--out` keeps the sheets.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from bench.cpu import cpu_name
from streamer.models import open_store
from streamer.models.dctnet.lora import merge
from streamer.models.dctnet.torch_net import DctNet
from streamer.report import Log
from streamer.train.data import align_faces
from streamer.train.losses import LossWeights
from streamer.train.run import TrainRequest, run_training
from streamer.toon.faces.detect import FaceDetector


def stylise(weights, images: list[np.ndarray]) -> list[np.ndarray]:
    net = DctNet(weights).eval()
    with torch.no_grad():
        return [net(torch.from_numpy(im[None]))[0].numpy() for im in images]


def mean_abs(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Mean |a - b| over every pixel of every image (images of several sizes)."""
    total = sum(float(np.abs(x.astype(np.int16) - y).sum()) for x, y in zip(a, b))
    return total / sum(x.size for x in a)


def frames(clip: Path, idx: list[int], short: int) -> list[np.ndarray]:
    import av

    want, out = set(idx), []
    with av.open(str(clip)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i in want:
                img = f.to_ndarray(format="bgr24")
                h, w = img.shape[:2]
                k = short / min(h, w)
                img = cv2.resize(img, (round(w * k) // 4 * 4, round(h * k) // 4 * 4),
                                 interpolation=cv2.INTER_AREA)
                out.append(img)
            if i > max(want):
                break
    return out


class Identity:
    """dlib's own descriptor (the measuring stick, not the training port)."""

    def __init__(self) -> None:
        import importlib.util

        import dlib

        spec = importlib.util.find_spec("face_recognition_models")
        models = Path(spec.origin).parent / "models"
        self.detect = dlib.get_frontal_face_detector()
        self.shape = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self.net = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
        self.dlib = dlib

    def _shape(self, rgb: np.ndarray):
        boxes = self.detect(rgb, 0)
        if boxes:
            box = max(boxes, key=lambda b: b.width() * b.height())
        else:
            # An aligned crop is all face, where dlib's HOG detector often finds none: the
            # box it does find on such crops (74..254 of 288) scaled to this one.
            h, w = rgb.shape[:2]
            box = self.dlib.rectangle(round(w * 0.257), round(h * 0.257),
                                      round(w * 0.882), round(h * 0.882))
        return self.shape(rgb, box)

    def distance(self, photo: np.ndarray, toon: np.ndarray) -> float | None:
        """Descriptor distance between an aligned input face and the head model's output
        on it. The output lies pixel for pixel on the input, so both are cut to the chip of
        the INPUT's landmarks: the same region, with no landmark fit on a drawing."""
        rgb_a = np.ascontiguousarray(photo[..., ::-1])
        rgb_b = np.ascontiguousarray(toon[..., ::-1])
        shape = self._shape(rgb_a)
        d = [np.asarray(self.net.compute_face_descriptor(self.dlib.get_face_chip(im, shape, 150, 0.25)))
             for im in (rgb_a, rgb_b)]
        return float(np.linalg.norm(d[0] - d[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=os.environ.get("TOONSTREAM_MODELS"))
    ap.add_argument("--base", default="anime")
    # A colour style: sketch (grey) is the case the cycle loss holds back, see README
    ap.add_argument("--target", default="3d")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--exemplars", type=int, default=24, help="target-style exemplars made")
    ap.add_argument("--lr", type=float, default=TrainRequest.lr, help="the adapters' learning rate")
    ap.add_argument("--batch", type=int, default=TrainRequest.batch)
    ap.add_argument("--parts", default="auto", choices=("auto", "bg", "h"))
    ap.add_argument("--loss", action="append", default=[], metavar="NAME=WEIGHT",
                    help="a loss weight other than the default (repeatable)")
    ap.add_argument("--ablation", action="store_true", help="also each loss off in turn")
    ap.add_argument("--out", type=Path, default=None, help="keep working folders here")
    a = ap.parse_args(argv)
    store = open_store(a.models)
    media = store.root.parent / "media" if (store.root.parent / "media").is_dir() else None
    if media is None:
        raise SystemExit("bench.train needs the shared media beside the model store")
    tears, event = media / "tears_640x360.mp4", media / "event_640x480.mp4"
    # Exemplars from the target style on one set of frames; photos from others; held-out
    # frames from a third set (every third frame of each clip, in turn).
    ex_src = frames(tears, list(range(0, 240, 240 // a.exemplars)), 256)
    photo_idx = [i for i in range(1, 240, 6)]
    held_idx = [i for i in range(3, 240, 40)]
    tmp = Path(a.out or tempfile.mkdtemp(prefix="toonstream-bench-train-"))
    (tmp / "exemplars").mkdir(parents=True, exist_ok=True)
    (tmp / "photos").mkdir(parents=True, exist_ok=True)
    target_bg, target_h = store.weights(a.target, "bg"), store.weights(a.target, "h")
    for i, img in enumerate(stylise(target_bg, ex_src)):
        cv2.imwrite(str(tmp / "exemplars" / f"{i:03d}.png"), img)
    for i, img in enumerate(frames(tears, photo_idx, 256) + frames(event, photo_idx[:20], 256)):
        cv2.imwrite(str(tmp / "photos" / f"{i:03d}.png"), img)
    for name in ("luciano.png", "astronaut.png"):  # faces for the head adapter
        cv2.imwrite(str(tmp / "photos" / name), cv2.imread(str(media / name)))
    held = frames(tears, held_idx, 256) + frames(event, held_idx[:3], 256)
    detector = FaceDetector(store.file_path("yunet.onnx"), max_side=1280)
    held_faces = align_faces([cv2.imread(str(media / "bryan_115px.png")),
                              *frames(tears, list(range(100, 240, 10)), 360)], detector)[:6]
    ident = None
    try:
        ident = Identity()
    except Exception as exc:  # noqa: BLE001 - dlib is a dev extra
        print(f"identity: not measured ({exc})")

    base_bg, base_h = store.weights(a.base, "bg"), store.weights(a.base, "h")
    t_bg, s_bg = stylise(target_bg, held), stylise(base_bg, held)
    t_h = stylise(target_h, held_faces) if held_faces else None
    s_h = stylise(base_h, held_faces) if held_faces else None

    def figures(adapter) -> dict:
        out = {}
        n_bg = stylise(merge(base_bg, adapter, "bg"), held)
        out["bg ratio"] = mean_abs(n_bg, t_bg) / mean_abs(s_bg, t_bg)
        if held_faces:
            part = "h" if adapter.has_part("h") else "bg"
            n_h = stylise(merge(base_h, adapter, part), held_faces)
            out["head ratio"] = mean_abs(n_h, t_h) / mean_abs(s_h, t_h)
            if ident is not None:
                d_start = [ident.distance(f, s) for f, s in zip(held_faces, s_h)]
                d_new = [ident.distance(f, n) for f, n in zip(held_faces, n_h)]
                pairs = [(x, y) for x, y in zip(d_start, d_new) if x is not None and y is not None]
                if pairs:
                    out["identity start"] = float(np.mean([x for x, _ in pairs]))
                    out["identity new"] = float(np.mean([y for _, y in pairs]))
                    out["faces measured"] = len(pairs)
        return out

    print(f"CPU: {cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{a.base} -> {a.target}: {a.exemplars} exemplars, {len(list((tmp / 'photos').iterdir()))} "
          f"photos, {len(held)} held-out frames, {len(held_faces)} held-out faces; "
          f"{a.steps} steps at {a.size} px, rank {a.rank}")
    base_w = LossWeights(**{k: float(v) for k, v in (x.split("=", 1) for x in a.loss)})
    runs = [("all losses", base_w)]
    if a.ablation:
        for f in dataclasses.fields(LossWeights):
            if f.name != "l1":
                runs.append((f"no {f.name}", dataclasses.replace(base_w, **{f.name: 0.0})))
    log = Log()
    rows = []
    for label, weights in runs:
        work = tmp / label.replace(" ", "-")
        req = TrainRequest(name="bench", base=a.base, exemplars=tmp / "exemplars",
                           photos=[tmp / "photos"], steps=a.steps, rank=a.rank, size=a.size,
                           lr=a.lr, batch=a.batch, parts=a.parts, losses=weights, workdir=work, preview_every=max(1, a.steps // 4),
                           install=False, progress=False)
        t0 = time.perf_counter()
        outcome = run_training(store, req, lambda line: None)
        took = time.perf_counter() - t0
        fig = figures(outcome.adapter)
        size_mb = outcome.adapter_path.stat().st_size / 1e6
        rows.append((label, took, size_mb, fig))
        log(f"{label}: {took / 60:.1f} min, adapter {size_mb:.2f} MB, " +
            ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in fig.items()))
    print()
    print("| run | minutes | MB | bg ratio | head ratio | identity start | identity new |")
    print("|---|---|---|---|---|---|---|")
    for label, took, mb, fig in rows:
        cell = lambda k: f"{fig[k]:.3f}" if k in fig else "-"  # noqa: E731
        print(f"| {label} | {took / 60:.1f} | {mb:.2f} | {cell('bg ratio')} | {cell('head ratio')} "
              f"| {cell('identity start')} | {cell('identity new')} |")
    print("goals: ratio <= 0.6; identity new <= start + 0.05; default run <= 15 min; adapter <= 2 MB")
    print(f"working folders (sheets, loss curves): {tmp}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
