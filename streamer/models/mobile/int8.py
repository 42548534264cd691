"""int8 for a Mobile-DCTNet student: NNCF post-training quantization of its fp32 graph.

Only the convolutions are quantized, as for the official models (dctnet/int8.py says why):
the modulation's MatMuls on the style code, the additions, the upsamples and the guided
filter stay float. Measured on the anime student (2-core Xeon, AVX-512 VNNI, OpenVINO):
all layers quantized, 0.80-0.91x the fp32 student's time and 4.2 levels from its output;
convolutions only, 0.71-0.73x and 1.1 levels (README, "Mobile-DCTNet"). The calibration
frames go through the graph once per style the student holds, so every style's
modulation sees them. The weights keep the CPU's safe int8 range (dctnet/int8.py,
`weight_levels`): NNCF's overflow fix is on where the CPU lacks VNNI.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from streamer.models.dctnet.int8 import INSTALL, LEVELS_NO_VNNI, Int8Unavailable

from .graph import STYLE_INPUT

#: bump on any change to the quantization: the store rebuilds cached int8 students
QUANTIZER_VERSION = "mobile-int8-1"


def quantize_student(fp32_path: Path | str, frames: Sequence[np.ndarray], levels: int):
    """(QDQ ONNX ModelProto, metadata) for the student's fp32 graph at `fp32_path`,
    calibrated on uint8 BGR `frames` (sides multiples of 4) under each one-hot style code
    of the graph in turn."""
    try:
        import nncf
        from nncf.quantization.advanced_parameters import (AdvancedQuantizationParameters,
                                                           OverflowFix)
    except ImportError:
        raise Int8Unavailable(f"--precision int8 needs NNCF to build the int8 model: "
                              f"{INSTALL}") from None
    import onnx

    model = onnx.load(str(fp32_path))
    code_input = next(i for i in model.graph.input if i.name == STYLE_INPUT)
    styles = code_input.type.tensor_type.shape.dim[0].dim_value
    items = []
    for i, frame in enumerate(frames):
        code = np.zeros(styles, np.float32)
        code[i % styles] = 1.0
        items.append({"input_image": np.ascontiguousarray(frame)[None], STYLE_INPUT: code})
    kept_float = sorted({n.op_type for n in model.graph.node} - {"Conv"})
    overflow = OverflowFix.ENABLE if levels <= LEVELS_NO_VNNI else OverflowFix.DISABLE
    logging.getLogger("nncf").setLevel(logging.ERROR)  # per-op notes are for its developers
    quantized = nncf.quantize(
        model, nncf.Dataset(items), subset_size=len(items),
        ignored_scope=nncf.IgnoredScope(types=kept_float, validate=False),
        advanced_parameters=AdvancedQuantizationParameters(overflow_fix=overflow))
    info = {"quantizer": f"nncf {nncf.__version__}", "quantizer_version": QUANTIZER_VERSION,
            "calibration_frames": len(items), "quantized": "Conv", "weight_levels": levels}
    return quantized, info
