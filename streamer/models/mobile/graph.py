"""The ONNX graph of a Mobile-DCTNet student: a drop-in for the official graph.

Inputs: `input_image` uint8 BGR `[N, H, W, 3]` (H, W multiples of 4) and `style_code`
float32 `[S]` (one weight per style the student holds). Output: `output_image` uint8 BGR.
Around the light generator (net.py) the graph does exactly what the official one does
(dctnet/onnx_graph.py, docs/ARCHITECTURE.md section 8): `x / 127.5 - 1`, the guided filter
with border-exact box means (fp32 in every precision), the clip and the truncating cast.
The style code only feeds the modulation's 1x1 convolutions (here MatMuls on a `[1, S]`
row), so a new code is a new input value: no engine is rebuilt to switch or blend styles.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from streamer.models.dctnet.onnx_graph import (INPUT_NAME, OPSET, OUTPUT_NAME, Builder,
                                              guided_filter)

from .net import LEAKY_ALPHA, Arch, layers

#: bump on any change to the graph: the store rebuilds cached student models
CONVERTER_VERSION = "mobile-1"
STYLE_INPUT = "style_code"
PRECISIONS = ("fp32", "fp16")


def _modulation(b: Builder, code: str, name: str, w: dict[str, np.ndarray], np_float
                ) -> tuple[str, str]:
    """(1 + gamma, beta) as `[1, C, 1, 1]` maps for the code row `code` `[1, S]`, in fp32
    (a handful of numbers), cast to the generator's float type."""
    outs = []
    for g, act in (("gamma", "Sigmoid"), ("beta", "Tanh")):
        mat = b.const(f"{name}.{g}.weight", np.ascontiguousarray(w[f"{name}.{g}.weight"].T))
        bias = b.const(f"{name}.{g}.bias", w[f"{name}.{g}.bias"].astype(np.float32))
        t = b.op(act, [b.op("Add", [b.op("MatMul", [code, mat]), bias])])
        if g == "gamma":
            t = b.op("Add", [t, b.const("one_mod", np.array(1.0, np.float32))])
        t = b.op("Unsqueeze", [t, b.const("axes23", np.array([2, 3], np.int64))])
        if np_float is np.float16:
            t = b.op("Cast", [t], to=TensorProto.FLOAT16)
        outs.append(t)
    return outs[0], outs[1]


def _generator(b: Builder, x: str, code: str, arch: Arch, w: dict[str, np.ndarray],
               np_float) -> str:
    skips: dict[str, str] = {}
    for ly in layers(arch):
        if ly.kind == "conv":
            wname = b.const(f"{ly.name}.weight", w[f"{ly.name}.weight"].astype(np_float))
            bname = b.const(f"{ly.name}.bias", w[f"{ly.name}.bias"].astype(np_float))
            p = ly.k // 2
            x = b.op("Conv", [x, wname, bname], ly.name, kernel_shape=[ly.k, ly.k],
                     strides=[ly.stride] * 2, pads=[p] * 4, group=ly.groups)
            if ly.act:
                x = b.op("LeakyRelu", [x], alpha=LEAKY_ALPHA)
        elif ly.kind == "save":
            skips[ly.skip] = x
        elif ly.kind == "add":
            x = b.op("Add", [x, skips[ly.skip]])
        elif ly.kind == "up":
            # Nearest x2 (floor(dst / 2)): the 1x1 before it made the map narrow, and the
            # depthwise 3x3 after it smooths, so bilinear would cost more for nothing.
            x = b.op("Resize", [x, "", b.const("up_scales", np.array([1, 1, 2, 2], np.float32))],
                     "up", mode="nearest", coordinate_transformation_mode="asymmetric",
                     nearest_mode="floor")
        elif ly.kind == "mod":
            scale, shift = _modulation(b, code, ly.name, w, np_float)
            x = b.op("Add", [b.op("Mul", [x, scale]), shift], ly.name)
    return x


def build_student_onnx(weights: dict[str, np.ndarray], arch: Arch, styles: int,
                       precision: str = "fp32") -> onnx.ModelProto:
    """The whole graph for a student with `styles` style codes; `fp16` runs the generator
    in half precision (GPUs) and keeps normalisation, modulation and guided filter fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    half = precision == "fp16"
    np_float = np.float16 if half else np.float32
    b = Builder(TensorProto.FLOAT16 if half else TensorProto.FLOAT)
    x = b.op("Cast", [INPUT_NAME], "to_float", to=TensorProto.FLOAT)
    x = b.op("Transpose", [x], "to_nchw", perm=[0, 3, 1, 2])
    x = b.op("Sub", [b.op("Div", [x, b.const("c127_5", np.array(127.5, np.float32))], "truediv"),
                     b.const("one_f", np.array(1.0, np.float32))], "sub")
    code = b.op("Reshape", [STYLE_INPUT, b.const("code_row", np.array([1, styles], np.int64))],
                "code_row")
    g_in = b.op("Cast", [x], to=TensorProto.FLOAT16) if half else x
    y = _generator(b, g_in, code, arch, weights, np_float)
    if half:
        y = b.op("Cast", [y], to=TensorProto.FLOAT)
    y = guided_filter(b, x, y)
    y = b.op("Clip", [y, b.const("lo", np.array(-0.999999, np.float32)),
                      b.const("hi", np.array(0.999999, np.float32))])
    y = b.op("Mul", [b.op("Add", [y, b.const("one_b", np.array(1.0, np.float32))]),
                     b.const("c127_5b", np.array(127.5, np.float32))])
    y = b.op("Floor", [y])
    y = b.op("Transpose", [y], "to_nhwc", perm=[0, 2, 3, 1])
    b.nodes.append(helper.make_node("Cast", [y], [OUTPUT_NAME], name="output_cast",
                                    to=TensorProto.UINT8))
    dims = ["batch", "height", "width", 3]
    graph = helper.make_graph(
        b.nodes, "mobile_dctnet",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, dims),
         helper.make_tensor_value_info(STYLE_INPUT, TensorProto.FLOAT, [styles])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.UINT8, dims)],
        initializer=b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="toonstream", producer_version=CONVERTER_VERSION)
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
