"""The background treatment: the last link of the toon stage (docs/ARCHITECTURE.md section 5).

`--background keep|transparent|blur|color:#RRGGBB|image:PATH`. The person mask is computed
on the INPUT frame (toon/segment.py: the cartoon has no photographic edges to follow) and
applied to the cartoon output:

    keep         the whole cartoon frame, no mask computed (the default, zero cost)
    transparent  BGRA: the cartoon with the mask as straight (not premultiplied) alpha
    blur         the cartoon person over a blurred cartoon background
    color:#hex   the cartoon person over a solid colour
    image:PATH   the cartoon person over a still image (scaled to cover, centred)

Every composite is `out = m * cartoon + (1 - m) * background` with the mask m in 0..1, so
the person is exactly where the mask says (tests/test_background.py).
"""
from __future__ import annotations

import collections
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from streamer.buffers import Scratch
from streamer.errors import UserError
from streamer.report import one_line
from streamer.sources.image_size import declared_size

from .link import Link, WrappingLink, blank_frame
from .segment import PersonSegmenter

KINDS = ("keep", "transparent", "blur", "color", "image")
CHOICES = "keep, transparent, blur, color:#RRGGBB or image:PATH"
DEFAULT_KEY_COLOR = "#00ff00"  # what a sink without alpha shows behind the person (chroma key)
_HEX = re.compile(r"#?([0-9a-fA-F]{6})")


class BackgroundError(UserError, ValueError):
    """A bad --background value or an unreadable background image, in one line."""


def parse_color(text: str, what: str = "color") -> tuple[int, int, int]:
    """'#RRGGBB' (or 'RRGGBB') -> a BGR triple, the frames' channel order."""
    m = _HEX.fullmatch(str(text).strip())
    if not m:
        raise BackgroundError(f"{what} must be #RRGGBB (e.g. #00ff00), got {text!r}")
    v = m.group(1)
    r, g, b = (int(v[i:i + 2], 16) for i in (0, 2, 4))
    return b, g, r


@dataclass(frozen=True)
class Background:
    """A parsed --background value (parse_background makes them from text)."""

    kind: str = "keep"
    color: tuple[int, int, int] = (0, 0, 0)  # BGR, for kind "color"
    image: Path | None = None  # for kind "image"

    def __post_init__(self) -> None:
        if self.kind not in KINDS or (self.kind == "image" and self.image is None):
            raise BackgroundError(f"--background must be {CHOICES}; got {self.kind!r}")

    @property
    def needs_mask(self) -> bool:
        return self.kind != "keep"

    @property
    def alpha(self) -> bool:
        """Frames carry an alpha channel (BGRA)."""
        return self.kind == "transparent"

    def __str__(self) -> str:
        if self.kind == "color":
            b, g, r = self.color
            return f"color:#{r:02x}{g:02x}{b:02x}"
        if self.kind == "image":
            return f"image:{self.image}"
        return self.kind


