"""int8 post-training quantization of the DCT-Net ONNX graph with NNCF.

The result is a QDQ ONNX model (QuantizeLinear / DequantizeLinear pairs around the int8
layers): OpenVINO runs it with int8 kernels (VNNI / AMX), ONNX Runtime reads it too.

Which layers stay in higher precision was measured, not guessed (README, "int8"): with every
generator convolution in int8 and NNCF's fast bias correction the anime model differs from
TensorFlow's output by 2.3 levels on average; the guided filter, the normalisation and the
two 7x7 output/input convolutions are kept out from the start (the guided filter divides
small variances, int8 there is visibly blocky), full bias correction brings the rest down
by half, and un-quantizing one convolution at a time ranked the encoder (Conv_1..Conv_3,
at half and quarter resolution, where the features are still close to pixels) as the next
most sensitive. The residual blocks, which hold 59% of the multiply-adds, lose nothing
measurable in int8.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from streamer.errors import UserError

QUANTIZER_VERSION = "1"
INSTALL = "pip install 'toonstream[int8]' (NNCF)"

# Convolutions kept in higher precision (their ONNX node names are "<name>_<n>"): see the
# module docstring and README for the per-layer measurement behind this list.
KEEP_FLOAT_CONVS = ("generator/Conv", "generator/Conv_1", "generator/Conv_2",
                    "generator/Conv_3", "generator/Conv_9")
# Measured per style, the same way: in handdrawn and sd-illustration the last full-resolution
# decoder convolution is by far the most sensitive (handdrawn: putting Conv_8 back to float
# alone lowers the mean difference from 3.7 to 2.8; every other layer by 0.2 or less).
STYLE_FLOAT_CONVS = {"handdrawn": ("generator/Conv_8",),
                     "sd-illustration": ("generator/Conv_8",)}


def float_layers(style: str) -> tuple[str, ...]:
    """The convolutions kept in higher precision for `style`."""
    return KEEP_FLOAT_CONVS + STYLE_FLOAT_CONVS.get(style, ())


class Int8Unavailable(UserError, RuntimeError):
    """int8 was asked for but NNCF (the quantizer) is not installed."""


def _layer(node_name: str) -> str:
    return node_name.rsplit("_", 1)[0]


def float_scope(model, keep: Sequence[str] = KEEP_FLOAT_CONVS) -> list[str]:
    """Node names NNCF must leave alone: the input normalisation (everything before the
    first convolution), the guided filter and output conversion (everything after the last
    one), and the convolutions in `keep`."""
    names = [n.name for n in model.graph.node]
    first = next(i for i, n in enumerate(names) if _layer(n) == "generator/Conv")
    last = next(i for i, n in enumerate(names) if _layer(n) == "generator/Conv_9")
    return names[:first] + names[last + 1:] + [n for n in names if _layer(n) in keep]


def quantize_int8(fp32_path: Path | str, frames: Sequence[np.ndarray],
                  keep: Sequence[str] = KEEP_FLOAT_CONVS):
    """(QDQ ONNX ModelProto, metadata) for the fp32 model at `fp32_path`, calibrated on
    uint8 BGR `frames` (sides multiples of 4)."""
    try:
        import nncf
    except ImportError:
        raise Int8Unavailable(f"--precision int8 needs NNCF to build the int8 model: {INSTALL}") from None
    import onnx

    # NNCF's per-op warnings are for its developers; its progress bars stay.
    logging.getLogger("nncf").setLevel(logging.ERROR)
    model = onnx.load(str(fp32_path))
    frames = [np.ascontiguousarray(f) for f in frames]
    dataset = nncf.Dataset(frames, lambda f: {"input_image": f[None]})
    quantized = nncf.quantize(
        model, dataset, subset_size=len(frames),
        # MIXED: symmetric weights, asymmetric activations (LeakyReLU outputs are lopsided)
        preset=nncf.QuantizationPreset.MIXED,
        # Full bias correction halves the error of the fast one on this network (measured)
        fast_bias_correction=False,
        ignored_scope=nncf.IgnoredScope(names=float_scope(model, keep)))
    info = {"quantizer": f"nncf {nncf.__version__}", "quantizer_version": QUANTIZER_VERSION,
            "calibration_frames": len(frames), "float_layers": list(keep)}
    return quantized, info
