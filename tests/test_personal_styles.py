"""Personal styles (issue 25) in the model store: one safetensors adapter file per style,
installed, listed, exported, imported and removed through `python -m streamer.models` with
one-line refusals; merged into its base's weights before any build, so every engine and
precision runs it like an official style (within a level of the PyTorch module built on
the merged weights); a changed adapter rebuilds its cached models; and every app that takes
a style name (run_video, run_stream, StyleFlows, the web page) takes a personal one.

The stores here are temporary: the shared weights are linked in, never written."""
from __future__ import annotations

import io
import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamer.models import Store, UnknownModel
from streamer.models.cli import main
from streamer.models.dctnet.lora import (Adapter, AdapterError, LoraPair, load_adapter, merge,
                                         save_adapter)
from streamer.models.dctnet.weights import GENERATOR_CONVS, load_weights
from streamer.models.download import sha256_file

BASE = "3d"  # its shared copy matches the catalog (anime's is an fp16-rounded copy)
LINKED = (f"dctnet/cartoon_{BASE}_bg.pb", "dctnet/cartoon_handdrawn_bg.pb", "dctnet/alpha.jpg",
          "face/yunet.onnx")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    monkeypatch.delenv("TOONSTREAM_MODELS", raising=False)
    monkeypatch.setenv("TOONSTREAM_CACHE", str(tmp_path / "user-cache"))


def make_store(root: Path, models_dir: Path) -> Store:
    """A writable store whose official files are links to the shared (read-only) ones."""
    for rel in LINKED:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).symlink_to(models_dir / rel)
    store = Store(root)
    store.notify = lambda line: None
    return store


def make_adapter(models_dir: Path, name: str = "mine", base: str = BASE, seed: int = 0,
                 parts: tuple[str, ...] = ("bg",), strength: float = 0.15,
                 rank: int = 4) -> Adapter:
    """A random rank-`rank` adapter on every convolution, each change about `strength`
    times its kernel's spread: a look plainly unlike the base's, still a cartoon."""
    weights = load_weights(models_dir / "dctnet" / f"cartoon_{base}_bg.pb")
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, LoraPair]] = {}
    for part in parts:
        convs = {}
        for spec in GENERATOR_CONVS:
            fan_in = spec.kernel * spec.kernel * spec.cin
            # (alpha / rank) * B @ A has entries of spread sqrt(rank) * s^2 with alpha = rank
            s = np.sqrt(strength * float(weights.kernels[spec.name].std()) / np.sqrt(rank))
            convs[spec.name] = LoraPair(rng.normal(0, s, (rank, fan_in)).astype(np.float32),
                                        rng.normal(0, s, (spec.cout, rank)).astype(np.float32))
        out[part] = convs
    return Adapter(name, base, rank, float(rank), out,
                   {"losses": json.dumps({"style": 1.0, "content": 10.0}), "steps": "300",
                    "exemplars": "12", "created": "2024-01-01T00:00:00"})


def write_adapter(path: Path, adapter: Adapter) -> Path:
    save_adapter(path, adapter)
    return path


def small_image(media_dir: Path) -> np.ndarray:
    """luciano at 192x192: small, real, a face."""
    img = cv2.imread(str(media_dir / "luciano.png"))
    return np.ascontiguousarray(cv2.resize(img, (192, 192), interpolation=cv2.INTER_AREA)[None])


def torch_reference(weights, image: np.ndarray) -> np.ndarray:
    """The PyTorch DctNet (fp32) built on `weights`: the reference every engine is held to."""
    import torch

    from streamer.models.dctnet.torch_net import DctNet

    net = DctNet(weights).eval()
    with torch.no_grad():
        return net(torch.from_numpy(image)).numpy()


def diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


def one_error_line(capsys) -> str:
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in out + err
    return lines[0]


@pytest.fixture(scope="module")
def shared(models_dir, tmp_path_factory) -> tuple[Store, Path]:
    """One store with the personal style `mine` (on 3d) installed, for the tests that only
    read it; and the adapter file it came from."""
    root = tmp_path_factory.mktemp("personal")
    store = make_store(root / "store", models_dir)
    src = write_adapter(root / "mine.safetensors", make_adapter(models_dir))
    store.install_personal(src)
    return store, src


# --- the store's commands ------------------------------------------------------------------