class BackgroundImageError(BackgroundError):
    """A background image that cannot be used; `reason` says why, as the end of a sentence
    that starts with the image's name (the web page words the start its own way)."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"background image {path} {reason}")
        self.path = path
        self.reason = reason


#: the largest background image read, in pixels: it is only ever scaled down to the frame,
#: and decoding it costs 3 bytes a pixel (OpenCV's own limit, about a gigapixel, would let
#: one picture take 3 GB)
MAX_IMAGE_PIXELS = 128_000_000
_IMAGE_FORMATS = "PNG, JPEG, WebP, BMP or TIFF"

# Decoded images by (path, size, mtime): a live stream or the web page composites every
# frame over the same picture. A few at most: the web page sees a new upload per request.
_IMAGES: collections.OrderedDict[tuple, np.ndarray] = collections.OrderedDict()
_IMAGES_KEEP = 4
_IMAGES_LOCK = threading.Lock()


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.0f} MP"


def _decode_image(path: Path) -> np.ndarray:
    """The file at `path` decoded as uint8 BGR; BackgroundImageError saying why not."""
    try:
        with open(path, "rb") as f:
            size = declared_size(f)
            if size is not None and size[0] * size[1] > MAX_IMAGE_PIXELS:
                w, h = size
                raise BackgroundImageError(
                    path, f"is {w}x{h} ({_megapixels(w * h)}), too large: background images "
                          f"may have up to {_megapixels(MAX_IMAGE_PIXELS)}; scale it down "
                          f"(it is scaled to the frame anyway)")
            data = np.frombuffer(f.read(), np.uint8)
    except OSError as exc:
        raise BackgroundImageError(path, f"cannot be read ({exc.strerror or exc})") from None
    if not data.size:
        raise BackgroundImageError(path, "is empty (0 bytes)")
    try:
        img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as exc:  # a format whose size we do not read, over OpenCV's limits
        reason = getattr(exc, "err", "") or one_line(exc)
        raise BackgroundImageError(path, f"cannot be decoded (OpenCV: {reason})") from None
    if img is None:
        raise BackgroundImageError(path, f"cannot be read as an image ({_IMAGE_FORMATS})")
    return img


def load_background_image(path: Path | str) -> np.ndarray:
    """The image as uint8 BGR (kept while the file is unchanged); BackgroundImageError, one
    line saying what is wrong, when it cannot be used: missing, a folder, unreadable, not an
    image, or too large."""
    path = Path(path).expanduser()
    try:
        st = path.stat()
    except FileNotFoundError:
        raise BackgroundImageError(path, "does not exist") from None
    except OSError as exc:
        raise BackgroundImageError(path, f"cannot be read ({exc.strerror or exc})") from None
    if path.is_dir():
        raise BackgroundImageError(path, f"is a folder; give an image file ({_IMAGE_FORMATS})")
    key = (path.resolve(), st.st_size, st.st_mtime_ns)
    with _IMAGES_LOCK:
        cached = _IMAGES.get(key)
        if cached is not None:
            _IMAGES.move_to_end(key)
            return cached
    img = _decode_image(path)
    with _IMAGES_LOCK:
        _IMAGES[key] = img
        while len(_IMAGES) > _IMAGES_KEEP:
            _IMAGES.popitem(last=False)
    return img


def parse_background(text: str | None, *, check_image: bool = True) -> Background:
    """'keep', 'transparent', 'blur', 'color:#RRGGBB' or 'image:PATH' -> Background;
    BackgroundError (one line) otherwise. `check_image`: read the image now, so an
    unreadable one fails before any work starts."""
    raw = "keep" if text is None else str(text).strip()
    kind, _, arg = raw.partition(":")
    kind = kind.lower()
    if kind in ("keep", "transparent", "blur") and not arg:
        return Background(kind)
    if kind in ("color", "colour"):
        return Background("color", color=parse_color(arg, "--background color"))
    if kind == "image" and arg:
        path = Path(arg).expanduser()
        if check_image:
            load_background_image(path)
        return Background("image", image=path)
    raise BackgroundError(f"--background must be {CHOICES}; got {raw!r}")


# --- compositing ---------------------------------------------------------------------------

def blend(fg: np.ndarray, bg: np.ndarray, mask: np.ndarray, out: np.ndarray | None = None,
          inv: np.ndarray | None = None) -> np.ndarray:
    """`mask * fg + (1 - mask) * bg`, rounded to uint8 (fg, bg uint8 [H, W, 3]; mask
    float32 [H, W] in 0..1). `inv`: a float32 [H, W] buffer for `1 - mask` (else a new one)."""
    inv = np.subtract(np.float32(1.0), mask, out=inv)
    return cv2.blendLinear(fg, bg, mask, inv, dst=out)


def with_alpha(fg: np.ndarray, mask: np.ndarray, out: np.ndarray | None = None,
               alpha: np.ndarray | None = None) -> np.ndarray:
    """BGRA: the cartoon's colours and the mask as alpha (0..255, rounded). `alpha`: a
    uint8 [H, W] buffer for the alpha plane (else a new one)."""
    h, w = fg.shape[:2]
    if out is None:
        out = np.empty((h, w, 4), np.uint8)
    # OpenCV's channel ops: numpy's strided out[..., 3] = ... measured 10x slower at 720p.
    cv2.cvtColor(fg, cv2.COLOR_BGR2BGRA, dst=out)
    alpha = cv2.convertScaleAbs(mask, dst=alpha, alpha=255.0)  # rounds and saturates
    cv2.mixChannels([alpha], [out], [0, 3])
    return out


def split_alpha(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A BGRA frame as (contiguous BGR, alpha as float32 0..1)."""
    bgr = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    mask = cv2.extractChannel(image, 3).astype(np.float32)
    mask *= 1 / 255
    return bgr, mask


def flatten(image: np.ndarray, color: tuple[int, int, int]) -> np.ndarray:
    """A BGRA frame over a solid colour, BGR out (for sinks that carry no alpha: a virtual
    camera, a network stream); a BGR frame is returned as it is."""
    if image.ndim == 3 and image.shape[2] == 4:
        bgr, mask = split_alpha(image)
        bg = np.empty(image.shape[:2] + (3,), np.uint8)
        bg[...] = color
        return blend(bgr, bg, mask)
    return image


