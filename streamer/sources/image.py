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


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
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
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise MediaError(f"{path.name}: not an image OpenCV can read")
    return img
