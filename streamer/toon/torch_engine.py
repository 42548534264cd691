"""The PyTorch engine: the DCT-Net module on a CUDA GPU (`torch-cuda`) or the CPU (`torch-cpu`).

The module is built from the weights file the store reads (`load_weights`), with no ONNX in
between. `torch-cpu` exists so the same code is tested where there is no GPU.

Precision:
- exact: fp32 everywhere. PyTorch lets cuDNN use TF32 for fp32 convolutions by default,
  which costs parity with TensorFlow; it is switched off (a process-wide PyTorch setting).
- fast: the generator in fp16 on a GPU (bf16 on a CPU, where fp16 convolutions are slow),
  channels-last, cuDNN's benchmark mode, and on a GPU one CUDA graph per batch shape;
  normalisation, the guided filter and the final scaling stay fp32.

On a GPU, a batch goes up in two halves: the host-to-device copy of the second half and
the return copy of the first run on their own CUDA streams while the model works on the
other half, so only half a batch of copying is exposed each way. Host buffers from
`host_buffer()` are page-locked (pinned), so the copies are asynchronous DMA with no
staging copy; other arrays go through pinned staging buffers.
"""
from __future__ import annotations

import numpy as np

from streamer.models.dctnet.weights import DctNetWeights

from .engine_api import Engine, EngineSettings, EngineUnavailable, check_batch, describe_engine

TORCH_DEVICES = ("torch-cuda", "torch-cpu")
INSTALL = "pip install 'toonstream[torch]' (PyTorch; a CUDA build for torch-cuda)"
GPU_BATCH = 8  # the batch a GPU run defaults to (see bench/gpu_check.sh for batch 1..16)


def _import_torch():
    try:
        import torch
    except ImportError:
        raise EngineUnavailable(f"the torch devices need PyTorch, which is not installed: "
                                f"{INSTALL}") from None
    return torch


def _graph_batch(n: int) -> int:
    """Batch size a CUDA graph is captured for: the next power of two, so a varying number
    of head crops meets at most a few graphs per crop size (unused slots are computed and
    ignored)."""
    return 1 << max(0, (n - 1).bit_length())


