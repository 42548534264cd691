"""Write a still image atomically: encode in memory, write a temporary file beside the
target, rename. A failed or interrupted write leaves nothing that looks finished.

PNG, WebP and TIFF keep an alpha channel (BGRA in, RGBA in the file); JPEG and BMP do not.
`check_image_output` says, before any work, whether a still of a given size and channel
count can be written in a format at all (WebP stops at 16383 pixels a side, JPEG at
65535), so a caller can refuse before its model runs rather than after."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .video_file import OutputError, commit, temp_path_for

ALPHA_IMAGE_SUFFIXES = (".png", ".webp", ".tif", ".tiff")  # still formats with alpha
_PARAMS = {".jpg": [cv2.IMWRITE_JPEG_QUALITY, 95], ".jpeg": [cv2.IMWRITE_JPEG_QUALITY, 95],
           ".webp": [cv2.IMWRITE_WEBP_QUALITY, 95], ".png": [cv2.IMWRITE_PNG_COMPRESSION, 3]}
# The largest side each format's encoder takes (the others: more than any camera makes).
_MAX_SIDE = {".webp": 16383, ".jpg": 65535, ".jpeg": 65535}


def check_image_output(final: str | os.PathLike[str], width: int, height: int,
                       channels: int = 3) -> None:
    """OutputError, one line, when a `width` x `height` still with `channels` channels
    (4: an alpha channel) cannot be written as `final`'s format."""
    final = Path(final)
    suffix = final.suffix.lower()
    if channels == 4 and suffix not in ALPHA_IMAGE_SUFFIXES:
        raise OutputError(f"{final.name}: {suffix or '(no suffix)'} cannot carry an alpha "
                          f"channel; use {', '.join(ALPHA_IMAGE_SUFFIXES)}")
    limit = _MAX_SIDE.get(suffix)
    if limit is not None and max(width, height) > limit:
        raise OutputError(f"{final.name}: the image is {width}x{height}, and {suffix} holds at "
                          f"most {limit} pixels a side; use .png or .tif")


def write_image(img: np.ndarray, final: str | os.PathLike[str], overwrite: bool = False) -> None:
    """Encode `img` (uint8 BGR, or BGRA for a format with alpha) as `final`'s format and
    write it atomically; OutputError, one line, when it cannot be."""
    final = Path(final)
    suffix = final.suffix.lower()
    check_image_output(final, img.shape[1], img.shape[0], img.shape[2] if img.ndim == 3 else 1)
    try:
        ok, data = cv2.imencode(suffix, img, _PARAMS.get(suffix, []))
    except cv2.error:
        ok = False
    if not ok:
        raise OutputError(f"{final.name}: cannot write images of type {suffix or '(no suffix)'!r}")
    temp = temp_path_for(final)
    try:
        with open(temp, "xb") as f:
            f.write(data.tobytes())
        commit(temp, final, overwrite)
    except OSError as exc:
        raise OutputError(f"cannot write {final}: {exc.strerror or exc}") from None
    finally:
        temp.unlink(missing_ok=True)
