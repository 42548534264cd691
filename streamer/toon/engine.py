"""One small inference interface over ONNX Runtime, OpenVINO and PyTorch.

An engine runs the DCT-Net network (the ONNX graph, or for PyTorch the module built from
the same weights, see torch_engine.py) on uint8 BGR batches `[N, H, W, 3]` and writes uint8
BGR of the same shape. The backend and device that actually run are always known
(`engine.describe()`); a device the user asked for that cannot start raises
`EngineUnavailable` naming what to install, never a silent fall back.
"""
from __future__ import annotations

import importlib.util
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from streamer.signals import keep_signal_stack
from .engine_api import (DEVICES, PRECISIONS, Engine, EngineSettings,  # noqa: F401 (the API)
                         EngineUnavailable, ModelLoadError, check_batch, describe_engine)

if TYPE_CHECKING:
    from streamer.models.dctnet.weights import DctNetWeights

# device -> (ONNX Runtime provider, what to install when it is missing)
_ORT_PROVIDERS = {
    "cpu": ("CPUExecutionProvider", "pip install onnxruntime"),
    "cuda": ("CUDAExecutionProvider",
             "pip uninstall -y onnxruntime && pip install 'toonstream[gpu]' (onnxruntime-gpu), "
             "with an NVIDIA driver and CUDA 12 / cuDNN 9"),
    "tensorrt": ("TensorrtExecutionProvider",
                 "pip install 'toonstream[gpu]' (onnxruntime-gpu) and TensorRT 10 "
                 "(pip install tensorrt-cu12), with an NVIDIA driver"),
    "coreml": ("CoreMLExecutionProvider", "pip install onnxruntime on macOS (it includes CoreML)"),
    "directml": ("DmlExecutionProvider", "pip uninstall -y onnxruntime && pip install onnxruntime-directml"),
}


# ONNX Runtime's exception classes for a file it cannot parse or whose graph is invalid,
# as opposed to a provider that fails to start.
_ORT_MODEL_ERRORS = ("InvalidProtobuf", "InvalidGraph", "NoSuchFile")


def _model_error(path: Path, exc: BaseException) -> ModelLoadError:
    first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
    return ModelLoadError(
        f"cannot load the model {path} ({first}): the file is damaged or not an ONNX model; "
        f"`python -m streamer.models verify` checks the store, and a built model that is "
        f"deleted is rebuilt on the next run")


