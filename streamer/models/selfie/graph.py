"""MediaPipe selfie segmentation (general 256x256 and landscape 144x256) as an ONNX graph.

The published .tflite files hold MediaPipe's custom op `Convolution2DTransposeBias`, which
OpenVINO's TFLite reader and the LiteRT interpreter refuse, so, as for DCT-Net, the project
reads the file with its own TFLite reader (formats/tflite.py) and writes the graph itself.
Every operator of the two files maps onto one or two ONNX operators:

    CONV_2D / DEPTHWISE_CONV_2D     Conv (group = channels for depthwise), TFLite 'SAME'
                                    padding computed from the static shapes (odd pixel after)
    Convolution2DTransposeBias      ConvTranspose (2x2, stride 2) with its bias
    HARD_SWISH, RELU, LOGISTIC      HardSwish, Relu, Sigmoid
    ADD, MUL                        Add, Mul (broadcast: both sides are NCHW here)
    AVERAGE_POOL_2D (global), MEAN  GlobalAveragePool / ReduceMean over H, W
    RESIZE_BILINEAR                 Resize linear, with the op's corner convention
    DEQUANTIZE                      none: fp16 weights are widened to fp32 constants

The ONNX graph works in NCHW; it takes uint8 BGR frames `[N, H, W, 3]` already resized to the
model's input (the project's frame layout; the graph does MediaPipe's RGB 0..1 conversion)
and returns the person probability `[N, H, W]` float32 in 0..1.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from streamer.models.formats.tflite import TfliteError, TfliteModel

from . import INPUT_NAME, OUTPUT_NAME

CONVERTER_VERSION = "1"
OPSET = 17
TRANSPOSE_CONV_BIAS = "Convolution2DTransposeBias"

# TFLite builtin operator codes (tensorflow/lite/schema/schema.fbs, BuiltinOperator).
ADD, AVERAGE_POOL_2D, CONV_2D, DEPTHWISE_CONV_2D, DEQUANTIZE = 0, 1, 3, 4, 6
LOGISTIC, MUL, RELU, RESIZE_BILINEAR, CUSTOM, MEAN, HARD_SWISH = 14, 18, 19, 23, 32, 40, 117
# Fused activations (ActivationFunctionType) and paddings (Padding).
_ACT_NONE, _ACT_RELU, _ACT_RELU6 = 0, 1, 3
_SAME, _VALID = 0, 1
# NHWC axis -> NCHW axis, for MEAN's axes.
_NHWC_TO_NCHW = {0: 0, 1: 2, 2: 3, 3: 1}


class SegModelError(ValueError):
    """Not a selfie segmentation model this importer understands, in one line."""


@dataclass(frozen=True)
class SegModelInfo:
    height: int  # the model's input (and output) size
    width: int
    operators: int


def _pads_same(in_hw: tuple[int, int], out_hw: tuple[int, int], k: tuple[int, int],
               s: tuple[int, int], d: tuple[int, int] = (1, 1)) -> list[int]:
    """TFLite 'SAME' padding as ONNX pads [top, left, bottom, right]: the odd pixel goes
    after (bottom/right), as in TensorFlow."""
    before, after = [], []
    for i in range(2):
        eff = (k[i] - 1) * d[i] + 1
        total = max((out_hw[i] - 1) * s[i] + eff - in_hw[i], 0)
        before.append(total // 2)
        after.append(total - total // 2)
    return before + after


class _Graph:
    def __init__(self, model: TfliteModel):
        self.m = model
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.names: dict[int, str] = {}  # TFLite tensor index -> ONNX value name (NCHW)
        self.deq = model.dequantized_sources()
        self._n = 0

    def fresh(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def const(self, hint: str, value: np.ndarray) -> str:
        name = self.fresh(hint)
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: list[str], hint: str | None = None, **attrs) -> str:
        out = self.fresh(hint or op)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def weight(self, index: int) -> np.ndarray:
        """A constant operand, looking through DEQUANTIZE (fp16 weights)."""
        value = self.m.constant(self.deq.get(index, index))
        if value is None:
            raise SegModelError(f"tensor {index} should be constant weights")
        return value

    def value(self, index: int) -> str:
        try:
            return self.names[index]
        except KeyError:
            raise SegModelError(f"tensor {index} is used before it is computed") from None

    def hw(self, index: int) -> tuple[int, int]:
        shape = self.m.shape(index)
        if len(shape) != 4:
            raise SegModelError(f"tensor {index} is not 4-D NHWC: {shape}")
        return shape[1], shape[2]

    def activation(self, x: str, code: int) -> str:
        if code == _ACT_NONE:
            return x
        if code == _ACT_RELU:
            return self.node("Relu", [x])
        if code == _ACT_RELU6:
            return self.node("Clip", [x, self.const("zero", np.array(0, np.float32)),
                                      self.const("six", np.array(6, np.float32))])
        raise SegModelError(f"unsupported fused activation {code}")


def _conv(g: _Graph, op, depthwise: bool) -> str:
    o = op.options
    if o is None:
        raise SegModelError("a convolution without options")
    padding = int(o.scalar(0, "b", 0))
    sw, sh = int(o.scalar(1, "i", 1)), int(o.scalar(2, "i", 1))
    act = int(o.scalar(4 if depthwise else 3, "b", 0))
    dil = (int(o.scalar(6 if depthwise else 5, "i", 1)), int(o.scalar(5 if depthwise else 4, "i", 1)))
    w = g.weight(op.inputs[1])  # conv: [O, kh, kw, I]; depthwise: [1, kh, kw, C*mult]
    kh, kw = w.shape[1], w.shape[2]
    in_hw, out_hw = g.hw(op.inputs[0]), g.hw(op.outputs[0])
    pads = _pads_same(in_hw, out_hw, (kh, kw), (sh, sw), dil) if padding == _SAME else [0] * 4
    if depthwise:
        groups = g.m.shape(op.inputs[0])[3]
        kernel = w.transpose(3, 0, 1, 2)  # [C*mult, 1, kh, kw]
    else:
        groups = 1
        kernel = w.transpose(0, 3, 1, 2)  # OIHW
    inputs = [g.value(op.inputs[0]), g.const("w", np.ascontiguousarray(kernel))]
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        inputs.append(g.const("b", g.weight(op.inputs[2])))
    y = g.node("Conv", inputs, kernel_shape=[kh, kw], strides=[sh, sw], pads=pads,
               dilations=list(dil), group=groups)
    return g.activation(y, act)


def _transpose_conv_bias(g: _Graph, op) -> str:
    # MediaPipe's custom options are a TfLiteTransposeConvParams struct: padding (enum,
    # 1 = SAME, 2 = VALID), stride_width, stride_height, each int32.
    raw = op.custom_options
    if len(raw) < 12:
        raise SegModelError(f"{TRANSPOSE_CONV_BIAS} has {len(raw)} bytes of options, 12 expected")
    padding, sw, sh = np.frombuffer(raw[:12], "<i4").tolist()
    w = g.weight(op.inputs[1])  # [O, kh, kw, I]
    kh, kw = w.shape[1], w.shape[2]
    in_hw, out_hw = g.hw(op.inputs[0]), g.hw(op.outputs[0])
    pads = [0] * 4
    if padding == 1:  # SAME: out = in * stride; crop what the full transposed conv adds
        for i, (n_in, n_out, k, s) in enumerate(zip(in_hw, out_hw, (kh, kw), (sh, sw))):
            total = max((n_in - 1) * s + k - n_out, 0)
            pads[i], pads[i + 2] = total // 2, total - total // 2
    kernel = np.ascontiguousarray(w.transpose(3, 0, 1, 2))  # ConvTranspose: [I, O, kh, kw]
    return g.node("ConvTranspose", [g.value(op.inputs[0]), g.const("wt", kernel),
                                    g.const("bt", g.weight(op.inputs[2]))],
                  kernel_shape=[kh, kw], strides=[sh, sw], pads=pads)


def _pool(g: _Graph, op) -> str:
    o = op.options
    padding = int(o.scalar(0, "b", 0))
    sw, sh = int(o.scalar(1, "i", 1)), int(o.scalar(2, "i", 1))
    fw, fh = int(o.scalar(3, "i", 1)), int(o.scalar(4, "i", 1))
    act = int(o.scalar(5, "b", 0))
    in_hw, out_hw = g.hw(op.inputs[0]), g.hw(op.outputs[0])
    x = g.value(op.inputs[0])
    if (fh, fw) == in_hw and out_hw == (1, 1):
        y = g.node("GlobalAveragePool", [x])
    else:
        pads = _pads_same(in_hw, out_hw, (fh, fw), (sh, sw)) if padding == _SAME else [0] * 4
        # TFLite averages over the pixels inside the image only.
        y = g.node("AveragePool", [x], kernel_shape=[fh, fw], strides=[sh, sw], pads=pads,
                   count_include_pad=0)
    return g.activation(y, act)


def _mean(g: _Graph, op) -> str:
    axes = g.m.int_constant(op.inputs[1])
    if axes is None:
        raise SegModelError("MEAN with non-constant axes")
    keep = bool(op.options.scalar(0, "b", 0)) if op.options is not None else False
    if not keep:
        raise SegModelError("MEAN without keep_dims is not used by these models")
    return g.node("ReduceMean", [g.value(op.inputs[0])],
                  axes=sorted(_NHWC_TO_NCHW[int(a) % 4] for a in axes.ravel()), keepdims=1)


def _resize(g: _Graph, op) -> str:
    o = op.options
    align = bool(o.scalar(2, "b", 0)) if o is not None else False
    half = bool(o.scalar(3, "b", 0)) if o is not None else False
    in_hw, out_hw = g.hw(op.inputs[0]), g.hw(op.outputs[0])
    scales = np.array([1, 1, out_hw[0] / in_hw[0], out_hw[1] / in_hw[1]], np.float32)
    mode = "align_corners" if align else "half_pixel" if half else "asymmetric"
    return g.node("Resize", [g.value(op.inputs[0]), "", g.const("scales", scales)],
                  mode="linear", coordinate_transformation_mode=mode)


def _binary(g: _Graph, op, onnx_op: str) -> str:
    a, b = (g.value(i) if i in g.names else g.const("k", _nchw_const(g.weight(i)))
            for i in op.inputs[:2])
    act = int(op.options.scalar(0, "b", 0)) if op.options is not None else 0
    return g.activation(g.node(onnx_op, [a, b]), act)


def _nchw_const(v: np.ndarray) -> np.ndarray:
    return v.transpose(0, 3, 1, 2).copy() if v.ndim == 4 else v


_UNARY = {HARD_SWISH: "HardSwish", RELU: "Relu", LOGISTIC: "Sigmoid"}


def build_seg_onnx(model: TfliteModel) -> tuple[onnx.ModelProto, SegModelInfo]:
    """The ONNX graph of a selfie segmentation TFLite model (see the module docstring)."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise SegModelError("expected one input and one output")
    in_shape = model.shape(model.inputs[0])
    out_shape = model.shape(model.outputs[0])
    if len(in_shape) != 4 or in_shape[0] != 1 or in_shape[3] != 3:
        raise SegModelError(f"input is {list(in_shape)}, not [1, H, W, 3]")
    if tuple(out_shape) != (1, in_shape[1], in_shape[2], 1):
        raise SegModelError(f"output is {list(out_shape)}, not [1, H, W, 1] at the input size")
    h, w = in_shape[1], in_shape[2]
    g = _Graph(model)
    # uint8 BGR NHWC -> float RGB NCHW in 0..1, the tensor MediaPipe feeds the model.
    x = g.node("Cast", [INPUT_NAME], to=TensorProto.FLOAT)
    x = g.node("Mul", [x, g.const("inv255", np.array(1 / 255, np.float32))])
    x = g.node("Transpose", [x], perm=[0, 3, 1, 2])
    g.names[model.inputs[0]] = g.node("Gather", [x, g.const("bgr2rgb", np.array([2, 1, 0], np.int64))],
                                      axis=1)
    for op in model.operators:
        if op.code == DEQUANTIZE:
            continue  # folded into the constant (Graph.weight)
        if op.code == CONV_2D:
            y = _conv(g, op, depthwise=False)
        elif op.code == DEPTHWISE_CONV_2D:
            y = _conv(g, op, depthwise=True)
        elif op.code == CUSTOM and op.custom == TRANSPOSE_CONV_BIAS:
            y = _transpose_conv_bias(g, op)
        elif op.code in _UNARY:
            y = g.node(_UNARY[op.code], [g.value(op.inputs[0])])
        elif op.code == ADD:
            y = _binary(g, op, "Add")
        elif op.code == MUL:
            y = _binary(g, op, "Mul")
        elif op.code == AVERAGE_POOL_2D:
            y = _pool(g, op)
        elif op.code == MEAN:
            y = _mean(g, op)
        elif op.code == RESIZE_BILINEAR:
            y = _resize(g, op)
        else:
            what = op.custom or f"builtin {op.code}"
            raise SegModelError(f"unsupported operator {what}: not a selfie segmentation model")
        g.names[op.outputs[0]] = y
    out = g.value(model.outputs[0])
    g.nodes.append(helper.make_node("Squeeze", [out, g.const("axis1", np.array([1], np.int64))],
                                    [OUTPUT_NAME], name=OUTPUT_NAME))
    graph = helper.make_graph(
        g.nodes, "selfie_segmentation",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["N", h, w, 3])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", h, w])],
        g.inits)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                   producer_name="toonstream")
    onnx_model.ir_version = 8  # readable by every ONNX Runtime / OpenVINO release we support
    onnx.checker.check_model(onnx_model)
    return onnx_model, SegModelInfo(h, w, len(model.operators))


def load_seg_model(path: Path | str) -> tuple[onnx.ModelProto, SegModelInfo]:
    """Read a selfie segmentation .tflite and build its ONNX graph; SegModelError (one line,
    naming the file) when it is not one."""
    path = Path(path)
    try:
        return build_seg_onnx(TfliteModel(path.read_bytes()))
    except (TfliteError, SegModelError) as exc:
        raise SegModelError(f"{path.name}: {exc}") from None
    except OSError as exc:
        raise SegModelError(f"{path.name}: cannot read ({exc.strerror})") from None
