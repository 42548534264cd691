"""Distillation: a Mobile-DCTNet student learns the official styles from their own outputs,
run by the one Trainer (trainer.py) like personal styles.

The teachers are the official generators (`store.weights(style, part)`, frozen): the bg
model on random crops of the photos' frames, the head model on face crops aligned by the
project's face pipeline (data.align_faces), rendered once at its own 288x288 crop and seen
at the training size through the same random view as the input (HeadPairs). One student holds every requested style: each
(part, style) has its own style code (models/mobile/student.py), and the steps cycle over
them. Loss: L1 between the student's (before the final clip, which has no gradient
outside [-1, 1]) and the teacher's rendered outputs, plus the feature loss of personal
styles (losses.perceptual) on the frozen teacher encoder's maps of both.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from streamer.errors import UserError
from streamer.models.mobile.net import Arch
from streamer.models.mobile.student import Student, save_student
from streamer.toon.faces.align import CROP_SIZE

from . import losses as L
from .data import Crops, TrainDataError, align_faces, held_out, read_media, square
from .lora_net import LoraGenerator, to_images, to_tensor
from .mobile_net import MobileNet
from .sheets import preview_sheet
from .trainer import Trainer, TrainingStopped, TrainResult

HELD_OUT = 3


@dataclass
class DistillRequest:
    styles: list[str]
    photos: list[Path]
    name: str | None = None
    arch: str = Arch().tag()
    steps: int = 2000
    size: int = 128
    batch: int = 4
    lr: float = 2e-3
    l1: float = 1.0
    perceptual: float = 1.0
    video_frames: int = 60
    preview_every: int = 100
    workdir: Path = Path("toonstream-distill")
    resume: bool = False
    seed: int = 0
    progress: bool = False
    overwrite: bool = False
    install: bool = True
    heads: bool = True
    command: str = ""


class DistillTask:
    """The trainer's task: one student, a frozen teacher per (part, style)."""

    def __init__(self, student: MobileNet, teachers: dict[tuple[str, str], LoraGenerator],
                 crops: dict[str, Crops], held: dict[str, list[np.ndarray]],
                 styles: list[str], req: DistillRequest):
        self.net, self.teachers, self.crops, self.styles, self.req = \
            student, teachers, crops, styles, req
        self.parts = [p for p in ("bg", "h") if p in crops]
        self.order = [(p, s) for p in self.parts for s in styles]
        self.weights = L.LossWeights(adv=0, cycle=0, perceptual=req.perceptual, calibration=0,
                                     identity=0, l1=req.l1)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=req.lr, betas=(0.9, 0.99))
        self.held = {p: to_tensor(np.stack(v)) for p, v in held.items() if v}
        # (part, style) -> what the teacher draws for the held-out inputs, where it is not
        # its render at the training size (the heads: HeadPairs)
        self.held_targets: dict[tuple[str, str], np.ndarray] = {}
        torch.manual_seed(req.seed)

    def code(self, part: str, style: str) -> torch.Tensor:
        c = torch.zeros(self.net.styles)
        c[self.parts.index(part) * len(self.styles) + self.styles.index(style)] = 1.0
        return c

    def step(self, step: int) -> dict[str, float]:
        part, style = self.order[step % len(self.order)]
        teacher = self.teachers[(part, style)]
        crops = self.crops[part]
        if isinstance(crops, HeadPairs):
            inputs, targets = crops.pairs(self.req.batch, style)
            x, target = to_tensor(inputs), to_tensor(targets)
        else:
            x = to_tensor(crops.batch(self.req.batch))
            with torch.no_grad():
                target = teacher.render(x)
        out = self.net.render(x, self.code(part, style), clip=False)
        terms = {"l1": torch.nn.functional.l1_loss(out, target)}
        if self.weights.on("perceptual"):
            with torch.no_grad():
                ft = teacher.features(target)
            terms["perceptual"] = L.perceptual(teacher.features(out), ft)
        loss = sum(getattr(self.weights, k) * v for k, v in terms.items())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        result = {k: float(v.detach()) for k, v in terms.items()}
        result["total"] = float(loss.detach())
        return result

    def state_dict(self) -> dict:
        return {"net": self.net.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])

    def signature(self) -> dict:
        r = self.req
        return {"styles": self.styles, "parts": self.parts, "arch": self.net.arch.tag(),
                "size": r.size, "batch": r.batch, "lr": r.lr, "l1": r.l1,
                "perceptual": r.perceptual, "seed": r.seed, "head_targets": CROP_SIZE}

    @torch.no_grad()
    def preview(self) -> np.ndarray:
        rows, titles = [], ["input"]
        for s in self.styles:
            titles += [f"official {s}", f"light {s}"]
        for part, x in self.held.items():
            outs = [to_images(x)]
            for s in self.styles:
                shown = self.held_targets.get((part, s))
                outs.append(shown if shown is not None
                            else to_images(self.teachers[(part, s)].render(x)))
                outs.append(to_images(self.net.render(x, self.code(part, s))))
            rows += [[o[i] for o in outs] for i in range(len(x))]
        return preview_sheet(rows, titles)

    def student(self, name: str, steps: int, meta: dict[str, str]) -> Student:
        return Student(name, self.net.arch, tuple(self.styles), tuple(self.parts),
                       self.net.weights(), {"steps": str(steps), **meta})


