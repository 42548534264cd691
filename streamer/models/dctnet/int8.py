"""int8 post-training quantization of the DCT-Net ONNX graph (NNCF, GPTQ rounding).

The result is a QDQ ONNX model (QuantizeLinear / DequantizeLinear pairs around the int8
convolutions): OpenVINO runs it with int8 kernels (VNNI / AMX), ONNX Runtime reads it too.

Three steps, each measured (README, "int8"), before NNCF places the activation quantizers:
1. channel equalisation (`equalize.py`): the float network is rescaled, unchanged in
   result, so every channel of a tensor uses the int8 levels alike;
2. GPTQ weight rounding (`gptq.py`) on the calibration frames' layer inputs;
3. only the convolutions are quantized: NNCF would also quantize the skip additions and the
   upsamples, which buys no speed (the convolutions around them read float or int8 either
   way) and by itself cost 1.4-1.9 levels on handdrawn.
The input normalisation, the guided filter and the output conversion stay in float, and so
do the layers in `float_layers(style)`, picked per layer by their measured cost.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from streamer.errors import UserError

QUANTIZER_VERSION = "3"
INSTALL = "pip install 'toonstream[int8]' (NNCF)"

# Convolutions kept in higher precision (their ONNX node names are "<name>_<n>"). Measured
# one layer at a time (bench/int8_layers.py, README "int8"): the 7x7 input convolution and
# the encoder after it, still close to pixels, cost the most in int8 for the least time in
# float (with them float int8 takes 0.63-0.64x the bf16 time, 0.61-0.63x without).
KEEP_FLOAT_CONVS = ("generator/Conv", "generator/Conv_1", "generator/Conv_2",
                    "generator/Conv_3")
# Per style, the same way: in handdrawn and sd-illustration the last full-resolution decoder
# convolution is the most sensitive (handdrawn 1.9 -> 1.5 at most, for 0.66x instead of 0.64x).
STYLE_FLOAT_CONVS: dict[str, tuple[str, ...]] = {"handdrawn": ("generator/Conv_8",),
                                                 "sd-illustration": ("generator/Conv_8",)}
# Output positions per frame and layer that GPTQ's statistics sample: 24 frames x 8000
# columns is far more than the widest layer's 1568 inputs, and a fifth of the time of all.
GRAM_SAMPLES = 8000
# Weight levels: +-127 on CPUs with VNNI (or AMX), whose int8 products accumulate in 32
# bits; +-63 without, where the u8 x s8 pair sums saturate 16 bits beyond that.
LEVELS_VNNI, LEVELS_NO_VNNI = 127, 63


def float_layers(style: str) -> tuple[str, ...]:
    """The convolutions kept in higher precision for `style`."""
    return KEEP_FLOAT_CONVS + STYLE_FLOAT_CONVS.get(style, ())


def weight_levels(cpuinfo: str | None = None) -> int:
    """The int8 weight range this CPU (or the given /proc/cpuinfo text) runs without
    overflow (see LEVELS_VNNI)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return _levels_from_numpy()  # not Linux
    flags = set(cpuinfo.split())
    return LEVELS_VNNI if flags & {"avx512_vnni", "avx_vnni", "amx_int8"} else LEVELS_NO_VNNI


def _levels_from_numpy(features: dict[str, bool] | None = None) -> int:
    """The weight range from NumPy's own CPU feature probe (Windows, macOS). NumPy names
    AVX-512 VNNI and the AMX tiles; when it names neither (an older NumPy, or the AVX-VNNI
    of hybrid desktop CPUs, which it does not list), the safe range is taken: +-63 is
    correct on every CPU, +-127 only with VNNI."""
    if features is None:
        try:
            from numpy._core._multiarray_umath import __cpu_features__ as features
        except ImportError:  # NumPy 1.x
            try:
                from numpy.core._multiarray_umath import __cpu_features__ as features
            except ImportError:
                features = {}
    vnni = any(features.get(k) for k in ("AVX512VNNI", "AVX512_ICL", "AVX512_SPR", "AMX_INT8",
                                         "AVXVNNI", "AVX_VNNI"))
    return LEVELS_VNNI if vnni else LEVELS_NO_VNNI


