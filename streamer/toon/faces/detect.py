"""YuNet face detection (OpenCV's FaceDetectorYN) on a downscaled copy of the frame.

YuNet returns, per face, a box and five points in the order the official alignment wants:
image-left eye, image-right eye, nose tip, image-left and image-right mouth corner.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

OFFICIAL_MIN_FACE = 60  # the official landmark stage drops boxes of 60 px or less (both sides)
OFFICIAL_MAX_FACES = 10


@dataclass
class Detections:
    """Faces in frame pixels, largest box first."""

    boxes: np.ndarray      # [n, 4] float64 x, y, w, h
    landmarks: np.ndarray  # [n, 5, 2] float64
    scores: np.ndarray     # [n] float64

    def __len__(self) -> int:
        return len(self.boxes)

    @staticmethod
    def empty() -> "Detections":
        return Detections(np.zeros((0, 4)), np.zeros((0, 5, 2)), np.zeros(0))

    def take(self, index) -> "Detections":
        return Detections(self.boxes[index], self.landmarks[index], self.scores[index])

    def select(self, max_faces: int = OFFICIAL_MAX_FACES, min_face: float = OFFICIAL_MIN_FACE,
               scale: float = 1.0) -> "Detections":
        """Drop faces whose box is `min_face` px or less in both sides (measured after
        multiplying by `scale`, e.g. frame -> official working size), then keep the
        `max_faces` largest."""
        wh = self.boxes[:, 2:4] * scale
        keep = np.flatnonzero((wh > min_face).any(axis=1))
        return self.take(keep[:max(0, max_faces)])


def _quiet_create(model: str, size: tuple[int, int], score: float, nms: float, top_k: int):
    # OpenCV 5 warns on stderr that its new graph engine ignores targets; say nothing.
    log = cv2.utils.logging
    level = log.getLogLevel()
    log.setLogLevel(log.LOG_LEVEL_ERROR)
    try:
        return cv2.FaceDetectorYN.create(model, "", size, score, nms, top_k)
    finally:
        log.setLogLevel(level)


class FaceDetector:
    """YuNet on a copy of the frame whose long side is at most `max_side` px (None: the
    frame as it is). Returns boxes and landmarks in frame pixels, largest box first."""

    def __init__(self, model_path: Path | str, *, max_side: int | None = 640,
                 score_threshold: float = 0.6, nms_threshold: float = 0.3, top_k: int = 100):
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such face detector model (YuNet .onnx)")
        if max_side is not None and max_side < 32:
            raise ValueError("the detector needs a long side of at least 32 px")
        self.model_path = path
        self.max_side = max_side
        self.score_threshold = score_threshold
        self._net = _quiet_create(str(path), (320, 320), score_threshold, nms_threshold, top_k)
        self._size: tuple[int, int] | None = None
        self._small: np.ndarray | None = None  # the downscaled copy, reused frame to frame

    def scale_for(self, frame_hw: tuple[int, int]) -> float:
        """The factor from frame pixels to detector pixels (<= 1)."""
        long_side = max(frame_hw)
        if self.max_side is None or long_side <= self.max_side:
            return 1.0
        return self.max_side / long_side

    def downscale(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        """(the copy the detector sees, its scale). The copy is a buffer the detector
        reuses: it is valid until the next call."""
        s = self.scale_for(frame.shape[:2])
        if s == 1.0:
            return frame, 1.0
        h, w = frame.shape[:2]
        size = (max(1, round(w * s)), max(1, round(h * s)))
        if self._small is None or self._small.shape[:2] != (size[1], size[0]):
            self._small = np.empty((size[1], size[0], 3), np.uint8)
        return cv2.resize(frame, size, dst=self._small, interpolation=cv2.INTER_AREA), s

    def detect_scaled(self, small: np.ndarray, scale: float) -> Detections:
        """Detect on an already downscaled BGR image; results divided by `scale`."""
        h, w = small.shape[:2]
        if self._size != (w, h):
            self._net.setInputSize((w, h))
            self._size = (w, h)
        _, faces = self._net.detect(np.ascontiguousarray(small))
        if faces is None or len(faces) == 0:
            return Detections.empty()
        faces = faces.astype(np.float64)
        # Back to frame pixels: a pixel-centre-true mapping for a resize by `scale`.
        inv = 1.0 / scale
        boxes = faces[:, 0:4] * inv
        lms = faces[:, 4:14].reshape(-1, 5, 2)
        if scale != 1.0:
            lms = (lms + 0.5) * inv - 0.5
            boxes[:, 0:2] = (faces[:, 0:2] + 0.5) * inv - 0.5
        order = np.argsort(-(boxes[:, 2] * boxes[:, 3]), kind="stable")
        return Detections(boxes[order], lms[order], faces[order, 14])

    def detect(self, frame: np.ndarray) -> Detections:
        small, s = self.downscale(frame)
        return self.detect_scaled(small, s)