def test_import_list_export_verify_and_remove_through_the_cli(models_dir, tmp_path, capsys):
    store = make_store(tmp_path / "store", models_dir)
    models = ["--models", str(store.root)]
    src = write_adapter(tmp_path / "trained.safetensors", make_adapter(models_dir))

    # a .safetensors file needs no --style; its name comes from its metadata
    assert main(["import", str(src), *models]) == 0
    out = capsys.readouterr().out
    installed = store.root / "personal" / "mine.safetensors"
    assert f"imported personal style mine (on {BASE}) as {installed}" in out
    assert f"built {store.root / 'onnx' / 'mine_bg.onnx'}" in out
    assert installed.read_bytes() == src.read_bytes()
    record = store.records.get("personal/mine.safetensors")
    assert record["sha256"] == sha256_file(installed) and record["origin"] == f"import:{src}"
    assert "mine" in store.styles and store.base_style("mine") == BASE

    assert main(["list", *models]) == 0
    out = capsys.readouterr().out
    assert f"personal styles in {store.root / 'personal'}:" in out
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("mine "))
    assert f"on {BASE}, rank 4, 300 steps, 12 exemplars  personal/mine.safetensors" in line
    assert f"sha256 {sha256_file(installed)}  from import:{src}" in out

    assert main(["verify", *models]) == 0
    out = capsys.readouterr().out
    assert (f"ok    personal/mine.safetensors: personal style on {BASE}, rank 4, parts bg, "
            f"checksum ok") in out

    # export: the single file as installed; a folder receives NAME.safetensors
    shared = tmp_path / "to-share"
    shared.mkdir()
    assert main(["export", "mine", str(shared), *models]) == 0
    exported = shared / "mine.safetensors"
    assert capsys.readouterr().out.strip() == str(exported)
    assert exported.read_bytes() == installed.read_bytes()
    assert not [p for p in shared.iterdir() if p != exported]  # no temporary left behind

    # imported again under another name: a second style, the same tensors
    assert main(["import", str(exported), "--name", "friend_2", *models]) == 0
    capsys.readouterr()
    assert store.styles[-2:] == ("friend_2", "mine")
    again = load_adapter(store.root / "personal" / "friend_2.safetensors")
    assert again.name == "friend_2" and again.checksum() == load_adapter(src).checksum()

    assert main(["remove", "friend_2", *models]) == 0
    out = capsys.readouterr().out
    assert f"removed {store.root / 'personal' / 'friend_2.safetensors'}" in out
    assert f"removed {store.root / 'onnx' / 'friend_2_bg.onnx'}" in out
    assert not (store.root / "onnx" / "friend_2_bg.json").exists()
    assert store.styles[-1] == "mine" and "friend_2" not in store.styles
    assert store.records.get("personal/friend_2.safetensors") == {}


def _damaged(src: Path, dest: Path) -> Path:
    data = bytearray(src.read_bytes())
    data[-64] ^= 0xFF  # a tensor byte: the header still reads, the checksum does not match
    dest.write_bytes(bytes(data))
    return dest


def _foreign(dest: Path) -> Path:
    from safetensors.numpy import save_file

    save_file({"w": np.zeros((2, 2), np.float32)}, str(dest), metadata={"format": "pt"})
    return dest