class TorchEngine(Engine):
    """The DCT-Net `torch.nn.Module` behind the Engine interface (uint8 BGR NHWC in/out)."""

    backend = "torch"
    shape_bound = False  # any batch size in one call (graphs are padded, see _graph_batch)

    def __init__(self, weights: DctNetWeights, device: str, settings: EngineSettings):
        if device not in TORCH_DEVICES:
            raise ValueError(f"not a torch device: {device!r}")
        torch = _import_torch()
        from streamer.models.dctnet.torch_net import DctNet

        self._torch = torch
        cuda = device == "torch-cuda"
        if cuda and not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
            raise EngineUnavailable(f"device 'torch-cuda' needs an NVIDIA GPU that PyTorch can use; "
                                    f"PyTorch {torch.__version__} ({build}) finds none: "
                                    f"check the driver (nvidia-smi), or {INSTALL}")
        fast = settings.precision == "fast"
        if cuda:
            self._dev = torch.device("cuda")
            gen_dtype = torch.float16 if fast else torch.float32
            _set_cuda_numerics(torch, fast)
        else:
            self._dev = torch.device("cpu")
            gen_dtype = torch.bfloat16 if fast else torch.float32
            if settings.threads:
                torch.set_num_threads(settings.threads)  # process-wide, like ORT's per session
        net = DctNet(weights, gen_dtype).eval()
        if fast:
            net = net.to(memory_format=torch.channels_last)
        self.net = net.to(self._dev)
        self.device = device
        self.precision = {torch.float32: "fp32", torch.float16: "fp16",
                          torch.bfloat16: "bf16"}[gen_dtype]
        self.preferred_batch = GPU_BATCH if cuda else 1
        self._cuda = cuda
        self._graphs_on = cuda and fast
        if cuda:
            self._compute = torch.cuda.Stream()
            self._upload = torch.cuda.Stream()
            self._download = torch.cuda.Stream()
            self._staging: dict[tuple, tuple] = {}  # shape -> (pinned in, pinned out)
            self._slots: dict[tuple, list] = {}  # (n, h, w) -> per half: device in (and graph)
            self._pool = None  # one memory pool for all graphs: they never run at once

    # --- buffers -----------------------------------------------------------------------

    def host_buffer(self, shape: tuple[int, ...]) -> np.ndarray:
        """A uint8 host array for batches or results; page-locked on a GPU, so the copies
        to and from the device need no staging copy."""
        torch = self._torch
        t = torch.empty(tuple(shape), dtype=torch.uint8, pin_memory=self._cuda)
        return t.numpy()  # the array keeps the tensor (and its pinned memory) alive

    def _pinned(self, arr: np.ndarray):
        """`arr` as a tensor when it is page-locked and contiguous, else None."""
        if not arr.flags.c_contiguous:
            return None
        t = self._torch.from_numpy(arr)
        return t if t.is_pinned() else None

    # --- running -------------------------------------------------------------------------

    def run(self, batch: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        check_batch(batch)
        if out is None:
            out = self.host_buffer(batch.shape)
        elif out.shape != batch.shape or out.dtype != np.uint8:
            raise ValueError(f"output buffer {out.dtype} {out.shape} does not match {batch.shape}")
        torch = self._torch
        with torch.inference_mode():
            if not self._cuda:
                result = self.net(torch.from_numpy(np.ascontiguousarray(batch)))
                np.copyto(out, result.numpy())
                return out
            return self._run_cuda(batch, out)

    def _run_cuda(self, batch: np.ndarray, out: np.ndarray) -> np.ndarray:
        torch = self._torch
        n, h, w, _ = batch.shape
        src = self._pinned(batch)
        dst = self._pinned(out)
        if src is None or dst is None:
            pin_in, pin_out = self._staging_for(batch.shape)
            if src is None:
                np.copyto(pin_in.numpy(), batch)
                src = pin_in
            if dst is None:
                dst = pin_out
        half = (n + 1) // 2
        parts = [(0, n)] if n == 1 else [(0, half), (half, n)]
        slots = self._slots_for(len(parts), half, h, w)
        for (a, b), slot in zip(parts, slots):
            dev_in, dev_out, graph = slot["in"], slot.get("out"), slot.get("graph")
            with torch.cuda.stream(self._upload):
                dev_in[: b - a].copy_(src[a:b], non_blocking=True)
                uploaded = torch.cuda.Event()
                uploaded.record()
            self._compute.wait_event(uploaded)
            with torch.cuda.stream(self._compute):
                if graph is not None:
                    graph.replay()
                    result = dev_out
                else:
                    result = self.net(dev_in[: b - a])
                done = torch.cuda.Event()
                done.record()
            self._download.wait_event(done)
            with torch.cuda.stream(self._download):
                dst[a:b].copy_(result[: b - a], non_blocking=True)
                if graph is None:
                    # an eager result belongs to the compute stream's allocator: keep it
                    # until the copy that reads it has run
                    result.record_stream(self._download)
        self._download.synchronize()
        if dst.data_ptr() != out.ctypes.data:
            np.copyto(out, dst.numpy())
        return out

    def _staging_for(self, shape: tuple[int, ...]):
        pair = self._staging.get(shape)
        if pair is None:
            torch = self._torch
            if len(self._staging) >= 4:  # frames and heads of a stream or two; page-locking
                self._staging.pop(next(iter(self._staging)))  # is slow, so keep a few
            pair = tuple(torch.empty(shape, dtype=torch.uint8, pin_memory=True) for _ in range(2))
            self._staging[shape] = pair
        return pair

    def _slots_for(self, count: int, n: int, h: int, w: int) -> list[dict]:
        """Device input buffers (and, in fast mode, a captured graph) for each half."""
        gn = _graph_batch(n) if self._graphs_on else n
        key = (count, gn, h, w)
        slots = self._slots.get(key)
        if slots is None:
            torch = self._torch
            slots = []
            for _ in range(count):
                dev_in = torch.zeros((gn, h, w, 3), dtype=torch.uint8, device=self._dev)
                slot = {"in": dev_in}
                if self._graphs_on:
                    slot["graph"], slot["out"] = self._capture(dev_in)
                slots.append(slot)
            # The buffers were zeroed on the default stream; the upload stream must not
            # write into them before that has run.
            torch.cuda.synchronize(self._dev)
            self._slots[key] = slots
        return slots

    def _capture(self, dev_in):
        """Record the model on `dev_in` as a CUDA graph: one launch per half-batch instead of
        some 60 kernels launched from Python."""
        torch = self._torch
        s = self._compute
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(2):  # warm-up: cuDNN's benchmark mode picks its kernels here
                self.net(dev_in)
        s.synchronize()
        graph = torch.cuda.CUDAGraph()
        # thread_local: a style loading on another thread (live switching) may allocate
        # or capture meanwhile; only this thread's unsafe calls would break the capture.
        with torch.cuda.graph(graph, pool=self._pool, stream=s,
                              capture_error_mode="thread_local"):
            dev_out = self.net(dev_in)
        if self._pool is None:
            self._pool = graph.pool()
        return graph, dev_out

    def describe(self) -> str:
        if not self._cuda:
            return describe_engine(self)
        extra = "CUDA graphs" if self._graphs_on else "TF32 off"
        return (f"{self.backend} on {self.device} ({self.precision}, {extra}) "
                f"[{self._torch.cuda.get_device_name(self._dev)}]")


def _set_cuda_numerics(torch, fast: bool) -> None:
    """TF32 off for fp32 convolutions (exact parity); cuDNN's autotuner in fast mode.

    Both are process-wide PyTorch settings: an exact engine also turns TF32 off for a fast
    one in the same process, which does not matter (its convolutions are fp16)."""
    cudnn_conv = getattr(torch.backends.cudnn, "conv", None)
    if cudnn_conv is not None and hasattr(cudnn_conv, "fp32_precision"):
        cudnn_conv.fp32_precision = "ieee"  # PyTorch 2.9+
        torch.backends.cuda.matmul.fp32_precision = "ieee"
    else:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    if fast:
        torch.backends.cudnn.benchmark = True


def cuda_usable() -> bool:
    """PyTorch is installed and sees a CUDA GPU (imports torch: call only after a cheap
    check that a GPU may be present)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return False
    try:
        import torch
        return bool(torch.cuda.is_available())
    except Exception:  # a broken install must not break auto detection
        return False
