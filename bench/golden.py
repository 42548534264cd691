"""TensorFlow's reference outputs (`<image>.png` inputs beside `<image>__<style>.png`
outputs, the store's ../golden/dctnet) and how far a model's output is from them: what the
engine and int8 benchmarks print."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np


def golden_dir(models: str | Path) -> Path:
    """The reference outputs beside a model store."""
    return Path(models).parent / "golden" / "dctnet"


def reference_images(golden: Path) -> list[Path]:
    """The reference inputs, by name (empty when `golden` is not a folder)."""
    if not golden.is_dir():
        return []
    return sorted(p for p in golden.glob("*.png") if "__" not in p.name)


def differences(run: Callable[[np.ndarray], np.ndarray], golden: Path, style: str
                ) -> dict[str, np.ndarray]:
    """{image name: |run(input) - TensorFlow's output|} in uint8 levels (int16 arrays);
    `run` takes and returns one uint8 BGR image."""
    import cv2

    out = {}
    for path in reference_images(golden):
        x = cv2.imread(str(path))
        want = cv2.imread(str(golden / f"{path.stem}__{style}.png"))
        got = run(np.ascontiguousarray(x))
        out[path.stem] = np.abs(got.astype(np.int16) - want.astype(np.int16))
    return out