class OrtEngine(Engine):
    """ONNX Runtime with one execution provider; outputs bound to caller buffers."""

    backend = "onnxruntime"

    def __init__(self, model_for: Callable[[str], Path], device: str, settings: EngineSettings):
        import onnxruntime as ort

        provider, install = _ORT_PROVIDERS[device]
        if settings.precision == "int8":
            # Measured: ONNX Runtime's CPU provider runs the mixed QDQ model no faster than
            # fp32 (its int8 kernels cover the residual blocks only, with a requantize at
            # every float layer), and the GPU providers gain more from fp16. OpenVINO fuses
            # the same QDQ graph into int8 kernels.
            raise EngineUnavailable(f"--precision int8 needs OpenVINO (--device openvino; pip "
                                    f"install openvino) on an x86 CPU; on {device!r} use "
                                    f"--precision fast")
        available = ort.get_available_providers()
        if provider not in available:
            raise EngineUnavailable(f"device {device!r} needs ONNX Runtime's {provider}, which this "
                                    f"install lacks (it has {', '.join(available)}): {install}")
        graph_precision = "fp32"
        options: dict = {}
        if device in ("cuda", "directml", "coreml") and settings.precision == "fast":
            graph_precision = "fp16"
        if device == "tensorrt":
            cache = settings.cache_dir or Path.home() / ".cache" / "toonstream" / "trt"
            cache.mkdir(parents=True, exist_ok=True)
            options = {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache),
                       "trt_fp16_enable": settings.precision == "fast"}
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if settings.threads:
            so.intra_op_num_threads = settings.threads
        # Frames arrive one batch at a time; spinning threads between batches only steal
        # the cores the decoder and encoder need.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers: list = [(provider, options)]
        if device == "tensorrt":
            providers.append(("CUDAExecutionProvider", {}))
        model_path = model_for(graph_precision)
        try:
            self.session = ort.InferenceSession(str(model_path), so, providers=providers)
        except Exception as exc:  # ORT raises its own exception types per provider
            if type(exc).__name__ in _ORT_MODEL_ERRORS:
                raise _model_error(model_path, exc) from None
            raise EngineUnavailable(f"device {device!r} could not start: {str(exc).splitlines()[0]}; "
                                    f"{install}") from None
        active = self.session.get_providers()[0]
        if active != provider:  # ORT falls back to CPU silently; we do not
            raise EngineUnavailable(f"device {device!r} could not start ({provider} fell back to "
                                    f"{active}): {install}")
        self.device = device
        self.shape_bound = device == "tensorrt"  # one engine per shape profile
        self.preferred_batch = 1  # not measured on a GPU: one frame, as before
        self.precision = "fp16" if graph_precision == "fp16" or options.get("trt_fp16_enable") else "fp32"
        self._binding = self.session.io_binding()
        self._on_cpu = device == "cpu"

    def run(self, batch: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        check_batch(batch)
        if out is None:
            out = np.empty_like(batch)
        if not self._on_cpu:
            out[...] = self.session.run(None, {"input_image": batch})[0]
            return out
        # Bind the caller's arrays so ORT reads and writes them in place.
        b = self._binding
        b.bind_cpu_input("input_image", np.ascontiguousarray(batch))
        b.bind_output("output_image", "cpu", 0, np.uint8, out.shape, out.ctypes.data)
        self.session.run_with_iobinding(b)
        return out


class OpenVinoEngine(Engine):
    """OpenVINO on the CPU; bf16 in fast mode where the CPU has it; int8 runs the store's
    quantized (QDQ) model, with the layers kept out of int8 in bf16 where the CPU has it."""

    backend = "openvino"

    def __init__(self, model_for: Callable[[str], Path], settings: EngineSettings):
        try:
            import openvino as ov
        except ImportError:
            raise EngineUnavailable("device 'openvino' needs OpenVINO: pip install openvino") from None
        core = ov.Core()
        with keep_signal_stack():  # loading the CPU plugin swaps it: see keep_signal_stack
            caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        want = "bf16" if settings.precision in ("fast", "int8") and "BF16" in caps else "f32"
        config = {"INFERENCE_PRECISION_HINT": want, "PERFORMANCE_HINT": "LATENCY",
                  "NUM_STREAMS": "1"}
        if settings.threads:
            config["INFERENCE_NUM_THREADS"] = str(settings.threads)
        self._core, self._config = core, config
        int8 = settings.precision == "int8"
        model_path = model_for("int8" if int8 else "fp32")
        try:
            self._model = core.read_model(str(model_path))
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses per frontend
            raise _model_error(model_path, exc) from None
        self._compiled: dict[tuple[int, ...], object] = {}
        self.shape_bound = True  # compiled per shape, see _request
        self.preferred_batch = 1  # on a CPU a batch gains nothing
        self.device = "openvino-cpu"
        # Exact mode pins f32: recent OpenVINO picks bf16 by itself on CPUs that have it.
        self.precision = "bf16" if want == "bf16" else "fp32"
        if int8:
            self.precision = f"int8+{self.precision}"

    def _request(self, shape: tuple[int, ...]):
        req = self._compiled.get(shape)
        if req is None:
            # A static shape per frame size lets the CPU plugin pick its fastest kernels;
            # sizes are few (one per stream), so the compiled models are cached.
            model = self._model.clone()
            model.reshape({0: list(shape)})
            with keep_signal_stack():
                req = self._core.compile_model(model, "CPU", self._config).create_infer_request()
            self._compiled[shape] = req
        return req

    def run(self, batch: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        check_batch(batch)
        req = self._request(batch.shape)
        # share_outputs: the wrapper would otherwise copy the result into a new array first.
        req.infer({0: batch}, share_inputs=True, share_outputs=True)
        result = req.get_output_tensor(0).data
        if out is None:
            return result.copy()
        np.copyto(out, result)
        return out


def _has_openvino_cpu() -> bool:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def auto_device() -> str:
    """The fastest device available here: PyTorch on a CUDA GPU (the GPU path that has been
    measured), else a GPU provider of ONNX Runtime, else OpenVINO on x86, else ORT CPU."""
    if _gpu_present("cuda") and importlib.util.find_spec("torch") is not None:
        # Only here is torch imported for detection: a GPU node may be there and torch is.
        from .torch_engine import cuda_usable
        if cuda_usable():
            return "torch-cuda"
    try:
        import onnxruntime as ort
        available = set(ort.get_available_providers())
    except ImportError:
        available = set()
    for device in ("cuda", "coreml", "directml"):
        if _ORT_PROVIDERS[device][0] in available and _gpu_present(device):
            return device
    return "openvino" if _has_openvino_cpu() else "cpu"


def _gpu_present(device: str) -> bool:
    # onnxruntime-gpu lists CUDA even on machines without a GPU or driver.
    if device == "cuda":
        return any(Path(p).exists() for p in ("/dev/nvidia0", "/dev/dxg")) or os.name == "nt"
    return True


def create_engine(model_for: Callable[[str], Path], settings: EngineSettings,
                  weights: Callable[[], DctNetWeights] | None = None) -> Engine:
    """Start the engine for `settings.device`; `model_for(precision)` returns the ONNX file
    for "fp32", "fp16" or "int8" (the model store builds it on first use); `weights()`
    returns the generator weights the torch devices build their module from (the store's
    `weights()`)."""
    device = auto_device() if settings.device == "auto" else settings.device
    if device in ("torch-cuda", "torch-cpu"):
        if settings.precision == "int8":
            raise EngineUnavailable(f"--precision int8 needs OpenVINO (--device openvino); "
                                    f"{device} runs exact (fp32) or fast (fp16/bf16)")
        if weights is None:
            raise EngineUnavailable(f"device {device!r} needs the model's weights file, "
                                    f"which this caller does not give")
        from .torch_engine import TorchEngine
        return TorchEngine(weights(), device, settings)
    if device == "openvino":
        return OpenVinoEngine(model_for, settings)
    return OrtEngine(model_for, device, settings)
