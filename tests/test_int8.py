"""int8: the quantized model is built once in the store (channel equalisation, GPTQ weight
rounding, NNCF activations; calibrated on real frames of the shared media, never on golden
outputs), cached beside the fp32 model with metadata and its own sha256, verified on every
use, and within the issue's bound of TensorFlow's output on the goldens."""
from __future__ import annotations

import json
import sys
from pathlib import Path

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


def _quantized_convs(path: Path) -> list[str]:
    """The Conv nodes of a QDQ model whose input and weights both come dequantized."""
    model = onnx.load(str(path))
    made_by = {out: node for node in model.graph.node for out in node.output}

    def dq(name: str) -> bool:
        node = made_by.get(name)
        return node is not None and node.op_type == "DequantizeLinear"

    return [n.name for n in model.graph.node if n.op_type == "Conv" and dq(n.input[0])
            and dq(n.input[1])]


def _has_amx() -> bool:
    try:
        return "amx_int8" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def test_every_quantized_convolution_runs_an_int8_kernel(int8_path):
    """OpenVINO's own record of what ran (PERF_COUNT exec types): a QDQ convolution that
    falls back to a float kernel is int8 in name only, slower than bf16 (seen on an AMX
    Xeon: brgconv_avx512_f32). Skips only on a CPU without int8 instructions."""
    ov = pytest.importorskip("openvino")
    core = ov.Core()
    if "INT8" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU has no int8 instructions (OpenVINO: no INT8 capability)")
    quantized = _quantized_convs(int8_path)
    assert len(quantized) == 18 - len(KEEP_FLOAT_CONVS)
    for hint in ("f32", "bf16"):  # exact and fast compile the same int8 model
        compiled = core.compile_model(str(int8_path), "CPU",
                                      {"PERF_COUNT": "YES", "INFERENCE_PRECISION_HINT": hint})
        request = compiled.create_infer_request()
        request.infer({0: np.full((1, 64, 64, 3), 128, np.uint8)})
        kernels = {p.node_name: p.exec_type for p in request.get_profiling_info()
                   if p.node_type == "Convolution"}
        int8 = [k for k in kernels.values()
                if any(tag in k.lower() for tag in ("i8", "int8", "vnni"))]
        if len(int8) != len(quantized) and _has_amx():
            # Issue 24, open: on an AMX Xeon (OpenVINO 2026.4) these convolutions were seen
            # to run brgconv_avx512_f32. Known and not fixed yet: reported, not hidden.
            pytest.xfail(f"issue 24: {len(quantized) - len(int8)} quantized convolution(s) "
                         f"run float kernels on this AMX CPU ({hint}): {kernels}")
        assert len(int8) == len(quantized), (hint, kernels)


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


# --- the user's calibration is kept (issue 23, item 5) ----------------------------------------

@pytest.fixture
def fake_quantizer(monkeypatch):
    """The bookkeeping tests' quantizer: the fp32 model as it is, and the calibration sets it
    was handed (a real build takes half a minute and more a style on a small CPU)."""
    import streamer.models.dctnet.int8 as int8_module

    calls: list[int] = []

    def quantize(fp32, frames, keep=KEEP_FLOAT_CONVS, levels=LEVELS_VNNI):
        calls.append(len(frames))
        return onnx.load(str(fp32)), {"quantizer": "test", "calibration_frames": len(frames)}

    monkeypatch.setattr(int8_module, "quantize_int8", quantize)
    monkeypatch.delenv("TOONSTREAM_CALIBRATION", raising=False)
    return calls


@pytest.fixture
def bare_store(models_dir, tmp_path):
    root = tmp_path / "store"
    root.mkdir()
    (root / "dctnet").symlink_to(models_dir / "dctnet")
    return root


def _int8(root, calibration=None):
    """The anime int8 model as run_video gets it (the store with the user's setting) and
    the calibration its record names."""
    store = Store(root)
    store.calibration = calibration
    store.notify = lambda line: None
    path = store.onnx_model_path("anime", "bg", "int8")
    return path, json.loads(path.with_suffix(".json").read_text())["calibration_source"]


