"""Pictures a training run leaves for the user: preview sheets (held-out inputs, the start,
now) and the loss curves, drawn with OpenCV (no plotting library needed)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

COLOURS = [(66, 133, 244), (15, 157, 88), (244, 160, 0), (219, 68, 55), (171, 71, 188),
           (0, 172, 193), (124, 179, 66), (96, 125, 139)]


def write_png(path: Path, image: np.ndarray) -> None:
    """Through a temporary name, renamed when complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial.png")
    if not cv2.imwrite(str(tmp), image):
        raise OSError(f"cannot write {path}")
    tmp.replace(path)


def preview_sheet(rows: list[list[np.ndarray]], titles: list[str], tile: int = 160) -> np.ndarray:
    """One row per held-out image, one column per title (e.g. input | start | now)."""
    head = 24
    w = tile * len(titles)
    sheet = np.full((head + tile * len(rows), w, 3), 255, np.uint8)
    for j, t in enumerate(titles):
        cv2.putText(sheet, t, (j * tile + 6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1,
                    cv2.LINE_AA)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            sheet[head + i * tile:head + (i + 1) * tile, j * tile:(j + 1) * tile] = \
                cv2.resize(img, (tile, tile), interpolation=cv2.INTER_AREA)
    return sheet


def _smooth(values: list[float], k: float = 0.05) -> list[float]:
    out, ema = [], None
    for v in values:
        ema = v if ema is None else (1 - k) * ema + k * v
        out.append(ema)
    return out


def loss_curves(history: dict[str, list[float]], width: int = 900, height: int = 420
                ) -> np.ndarray:
    """Each loss (smoothed) against the step, each scaled to its own range (the losses
    differ by orders of magnitude), with its first and last value in the legend."""
    img = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 40, 230, 20, 40
    cv2.rectangle(img, (left, top), (width - right, height - bottom), (200, 200, 200), 1)
    pw, ph = width - right - left, height - bottom - top
    for i, (name, values) in enumerate(sorted(history.items())):
        if not values:
            continue
        ys = _smooth(values)
        lo, hi = min(ys), max(ys)
        span = hi - lo or 1.0
        n = max(1, len(ys) - 1)
        pts = np.array([[left + pw * k / n, top + ph * (1 - (y - lo) / span)]
                        for k, y in enumerate(ys)], np.int32)
        colour = COLOURS[i % len(COLOURS)]
        cv2.polylines(img, [pts], False, colour, 2, cv2.LINE_AA)
        cv2.putText(img, f"{name}: {ys[0]:.3g} -> {ys[-1]:.3g}", (width - right + 10, top + 20 + 22 * i),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    steps = max(len(v) for v in history.values()) if history else 0
    cv2.putText(img, f"step 0 .. {steps} (each curve scaled to its own range, smoothed)",
                (left, height - 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (80, 80, 80), 1, cv2.LINE_AA)
    return img
