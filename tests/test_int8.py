"""int8: the quantized model is built once in the store (channel equalisation, GPTQ weight
rounding, NNCF activations; calibrated on real frames of the shared media, never on golden
outputs), cached beside the fp32 model with metadata and its own sha256, verified on every
use, and within the issue's bound of TensorFlow's output on the goldens."""
from __future__ import annotations

import json
import sys

import cv2
import numpy as np
import onnx
import pytest

from streamer.models import Store
from streamer.models.calibration import frames_from, synthetic_frames
from streamer.models.dctnet.equalize import GROUPS
from streamer.models.dctnet.gptq import input_gram, round_weights
from streamer.models.dctnet.int8 import (KEEP_FLOAT_CONVS, LEVELS_NO_VNNI, LEVELS_VNNI,
                                         Int8Unavailable, equalize_model, quantize_int8,
                                         weight_levels)
from streamer.models.download import sha256_file
from streamer.toon.engine import EngineSettings, EngineUnavailable, create_engine

GOLDEN_IMAGES = ("astronaut", "luciano", "event", "tears")
# Mean |difference| from TensorFlow's output, in uint8 levels, per image: the goal.
# bf16 alone gives 0.2-0.3; the int8 model measured 0.6-0.9 here (README, "int8"); plain
# NNCF gave 1.6-2.8, a quantized guided filter 2.5 and more.
INT8_MEAN_BOUND = 1.0

pytest.importorskip("nncf")
pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def int8_store(models_dir, media_dir, tmp_path_factory):
    """A writable store over the shared weights, calibrated on a shared clip's frames."""
    root = tmp_path_factory.mktemp("store")
    (root / "dctnet").symlink_to(models_dir / "dctnet")
    store = Store(root)
    store.calibration = str(media_dir / "tears_640x360.mp4")
    store.notify = lambda line: None
    return store


@pytest.fixture(scope="module")
def int8_path(int8_store):
    return int8_store.onnx_model_path("anime", "bg", "int8")


def test_int8_model_is_cached_beside_fp32_with_metadata_and_checksum(int8_store, int8_path):
    fp32 = int8_store.onnx_model_path("anime", "bg", "fp32")
    assert int8_path.parent == fp32.parent and int8_path.name == "anime_bg_int8.onnx"
    meta = json.loads(int8_path.with_suffix(".json").read_text())
    assert meta["precision"] == "int8"
    assert meta["onnx_sha256"] == sha256_file(int8_path)
    assert meta["fp32_sha256"] == sha256_file(fp32)
    assert meta["calibration_source"].endswith("tears_640x360.mp4")
    assert meta["float_layers"] == list(KEEP_FLOAT_CONVS)
    # used again: the same file, not rebuilt
    mtime = int8_path.stat().st_mtime_ns
    assert int8_store.onnx_model_path("anime", "bg", "int8") == int8_path
    assert int8_path.stat().st_mtime_ns == mtime


def test_int8_graph_keeps_the_guided_filter_and_the_measured_layers_in_float(int8_path):
    model = onnx.load(str(int8_path))
    producers = {o: n for n in model.graph.node for o in n.output}
    quantized, floating = set(), set()
    for n in model.graph.node:
        if n.op_type != "Conv":
            continue
        layer = n.name.rsplit("_", 1)[0]
        fed = producers.get(n.input[1])
        (quantized if fed is not None and fed.op_type == "DequantizeLinear" else floating).add(layer)
    assert floating == set(KEEP_FLOAT_CONVS)
    assert "generator/block_0/conv1" in quantized and len(quantized) == 14
    # the skip additions and upsamples read float: only convolutions take int8 inputs
    consumers = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear":
            for c in consumers.get(n.output[0], []):
                assert c.op_type == "Conv", f"{n.name} feeds {c.op_type} {c.name}"
    # nothing after the last convolution (the guided filter, clip, cast) is quantized
    after = False
    for n in model.graph.node:
        if n.name.rsplit("_", 1)[0] == "generator/Conv_9":
            after = True
        elif after:
            assert n.op_type not in ("QuantizeLinear", "DequantizeLinear"), n.name


def test_int8_weights_are_the_gptq_levels_within_the_cpus_range(int8_store, int8_path):
    meta = json.loads(int8_path.with_suffix(".json").read_text())
    assert meta["weight_rounding"] == "gptq" and meta["weight_levels"] == weight_levels()
    model = onnx.load(str(int8_path))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    weights = [inits[n.input[0]] for n in model.graph.node
               if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None
               and inits[n.input[0]].ndim == 4]
    assert len(weights) == 14
    assert max(int(np.abs(w.astype(np.int16)).max()) for w in weights) <= meta["weight_levels"]


def test_a_damaged_int8_model_is_rebuilt(int8_store, int8_path):
    with open(int8_path, "ab") as f:
        f.write(b"\0")  # a changed byte: the recorded sha256 no longer matches
    damaged = sha256_file(int8_path)
    bad = [c for c in int8_store.verify() if c.local.endswith("anime_bg_int8.onnx")]
    assert len(bad) == 1 and not bad[0].ok and "DAMAGED" in bad[0].message
    path = int8_store.onnx_model_path("anime", "bg", "int8")
    assert [c.ok for c in int8_store.verify() if c.local.endswith("anime_bg_int8.onnx")] == [True]
    meta = json.loads(path.with_suffix(".json").read_text())
    assert sha256_file(path) == meta["onnx_sha256"] != damaged
    onnx.checker.check_model(onnx.load(str(path)))


