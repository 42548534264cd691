"""Still images (JPEG, PNG, WebP, BMP, TIFF) as uint8 BGR, the way the official code reads
them (cv2.imread, which also applies an EXIF orientation)."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .video_file import MediaError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def is_image_path(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _without_icc_profile(data: bytes) -> bytes:
    """A PNG without its iCCP chunk. OpenCV does not colour-manage (nor does the official
    code), so the profile changes no pixel, but libpng checks it and prints warnings of its
    own on stderr ("libpng warning: iCCP: ...", e.g. an RGB profile on a grey PNG)."""
    if not data.startswith(_PNG_SIGNATURE):
        return data
    out, pos, dropped = [data[:8]], 8, False
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        end = pos + 12 + length
        if data[pos + 4:pos + 8] == b"iCCP":
            dropped = True
        else:
            out.append(data[pos:end])
        pos = end
    if not dropped:
        return data
    out.append(data[pos:])  # whatever follows a damaged chunk: the decoder judges it
    return b"".join(out)


def _may_have_alpha(data: bytes) -> bool:
    return (data.startswith(_PNG_SIGNATURE) or data[:4] == b"RIFF" and data[8:12] == b"WEBP"
            or data[:4] in (b"II*\x00", b"MM\x00*"))


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """The image as uint8 BGR, read the way the official code reads it (any alpha channel
    is dropped: see read_image_alpha)."""
    return read_image_alpha(path)[0]


def read_image_alpha(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """(uint8 BGR as the official code reads it, the uint8 alpha channel or None)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MediaError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise MediaError(f"{path}: is a folder") from None
    except OSError as exc:
        raise MediaError(f"{path}: cannot read ({exc.strerror})") from None
    if not data:
        raise MediaError(f"{path}: empty file (0 bytes)")
    data = _without_icc_profile(data)
    buf = np.frombuffer(data, np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None:
        raise MediaError(f"{path.name}: not an image OpenCV can read")
    alpha = None
    if _may_have_alpha(data):
        full = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        if full is not None and full.ndim == 3 and full.shape[2] == 4 \
                and full.shape[:2] == img.shape[:2]:
            a = full[..., 3]
            alpha = (a >> 8).astype(np.uint8) if a.dtype == np.uint16 else a.astype(np.uint8)
            if alpha.min() == 255:
                alpha = None  # an alpha channel that is opaque everywhere keeps nothing
    return img, alpha
