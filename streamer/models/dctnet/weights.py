"""DCT-Net generator weights, read from the official .pb or a .tflite conversion.

Neither format needs TensorFlow: a frozen GraphDef is plain protobuf and a TFLite model is
a FlatBuffer. Both readers check that the file holds exactly the DCT-Net generator (the 18
convolutions with their names, shapes and strides) and reject anything else with a
one-line reason.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamer.errors import UserError
from streamer.models.formats.graphdef import GraphDefError, read_graphdef
from streamer.models.formats.tflite import (CONV_2D, LEAKY_RELU, Operator, TfliteError,
                                            TfliteModel)


class ModelFormatError(UserError, ValueError):
    """The file is not a DCT-Net model we can use; the message is one line for the user."""


@dataclass(frozen=True)
class ConvSpec:
    name: str
    kernel: int
    cin: int
    cout: int
    stride: int = 1


# The generator in execution order (docs/ARCHITECTURE.md section 8).
GENERATOR_CONVS: tuple[ConvSpec, ...] = (
    ConvSpec("Conv", 7, 3, 32),
    ConvSpec("Conv_1", 3, 32, 32, 2),
    ConvSpec("Conv_2", 3, 32, 64),
    ConvSpec("Conv_3", 3, 64, 64, 2),
    ConvSpec("Conv_4", 3, 64, 128),
    *(ConvSpec(f"block_{i}/conv{j}", 3, 128, 128) for i in range(4) for j in (1, 2)),
    ConvSpec("Conv_5", 3, 128, 64),
    ConvSpec("Conv_6", 3, 64, 64),
    ConvSpec("Conv_7", 3, 64, 32),
    ConvSpec("Conv_8", 3, 32, 32),
    ConvSpec("Conv_9", 7, 32, 3),
)
PARAMETER_COUNT = 1_467_075
LEAKY_ALPHA = 0.2
GUIDED_FILTER_EPS = 1e-2

# Non-constant op types of the official export; any other mix is a different network.
_PB_OP_SIGNATURE = Counter({
    "Conv2D": 18, "BiasAdd": 18, "LeakyRelu": 13, "Mul": 11, "StridedSlice": 9, "Add": 9,
    "RealDiv": 8, "DepthwiseConv2dNative": 7, "Shape": 5, "Sub": 4, "Pack": 3,
    "ResizeBilinear": 2, "Placeholder": 1, "Fill": 1, "Minimum": 1, "Maximum": 1, "Cast": 1,
})


@dataclass(frozen=True)
class DctNetWeights:
    """Generator weights: per convolution, kernel HWIO float32 and bias float32."""

    kernels: dict[str, np.ndarray]
    biases: dict[str, np.ndarray]
    source_format: str  # "pb" or "tflite"

    @property
    def parameter_count(self) -> int:
        return sum(k.size for k in self.kernels.values()) + sum(b.size for b in self.biases.values())


def load_weights(path: Path | str) -> DctNetWeights:
    """Read and validate a DCT-Net model file; raises ModelFormatError with a one-line reason."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelFormatError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ModelFormatError(f"{path}: is a folder, not a model file") from None
    except OSError as exc:
        raise ModelFormatError(f"{path}: cannot read ({exc.strerror})") from None
    if not data:
        raise ModelFormatError(f"{path}: empty file")
    try:
        if data[4:8] == b"TFL3":
            return _from_tflite(data)
        return _from_graphdef(data)
    except ModelFormatError as exc:
        raise ModelFormatError(f"{path.name}: {exc}") from None


def _check_shapes(kernels: dict[str, np.ndarray], biases: dict[str, np.ndarray]) -> None:
    for spec in GENERATOR_CONVS:
        want = (spec.kernel, spec.kernel, spec.cin, spec.cout)
        got = kernels[spec.name].shape
        if got != want or biases[spec.name].shape != (spec.cout,):
            raise ModelFormatError(
                f"a different network: {spec.name} has kernel {got}, DCT-Net expects {want}")
    for name, arr in {**kernels, **biases}.items():
        if not np.isfinite(arr).all():
            raise ModelFormatError(f"damaged: generator/{name} holds NaN or infinite weights")
    _check_range(kernels, biases)


# A weight farther from its layer's centre than this many robust standard deviations
# (1.4826 x the median absolute deviation) cannot come from training. Every official style
# stays under 65 (sd-illustration's Conv_7 is the widest), biases under 20 of their kernel's
# scale; one flipped sign-or-exponent byte lands at hundreds to 1e38. The margin of three
# leaves room for fine-tuned weights, and a flip that stays under it changes the output
# less than a visible amount. A checksum, where one is recorded, catches the rest.
MAX_ROBUST_DEVIATIONS = 200.0


def _check_range(kernels: dict[str, np.ndarray], biases: dict[str, np.ndarray]) -> None:
    """Refuse weights no training produces: the signature of bytes flipped on disk."""
    for spec in GENERATOR_CONVS:
        k = kernels[spec.name].astype(np.float64).ravel()
        centre = float(np.median(k))
        scale = 1.4826 * float(np.median(np.abs(k - centre)))
        if scale == 0.0:
            raise ModelFormatError(f"damaged: generator/{spec.name} holds {k.size} equal weights")
        for what, arr in (("weight", k), ("bias", biases[spec.name].astype(np.float64))):
            dev = np.abs(arr - centre) / scale
            worst = int(np.argmax(dev))
            if dev[worst] > MAX_ROBUST_DEVIATIONS:
                raise ModelFormatError(
                    f"damaged: generator/{spec.name} holds a {what} of {arr[worst]:.3g}, "
                    f"{dev[worst]:.0f} times its layer's typical spread (trained weights stay "
                    f"under {MAX_ROBUST_DEVIATIONS:.0f})")