@pytest.mark.parametrize("name", GOLDEN_IMAGES)
def test_int8_output_is_close_to_tensorflow_on_the_goldens(int8_store, int8_path, golden_dir,
                                                           name):
    engine = create_engine(lambda p: int8_store.onnx_model_path("anime", "bg", p),
                           EngineSettings(device="openvino", precision="int8"))
    assert engine.precision.startswith("int8")
    img = cv2.imread(str(golden_dir / "dctnet" / f"{name}.png"))
    want = cv2.imread(str(golden_dir / "dctnet" / f"{name}__anime.png"))
    got = engine.run(np.ascontiguousarray(img[None]))[0]
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
    print(f"int8 anime {name}: mean |diff| {diff.mean():.3f}, max {diff.max()}")
    assert diff.mean() <= INT8_MEAN_BOUND


def test_onnx_runtime_says_int8_needs_openvino(int8_store):
    with pytest.raises(EngineUnavailable, match="int8 needs OpenVINO"):
        create_engine(lambda p: int8_store.onnx_model_path("anime", "bg", p),
                      EngineSettings(device="cpu", precision="int8"))


def test_int8_without_nncf_names_the_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "nncf", None)  # import nncf now raises ImportError
    with pytest.raises(Int8Unavailable, match="pip install"):
        quantize_int8(tmp_path / "unused.onnx", [])


def test_calibration_frames_are_deterministic_and_read_from_user_material(media_dir, tmp_path):
    a, b = synthetic_frames(4), synthetic_frames(4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert all(f.shape[0] % 4 == 0 and f.shape[1] % 4 == 0 for f in a)
    frames = frames_from(media_dir / "tears_640x360.mp4", count=5)
    assert len(frames) == 5 and max(frames[0].shape[:2]) <= 320
    cv2.imwrite(str(tmp_path / "a.png"), frames[0])
    assert len(frames_from(tmp_path)) == 1
    from streamer.errors import UserError
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no readable image"):
        frames_from(tmp_path / "empty")
    with pytest.raises(UserError, match="no such file"):
        frames_from(tmp_path / "missing")


def test_weight_range_follows_the_cpu_flags():
    assert weight_levels("flags : fpu sse avx2 avx512f avx512_vnni") == LEVELS_VNNI == 127
    assert weight_levels("flags : fpu sse avx2 avx_vnni") == LEVELS_VNNI
    assert weight_levels("flags : fpu sse avx2 amx_int8") == LEVELS_VNNI
    # without VNNI the u8 x s8 pair sums saturate 16 bits: 7-bit weights
    assert weight_levels("flags : fpu sse avx2 fma") == LEVELS_NO_VNNI == 63


def test_weight_range_without_proc_cpuinfo_comes_from_numpys_cpu_probe():
    from streamer.models.dctnet.int8 import _levels_from_numpy

    assert _levels_from_numpy({"AVX2": True, "AVX512F": True, "AVX512VNNI": True}) == LEVELS_VNNI
    assert _levels_from_numpy({"AVX2": True, "AVX512VNNI": False}) == LEVELS_NO_VNNI
    # a NumPy that cannot say: the range that is right on every CPU
    assert _levels_from_numpy({}) == LEVELS_NO_VNNI
    assert _levels_from_numpy() in (LEVELS_VNNI, LEVELS_NO_VNNI)


def test_gptq_rounding_keeps_the_layer_output_closer_than_nearest_rounding():
    rng = np.random.default_rng(1)
    # a 3x3 convolution's input from a smooth image: neighbouring pixels correlate, as in
    # the network, which is what lets one weight's rounding error be taken up by another
    act = rng.normal(0, 1, (8, 40, 40)).astype(np.float32)
    act = cv2.GaussianBlur(act.transpose(1, 2, 0), (0, 0), 1.5).transpose(2, 0, 1)
    w = rng.normal(0, 0.1, (16, 8, 3, 3)).astype(np.float32)
    gram = input_gram(act, 3, 1, (1, 1, 1, 1), 10_000, rng)
    levels, scale = round_weights(w, gram, 127)
    assert levels.dtype == np.int8 and int(np.abs(levels.astype(np.int16)).max()) <= 127
    nearest = np.clip(np.round(w / scale[:, None, None, None]), -127, 127)

    def output_error(q):
        d = (w - q * scale[:, None, None, None]).reshape(16, -1).astype(np.float64)
        return float(np.einsum("oi,ij,oj->", d, gram, d))

    assert output_error(levels.astype(np.float32)) < 0.5 * output_error(nearest)
    # on the same grid: every level lies within the channel's range
    assert (np.abs(levels.astype(np.float32) * scale[:, None, None, None])
            <= np.abs(w).reshape(16, -1).max(1)[:, None, None, None] * 1.0001).all()


def test_channel_equalisation_leaves_the_float_network_unchanged(int8_store, golden_dir):
    import onnxruntime as ort

    path = int8_store.onnx_model_path("anime", "bg", "fp32")
    model = onnx.load(str(path))
    equalize_model(model, synthetic_frames(6))
    changed = sum(not np.array_equal(onnx.numpy_helper.to_array(a), onnx.numpy_helper.to_array(b))
                  for a, b in zip(model.graph.initializer, onnx.load(str(path)).graph.initializer))
    assert changed >= 2 * len(GROUPS)  # weights and biases were rescaled
    img = cv2.imread(str(golden_dir / "dctnet" / "luciano.png"))[None]
    run = lambda m: ort.InferenceSession(m.SerializeToString(),  # noqa: E731
                                         providers=["CPUExecutionProvider"]).run(None, {"input_image": img})[0]
    diff = np.abs(run(model).astype(np.int16) - run(onnx.load(str(path))).astype(np.int16))
    assert diff.mean() < 0.01 and diff.max() <= 1  # float rounding only
