"""Calibration frames for int8 quantization.

Post-training quantization needs inputs that exercise the network the way real frames do:
the activation ranges and the bias correction are measured on them. Toonstream ships no
photos, so by default it draws a small set of synthetic scenes: smooth lighting gradients,
textured backgrounds, and head-and-shoulders figures (skin-toned ellipses with eyes, brows,
mouth, hair and clothes) at several scales and colours, with camera-like noise and blur. Users
with their own material add frames to the set (`--calibration DIR|IMAGE|VIDEO`, or `frames=`
in code); `--calibration builtin` asks for the built-in set alone.

The set is deterministic (a fixed seed), so two machines building the same style get the same
int8 model, and the store's checksum of the built model is reproducible.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np

from .errors import StoreError

# Typical skin, hair and clothing colours (BGR), wide enough to cover the people the model
# meets; the network's activation ranges depend far more on contrast than on exact hue.
_SKIN = ((173, 201, 238), (130, 165, 215), (95, 125, 180), (60, 85, 135), (45, 60, 95),
         (150, 185, 230))
_HAIR = ((20, 20, 25), (30, 45, 70), (60, 90, 140), (140, 170, 200), (90, 90, 95))
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c0 = rng.uniform(20, 235, 3).astype(np.float32)
    c1 = rng.uniform(20, 235, 3).astype(np.float32)
    angle = rng.uniform(0, np.pi)
    t = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)
    t = (t - t.min()) / max(1e-6, float(t.max() - t.min()))
    img = c0 + (c1 - c0) * t[..., None]
    # Room-like structure: a few rectangles (windows, shelves, doors) and lines.
    for _ in range(rng.integers(2, 7)):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        x1, y1 = x0 + rng.integers(w // 10, w // 2), y0 + rng.integers(h // 10, h // 2)
        cv2.rectangle(img, (int(x0), int(y0)), (int(x1), int(y1)),
                      tuple(float(v) for v in rng.uniform(0, 255, 3)), -1)
    for _ in range(rng.integers(3, 10)):
        p0 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.line(img, p0, p1, tuple(float(v) for v in rng.uniform(0, 255, 3)),
                 int(rng.integers(1, 4)))
    # Texture at two scales (fabric, wallpaper, foliage).
    for scale in (8, 32):
        noise = rng.normal(0, rng.uniform(4, 18), (h // scale + 2, w // scale + 2, 3))
        img += cv2.resize(noise.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return img


def _fabric(rng: np.random.Generator, h: int, w: int, colour: tuple) -> np.ndarray:
    """Clothing: plain, or fine stripes or checks a few pixels wide (shirts, knitwear).
    Patterns near the network's smallest scale are where int8 errs most (a striped shirt
    in a reference image, up to 88 levels in places); with them in the set the anime int8
    model came 0.01-0.06 closer to TensorFlow on every reference image."""
    base = np.empty((h, w, 3), np.float32)
    base[:] = colour
    kind = rng.integers(3)
    if kind == 0:
        return base
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(2.5, 8.0)
    phase = (np.cos(angle) * xx + np.sin(angle) * yy) * (2 * np.pi / period)
    wave = np.sin(phase)
    if kind == 2:
        wave = wave * np.sin((np.cos(angle) * yy - np.sin(angle) * xx) * (2 * np.pi / period))
    other = rng.uniform(0, 255, 3).astype(np.float32)
    t = (wave > 0).astype(np.float32)[..., None]
    return base * (1 - t) + other * t


def _person(img: np.ndarray, rng: np.random.Generator) -> None:
    h, w = img.shape[:2]
    face_h = rng.uniform(0.25, 0.7) * h
    face_w = face_h * rng.uniform(0.68, 0.8)
    cx = rng.uniform(0.25, 0.75) * w
    cy = rng.uniform(0.3, 0.55) * h
    skin = np.array(_SKIN[rng.integers(len(_SKIN))], np.float32) + rng.normal(0, 8, 3)
    hair = tuple(float(v) for v in _HAIR[rng.integers(len(_HAIR))])
    cloth = tuple(float(v) for v in rng.uniform(0, 255, 3))
    # Shoulders and clothes, neck, hair behind the head, then the face.
    body = np.zeros((h, w), np.uint8)
    cv2.ellipse(body, (int(cx), int(cy + face_h * 1.25)), (int(face_w * 1.6), int(face_h * 0.7)),
                0, 180, 360, 1, -1)
    img[body > 0] = _fabric(rng, h, w, cloth)[body > 0]
    cv2.rectangle(img, (int(cx - face_w * 0.22), int(cy + face_h * 0.3)),
                  (int(cx + face_w * 0.22), int(cy + face_h * 0.7)), tuple(float(v) for v in skin * 0.85), -1)
    cv2.ellipse(img, (int(cx), int(cy - face_h * 0.08)), (int(face_w * 0.58), int(face_h * 0.58)),
                0, 0, 360, hair, -1)
    # The face: shaded from one side, as room light does.
    mask = np.zeros((h, w), np.float32)
    cv2.ellipse(mask, (int(cx), int(cy)), (int(face_w / 2), int(face_h / 2)), 0, 0, 360, 1.0, -1)
    xx = (np.arange(w, dtype=np.float32) - cx) / max(1.0, face_w)
    shade = 1.0 + rng.uniform(-0.35, 0.35) * xx[None, :]
    face = skin[None, None, :] * shade[..., None]
    img[:] = img * (1 - mask[..., None]) + face * mask[..., None]
    # Eyes, brows, nose shadow and mouth at the usual proportions.
    ey, ex, er = cy - face_h * 0.08, face_w * 0.2, max(1, int(face_w * 0.07))
    for sx in (-1, 1):
        x = int(cx + sx * ex)
        cv2.ellipse(img, (x, int(ey)), (er * 2, er), 0, 0, 360, (235, 235, 235), -1)
        cv2.circle(img, (x, int(ey)), er, tuple(float(v) for v in rng.uniform(10, 90, 3)), -1)
        cv2.circle(img, (x, int(ey)), max(1, er // 2), (10, 10, 10), -1)
        cv2.line(img, (x - er * 2, int(ey - face_h * 0.08)), (x + er * 2, int(ey - face_h * 0.09)),
                 hair, max(1, er // 2))
    cv2.line(img, (int(cx), int(ey + er)), (int(cx - er), int(cy + face_h * 0.12)),
             tuple(float(v) for v in skin * 0.7), max(1, er // 2))
    cv2.ellipse(img, (int(cx), int(cy + face_h * 0.25)), (int(face_w * 0.17), max(1, er // 2 + 1)),
                0, 0, 360, (80, 70, 170), -1)


def synthetic_frames(count: int = 24, size: tuple[int, int] = (320, 176), seed: int = 0
                     ) -> list[np.ndarray]:
    """`count` deterministic synthetic scenes (uint8 BGR, `size` = (width, height), both
    multiples of 4), about two thirds of them with one or two people."""
    w, h = size
    if w % 4 or h % 4:
        raise ValueError("calibration frames need sides that are multiples of 4")
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(count):
        img = _background(rng, h, w)
        people = 0 if i % 3 == 2 else (1 if i % 4 else 2)
        for _ in range(people):
            _person(img, rng)
        sigma = rng.uniform(0.0, 1.2)
        if sigma > 0.3:
            img = cv2.GaussianBlur(img, (0, 0), sigma)
        img += rng.normal(0, rng.uniform(1, 5), img.shape)  # sensor noise
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return frames


def _fit(img: np.ndarray, max_side: int) -> np.ndarray:
    h, w = img.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    nh, nw = max(4, int(h * scale) // 4 * 4), max(4, int(w * scale) // 4 * 4)
    if (nh, nw) != (h, w):
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img)


def frames_from(path: Path | str, count: int = 24, max_side: int = 320) -> list[np.ndarray]:
    """Calibration frames from the user's own material: a folder of images, an image, or a
    video (frames spread over its length). Resized so the long side is at most `max_side`
    (statistics, not detail, matter here) with sides cut to multiples of 4."""
    from streamer.errors import UserError

    p = Path(path).expanduser()
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        imgs = [cv2.imread(str(f)) for f in files[:count]]
        frames = [_fit(i, max_side) for i in imgs if i is not None]
    elif p.suffix.lower() in IMAGE_SUFFIXES:
        img = cv2.imread(str(p))
        frames = [] if img is None else [_fit(img, max_side)]
    elif p.is_file():
        frames = list(_video_frames(p, count, max_side))
    else:
        raise UserError(f"calibration: {p}: no such file or folder")
    if not frames:
        raise UserError(f"calibration: no readable image or video frame in {p}")
    return frames


def _video_frames(path: Path, count: int, max_side: int) -> Iterator[np.ndarray]:
    import av

    from streamer.errors import UserError

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            total = stream.frames or 0
            step = max(1, total // count) if total else 10
            got = 0
            for i, frame in enumerate(container.decode(stream)):
                if i % step == 0:
                    yield _fit(frame.to_ndarray(format="bgr24"), max_side)
                    got += 1
                    if got >= count:
                        return
    except (av.error.FFmpegError, IndexError) as exc:
        raise UserError(f"calibration: cannot read {path} as a video ({exc})") from None


#: `--calibration builtin`: the built-in synthetic set alone (a folder of that name: ./builtin)
BUILTIN = "builtin"
#: the calibration source recorded for the built-in set; with the user's own material it is
#: "synthetic + /absolute/path"
SYNTHETIC = "synthetic"
_WITH = " + "


def source_for(user: str | None) -> str | None:
    """The calibration source a user's setting asks for: None for no setting (whatever a
    built model was calibrated on is fine), SYNTHETIC for `builtin`, else the built-in set
    plus their own material (a folder, image or video), by its absolute path."""
    if user is None:
        return None
    if user == BUILTIN:
        return SYNTHETIC
    return SYNTHETIC + _WITH + str(Path(user).expanduser().resolve())


def user_material(source: str) -> Path | None:
    """The user's own material named in a calibration source, or None for the built-in set."""
    head, sep, path = source.partition(_WITH)
    return Path(path) if sep and head == SYNTHETIC and path else None


