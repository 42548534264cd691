"""Training data: the user's photos, video frames and cartoon exemplars, read once into
memory, with aligned face crops for the head model and random crops for the whole-frame
model.

Inputs may be folders (their images and videos, not recursive), images, or videos; frames
are sampled evenly from each video. A file that cannot be read is skipped with a note, not
an error: a folder of a few hundred files usually has one. Faces are found and aligned by
the project's own face pipeline (YuNet, the official 5-point similarity onto the 288x288
crop), so the head adapter learns on exactly the crops the head model sees at run time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np

from streamer.errors import UserError
from streamer.sources.image import IMAGE_SUFFIXES
from streamer.toon.faces.align import similarity_transform, warp_crop
from streamer.toon.faces.detect import FaceDetector

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".flv", ".ts", ".mts")
MAX_SIDE = 1280  # images are reduced to this long side on reading: crops never need more
MIN_FACE = 60  # px, as the official flow: smaller faces are not pasted, so not trained on


class TrainDataError(UserError, ValueError):
    """The training data cannot make a style (too few exemplars, no photos); one line."""


@dataclass
class Images:
    """Decoded images (uint8 BGR) and where each came from."""

    images: list[np.ndarray] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        wanted = set(IMAGE_SUFFIXES) | set(VIDEO_SUFFIXES)
        return sorted(p for p in path.iterdir()
                      if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in wanted)
    return [path]


def _fit(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    s = MAX_SIDE / max(h, w)
    if s >= 1:
        return img
    return cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


def _read_image(path: Path) -> np.ndarray | None:
    data = np.fromfile(str(path), np.uint8) if path.stat().st_size else None
    if data is None:
        return None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return None if img is None else _fit(img)


def _read_video(path: Path, frames: int) -> list[np.ndarray]:
    import av

    out: list[np.ndarray] = []
    with av.open(str(path)) as c:
        if not c.streams.video:
            return []
        v = c.streams.video[0]
        total = v.frames or 0
        if not total and v.duration is not None and v.average_rate:
            total = int(float(v.duration * v.time_base) * float(v.average_rate))
        step = max(1, total // frames) if total else 1
        for i, f in enumerate(c.decode(v)):
            if i % step == 0:
                out.append(_fit(f.to_ndarray(format="bgr24")))
                if len(out) >= frames:
                    break
    return out


def read_media(paths: Iterable[Path | str], *, video_frames: int = 60) -> Images:
    """Every image, and `video_frames` frames of every video, under `paths`."""
    got = Images()
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise TrainDataError(f"{path} does not exist")
        for f in _files(path):
            try:
                if f.suffix.lower() in VIDEO_SUFFIXES:
                    imgs = _read_video(f, video_frames)
                else:
                    img = _read_image(f)
                    imgs = [] if img is None else [img]
            except Exception:  # noqa: BLE001 - any decoder failure means: skip this file
                imgs = []
            if not imgs:
                got.skipped.append(f.name)
                continue
            got.images.extend(imgs)
            got.origins.extend([f.name] * len(imgs))
    return got


def align_faces(images: list[np.ndarray], detector: FaceDetector, *, per_image: int = 4
                ) -> list[np.ndarray]:
    """The aligned 288x288 head crops of the faces over MIN_FACE px (the largest
    `per_image` of each image)."""
    crops = []
    for img in images:
        found = detector.detect(img).select(max_faces=per_image, min_face=MIN_FACE)
        for points in found.landmarks:
            m, _ = similarity_transform(points)
            crops.append(warp_crop(img, m))
    return crops


class Crops:
    """Random training crops of `size` px from a set of images, as float batches."""

    def __init__(self, images: list[np.ndarray], size: int, rng: np.random.Generator, *,
                 aligned: bool):
        if not images:
            raise ValueError("no images to crop from")
        self.images = images
        self.size = size
        self.rng = rng
        self.aligned = aligned  # head crops: the whole crop, slightly jittered

    def one(self) -> np.ndarray:
        img = self.images[int(self.rng.integers(len(self.images)))]
        s = self.size
        if self.aligned:
            return self.aligned_crop(img, self.jitter(img.shape[0]))
        h, w = img.shape[:2]
        # Short side between 1x and 2x the crop: the model sees faces and rooms at the
        # scales it meets on frames reduced to a working size.
        short = float(self.rng.uniform(s, max(s, min(2 * s, min(h, w)))))
        k = short / min(h, w)
        rw, rh = max(s, round(w * k)), max(s, round(h * k))
        scaled = cv2.resize(img, (rw, rh), interpolation=cv2.INTER_AREA if k < 1
                            else cv2.INTER_LINEAR)
        y = int(self.rng.integers(rh - s + 1))
        x = int(self.rng.integers(rw - s + 1))
        out = scaled[y:y + s, x:x + s]
        if self.rng.random() < 0.5:
            out = out[:, ::-1]
        return np.ascontiguousarray(out)

    def jitter(self, side: int) -> tuple[np.ndarray, bool]:
        """An aligned crop's random view: the whole crop (`side` px) scaled to `size` with
        a little zoom and shift, as the tracker's smoothing moves the crop a little at run
        time, and whether it is mirrored."""
        s, h = self.size, side
        z = float(self.rng.uniform(1.0, 1.08))
        c = (h - h / z) / 2
        x0 = c + float(self.rng.uniform(-c, c)) if c > 0 else 0.0
        y0 = c + float(self.rng.uniform(-c, c)) if c > 0 else 0.0
        m = np.array([[s * z / h, 0, -x0 * s * z / h], [0, s * z / h, -y0 * s * z / h]])
        return m, bool(self.rng.random() < 0.5)

    def aligned_crop(self, img: np.ndarray, view: tuple[np.ndarray, bool]) -> np.ndarray:
        """`img` (an aligned crop, or a picture made from one) seen through `view`."""
        m, mirror = view
        out = cv2.warpAffine(img, m, (self.size, self.size), flags=cv2.INTER_AREA,
                             borderMode=cv2.BORDER_REPLICATE)
        return np.ascontiguousarray(out[:, ::-1] if mirror else out)

    def batch(self, n: int) -> np.ndarray:
        return np.stack([self.one() for _ in range(n)])


def held_out(images: list[np.ndarray], n: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(training images, `n` held-out ones spread over the set) — previews and the bench
    measure on images the adapter never saw."""
    if len(images) <= n + 1:
        return images, images[:n]
    idx = set(np.linspace(0, len(images) - 1, n).round().astype(int).tolist())
    return [im for i, im in enumerate(images) if i not in idx], [images[i] for i in sorted(idx)]


def square(img: np.ndarray, size: int) -> np.ndarray:
    """A centred square of `img` at `size` px (previews)."""
    h, w = img.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return cv2.resize(img[y:y + s, x:x + s], (size, size), interpolation=cv2.INTER_AREA)


Log = Callable[[str], None]