def checkerboard(image: np.ndarray, square: int = 16) -> np.ndarray:
    """A BGRA frame over a grey checkerboard (the usual picture of transparency), BGR."""
    if not (image.ndim == 3 and image.shape[2] == 4):
        return image
    h, w = image.shape[:2]
    yy, xx = np.indices((h, w))
    light = ((yy // square + xx // square) % 2).astype(bool)
    bg = np.where(light[..., None], np.uint8(204), np.uint8(153)).astype(np.uint8)
    bg = np.repeat(bg, 3, axis=2)
    bgr, mask = split_alpha(image)
    return blend(bgr, bg, mask)


def cover(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """`image` scaled to cover width x height and cropped to it, centred."""
    ih, iw = image.shape[:2]
    s = max(width / iw, height / ih)
    sw, sh = max(width, round(iw * s)), max(height, round(ih * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    scaled = cv2.resize(image, (sw, sh), interpolation=interp)
    x, y = (sw - width) // 2, (sh - height) // 2
    return np.ascontiguousarray(scaled[y:y + height, x:x + width])


def blurred_background(fg: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The cartoon with the person taken out and the room blurred: a mask-weighted blur
    (blur(img * (1 - m)) / blur(1 - m)) at a quarter size, so the person does not bleed
    into the blur as a halo; strength about 1/25 of the short side."""
    h, w = fg.shape[:2]
    sw, sh = max(1, w // 4), max(1, h // 4)
    small = cv2.resize(fg, (sw, sh), interpolation=cv2.INTER_AREA).astype(np.float32)
    keep = 1.0 - cv2.resize(mask, (sw, sh), interpolation=cv2.INTER_AREA)
    sigma = max(1.0, min(sw, sh) / 25)
    num = cv2.GaussianBlur(small * keep[..., None], (0, 0), sigma)
    den = cv2.GaussianBlur(keep, (0, 0), sigma)
    # Where the whole neighbourhood is person, fall back to the plain blur.
    plain = cv2.GaussianBlur(small, (0, 0), sigma)
    weight = np.clip(den * 20, 0, 1)[..., None]
    bg = num / np.maximum(den, 1e-4)[..., None] * weight + plain * (1 - weight)
    return cv2.resize(np.clip(bg, 0, 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)


class Compositor:
    """Applies one Background to (cartoon, mask) pairs; caches the per-size background."""

    def __init__(self, background: Background):
        self.background = background
        self._plate: np.ndarray | None = None  # colour or image at the current size
        self._scratch = Scratch()  # 1 - mask (float32) and the alpha plane (uint8)

    def _plate_for(self, h: int, w: int) -> np.ndarray:
        if self._plate is None or self._plate.shape[:2] != (h, w):
            if self.background.kind == "color":
                plate = np.empty((h, w, 3), np.uint8)
                plate[...] = self.background.color
            else:
                plate = cover(load_background_image(self.background.image), w, h)
            self._plate = plate
        return self._plate

    def __call__(self, cartoon: np.ndarray, mask: np.ndarray, out: np.ndarray | None = None
                 ) -> np.ndarray:
        kind = self.background.kind
        if kind == "keep":
            return cartoon
        # A view as it is (a flow's output is often a crop of a padded buffer: OpenCV takes
        # it as a region); only an alpha cartoon's colour needs packing.
        fg = cartoon if cartoon.shape[2] == 3 else np.ascontiguousarray(cartoon[..., :3])
        h, w = fg.shape[:2]
        if mask.shape != (h, w):
            mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR)
        if kind == "transparent":
            return with_alpha(fg, mask, out, self._scratch.get("alpha", (h, w), np.uint8))
        bg = blurred_background(fg, mask) if kind == "blur" else self._plate_for(h, w)
        return blend(fg, bg, mask, out, self._scratch.get("inv", (h, w), np.float32))


class BackgroundFlow(WrappingLink):
    """The background treatment as the chain's last link: masks the input frames, runs the
    inner link, and treats the background of its results. One per stream (the segmenter
    keeps the previous mask). Outputs come from a ring of `ring` buffers per size, like the
    flows' own."""

    def __init__(self, inner: Link, segmenter: PersonSegmenter, background: Background,
                 ring: int = 4):
        super().__init__(inner)
        self.segmenter = segmenter
        self.compositor = Compositor(background)
        # Not named `background`: that is the face layer's method name.
        self.treatment = background
        self._ring: list[np.ndarray] = []
        self._ring_size = max(1, ring)
        self._next = 0
        self.last_masks: list[np.ndarray] = []  # the latest batch's masks (tests, stats)

    @property
    def needs_mask(self) -> bool:
        return True

    def reset(self) -> None:
        super().reset()
        self.segmenter.reset()

    def warm_up(self, width: int, height: int) -> None:
        super().warm_up(width, height)
        self.segmenter.step([blank_frame(width, height)])
        self.segmenter.reset()

    def _buffer(self, h: int, w: int) -> np.ndarray:
        c = 4 if self.treatment.alpha else 3
        if not self._ring or self._ring[0].shape != (h, w, c):
            self._ring = [np.empty((h, w, c), np.uint8) for _ in range(self._ring_size)]
            self._next = 0
        buf = self._ring[self._next]
        self._next = (self._next + 1) % len(self._ring)
        return buf

    def __call__(self, images: list[np.ndarray], times: Sequence[float] | None = None
                 ) -> list[np.ndarray]:
        # The model runs on the inputs before they are stylised (the flow may reuse their
        # buffers); the mask is refined at each output's size, with the input as guide.
        t0 = time.perf_counter()
        smalls = self.segmenter.step(images)
        t1 = time.perf_counter()
        outs = self.inner(images, times)
        t2 = time.perf_counter()
        result, masks = [], []
        for image, cartoon, small in zip(images, outs, smalls):
            h, w = cartoon.shape[:2]
            mask = self.segmenter.refine(small, image, (w, h))
            result.append(self.compositor(cartoon, mask, self._buffer(h, w)))
            masks.append(mask)
        self.last_masks = masks
        self.timings.treatment_s += (t1 - t0) + (time.perf_counter() - t2)
        return result