# (arguments after the command, with SRC the good adapter file, words of the error line)
REFUSALS = {
    "official name": (["import", "SRC", "--name", "anime"], "'anime' is an official style"),
    "existing name without -y": (["import", "SRC"],
                                 "a personal style 'mine' is already installed; add -y"),
    "bad name characters": (["import", "SRC", "--name", "My Style"],
                            "'My Style' cannot name a personal style: use 1 to 40 lowercase"),
    "a store model's name": (["import", "SRC", "--name", "face"],
                             "'face' names a model of the store's own"),
    "damaged file": (["import", "DAMAGED", "--name", "other"],
                     "the personal style is damaged (its tensors do not match its checksum)"),
    "foreign safetensors": (["import", "FOREIGN", "--name", "other"],
                            "not a Toonstream personal style"),
    "not safetensors inside": (["import", "TEXT", "--name", "other"],
                               "not a readable safetensors file"),
    "not a safetensors file": (["import", "PHOTO"], "a personal style (.safetensors)"),
    "--style with an adapter": (["import", "SRC", "--style", "3d", "-y"],
                                "names its base style itself"),
    "unknown name to remove": (["remove", "nosuch"],
                               "no personal style 'nosuch' in the model store"),
    "official name to remove": (["remove", "anime"],
                                "'anime' is an official style, not a personal one"),
    "unknown name to export": (["export", "nosuch", "OUT"], "personal styles: mine"),
    "export over a file without -y": (["export", "mine", "EXISTING"], "exists; add -y"),
    "unknown style to build": (["path", "nosuch"], "unknown style 'nosuch'; styles: anime"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_bad_input_is_one_error_line_and_changes_nothing(case, shared, tmp_path, capsys):
    store, src = shared
    argv, words = REFUSALS[case]
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0 not much of a photo")
    (tmp_path / "notes.safetensors").write_text("these are notes, not tensors\n")
    (tmp_path / "existing.safetensors").write_bytes(b"keep me")
    files = {"SRC": src, "DAMAGED": _damaged(src, tmp_path / "damaged.safetensors"),
             "FOREIGN": _foreign(tmp_path / "foreign.safetensors"),
             "TEXT": tmp_path / "notes.safetensors", "PHOTO": tmp_path / "photo.jpg",
             "OUT": tmp_path / "out.safetensors", "EXISTING": tmp_path / "existing.safetensors"}
    before = sorted(p.name for p in (store.root / "personal").iterdir())
    manifest = (store.root / "manifest.json").read_bytes()
    rc = main([str(files.get(a, a)) for a in argv] + ["--models", str(store.root)])
    line = one_error_line(capsys)
    assert rc in (1, 2) and words in line, line
    assert sorted(p.name for p in (store.root / "personal").iterdir()) == before
    assert (store.root / "manifest.json").read_bytes() == manifest
    assert (tmp_path / "existing.safetensors").read_bytes() == b"keep me"
    assert not (tmp_path / "out.safetensors").exists()


def test_import_with_y_replaces_and_a_changed_adapter_rebuilds_its_models(models_dir, tmp_path,
                                                                         media_dir, capsys):
    from streamer.toon.engine import EngineSettings, create_engine

    store = make_store(tmp_path / "store", models_dir)
    first = write_adapter(tmp_path / "one.safetensors", make_adapter(models_dir, seed=1))
    second = write_adapter(tmp_path / "two.safetensors", make_adapter(models_dir, seed=2))
    image = small_image(media_dir)

    def run() -> tuple[Path, dict, np.ndarray]:
        path = store.onnx_model_path("mine", "bg", "fp32")
        engine = create_engine(lambda p: store.onnx_model_path("mine", "bg", p),
                               EngineSettings(device="cpu", precision="exact"))
        return path, json.loads(path.with_suffix(".json").read_text()), engine.run(image)[0]

    store.install_personal(first)
    path, meta, out1 = run()
    assert meta["adapter_checksum"] == load_adapter(first).checksum()
    assert meta["base"] == BASE and meta["source_file"] == str(store.personal.path("mine"))
    built_at = path.stat().st_mtime_ns
    assert run()[0].stat().st_mtime_ns == built_at  # reused while nothing changed

    assert main(["import", str(second), "-y", "--models", str(store.root)]) == 0
    capsys.readouterr()
    path2, meta2, out2 = run()
    assert path2 == path and meta2["adapter_checksum"] == load_adapter(second).checksum()
    assert meta2["onnx_sha256"] != meta["onnx_sha256"]
    assert diff(out1, out2).mean() > 1.0  # the new adapter's look, not the cached one's


def test_an_installed_file_that_changed_or_broke_is_refused_with_the_repair(models_dir,
                                                                             tmp_path):
    from streamer.models import BadModelFile

    store = make_store(tmp_path / "store", models_dir)
    src = write_adapter(tmp_path / "mine.safetensors", make_adapter(models_dir))
    installed = store.install_personal(src)
    # replaced by hand with another valid adapter: the install record refuses it
    write_adapter(installed, make_adapter(models_dir, seed=5))
    with pytest.raises(BadModelFile, match="changed since it was installed") as changed:
        store.onnx_model_path("mine")
    assert f"import {src} --name mine -y" in str(changed.value)
    # damaged where no record pins it: the adapter's own checksum refuses it
    store.records.remove("personal/mine.safetensors")
    _damaged(src, installed)
    with pytest.raises(AdapterError, match="personal/mine.safetensors in the model store .*"
                                           "damaged") as damaged:
        store.weights("mine")
    assert "\n" not in str(changed.value) + str(damaged.value)


def test_a_personal_style_needs_its_base_installed(models_dir, tmp_path):
    from streamer.models import ModelNotInstalled
    from streamer.models.ensure import ensure_models

    store = make_store(tmp_path / "store", models_dir)
    src = write_adapter(tmp_path / "mine.safetensors",
                        make_adapter(models_dir, base="handdrawn"))
    store.install_personal(src)
    (store.root / "dctnet" / "cartoon_handdrawn_bg.pb").unlink()
    assert store.source_for("mine") is None and "mine" in store.styles
    with pytest.raises(ModelNotInstalled, match="fetch handdrawn"):
        store.onnx_model_path("mine")
    with pytest.raises(ModelNotInstalled, match="--fetch") as err:
        ensure_models(store, "mine", "off", fetch=False, log=lambda line: None)
    assert "style 'handdrawn' is not installed" in str(err.value)


# --- every engine and precision ------------------------------------------------------------

@pytest.mark.parametrize("device,precision", [("cpu", "exact"), ("cpu", "fast"),
                                              ("openvino", "exact"), ("openvino", "fast")])
def test_the_merged_model_runs_like_the_torch_module_on_merged_weights(shared, models_dir,
                                                                       media_dir, device,
                                                                       precision):
    from streamer.toon.engine import EngineSettings
    from streamer.toon.styles import StyleFlows

    if device == "openvino":
        pytest.importorskip("openvino")
    store, src = shared
    image = small_image(media_dir)
    # The reference is merged here, from the file and the base, not by the store.
    merged = merge(load_weights(models_dir / "dctnet" / f"cartoon_{BASE}_bg.pb"),
                   load_adapter(src), "bg")
    want = torch_reference(merged, image)[0]
    engine = StyleFlows(store, EngineSettings(device=device, precision=precision),
                        faces="off").engine("mine")
    got = engine.run(image)[0]
    d = diff(got, want)
    if engine.precision == "fp32":  # ONNX Runtime's CPU provider, or no bf16 on this CPU
        assert d.max() <= 1, (device, precision, d.max())
    else:  # bf16: the project's fast bound (tests/test_toon_model.py)
        assert d.mean() <= 0.5, (device, precision, engine.precision, d.mean())
    base = torch_reference(load_weights(models_dir / "dctnet" / f"cartoon_{BASE}_bg.pb"),
                           image)[0]
    assert diff(got, base).mean() > 5.0  # the personal look, not the base's


def test_torch_engine_runs_the_store_merged_weights(shared, models_dir, media_dir):
    from streamer.toon.engine import EngineSettings
    from streamer.toon.styles import StyleFlows

    store, src = shared
    image = small_image(media_dir)
    merged = merge(load_weights(models_dir / "dctnet" / f"cartoon_{BASE}_bg.pb"),
                   load_adapter(src), "bg")
    engine = StyleFlows(store, EngineSettings(device="torch-cpu", precision="exact"),
                        faces="off").engine("mine")
    assert diff(engine.run(image)[0], torch_reference(merged, image)[0]).max() == 0


def test_int8_quantizes_the_merged_model_with_the_bases_float_layers(models_dir, media_dir,
                                                                     tmp_path):
    pytest.importorskip("nncf")
    pytest.importorskip("openvino")
    from streamer.models.dctnet.int8 import float_layers
    from streamer.toon.engine import EngineSettings, create_engine

    store = make_store(tmp_path / "store", models_dir)
    src = write_adapter(tmp_path / "hand.safetensors",
                        make_adapter(models_dir, name="hand", base="handdrawn", seed=3,
                                     strength=0.05))
    store.install_personal(src)
    path = store.onnx_model_path("hand", "bg", "int8")
    meta = json.loads(path.with_suffix(".json").read_text())
    assert path.name == "hand_bg_int8.onnx"
    assert meta["float_layers"] == list(float_layers("handdrawn"))  # the base's, Conv_8 too
    assert meta["fp32_sha256"] == sha256_file(store.root / "onnx" / "hand_bg.onnx")
    image = small_image(media_dir)
    merged = merge(load_weights(models_dir / "dctnet" / "cartoon_handdrawn_bg.pb"),
                   load_adapter(src), "bg")
    engine = create_engine(lambda p: store.onnx_model_path("hand", "bg", p),
                           EngineSettings(device="openvino", precision="int8"))
    assert engine.precision.startswith("int8")  # "int8+bf16" or "int8+fp32": float layers
    want = torch_reference(merged, image)[0]
    d = diff(engine.run(image)[0], want).mean()
    # Measured on a 2-core CPU without VNNI (weights in +-63): 1.19 from the fp32 module,
    # where the official handdrawn's own int8 model is 1.03 from its fp32 module on the same
    # image (tests/test_int8.py holds the official styles to 1.0 on the goldens), and the
    # personal look is 8.1 from the base's: int8 keeps the look, at int8's usual cost.
    base = torch_reference(load_weights(models_dir / "dctnet" / "cartoon_handdrawn_bg.pb"),
                           image)[0]
    assert d <= 1.5 and d <= 0.2 * diff(want, base).mean(), d


def test_the_head_model_takes_the_adapters_head_part_else_its_bg_part(shared, models_dir,
                                                                       tmp_path):
    from streamer.toon.engine import EngineSettings
    from streamer.toon.styles import StyleFlows

    store, _ = shared
    # bg only, on a base without head weights: heads run the bg model, one engine for both
    assert store.source_for("mine", "h") is None
    flows = StyleFlows(store, EngineSettings(device="cpu", precision="exact"), faces="off")
    assert flows.head_engine("mine") is flows.engine("mine")
    assert store.onnx_model_path("mine", "h") == store.onnx_model_path("mine", "bg")

    both = make_store(tmp_path / "store", models_dir)
    src = write_adapter(tmp_path / "duo.safetensors",
                        make_adapter(models_dir, name="duo", parts=("bg", "h"), seed=4))
    both.install_personal(src)
    adapter = load_adapter(src)
    base = load_weights(models_dir / "dctnet" / f"cartoon_{BASE}_bg.pb")
    assert both.source_for("duo", "h") == both.personal.path("duo")
    head = both.weights("duo", "h")
    for conv, kernel in merge(base, adapter, "h").kernels.items():
        assert np.array_equal(head.kernels[conv], kernel)
    assert not np.array_equal(head.kernels["Conv"], both.weights("duo", "bg").kernels["Conv"])
    assert both.onnx_model_path("duo", "h").name == "duo_h.onnx"


# --- the apps ------------------------------------------------------------------------------

def test_styleflows_and_the_web_page_list_the_personal_style(shared):
    from streamer.toon.engine import EngineSettings
    from streamer.toon.styles import StyleFlows
    from streamer.web.service import ToonService

    store, _ = shared
    flows = StyleFlows(store, EngineSettings(device="cpu"), faces="off")
    assert flows.styles[-1] == "mine" and flows.styles[:7] == store.catalog.styles
    assert flows.installed_styles() == [BASE, "handdrawn", "mine"]
    flows.check_style("mine")
    with pytest.raises(UnknownModel, match="unknown style 'nosuch'; styles: anime.*, mine$"):
        flows.check_style("nosuch")
    service = ToonService(models=str(store.root), device="cpu")
    try:
        assert service.styles == [BASE, "handdrawn", "mine"]
        assert service.check_style("mine") == "mine"
    finally:
        service.close()


def test_run_video_converts_a_still_in_the_personal_style(shared, media_dir, tmp_path, capfd):
    from streamer.video.app import main as run_video

    store, _ = shared
    src = media_dir / "luciano.png"
    outs = {}
    for style in ("mine", BASE):
        out = tmp_path / f"{style}.png"
        rc = run_video([str(src), "-o", str(out), "--style", style, "--models", str(store.root),
                        "--device", "cpu", "--faces", "on", "--no-fetch"])
        log = "".join(capfd.readouterr())
        assert rc == 0, log
        outs[style] = cv2.imread(str(out))
    assert outs["mine"].shape == outs[BASE].shape
    assert diff(outs["mine"], outs[BASE]).mean() > 5.0

    rc = run_video([str(src), "-o", str(tmp_path / "x.png"), "--style", "nosuch",
                    "--models", str(store.root), "--no-fetch"])
    out, err = capfd.readouterr()
    errors = [ln for ln in (out + err).splitlines() if ln.startswith("error: ")]
    assert rc != 0 and len(errors) == 1 and "styles: anime" in errors[0] and "mine" in errors[0]


def test_run_stream_switches_to_the_personal_style_live(shared, tmp_path):
    from streamer.live import app

    store, _ = shared
    stats = tmp_path / "s.json"

    lines: list[str] = []

    class SlowLines(io.StringIO):
        """Lines that arrive a while after the start, as a user types them; quit once the
        switch is done (building and compiling the style takes a while on a busy CPU)."""

        def __iter__(self):
            time.sleep(0.8)
            yield "style mine\n"
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not any("-> mine" in ln or "error" in ln
                                                          for ln in lines):
                time.sleep(0.2)
            time.sleep(0.5)
            yield "quit\n"

    rc = app.main(["--models", str(store.root), "--config", "live-cpu", "--synthetic",
                   "--camera-size", "320x180", "--work", "64", "--precision", "fast",
                   "--status-every", "0", "--style", BASE, "--faces", "off", "--sink", "null",
                   "--seconds", "150", "--stats-json", str(stats)],
                  log=lines.append, stdin=SlowLines())
    assert rc == 0, lines
    data = json.loads(stats.read_text())
    assert data["ended"] == "quit" and data["style"] == "mine", lines
    assert any(f"style: {BASE} -> mine" in line for line in lines)
