"""The model layer: official weights in, the official pixels out."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from streamer.models.store import Store
from streamer.toon.engine import EngineSettings, EngineUnavailable, create_engine
from streamer.models.dctnet.weights import GENERATOR_CONVS, PARAMETER_COUNT, ModelFormatError, load_weights

STYLES = ("anime", "3d", "handdrawn", "sketch", "artstyle", "sd-design", "sd-illustration")
IMAGES = ("astronaut", "luciano", "event", "tears")


_MODELS: Path | None = None


@pytest.fixture(autouse=True)
def _models_root(models_dir: Path) -> None:
    global _MODELS
    _MODELS = models_dir


def _models() -> Path:
    assert _MODELS is not None
    return _MODELS


def _golden() -> Path:
    return _models().parent / "golden" / "dctnet"


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory) -> Path:
    """A writable store the official files are imported into, as a user would."""
    return tmp_path_factory.mktemp("store")


def _engine(store_root: Path, source: Path, device: str = "cpu", precision: str = "exact"):
    store = Store(store_root / source.suffix[1:])  # keep .pb and .tflite imports apart
    style = source.stem.removeprefix("cartoon_").split("_bg")[0]
    if store.source_for(style) is None:
        store.import_file(source, style)
    return create_engine(lambda p: store.onnx_model_path(style, "bg", p),
                         EngineSettings(device=device, precision=precision))


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


def test_pb_reader_recovers_all_18_convolutions_and_the_parameter_count():
    w = load_weights(_models() / "dctnet" / "cartoon_anime_bg.pb")
    assert w.source_format == "pb"
    assert list(w.kernels) == [s.name for s in GENERATOR_CONVS]
    assert w.parameter_count == PARAMETER_COUNT


def test_tflite_reader_gives_the_same_weights_as_the_pb():
    pb = load_weights(_models() / "dctnet" / "cartoon_anime_bg.pb")
    tfl = load_weights(_models() / "dctnet" / "tflite" / "anime_bg720.tflite")
    assert tfl.source_format == "tflite"
    for name in pb.kernels:
        np.testing.assert_array_equal(pb.kernels[name], tfl.kernels[name])
        np.testing.assert_array_equal(pb.biases[name], tfl.biases[name])


@pytest.mark.parametrize("style", STYLES)
def test_pb_import_matches_tensorflow_golden_within_1_for_every_image(style, onnx_dir):
    engine = _engine(onnx_dir, _models() / "dctnet" / f"cartoon_{style}_bg.pb")
    for name in IMAGES:
        img = cv2.imread(str(_golden() / f"{name}.png"))
        gold = cv2.imread(str(_golden() / f"{name}__{style}.png"))
        out = engine.run(np.ascontiguousarray(img[None]))[0]
        assert _diff(out, gold).max() <= 1, (style, name)


def test_tflite_import_matches_the_anime_golden_within_1(onnx_dir):
    engine = _engine(onnx_dir, _models() / "dctnet" / "tflite" / "anime_bg720.tflite")
    for name in IMAGES:
        img = cv2.imread(str(_golden() / f"{name}.png"))
        gold = cv2.imread(str(_golden() / f"{name}__anime.png"))
        assert _diff(engine.run(np.ascontiguousarray(img[None]))[0], gold).max() <= 1, name


def test_batch_of_3_at_368x640_equals_three_single_runs(onnx_dir):
    engine = _engine(onnx_dir, _models() / "dctnet" / "cartoon_sketch_bg.pb")
    frames = [cv2.imread(str(_golden() / f"{n}.png")) for n in ("tears", "event", "astronaut")]
    batch = np.stack([cv2.resize(f, (640, 368)) for f in frames])
    together = engine.run(batch)
    assert together.shape == (3, 368, 640, 3)
    for i in range(3):
        np.testing.assert_array_equal(together[i], engine.run(batch[i:i + 1])[0])


def test_engine_writes_into_the_callers_buffer(onnx_dir):
    engine = _engine(onnx_dir, _models() / "dctnet" / "cartoon_3d_bg.pb")
    batch = np.full((2, 64, 96, 3), 128, np.uint8)
    out = np.zeros_like(batch)
    assert engine.run(batch, out) is out
    assert out.any()


def test_openvino_exact_matches_the_golden_within_1(onnx_dir):
    engine = _engine(onnx_dir, _models() / "dctnet" / "cartoon_anime_bg.pb", "openvino")
    assert (engine.backend, engine.precision) == ("openvino", "fp32")
    img = cv2.imread(str(_golden() / "luciano.png"))
    gold = cv2.imread(str(_golden() / "luciano__anime.png"))
    assert _diff(engine.run(np.ascontiguousarray(img[None]))[0], gold).max() <= 1


def test_fast_mode_stays_within_half_a_level_of_the_golden_on_average(onnx_dir):
    engine = _engine(onnx_dir, _models() / "dctnet" / "cartoon_anime_bg.pb", "openvino", "fast")
    img = cv2.imread(str(_golden() / "luciano.png"))
    gold = cv2.imread(str(_golden() / "luciano__anime.png"))
    mean = _diff(engine.run(np.ascontiguousarray(img[None]))[0], gold).mean()
    print(f"fast mode ({engine.precision}): mean |diff| {mean:.3f}")
    assert mean <= 0.5


def test_a_gpu_device_that_cannot_start_is_an_error_naming_what_to_install(onnx_dir):
    import onnxruntime as ort
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has the CUDA provider")
    with pytest.raises(EngineUnavailable, match="onnxruntime-gpu"):
        _engine(onnx_dir, _models() / "dctnet" / "cartoon_anime_bg.pb", "cuda")


def test_input_sizes_off_a_multiple_of_4_are_refused(onnx_dir):
    engine = _engine(onnx_dir, _models() / "dctnet" / "cartoon_anime_bg.pb")
    with pytest.raises(ValueError, match="multiples of 4"):
        engine.run(np.zeros((1, 30, 40, 3), np.uint8))


def test_a_non_model_file_is_rejected_in_one_line(tmp_path):
    bad = tmp_path / "notes.pb"
    bad.write_text("hello, this is not a graph\n" * 50)
    with pytest.raises(ModelFormatError) as err:
        load_weights(bad)
    assert "\n" not in str(err.value) and "not a" in str(err.value)


def test_a_truncated_pb_is_rejected_as_truncated(tmp_path):
    data = (_models() / "dctnet" / "cartoon_anime_bg.pb").read_bytes()
    cut = tmp_path / "cut.pb"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ModelFormatError, match="truncated"):
        load_weights(cut)


def test_a_truncated_tflite_is_rejected(tmp_path):
    data = (_models() / "dctnet" / "tflite" / "anime_bg720.tflite").read_bytes()
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFormatError, match="truncated|corrupt"):
        load_weights(cut)


def test_a_graph_of_another_network_is_rejected_as_a_different_network(tmp_path):
    # A valid GraphDef holding a single conv: well-formed protobuf, wrong network.
    def field(num: int, payload: bytes) -> bytes:
        return bytes([num << 3 | 2, len(payload)]) + payload

    node = lambda name, op: field(1, field(1, name.encode()) + field(2, op.encode()))  # noqa: E731
    other = tmp_path / "other.pb"
    other.write_bytes(node("input_image", "Placeholder") + node("conv", "Conv2D")
                      + node("output_image", "Cast"))
    with pytest.raises(ModelFormatError, match="different network"):
        load_weights(other)


def test_a_pb_with_a_changed_layer_shape_is_rejected(tmp_path):
    # Same bytes, but the Conv_9 bias constant renamed: the reader must notice the missing layer.
    data = (_models() / "dctnet" / "cartoon_anime_bg.pb").read_bytes()
    tampered = tmp_path / "tampered.pb"
    tampered.write_bytes(data.replace(b"generator/Conv_9/biases", b"generator/Conv_X/biases"))
    with pytest.raises(ModelFormatError, match="different network"):
        load_weights(tampered)


_SIGNAL_AFTER_FREEING = """
import gc, signal, sys
import numpy as np
from pathlib import Path
from streamer.models.store import Store
from streamer.toon.engine import EngineSettings, create_engine
store = Store(Path(sys.argv[1]))
store.import_file(Path(sys.argv[2]), "anime")
engines = [create_engine(lambda p: store.onnx_model_path("anime", "bg", p),
                         EngineSettings(device="openvino", precision="exact")) for _ in range(2)]
