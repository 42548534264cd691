"""Engines for a Mobile-DCTNet student (models/mobile): the same contract as the official
engines (uint8 BGR batches in and out), plus the style code the graph takes as its second
input. One backend session per student and precision is shared by every style and blend it
holds; each style is a `CodedEngine` view that carries its own code, so switching or
blending styles is a new input value, never a new session or compile.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from streamer.models.mobile.graph import STYLE_INPUT
from streamer.models.mobile.student import Student

from .engine import OpenVinoEngine, OrtEngine, auto_device
from .engine_api import Engine, EngineSettings, EngineUnavailable, check_batch
from .faces.align import CROP_SIZE


class _OrtStudent(OrtEngine):
    def run_code(self, batch: np.ndarray, code: np.ndarray, out: np.ndarray) -> np.ndarray:
        out[...] = self.session.run(None, {"input_image": np.ascontiguousarray(batch),
                                           STYLE_INPUT: code})[0]
        return out


class _OvStudent(OpenVinoEngine):
    def run_code(self, batch: np.ndarray, code: np.ndarray, out: np.ndarray) -> np.ndarray:
        req = self._request(batch.shape)
        req.infer({0: batch, 1: code}, share_inputs=True, share_outputs=True)
        np.copyto(out, req.get_output_tensor(0).data)
        return out


class _TorchStudent(Engine):
    """The student as a PyTorch module (fp32; torch-cuda or torch-cpu)."""

    backend = "torch"
    shape_bound = False

    def __init__(self, student: Student, device: str, settings: EngineSettings):
        try:
            import torch
        except ImportError:
            raise EngineUnavailable("the torch devices need PyTorch: pip install "
                                    "'toonstream[torch]'") from None
        from streamer.train.mobile_net import MobileNet

        if settings.precision == "int8":
            raise EngineUnavailable(f"--precision int8 needs OpenVINO; {device} runs the light "
                                    f"network in fp32")
        if device == "torch-cuda" and not torch.cuda.is_available():
            raise EngineUnavailable("device 'torch-cuda' needs an NVIDIA GPU that PyTorch can use")
        self._torch = torch
        self._dev = torch.device("cuda" if device == "torch-cuda" else "cpu")
        if settings.threads and device == "torch-cpu":
            torch.set_num_threads(settings.threads)
        self.net = MobileNet(student.arch, student.codes, student.weights).eval().to(self._dev)
        self.device, self.precision = device, "fp32"

    def run(self, batch: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        raise EngineUnavailable("a light network runs through its style's CodedEngine")

    def run_code(self, batch: np.ndarray, code: np.ndarray, out: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            y = self.net(torch.from_numpy(np.ascontiguousarray(batch)).to(self._dev),
                         torch.from_numpy(code).to(self._dev))
        np.copyto(out, y.cpu().numpy())
        return out


class StudentSession:
    """One backend session of a student, shared by its styles (a lock keeps one batch at
    a time: the live loader and the toon thread may both hold a view)."""

    def __init__(self, student: Student, model_for: Callable[[str], Path],
                 settings: EngineSettings):
        device = auto_device() if settings.device == "auto" else settings.device
        self.student = student
        if device in ("torch-cuda", "torch-cpu"):
            self.engine = _TorchStudent(student, device, settings)
        elif device == "openvino":
            self.engine = _OvStudent(model_for, settings)
        else:
            self.engine = _OrtStudent(model_for, device, settings)
        self._lock = threading.Lock()

    def view(self, mix: dict[str, float], part: str) -> CodedEngine:
        return CodedEngine(self, self.student.code(mix, part), part)

    def run_code(self, batch: np.ndarray, code: np.ndarray, out: np.ndarray) -> np.ndarray:
        with self._lock:
            return self.engine.run_code(batch, code, out)


class CodedEngine(Engine):
    """A student's session with one style code: an Engine like any other to the flows."""

    def __init__(self, session: StudentSession, code: np.ndarray, part: str):
        self.session, self.part = session, part
        self.code = np.ascontiguousarray(code, np.float32)
        e = session.engine
        self.backend, self.device, self.precision = e.backend, e.device, e.precision
        self.shape_bound, self.preferred_batch = e.shape_bound, e.preferred_batch
        # The head part runs at the size it was distilled at: its training crops are the
        # whole aligned 288 crop scaled to that size, so there the student sees faces at the
        # scale it learnt them (on the shared faces: anime 8-21 levels from the official
        # head at its distilled 128 against 12-24 at 288), in a fifth of the time.
        size = int(session.student.meta.get("size", 0) or 0)
        learnt = part == "h" and "h" in session.student.parts
        self.head_side = size if learnt and size % 4 == 0 and 0 < size < CROP_SIZE else None
        self._small: tuple[np.ndarray, np.ndarray] | None = None

    def set_style_code(self, code: np.ndarray) -> None:
        if code.shape != self.code.shape:
            raise ValueError(f"style code of shape {code.shape}, expected {self.code.shape}")
        self.code = np.ascontiguousarray(code, np.float32)

    def set_style_mix(self, mix: dict[str, float]) -> None:
        """Switch or blend: {style: weight} over the styles the student holds."""
        self.set_style_code(self.session.student.code(mix, self.part))

    def run(self, batch: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        check_batch(batch)
        if out is None:
            out = np.empty_like(batch)
        side = self.head_side
        if side is None or batch.shape[1:3] != (CROP_SIZE, CROP_SIZE):
            return self.session.run_code(batch, self.code, out)
        n = len(batch)
        if self._small is None or len(self._small[0]) < n:  # grown once, then reused
            self._small = (np.empty((n, side, side, 3), np.uint8),
                           np.empty((n, side, side, 3), np.uint8))
        small_in, small_out = self._small[0][:n], self._small[1][:n]
        for i in range(n):
            cv2.resize(batch[i], (side, side), dst=small_in[i], interpolation=cv2.INTER_AREA)
        self.session.run_code(small_in, self.code, small_out)
        for i in range(n):
            cv2.resize(small_out[i], (CROP_SIZE, CROP_SIZE), dst=out[i],
                       interpolation=cv2.INTER_LINEAR)
        return out

    def describe(self) -> str:
        s = self.session.student
        return (f"{self.backend} on {self.device} ({self.precision}), light network "
                f"{s.name} ({s.arch.tag()}" + (f", heads at {self.head_side} px" if
                                                self.head_side else "") + ")")