def _from_graphdef(data: bytes) -> DctNetWeights:
    try:
        nodes = read_graphdef(data)
    except GraphDefError as exc:
        kind = "truncated or corrupt" if len(data) > 1 << 20 else "not a model"
        raise ModelFormatError(f"{kind}: neither a TensorFlow frozen graph nor a TFLite file "
                               f"({exc})") from None
    if "input_image" not in nodes or "output_image" not in nodes:
        raise ModelFormatError("not a DCT-Net graph: no input_image/output_image nodes")
    ops = Counter(n.op for n in nodes.values() if n.op not in ("Const", "Identity"))
    if ops != _PB_OP_SIGNATURE:
        diff = (ops - _PB_OP_SIGNATURE) + (_PB_OP_SIGNATURE - ops)
        raise ModelFormatError(f"a different network: its operations differ from DCT-Net's "
                               f"({', '.join(sorted(diff))})")
    kernels, biases = {}, {}
    for spec in GENERATOR_CONVS:
        prefix = f"generator/{spec.name}"
        try:
            kernels[spec.name] = nodes[f"{prefix}/weights"].attrs["value"].astype(np.float32)
            biases[spec.name] = nodes[f"{prefix}/biases"].attrs["value"].astype(np.float32)
            conv = nodes[f"{prefix}/Conv2D"]
        except (KeyError, AttributeError):
            raise ModelFormatError(f"a different network: no convolution {prefix}") from None
        strides = conv.attrs.get("strides")
        if conv.attrs.get("padding") != "SAME" or strides != [1, spec.stride, spec.stride, 1]:
            raise ModelFormatError(f"a different network: {prefix} is not a SAME conv "
                                   f"with stride {spec.stride}")
    _check_shapes(kernels, biases)
    for node in nodes.values():
        if node.op == "LeakyRelu" and abs(node.attrs.get("alpha", 0) - LEAKY_ALPHA) > 1e-6:
            raise ModelFormatError(f"a different network: {node.name} has alpha {node.attrs['alpha']}")
        if node.op == "ResizeBilinear" and (node.attrs.get("align_corners")
                                            or node.attrs.get("half_pixel_centers")):
            raise ModelFormatError(f"a different network: {node.name} is not the legacy resize")
    eps = nodes.get("add/y")
    if eps is None or abs(float(eps.attrs["value"]) - GUIDED_FILTER_EPS) > 1e-9:
        raise ModelFormatError("a different network: guided filter eps is not 1e-2")
    return DctNetWeights(kernels, biases, "pb")


def _conv_geometry(op: Operator) -> tuple[tuple[int, int], int]:
    """(stride, padding) of a CONV_2D from its Conv2DOptions (0 padding, 1 stride_w,
    2 stride_h; Padding.SAME == 0)."""
    opts = op.options
    if opts is None:
        return (0, 0), -1
    return (int(opts.scalar(1, "i", 0)), int(opts.scalar(2, "i", 0))), int(opts.scalar(0, "b", 0))


def _from_tflite(data: bytes) -> DctNetWeights:
    try:
        model = TfliteModel(data)
    except TfliteError as exc:
        raise ModelFormatError(f"a different network or a damaged file: {exc}") from None
    convs = [op for op in model.operators if op.code == CONV_2D]
    leaky = sum(op.code == LEAKY_RELU for op in model.operators)
    if len(convs) != len(GENERATOR_CONVS) or leaky != 13:
        raise ModelFormatError(f"a different network: {len(convs)} convolutions and {leaky} "
                               f"LeakyReLUs, DCT-Net has 18 and 13")
    behind = model.dequantized_sources()

    def const(index: int) -> np.ndarray | None:
        try:
            return model.constant(behind.get(index, index))
        except TfliteError as exc:
            raise ModelFormatError(f"a different network or a damaged file: {exc}") from None

    kernels, biases = {}, {}
    for spec, op in zip(GENERATOR_CONVS, convs):
        ins = op.inputs
        w = const(ins[1])
        b = const(ins[2]) if len(ins) > 2 and ins[2] >= 0 else None
        if w is None or b is None:
            raise ModelFormatError(f"a different network: convolution {spec.name} has no constant weights")
        stride, padding = _conv_geometry(op)
        if stride != (spec.stride, spec.stride) or padding != 0:
            raise ModelFormatError(f"a different network: {spec.name} is not a SAME conv "
                                   f"with stride {spec.stride}")
        if w.ndim != 4:
            raise ModelFormatError(f"a different network: {spec.name} kernel has rank {w.ndim}")
        kernels[spec.name] = np.ascontiguousarray(w.transpose(1, 2, 3, 0))  # OHWI -> HWIO
        biases[spec.name] = b
    _check_shapes(kernels, biases)
    return DctNetWeights(kernels, biases, "tflite")
