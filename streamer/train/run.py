"""One personal-style training run, from a request to an installed style: what run_train.py,
bench/train.py and the tests share.

Reads the exemplars and photos, finds and aligns faces with the project's face pipeline,
builds a part task per model part (the whole-frame model on frame crops, the head model on
aligned face crops), measures fp32 against bf16 autocast, runs the trainer, and installs the
adapter in the model store.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from streamer.errors import UserError
from streamer.models.dctnet.lora import Adapter, save_adapter

from .data import Crops, TrainDataError, align_faces, held_out, read_media, square
from .losses import LossWeights
from .personal import PartTask, PersonalSettings, PersonalStyleTask
from .trainer import Trainer, TrainingStopped, TrainResult

MIN_EXEMPLARS = 5
HELD_OUT = 3


@dataclass
class TrainRequest:
    name: str
    base: str
    exemplars: Path
    photos: list[Path]
    steps: int = 300
    rank: int = 8
    size: int = 128
    batch: int = 2
    lr: float = 2e-3
    device: str = "torch-cpu"
    autocast: str = "auto"
    losses: LossWeights = field(default_factory=LossWeights)
    parts: str = "auto"  # auto, bg, h, both
    video_frames: int = 60
    preview_every: int = 50
    workdir: Path = Path("toonstream-train")
    resume: bool = False
    seed: int = 0
    progress: bool = False
    overwrite: bool = False
    install: bool = True  # False: write the adapter to the workdir only (bench, tests)


@dataclass
class TrainOutcome:
    adapter: Adapter
    adapter_path: Path
    result: TrainResult
    parts: list[str]
    notes: list[str]
    precision: str


def _face_detector(store, log):
    from streamer.models import ModelNotInstalled
    from streamer.toon.faces.detect import FaceDetector

    try:
        return FaceDetector(store.file_path("yunet.onnx"), max_side=1280)
    except ModelNotInstalled:
        return None


def _embedder(device: str):
    """dlib's face descriptor in PyTorch for the identity loss, or None where dlib's model
    file (face-recognition-models) is not installed."""
    try:
        from .face_embed import FaceEmbedder, default_model_path
        from streamer.models.dlibnet import read_resnet
    except ImportError:
        return None
    path = default_model_path()
    if path is None:
        return None
    net = FaceEmbedder(read_resnet(path)).to("cuda" if device == "torch-cuda" else "cpu").eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def _prepare(store, req: TrainRequest, log
             ) -> tuple[PersonalStyleTask, list[str], list[str], str]:
    """The task, ready for its first step: media read, faces aligned, networks built, the
    precision measured."""
    store.catalog.style(req.base)  # an unknown base style lists the styles
    _refuse_existing(store, req)
    notes: list[str] = []
    exemplars = read_media([req.exemplars], video_frames=req.video_frames)
    for name in exemplars.skipped:
        notes.append(f"skipped exemplar {name}: not an image or video this tool can read")
    if len(exemplars) < MIN_EXEMPLARS:
        raise TrainDataError(f"--exemplars {req.exemplars}: {len(exemplars)} readable image(s); at "
                             f"least {MIN_EXEMPLARS} are needed (10-200 work best)")
    photos = read_media(req.photos, video_frames=req.video_frames)
    for name in photos.skipped:
        notes.append(f"skipped photo {name}: not an image or video this tool can read")
    if not len(photos):
        raise TrainDataError("--photos: no readable image or video frame")
    rng = np.random.default_rng(req.seed)
    settings = PersonalSettings(rank=req.rank, alpha=float(req.rank), size=req.size,
                                batch=req.batch, lr=req.lr, losses=req.losses, seed=req.seed,
                                device=req.device, autocast=req.autocast)
    want_bg = req.parts in ("auto", "both", "bg")
    want_h = req.parts in ("auto", "both", "h")
    parts: dict[str, PartTask] = {}
    if want_bg:
        train_imgs, held = held_out(photos.images, HELD_OUT)
        parts["bg"] = PartTask("bg", store.weights(req.base, "bg"),
                               Crops(train_imgs, req.size, rng, aligned=False),
                               Crops(exemplars.images, req.size, rng, aligned=False),
                               [square(im, req.size) for im in held], settings)
    if want_h:
        head = _head_part(store, req, photos.images, exemplars.images, settings, rng, notes, log)
        if head is not None:
            parts["h"] = head
        elif req.parts == "h":
            raise TrainDataError("--parts h: " + notes[-1])
    for n in notes:
        log(f"note: {n}")
    task = PersonalStyleTask(req.name, req.base, parts, settings, len(exemplars), len(photos))
    precision = task.choose_precision()
    log(f"train: {req.name} from {req.base}: {len(exemplars)} exemplars, {len(photos)} photos "
        f"and frames; parts {', '.join(parts)}; {req.steps} steps at {req.size} px, rank "
        f"{req.rank}; losses {req.losses.describe()}; {precision}; working folder {req.workdir}")
    return task, list(parts), notes, precision


def run_training(store, req: TrainRequest, log) -> TrainOutcome:
    try:
        task, parts, notes, precision = _prepare(store, req, log)
    except KeyboardInterrupt:
        # Reading the media, aligning faces and timing the precision come before any step.
        log(f"stopped before training went on: the checkpoint in {req.workdir} is as it was; "
            f"continue with --resume" if req.resume else
            "stopped before the first step: nothing was trained, so there is no checkpoint; "
            "run the same command again")
        raise
    trainer = Trainer(task, req.steps, req.workdir, preview_every=req.preview_every,
                      progress=req.progress, log=log)
    try:
        result = trainer.run(resume=req.resume)
    except TrainingStopped as stop:
        log(f"stopped at step {stop.step} of {req.steps}; checkpoint saved in {req.workdir}: "
            f"continue with --resume")
        raise stop.cause from None
    adapter = task.adapter(result.steps)
    path = req.workdir / f"{req.name}.safetensors"
    save_adapter(path, adapter)
    if req.install:
        path = store.personal.install(path, req.name, overwrite=req.overwrite)
    log(f"done: {req.name} ({', '.join(parts)}) in {result.seconds / 60:.1f} min, "
        f"{adapter.parameter_count() * 4 / 1e6:.2f} MB -> {path}; loss curve {result.curve}")
    return TrainOutcome(adapter, path, result, list(parts), notes, precision)


def _refuse_existing(store, req: TrainRequest) -> None:
    """Before any work: a name the store refuses, an installed style without -y, or a
    read-only store (the result could not be installed)."""
    if not req.install:
        return
    store.personal.check_name(req.name)
    if store.personal.has(req.name) and not req.overwrite:
        raise UserError(f"a personal style {req.name!r} is already installed; add -y to replace "
                        f"it, or choose another name")
    if not store.writable:
        raise UserError(f"the model store {store.root} is read-only, so the new style could not "
                        f"be installed; choose another with --models DIR or TOONSTREAM_MODELS")


def _head_part(store, req: TrainRequest, photos: list[np.ndarray], exemplars: list[np.ndarray],
               settings: PersonalSettings, rng, notes: list[str], log) -> PartTask | None:
    detector = _face_detector(store, log)
    if detector is None:
        notes.append("head adapter skipped: the face detector is not installed "
                     "(python -m streamer.models fetch face)")
        return None
    faces = align_faces(photos, detector)
    if not faces:
        notes.append("head adapter skipped: no face over 60 px in the photos")
        return None
    toon_faces = align_faces(exemplars, detector)
    if len(toon_faces) < MIN_EXEMPLARS:
        # Drawn faces often escape a photo face detector: the exemplars themselves, squared,
        # still carry the style's lines and shading.
        notes.append(f"faces found in {len(toon_faces)} exemplar(s): the head adapter learns "
                     f"from the whole exemplars")
        toon_faces = [square(im, 288) for im in exemplars]
    train_faces, held = held_out(faces, HELD_OUT)
    embedder, chip = None, None
    if req.losses.on("identity"):
        embedder = _embedder(req.device)
        if embedder is None:
            notes.append("identity loss off: dlib's face model (face-recognition-models) is "
                         "not installed")
        else:
            from .face_embed import crop_chipper
            chip = crop_chipper(req.size)
    return PartTask("h", store.weights(req.base, "h"), Crops(train_faces, req.size, rng, aligned=True),
                    Crops(toon_faces, req.size, rng, aligned=True),
                    [cv2.resize(f, (req.size, req.size), interpolation=cv2.INTER_AREA)
                     for f in held],
                    settings, embedder=embedder, chip=chip)