for engine in engines:  # a style switch: a second engine compiled while the first lives
    engine.run(np.zeros((1, 64, 64, 3), np.uint8))
del engine
engines.pop(0)  # the first one freed first
gc.collect()
engines.pop(0)
gc.collect()
signal.signal(signal.SIGINT, signal.default_int_handler)
try:
    signal.raise_signal(signal.SIGINT)
except KeyboardInterrupt:
    print("interrupted")
"""


def test_ctrl_c_after_openvino_models_are_freed_is_an_interrupt_not_a_crash(tmp_path):
    """OpenVINO's CPU plugin swaps the compiling thread's signal stack and puts an unmapped
    one back when models are freed out of order: the next Ctrl+C was a SIGSEGV (exit 139)."""
    import subprocess
    import sys
    pytest.importorskip("openvino")
    run = subprocess.run([sys.executable, "-c", _SIGNAL_AFTER_FREEING, str(tmp_path),
                          str(_models() / "dctnet" / "cartoon_anime_bg.pb")],
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert (run.returncode, run.stdout.strip()) == (0, "interrupted"), run.stderr[-2000:]


def test_openvino_sends_no_telemetry_from_a_toonstream_process():
    """Imported after streamer, OpenVINO takes its no-op telemetry stub: its real one forks
    a process per event from a worker thread (a child that hung tearing down PyAV's state,
    so pytest never exited), and it would send usage to the network."""
    import subprocess
    import sys
    pytest.importorskip("openvino")
    code = ("import streamer, openvino\n"
            "from openvino.tools.ovc import telemetry_utils\n"
            "print(telemetry_utils.tm.__name__)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert run.stdout.strip() == "openvino.tools.ovc.telemetry_stub", run.stderr[-2000:]
