"""What every engine is and takes: the devices and precisions, the settings, the `Engine`
protocol, and the errors; the backends (engine.py, torch_engine.py) both build on it, so
neither imports the other to know the contract."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from abc import ABC, abstractmethod

import numpy as np

from streamer.errors import UserError

DEVICES = ("auto", "cpu", "cuda", "tensorrt", "coreml", "directml", "openvino", "torch-cuda",
           "torch-cpu")
PRECISIONS = ("exact", "fast", "int8")


class EngineUnavailable(UserError, RuntimeError):
    """The requested backend or device cannot start here; the message says what to install."""


class ModelLoadError(EngineUnavailable):
    """The runtime cannot read the model file itself (damaged, truncated, not ONNX): no
    device would run it, so the message points at the file, not at an install."""


@dataclass(frozen=True)
class EngineSettings:
    device: str = "auto"
    precision: str = "exact"
    threads: int | None = None  # None: one per physical core, as both runtimes prefer
    cache_dir: Path | None = None  # TensorRT engine cache

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"unknown device {self.device!r}; choose one of {', '.join(DEVICES)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose exact, fast or int8")


class Engine(ABC):
    """What every backend offers; subclasses set the attributes in their constructor."""

    backend: str  # "onnxruntime", "openvino" or "torch"
    device: str  # what actually runs, e.g. "cpu", "cuda", "openvino-cpu", "torch-cuda"
    precision: str  # numeric precision actually used: "fp32", "fp16", "bf16"
    shape_bound: bool  # builds for each input shape: a new batch size costs a compile
    preferred_batch: int = 1  # frames per call when the user does not say (--batch 0)
    # A head engine that draws its heads at a smaller side than the 288 crop it is given
    # (a light network's head part); None: at the crop's own size
    head_side: int | None = None

    @abstractmethod
    def run(self, batch: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Stylise a contiguous uint8 `[N, H, W, 3]` BGR batch (H, W multiples of 4)."""

    def host_buffer(self, shape: tuple[int, ...]) -> np.ndarray:
        """A uint8 array for this engine's batches or results. A plain array here; a GPU
        engine gives page-locked memory, which the GPU copies by DMA without a staging
        copy."""
        return np.empty(shape, np.uint8)

    def set_style_code(self, code: np.ndarray) -> None:
        """Switch or blend styles without a rebuild: a light network's engine takes a new
        style code (engine_mobile.py); an official engine holds one style and refuses."""
        raise EngineUnavailable("switching or blending styles in one engine needs the light "
                                "network (--net mobile)")

    def describe(self) -> str:
        return describe_engine(self)


def check_batch(batch: np.ndarray) -> None:
    if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[3] != 3:
        raise ValueError(f"expected uint8 [N, H, W, 3], got {batch.dtype} {batch.shape}")
    if batch.shape[1] % 4 or batch.shape[2] % 4:
        raise ValueError(f"height and width must be multiples of 4, got {batch.shape[1:3]}")


def describe_engine(e: Engine) -> str:
    return f"{e.backend} on {e.device} ({e.precision})"