class Int8Unavailable(UserError, RuntimeError):
    """int8 was asked for but NNCF (the quantizer) is not installed."""


def _layer(node_name: str) -> str:
    return node_name.rsplit("_", 1)[0]


def float_scope(model, keep: Sequence[str] = KEEP_FLOAT_CONVS) -> list[str]:
    """Node names NNCF must leave alone: the input normalisation (everything before the
    first convolution), the guided filter and output conversion (everything after the last
    one), the skip additions and upsamples, and the convolutions in `keep`."""
    names = [n.name for n in model.graph.node]
    first = next(i for i, n in enumerate(names) if _layer(n) == "generator/Conv")
    last = next(i for i, n in enumerate(names) if _layer(n) == "generator/Conv_9")
    inside = model.graph.node[first:last + 1]
    return (names[:first] + names[last + 1:]
            + [n.name for n in inside if n.op_type in ("Add", "Resize") or _layer(n.name) in keep])


def _convs(model) -> dict[str, object]:
    """The generator's Conv nodes by layer name ("Conv_1", "block_0/conv1", ...)."""
    return {_layer(n.name).removeprefix("generator/"): n
            for n in model.graph.node if n.op_type == "Conv"}


def _conv_inputs(model, frames: Sequence[np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
    """Per frame, every convolution's float input `[C, H, W]` by layer name (ONNX Runtime)."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    convs = _convs(probe)
    names = [n.input[0] for n in convs.values()]
    for name in names:
        probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    for frame in frames:
        acts = session.run(names, {"input_image": np.ascontiguousarray(frame)[None]})
        yield {layer: a[0] for layer, a in zip(convs, acts)}


def _conv_params(model) -> tuple[dict, dict, dict]:
    """(conv nodes, weights, biases), each by layer name."""
    from onnx import numpy_helper

    convs = _convs(model)
    inits = {i.name: i for i in model.graph.initializer}
    weights = {k: numpy_helper.to_array(inits[n.input[1]]) for k, n in convs.items()}
    biases = {k: numpy_helper.to_array(inits[n.input[2]]) for k, n in convs.items()}
    return convs, weights, biases


def _write(model, layer: str, weights: np.ndarray, biases: np.ndarray | None = None) -> None:
    from onnx import numpy_helper

    n = _convs(model)[layer]
    inits = {i.name: i for i in model.graph.initializer}
    inits[n.input[1]].CopyFrom(numpy_helper.from_array(weights.astype(np.float32), n.input[1]))
    if biases is not None:
        inits[n.input[2]].CopyFrom(numpy_helper.from_array(biases.astype(np.float32), n.input[2]))


def equalize_model(model, frames: Sequence[np.ndarray]) -> None:
    """Rescale `model`'s channels in place (`equalize.py`): the float result is unchanged."""
    from .equalize import channel_scales, equalized

    _, weights, biases = _conv_params(model)
    ranges: dict[str, np.ndarray] = {}
    for acts in _conv_inputs(model, frames):
        for layer, a in acts.items():
            r = np.abs(a).reshape(a.shape[0], -1).max(axis=1)
            ranges[layer] = np.maximum(ranges[layer], r) if layer in ranges else r
    weights, biases = equalized(weights, biases, channel_scales(ranges, weights))
    for layer in weights:
        _write(model, layer, weights[layer], biases[layer])


def gptq_levels(model, frames: Sequence[np.ndarray], layers: Sequence[str], levels: int
                ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{layer: (int8 levels, per-channel scale)} for `layers` ("Conv_4", ...), rounded by
    GPTQ on their inputs over `frames`; `model` is not changed."""
    from onnx import helper

    from .gptq import input_gram, round_weights

    convs, weights, _ = _conv_params(model)
    rng = np.random.default_rng(0)
    grams: dict[str, np.ndarray] = {}
    for acts in _conv_inputs(model, frames):
        for layer in layers:
            attrs = {a.name: helper.get_attribute_value(a) for a in convs[layer].attribute}
            g = input_gram(acts[layer], attrs["kernel_shape"][0], attrs.get("strides", [1])[0],
                           tuple(attrs["pads"]), GRAM_SAMPLES, rng)
            grams[layer] = grams[layer] + g if layer in grams else g
    return {layer: round_weights(weights[layer], grams[layer], levels) for layer in layers}


def int8_layers(model, keep: Sequence[str]) -> list[str]:
    """The convolutions (layer names) that run in int8 when `keep` stays in float."""
    return [k for k in _convs(model) if f"generator/{k}" not in keep]


def _set_weight_levels(model, rounded: dict) -> None:
    """Write the GPTQ levels and scales into the quantized model's weight Q/DQ constants, so
    the int8 weights are exactly GPTQ's (NNCF derives its own scale from the largest
    weight, which differs where rounding moved that weight)."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    for layer, node in _convs(model).items():
        if layer not in rounded:
            continue
        dq = producers.get(node.input[1])
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
            raise RuntimeError(f"int8: NNCF left {layer}'s weights unquantized")
        q, scale = rounded[layer]
        zero = np.zeros(scale.shape, np.int8)
        for name, value in zip(dq.input, (q, scale, zero)):
            inits[name].CopyFrom(numpy_helper.from_array(value, name))


def quantize_rounded(model, frames: Sequence[np.ndarray], keep: Sequence[str],
                     rounded: dict[str, tuple[np.ndarray, np.ndarray]],
                     activation_ranges: str | None = None):
    """NNCF's activation quantizers and bias correction on `model` (equalised), whose
    convolutions outside `keep` take the GPTQ weights in `rounded`; `model` is not changed.
    `activation_ranges` names one of NNCF's RangeEstimatorParametersSet (MINMAX,
    MEAN_QUANTILE, ...) instead of its default (bench/int8_layers.py --ranges)."""
    import nncf
    import onnx
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    # NNCF's per-op notes are for its developers; its progress bars stay.
    logging.getLogger("nncf").setLevel(logging.ERROR)
    model_in = onnx.ModelProto()
    model_in.CopyFrom(model)
    for layer, (q, scale) in rounded.items():
        _write(model_in, layer, q.astype(np.float32) * scale[:, None, None, None])
    dataset = nncf.Dataset(list(frames), lambda f: {"input_image": f[None]})
    quantized = nncf.quantize(
        model_in, dataset, subset_size=len(frames),
        # MIXED: symmetric weights, asymmetric activations (LeakyReLU outputs are lopsided)
        preset=nncf.QuantizationPreset.MIXED,
        # Full bias correction halves the error of the fast one on this network (measured)
        fast_bias_correction=False,
        ignored_scope=nncf.IgnoredScope(names=float_scope(model_in, keep)),
        # The weight range is chosen by the caller (`levels`), not by NNCF's halving of some
        # layers for CPUs without VNNI.
        advanced_parameters=AdvancedQuantizationParameters(
            overflow_fix=OverflowFix.DISABLE,
            **({"activations_range_estimator_params":
                getattr(RangeEstimatorParametersSet, activation_ranges)}
               if activation_ranges else {})))
    _set_weight_levels(quantized, rounded)
    return quantized


def quantize_int8(fp32_path: Path | str, frames: Sequence[np.ndarray],
                  keep: Sequence[str] = KEEP_FLOAT_CONVS, levels: int = LEVELS_VNNI):
    """(QDQ ONNX ModelProto, metadata) for the fp32 model at `fp32_path`, calibrated on
    uint8 BGR `frames` (sides multiples of 4), int8 weights within +-`levels`."""
    try:
        import nncf
    except ImportError:
        raise Int8Unavailable(f"--precision int8 needs NNCF to build the int8 model: {INSTALL}") from None
    import onnx

    from .equalize import ALPHA

    model = onnx.load(str(fp32_path))
    frames = [np.ascontiguousarray(f) for f in frames]
    equalize_model(model, frames)
    rounded = gptq_levels(model, frames, int8_layers(model, keep), levels)
    quantized = quantize_rounded(model, frames, keep, rounded)
    info = {"quantizer": f"nncf {nncf.__version__}", "quantizer_version": QUANTIZER_VERSION,
            "calibration_frames": len(frames), "float_layers": list(keep),
            "weight_rounding": "gptq", "weight_levels": levels, "equalization_alpha": ALPHA}
    return quantized, info