def frames_for(source: str) -> list[np.ndarray]:
    """The calibration frames a source names: the built-in synthetic set, plus the user's
    own frames when it names some. The synthetic scenes stay in: a clip alone covers one
    lighting and palette, and the rounding fitted to it generalised worse (measured: anime
    on luciano 1.18 calibrated on the tears clip alone, 0.93 with the synthetic set)."""
    frames = synthetic_frames()
    mine = user_material(source)
    if mine is not None:
        frames += frames_from(mine)
    return frames


def check_material(user: str, what: str = "--calibration") -> None:
    """A user's calibration setting names the built-in set or something that exists;
    a StoreError in one line otherwise, before a build starts (a path that is not there is
    a failed run, exit 1, as a missing input is for run_video; not a usage error)."""
    if user != BUILTIN and not Path(user).expanduser().exists():
        raise StoreError(f"{what} {user}: no such file or folder (give a folder of images, an "
                         f"image or a video, or `{BUILTIN}` for the built-in set alone)")


def describe(frames: Iterable[np.ndarray]) -> str:
    """A short fingerprint of a calibration set, kept in the int8 model's metadata."""
    import hashlib

    h = hashlib.sha256()
    n = 0
    for f in frames:
        h.update(np.ascontiguousarray(f).tobytes())
        n += 1
    return f"{n} frames, sha256 {h.hexdigest()[:16]}"