class HeadPairs(Crops):
    """The head part's training pairs: an aligned face crop and what the official head
    model draws for it at its own 288x288 crop, seen through the same random view at the
    training size. The head model draws a different face on a smaller crop (measured by
    bench/head_sizes.py), so rendering the teacher on the small training crop, as the
    whole-frame part does, taught the student that other face."""

    def __init__(self, faces: list[np.ndarray], size: int, rng: np.random.Generator):
        super().__init__(faces, size, rng, aligned=True)
        self.targets: dict[str, list[np.ndarray]] = {}  # style -> one per face, 288 px

    def pairs(self, n: int, style: str) -> tuple[np.ndarray, np.ndarray]:
        inputs, targets = [], []
        for _ in range(n):
            i = int(self.rng.integers(len(self.images)))
            view = self.jitter(self.images[i].shape[0])
            inputs.append(self.aligned_crop(self.images[i], view))
            targets.append(self.aligned_crop(self.targets[style][i], view))
        return np.stack(inputs), np.stack(targets)


@torch.no_grad()
def official_heads(teacher: LoraGenerator, faces: list[np.ndarray]) -> list[np.ndarray]:
    """The teacher's heads for aligned 288x288 `faces`, a few at a time."""
    out: list[np.ndarray] = []
    for k in range(0, len(faces), 4):
        out += list(to_images(teacher.render(to_tensor(np.stack(faces[k:k + 4])))))
    return out


@dataclass
class DistillOutcome:
    student: Student
    path: Path
    result: TrainResult
    notes: list[str] = field(default_factory=list)
    held: dict[str, list[np.ndarray]] = field(default_factory=dict)


def _faces(store, images: list[np.ndarray], notes: list[str]) -> list[np.ndarray]:
    from streamer.models import ModelNotInstalled
    from streamer.toon.faces.detect import FaceDetector

    try:
        detector = FaceDetector(store.file_path("yunet.onnx"), max_side=1280)
    except ModelNotInstalled:
        notes.append("heads skipped: the face detector is not installed "
                     "(python -m streamer.models fetch face)")
        return []
    faces = align_faces(images, detector)
    if not faces:
        notes.append("heads skipped: no face over 60 px in the photos")
    return faces


def run_distill(store, req: DistillRequest, log) -> DistillOutcome:
    """Read the photos, build the task, train, write the student (and install it)."""
    from streamer.models.mobile.store import students

    if not req.styles:
        raise UserError("distill: name at least one official style")
    for s in req.styles:
        if s not in store.catalog.styles:
            raise UserError(f"distill: {s!r} is not an official style "
                            f"({', '.join(store.catalog.styles)})")
    name = req.name or "-".join(req.styles)
    shelf = students(store)
    if req.install:
        shelf.check_name(name)
        if name in shelf.names() and not req.overwrite:
            raise UserError(f"a light network {name!r} is already installed; add -y to "
                            f"replace it, or choose another --name")
    arch = Arch.parse(req.arch)
    photos = read_media(req.photos, video_frames=req.video_frames)
    notes = [f"skipped {n}: not an image or video this tool can read" for n in photos.skipped]
    if not len(photos):
        raise TrainDataError("--photos: no readable image or video frame")
    rng = np.random.default_rng(req.seed)
    train_imgs, held_bg = held_out(photos.images, HELD_OUT)
    crops = {"bg": Crops(train_imgs, req.size, rng, aligned=False)}
    held = {"bg": [square(im, req.size) for im in held_bg]}
    if req.heads:
        faces = _faces(store, photos.images, notes)
        if faces:
            train_faces, held_h = held_out(faces, HELD_OUT)
            crops["h"] = HeadPairs(train_faces, req.size, rng)
            held["h"] = [square(f, req.size) for f in held_h]
    for n in notes:
        log(f"note: {n}")
    teachers = {}
    for part in crops:
        for s in req.styles:
            t = LoraGenerator(store.weights(s, part), None).eval()
            teachers[(part, s)] = t
    net = MobileNet(arch, len(req.styles) * len(crops), seed=req.seed)
    task = DistillTask(net, teachers, crops, held, list(req.styles), req)
    if "h" in crops:
        log(f"distill: the official heads of {len(faces)} face(s) at "
            f"{CROP_SIZE} px, once per style (the targets of the head part)")
        for s in req.styles:
            crops["h"].targets[s] = official_heads(teachers[("h", s)], train_faces)
            task.held_targets[("h", s)] = np.stack(
                [square(f, req.size) for f in official_heads(teachers[("h", s)], held_h)])
    log(f"distill: {name} ({arch.tag()}) from {', '.join(req.styles)}: {len(photos)} photos and "
        f"frames; parts {', '.join(crops)}; {req.steps} steps at {req.size} px, batch "
        f"{req.batch}; losses l1 {req.l1:g}, perceptual {req.perceptual:g}; working folder "
        f"{req.workdir}")
    trainer = Trainer(task, req.steps, req.workdir, preview_every=req.preview_every,
                      progress=req.progress, log=log)
    try:
        result = trainer.run(resume=req.resume)
    except TrainingStopped as stop:
        log(f"stopped at step {stop.step} of {req.steps}; checkpoint saved in {req.workdir}: "
            f"continue with --resume")
        raise stop.cause from None
    student = task.student(name, result.steps, {
        "size": str(req.size), "head_targets": str(CROP_SIZE), "command": req.command,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    path = req.workdir / f"{name}.safetensors"
    save_student(path, student)
    if req.install:
        path = shelf.install(path, name, overwrite=req.overwrite)
    log(f"done: {name} in {result.seconds / 60:.1f} min -> {path}; loss curve {result.curve}")
    return DistillOutcome(student, path, result, notes, held)
