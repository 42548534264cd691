"""Write a still image atomically: encode in memory, write a temporary file beside the
target, rename. A failed or interrupted write leaves nothing that looks finished."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .video_file import OutputError, commit, temp_path_for

ALPHA_IMAGE_SUFFIXES = (".png", ".webp")  # still formats with an alpha channel
_PARAMS = {".jpg": [cv2.IMWRITE_JPEG_QUALITY, 95], ".jpeg": [cv2.IMWRITE_JPEG_QUALITY, 95],
           ".webp": [cv2.IMWRITE_WEBP_QUALITY, 95], ".png": [cv2.IMWRITE_PNG_COMPRESSION, 3]}


def write_image(img: np.ndarray, final: str | os.PathLike[str], overwrite: bool = False) -> None:
    final = Path(final)
    suffix = final.suffix.lower()
    if img.ndim == 3 and img.shape[2] == 4 and suffix not in ALPHA_IMAGE_SUFFIXES:
        raise OutputError(f"{final.name}: {suffix or '(no suffix)'} cannot carry an alpha "
                          f"channel; use {' or '.join(ALPHA_IMAGE_SUFFIXES)}")
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
