"""The PyTorch engine (--device torch-cpu / torch-cuda): the DCT-Net module built from the
store's weights reproduces TensorFlow's pixels, batches, buffers and errors like every
engine, and torch is imported only when a torch device is asked for.

The CUDA half of the engine (pinned buffers, copy streams, CUDA graphs) runs only on a GPU:
bench/gpu_check.sh checks it there. Here the same module runs on the CPU."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from streamer.config import VideoSettings
from streamer.models import ModelNotInstalled
from streamer.models.dctnet.torch_net import _up2_legacy
from streamer.models.store import Store
from streamer.toon.engine import EngineSettings, EngineUnavailable, auto_device, create_engine
from streamer.toon.styles import StyleFlows
from streamer.toon.torch_engine import _graph_batch, _set_cuda_numerics
from streamer.video.convert import engine_batch

STYLES = ("anime", "3d", "handdrawn", "sketch", "artstyle", "sd-design", "sd-illustration")
IMAGES = ("astronaut", "luciano", "event", "tears")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def store(models_dir) -> Store:
    return Store(models_dir)  # read-only: the torch engine needs no ONNX cache


def _engine(store: Store, style: str = "anime", precision: str = "exact", device="torch-cpu"):
    # through the composition layer, as every app starts its engines
    return StyleFlows(store, EngineSettings(device=device, precision=precision),
                      faces="off").engine(style)


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


def _image(golden_dir: Path, name: str) -> np.ndarray:
    return np.ascontiguousarray(cv2.imread(str(golden_dir / "dctnet" / f"{name}.png"))[None])


@pytest.mark.parametrize("style", STYLES)
def test_torch_cpu_exact_matches_tensorflow_golden_within_1_for_every_image(style, store,
                                                                            golden_dir):
    engine = _engine(store, style)
    assert (engine.backend, engine.device, engine.precision) == ("torch", "torch-cpu", "fp32")
    for name in IMAGES:
        gold = cv2.imread(str(golden_dir / "dctnet" / f"{name}__{style}.png"))
        out = engine.run(_image(golden_dir, name))[0]
        assert _diff(out, gold).max() <= 1, (style, name)


def test_torch_cpu_fast_runs_the_generator_in_bf16_within_half_a_level_on_average(store,
                                                                                  golden_dir):
    engine = _engine(store, "anime", "fast")
    assert engine.precision == "bf16"
    gold = cv2.imread(str(golden_dir / "dctnet" / "luciano__anime.png"))
    mean = _diff(engine.run(_image(golden_dir, "luciano"))[0], gold).mean()
    print(f"torch-cpu fast (bf16): mean |diff| {mean:.3f}")
    assert mean <= 0.5


def test_a_tflite_conversion_builds_the_same_module_as_the_pb(models_dir, golden_dir):
    from streamer.models.dctnet.weights import load_weights
    settings = EngineSettings(device="torch-cpu")
    tfl = models_dir / "dctnet" / "tflite" / "anime_bg720.tflite"
    engine = create_engine(lambda p: Path("unused"), settings, weights=lambda: load_weights(tfl))
    gold = cv2.imread(str(golden_dir / "dctnet" / "tears__anime.png"))
    assert _diff(engine.run(_image(golden_dir, "tears"))[0], gold).max() <= 1


def test_batch_of_3_equals_three_single_runs(store, golden_dir):
    engine = _engine(store, "sketch")
    frames = [cv2.imread(str(golden_dir / "dctnet" / f"{n}.png")) for n in ("tears", "event", "astronaut")]
    batch = np.stack([cv2.resize(f, (160, 96)) for f in frames])
    together = engine.run(batch)
    assert together.shape == (3, 96, 160, 3)
    for i in range(3):
        np.testing.assert_array_equal(together[i], engine.run(batch[i:i + 1])[0])


def test_engine_writes_into_the_callers_buffer_and_refuses_a_mismatched_one(store):
    engine = _engine(store, "3d")
    batch = np.full((2, 64, 96, 3), 128, np.uint8)
    out = np.zeros_like(batch)
    assert engine.run(batch, out) is out
    assert out.any()
    with pytest.raises(ValueError, match="does not match"):
        engine.run(batch, np.zeros((1, 64, 96, 3), np.uint8))
    with pytest.raises(ValueError, match="multiples of 4"):
        engine.run(np.zeros((1, 30, 40, 3), np.uint8))


def test_legacy_upsample_is_tf1_resize_bilinear_without_half_pixel_centres():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 5, 7)).astype(np.float32)
    # TF1 ResizeBilinear (align_corners=False, half_pixel_centers=False), pixel by pixel:
    # source = destination * in / out, neighbours clamped at the edge.
    h, w = x.shape[2:]
    want = np.empty((1, 2, 2 * h, 2 * w), np.float32)
    for i in range(2 * h):
        y0, fy = divmod(i * h / (2 * h), 1)
        y0 = int(y0)
        y1 = min(y0 + 1, h - 1)
        for j in range(2 * w):
            x0, fx = divmod(j * w / (2 * w), 1)
            x0 = int(x0)
            x1 = min(x0 + 1, w - 1)
            top = x[..., y0, x0] + (x[..., y0, x1] - x[..., y0, x0]) * fx
            bottom = x[..., y1, x0] + (x[..., y1, x1] - x[..., y1, x0]) * fx
            want[..., i, j] = top + (bottom - top) * fy
    got = _up2_legacy(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    # the channels-last path (fast mode's layout) gives the same values in that layout
    cl = _up2_legacy(torch.from_numpy(x).contiguous(memory_format=torch.channels_last))
    assert cl.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(cl.numpy(), want, rtol=0, atol=1e-6)


def test_exact_mode_switches_tf32_off_for_cudnn_convolutions():
    conv = torch.backends.cudnn.conv
    before = (conv.fp32_precision, torch.backends.cudnn.benchmark)
    try:
        conv.fp32_precision = "tf32"  # PyTorch's default
        _set_cuda_numerics(torch, fast=False)
        assert conv.fp32_precision == "ieee"
        assert torch.backends.cuda.matmul.fp32_precision == "ieee"
    finally:
        conv.fp32_precision, torch.backends.cudnn.benchmark = before


def test_cuda_graphs_are_captured_for_power_of_two_batches():
    assert [_graph_batch(n) for n in (1, 2, 3, 4, 5, 8, 9)] == [1, 2, 4, 4, 8, 8, 16]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_torch_cuda_without_a_gpu_is_an_error_naming_what_to_check(store):
    with pytest.raises(EngineUnavailable, match="torch-cuda") as err:
        _engine(store, "anime", device="torch-cuda")
    assert "\n" not in str(err.value) and "nvidia-smi" in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_auto_does_not_pick_torch_without_a_cuda_gpu():
    assert not auto_device().startswith("torch")


def test_importing_the_package_and_the_apps_does_not_import_torch():
    code = ("import sys, streamer, streamer.toon.engine, streamer.video.app, streamer.live.app;"
            "from streamer.toon.engine import EngineSettings;"
            "EngineSettings(device='torch-cuda');"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "False"


def test_store_weights_fall_back_from_head_to_bg_and_name_the_fetch_command(models_dir,
                                                                            tmp_path):
    store = Store(models_dir)
    head, bg = store.weights("sketch", "h"), store.weights("sketch", "bg")
    np.testing.assert_array_equal(head.kernels["Conv"], bg.kernels["Conv"])
    with pytest.raises(ModelNotInstalled, match="fetch anime"):
        Store(tmp_path).weights("anime")


def test_cpu_engines_give_plain_host_arrays(store):
    engine = _engine(store)
    arr = engine.host_buffer((2, 8, 8, 3))
    assert arr.shape == (2, 8, 8, 3) and arr.dtype == np.uint8
    assert not torch.from_numpy(arr).is_pinned()  # page-locking is for a GPU only


def test_the_batch_defaults_to_the_engines_choice_and_an_explicit_one_wins(store):
    engine = _engine(store)
    assert engine_batch(VideoSettings(), engine) == engine.preferred_batch == 1
    assert engine_batch(VideoSettings(batch=4), engine) == 4


# --- through run_video -------------------------------------------------------------------------


def test_run_video_torch_cpu_pastes_all_five_event_faces_like_the_official_compound(
        models_dir, golden_dir, tmp_path, capfd, monkeypatch):
    # Face-aware still: the background and all five head crops (one engine call) on torch.
    from streamer.video.app import main
    monkeypatch.setenv("TOONSTREAM_MODELS", str(models_dir))
    dst = tmp_path / "event.png"
    rc = main([str(golden_dir / "flow" / "event.png"), "-o", str(dst), "--device", "torch-cpu",
               "--min-face", "0"])
    err = capfd.readouterr().err
    assert rc == 0, err
    assert "torch on torch-cpu (fp32)" in err and "5 face(s) pasted" in err
    ref = cv2.imread(str(golden_dir / "compound" / "event__anime.png"))
    d = _diff(cv2.imread(str(dst)), ref)
    assert d.mean() < 0.05 and d.max() <= 1, (d.mean(), d.max())


def test_run_video_torch_cpu_converts_a_clip_and_reports_the_engine_and_batch(
        models_dir, tmp_path, capfd, monkeypatch):
    import json

    from test_video import make_clip, probe
    from streamer.video.app import main
    monkeypatch.setenv("TOONSTREAM_MODELS", str(models_dir))
    src = make_clip(tmp_path / "in.mp4", n=6)
    rc = main([str(src), "-o", str(tmp_path / "out.mp4"), "--size", "64", "--faces", "off",
               "--device", "torch-cpu", "--stats-json", str(tmp_path / "s.json")])
    assert rc == 0, capfd.readouterr().err
    stats = json.loads((tmp_path / "s.json").read_text())
    assert (stats["frames"], stats["backend"], stats["device"]) == (6, "torch", "torch-cpu")
    assert stats["batch"] == 1  # the engine's choice on a CPU
    assert probe(tmp_path / "out.mp4")["times"] == pytest.approx(probe(src)["times"], abs=1e-6)


def test_run_stream_takes_the_gpu_preset_for_torch_cuda_and_the_cpu_one_for_torch_cpu():
    from streamer.live.app import auto_preset
    assert auto_preset("torch-cuda")[0] == "live-720p"
    assert auto_preset("torch-cpu")[0] == "live-cpu"


def test_store_weights_refuse_a_file_changed_since_it_was_installed(models_dir, tmp_path):
    from streamer.models import BadModelFile
    store = Store(tmp_path)
    store.import_file(models_dir / "dctnet" / "cartoon_anime_bg.pb", "anime")
    installed = store.source_for("anime")
    data = installed.read_bytes()
    installed.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(BadModelFile, match="changed since it was installed"):
        store.weights("anime")
