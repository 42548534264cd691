"""Build the DCT-Net ONNX graph from its weights, reproducing the official TF1 graph.

The graph takes uint8 BGR frames `[N, H, W, 3]` (H and W multiples of 4) and returns uint8
BGR `[N, H, W, 3]`: the official float32 0..255 input is exactly the uint8 value, so
feeding uint8 saves a conversion and three quarters of the input bandwidth.

Three details decide pixel parity with TensorFlow (docs/ARCHITECTURE.md section 8): stride-2 'SAME'
convolutions pad only bottom/right, the x2 upsample is TF1's legacy bilinear (ONNX
"asymmetric"), and the guided filter divides its box sums by a count map.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .weights import GENERATOR_CONVS, GUIDED_FILTER_EPS, LEAKY_ALPHA, DctNetWeights

CONVERTER_VERSION = "2"
INPUT_NAME = "input_image"
OUTPUT_NAME = "output_image"
PRECISIONS = ("fp32", "fp16")
OPSET = 17


class Builder:
    def __init__(self, float_type: int):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.float_type = float_type
        self._n = 0

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def const(self, hint: str, value: np.ndarray) -> str:
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, **attrs) -> str:
        out = self.name(hint or op_type)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out


def _conv(b: Builder, x: str, w: DctNetWeights, spec_name: str, np_float) -> str:
    spec = next(s for s in GENERATOR_CONVS if s.name == spec_name)
    kernel = w.kernels[spec_name].transpose(3, 2, 0, 1).astype(np_float)  # HWIO -> OIHW
    bias = w.biases[spec_name].astype(np_float)
    k = spec.kernel
    if spec.stride == 1:
        pads = [k // 2] * 4
    else:
        # TF 'SAME' with stride 2 on an even size pads (k - 2) in total, the odd pixel at
        # the end: for 3x3 that is 0 top/left and 1 bottom/right.
        total = k - spec.stride
        pads = [total // 2, total // 2, total - total // 2, total - total // 2]
    wname = b.const(f"generator/{spec_name}/weights", np.ascontiguousarray(kernel))
    bname = b.const(f"generator/{spec_name}/biases", bias)
    return b.op("Conv", [x, wname, bname], f"generator/{spec_name}", kernel_shape=[k, k],
                strides=[spec.stride] * 2, pads=pads)


def _generator(b: Builder, x: str, w: DctNetWeights, np_float) -> str:
    def conv_act(inp: str, name: str) -> str:
        return b.op("LeakyRelu", [_conv(b, inp, w, name, np_float)], alpha=LEAKY_ALPHA)

    scales = b.const("up_scales", np.array([1, 1, 2, 2], np.float32))

    def up(inp: str) -> str:
        # TF1 legacy ResizeBilinear: src = dst * in / out, no half-pixel offset.
        return b.op("Resize", [inp, "", scales], "ResizeBilinear", mode="linear",
                    coordinate_transformation_mode="asymmetric")

    x0 = conv_act(x, "Conv")
    h = conv_act(x0, "Conv_1")
    x1 = conv_act(h, "Conv_2")
    h = conv_act(x1, "Conv_3")
    h = conv_act(h, "Conv_4")
    for i in range(4):
        r = conv_act(h, f"block_{i}/conv1")
        h = b.op("Add", [_conv(b, r, w, f"block_{i}/conv2", np_float), h])
    h = conv_act(h, "Conv_5")
    h = b.op("Add", [up(h), x1])
    h = conv_act(h, "Conv_6")
    h = conv_act(h, "Conv_7")
    h = b.op("Add", [up(h), x0])
    h = conv_act(h, "Conv_8")
    return _conv(b, h, w, "Conv_9", np_float)


def guided_filter(b: Builder, guide: str, src: str) -> str:
    """Fast guided filter, r=1, eps=1e-2, as in the official graph (fp32).

    The official graph divides 3x3 box sums by a box-filtered map of ones so borders
    average only the pixels inside; AveragePool without pad counting is exactly that. It
    also keeps the filter off the convolution path, so a bf16 backend leaves its
    variance (a difference of near-equal terms) in fp32.
    """
    def means(*ts: str) -> list[str]:
        # One pooling over the channels stacked: the same per-channel averages, but one
        # pass over a 12- (then 6-) channel tensor instead of several 3-channel ones, which
        # a CPU backend pads to its 8/16-channel blocks (measured: bench/engine.py).
        stacked = b.op("Concat", list(ts), "box_stack", axis=1)
        pooled = b.op("AveragePool", [stacked], "box_mean", kernel_shape=[3, 3],
                      pads=[1, 1, 1, 1], count_include_pad=0)
        outs = [b.name("box_part") for _ in ts]
        b.nodes.append(helper.make_node("Split", [pooled, b.const("box_split", np.full(len(ts), 3, np.int64))],
                                        outs, name=b.name("box_split"), axis=1))
        return outs

    mean_x, mean_y, mean_xy, mean_xx = means(guide, src, b.op("Mul", [guide, src]),
                                             b.op("Mul", [guide, guide]))
    cov_xy = b.op("Sub", [mean_xy, b.op("Mul", [mean_x, mean_y])])
    var_x = b.op("Sub", [mean_xx, b.op("Mul", [mean_x, mean_x])])
    a = b.op("Div", [cov_xy, b.op("Add", [var_x, b.const("eps", np.array(GUIDED_FILTER_EPS, np.float32))])])
    bb = b.op("Sub", [mean_y, b.op("Mul", [a, mean_x])])
    mean_a, mean_b = means(a, bb)
    return b.op("Add", [b.op("Mul", [mean_a, guide]), mean_b])


def build_onnx(weights: DctNetWeights, precision: str = "fp32") -> onnx.ModelProto:
    """The full official graph; `fp16` runs the generator in half precision (GPU fast mode)
    and keeps normalisation and the guided filter in fp32, where half would band."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    half = precision == "fp16"
    b = Builder(TensorProto.FLOAT16 if half else TensorProto.FLOAT)
    np_float = np.float16 if half else np.float32

    x = b.op("Cast", [INPUT_NAME], "to_float", to=TensorProto.FLOAT)
    x = b.op("Transpose", [x], "to_nchw", perm=[0, 3, 1, 2])
    # Division, not a multiply by 1/127.5: the official graph divides, and parity is in ulps.
    x = b.op("Sub", [b.op("Div", [x, b.const("c127_5", np.array(127.5, np.float32))], "truediv"),
                     b.const("one_f", np.array(1.0, np.float32))], "sub")
    g_in = b.op("Cast", [x], to=TensorProto.FLOAT16) if half else x
    y = _generator(b, g_in, weights, np_float)
    if half:
        y = b.op("Cast", [y], to=TensorProto.FLOAT)
    y = guided_filter(b, x, y)
    y = b.op("Clip", [y, b.const("lo", np.array(-0.999999, np.float32)),
                      b.const("hi", np.array(0.999999, np.float32))])
    y = b.op("Mul", [b.op("Add", [y, b.const("one_b", np.array(1.0, np.float32))]),
                     b.const("c127_5b", np.array(127.5, np.float32))])
    # TF's Cast truncates; Floor first so no backend may round instead.
    y = b.op("Floor", [y])
    y = b.op("Transpose", [y], "to_nhwc", perm=[0, 2, 3, 1])
    b.nodes.append(helper.make_node("Cast", [y], [OUTPUT_NAME], name="output_cast",
                                    to=TensorProto.UINT8))

    dims = ["batch", "height", "width", 3]
    graph = helper.make_graph(
        b.nodes, "dctnet",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, dims)],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.UINT8, dims)],
        initializer=b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="toonstream", producer_version=CONVERTER_VERSION)
    model.ir_version = 8  # readable by every ONNX Runtime and OpenVINO release we support
    onnx.checker.check_model(model)
    return model