def test_a_users_calibration_is_kept_until_another_is_asked_for(bare_store, tmp_path,
                                                                fake_quantizer, capsys):
    from streamer.models.cli import main as models

    mine = tmp_path / "mine"
    mine.mkdir()
    cv2.imwrite(str(mine / "a.png"), synthetic_frames(1)[0])
    n_synthetic = len(synthetic_frames())

    # `models path anime --precision int8 --calibration mine/`
    assert models(["path", "anime", "--precision", "int8", "--calibration", str(mine),
                   "--models", str(bare_store)]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert fake_quantizer == [n_synthetic + 1]
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["calibration_source"] == f"synthetic + {mine.resolve()}"
    mtime = path.stat().st_mtime_ns

    # a plain int8 run (no calibration given) uses it as it is
    assert _int8(bare_store) == (path, f"synthetic + {mine.resolve()}")
    assert fake_quantizer == [n_synthetic + 1] and path.stat().st_mtime_ns == mtime
    # so does asking for the same material again
    assert _int8(bare_store, str(mine))[1] == f"synthetic + {mine.resolve()}"
    assert len(fake_quantizer) == 1

    # a damaged model is rebuilt with the calibration it had
    with open(path, "ab") as f:
        f.write(b"\0")
    assert _int8(bare_store) == (path, f"synthetic + {mine.resolve()}")
    assert fake_quantizer[-1] == n_synthetic + 1

    # another calibration, asked for, rebuilds: the built-in set alone, by name
    assert _int8(bare_store, "builtin") == (path, "synthetic")
    assert fake_quantizer[-1] == n_synthetic
    assert _int8(bare_store)[1] == "synthetic" and len(fake_quantizer) == 3


def test_a_rebuild_whose_calibration_material_is_gone_says_so(bare_store, tmp_path,
                                                              fake_quantizer):
    mine = tmp_path / "mine.png"
    cv2.imwrite(str(mine), synthetic_frames(1)[0])
    path, _ = _int8(bare_store, str(mine))
    mine.unlink()
    with open(path, "ab") as f:
        f.write(b"\0")
    lines: list[str] = []
    store = Store(bare_store)
    store.notify = lines.append
    store.onnx_model_path("anime", "bg", "int8")
    assert json.loads(path.with_suffix(".json").read_text())["calibration_source"] == "synthetic"
    assert any(f"{mine.resolve()}, which anime_bg_int8.onnx was calibrated on, is gone" in line
               for line in lines), lines


@pytest.mark.parametrize("args", [
    ["path", "anime"], ["path", "anime", "--precision", "fp16"],
    ["fetch", "anime"], ["import", "FILE", "--style", "anime"]])
def test_calibration_without_int8_is_refused_not_ignored(bare_store, tmp_path, capsys, args):
    from streamer.models.cli import main as models

    (tmp_path / "mine").mkdir()
    args = [str(bare_store / "dctnet" / "cartoon_anime_bg.pb") if a == "FILE" else a
            for a in args]
    rc = models(args + ["--calibration", str(tmp_path / "mine"), "--models", str(bare_store)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err == ("error: --calibration calibrates int8 models only: add --precision int8, "
                   "or leave --calibration out")
    assert not (bare_store / "onnx").exists()  # refused before anything was built


def test_calibration_that_is_not_there_is_refused_before_a_build(bare_store, tmp_path, capsys,
                                                                fake_quantizer):
    from streamer.models.cli import main as models

    rc = models(["path", "anime", "--precision", "int8", "--calibration",
                 str(tmp_path / "nothing"), "--models", str(bare_store)])
    assert rc != 0 and fake_quantizer == []
    assert f"--calibration {tmp_path / 'nothing'}: no such file or folder" in capsys.readouterr().err


def test_ctrl_c_during_an_int8_build_says_nothing_of_downloads(bare_store, monkeypatch, capsys):
    import streamer.models.dctnet.int8 as int8_module
    from streamer.models.cli import main as models

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    Store(bare_store).onnx_model_path("anime", "bg", "fp32")  # the fp32 model is there
    monkeypatch.setattr(int8_module, "quantize_int8", interrupted)
    rc = models(["path", "anime", "--precision", "int8", "--models", str(bare_store)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 130
    assert err[-1] == ("interrupted: nothing was left half-written (a model being built is "
                       "built on next use)")
    assert "download" not in "\n".join(err)
    assert sorted(p.name for p in (bare_store / "onnx").iterdir()) == ["anime_bg.json",
                                                                       "anime_bg.onnx"]


def test_ctrl_c_during_a_download_says_the_partial_download_is_kept(tmp_path, monkeypatch,
                                                                   capsys):
    import streamer.models.install as install
    from streamer.models.cli import main as models

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(install, "download", interrupted)
    rc = models(["fetch", "face", "--models", str(tmp_path / "store"), "--no-progress"])
    assert rc == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "interrupted: a partial download is kept and resumed next time")


def test_a_plain_int8_run_video_keeps_the_calibrated_model(int8_store, int8_path, media_dir,
                                                           tmp_path, monkeypatch, capfd):
    # the real build above was calibrated on the user's clip; run_video without a
    # calibration runs that model, it does not rebuild it on the built-in set
    from streamer.video.app import main as run_video

    monkeypatch.delenv("TOONSTREAM_CALIBRATION", raising=False)
    meta_before = int8_path.with_suffix(".json").read_text()
    mtime = int8_path.stat().st_mtime_ns
    out = tmp_path / "out.png"
    rc = run_video([str(media_dir / "bryan_115px.png"), "-o", str(out), "--models",
                    str(int8_store.root), "--precision", "int8", "--device", "openvino",
                    "--faces", "off", "--no-progress"])
    err = capfd.readouterr().err
    assert rc == 0, err
    assert "quantizing" not in err and out.is_file()
    assert int8_path.stat().st_mtime_ns == mtime
    assert int8_path.with_suffix(".json").read_text() == meta_before
