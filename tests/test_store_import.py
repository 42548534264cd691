"""Importing hand-downloaded weights, and the ONNX cache built from whatever is installed."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import onnx
import pytest

from streamer.models import ModelNotInstalled, Store, UnknownModel
from streamer.models.cli import main
from streamer.models.dctnet.onnx_graph import CONVERTER_VERSION


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    monkeypatch.delenv("TOONSTREAM_MODELS", raising=False)
    monkeypatch.setenv("TOONSTREAM_CACHE", str(tmp_path / "user-cache"))


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "store")


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def _graphdef(*nodes: tuple[str, str]) -> bytes:
    """A tiny, well-formed TF GraphDef: nodes of (name, op)."""
    def field(num: int, payload: bytes) -> bytes:
        return bytes([num << 3 | 2, len(payload)]) + payload
    return b"".join(field(1, field(1, n.encode()) + field(2, op.encode())) for n, op in nodes)


def test_official_pb_imports_and_builds_onnx(store, models_dir):
    src = models_dir / "dctnet" / "cartoon_3d_bg.pb"
    res = store.import_file(src, "3d")
    assert res.path == store.root / "dctnet" / "cartoon_3d_bg.pb"
    assert res.path.read_bytes() == src.read_bytes() and res.source_format == "pb"
    assert res.onnx == store.root / "onnx" / "3d_bg.onnx"
    onnx.checker.check_model(onnx.load(str(res.onnx)))
    meta = json.loads(res.onnx.with_suffix(".json").read_text())
    assert meta == meta | {"style": "3d", "part": "bg", "precision": "fp32", "source_format": "pb",
                           "source_sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
                           "converter_version": CONVERTER_VERSION}
    assert meta["source_file"] == str(res.path.resolve())
    assert any("no published sha256" in n for n in res.notes)


def test_cached_onnx_is_reused_and_rebuilt_when_stale(store, models_dir):
    # Put in place by hand, so no install record pins the bytes (a recorded file that
    # changes is refused instead: see test_store_integrity.py).
    (store.root / "dctnet").mkdir(parents=True)
    shutil.copyfile(models_dir / "dctnet" / "cartoon_3d_bg.pb", store.root / "dctnet" / "cartoon_3d_bg.pb")
    path = store.onnx_model_path("3d")
    stamp = path.stat().st_mtime_ns
    assert store.onnx_model_path("3d") == path and path.stat().st_mtime_ns == stamp

    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps(meta | {"converter_version": "0-old"}))
    store.onnx_model_path("3d")
    assert json.loads(meta_path.read_text())["converter_version"] == CONVERTER_VERSION

    # New weights under the same name: the source hash no longer matches, so it is rebuilt.
    shutil.copyfile(models_dir / "dctnet" / "cartoon_sketch_bg.pb", store.root / "dctnet" / "cartoon_3d_bg.pb")
    store.onnx_model_path("3d")
    assert json.loads(meta_path.read_text())["source_sha256"] == \
        hashlib.sha256((models_dir / "dctnet" / "cartoon_sketch_bg.pb").read_bytes()).hexdigest()


def test_anime_copy_with_another_checksum_is_imported_as_own_weights(store, models_dir, capsys):
    # The shared anime graph is fp16-rounded, so its sha256 is not the published one.
    rc = main(["import", str(models_dir / "dctnet" / "cartoon_anime_bg.pb"), "--style", "anime",
               "--models", str(store.root)])
    out, err = capsys.readouterr()
    assert rc == 0
    assert "warning: cartoon_anime_bg.pb is not the published" in err
    assert "dctnet/cartoon_anime_bg.pb" in out
    assert all(c.ok for c in store.verify())


def test_tflite_import_goes_to_the_tflite_folder(store, models_dir):
    res = store.import_file(models_dir / "dctnet" / "tflite" / "sketch_head288.tflite", "sketch", "h")
    assert res.path == store.root / "dctnet" / "tflite" / "sketch_h.tflite"
    meta = json.loads(res.onnx.with_suffix(".json").read_text())
    assert res.onnx.name == "sketch_h.onnx" and meta["source_format"] == "tflite"


@pytest.mark.parametrize("content, reason", [
    (b"just some text, not a model\n" * 50, "not a model"),
    ("truncated", "truncated or corrupt"),
    (_graphdef(("input_image", "Placeholder"), ("conv", "Conv2D"), ("output_image", "Identity")),
     "a different network"),
], ids=["non-model", "truncated-pb", "other-network"])
def test_bad_files_are_refused_with_one_line(store, models_dir, tmp_path, capsys, content, reason):
    if content == "truncated":
        data = (models_dir / "dctnet" / "cartoon_3d_bg.pb").read_bytes()
        content = data[: len(data) * 2 // 3]
    bad = tmp_path / "download.pb"
    bad.write_bytes(content)
    rc = main(["import", str(bad), "--style", "3d", "--models", str(store.root)])
    assert rc == 1  # a refused import: the run failed (issue 23.14)
    assert reason in _one_error_line(capsys)
    assert not (store.root / "dctnet").exists()


def test_unknown_style_lists_the_styles(store, models_dir, capsys):
    rc = main(["import", str(models_dir / "dctnet" / "cartoon_3d_bg.pb"), "--style", "pixar",
               "--models", str(store.root)])
    assert rc == 2
    line = _one_error_line(capsys)
    assert "unknown style 'pixar'" in line and "anime, 3d, handdrawn, sketch" in line


def test_missing_file_is_a_one_line_error(store, tmp_path, capsys):
    assert main(["import", str(tmp_path / "nope.pb"), "--style", "3d", "--models", str(store.root)]) == 1
    assert "no such file" in _one_error_line(capsys)


def test_missing_style_error_names_the_commands(store):
    with pytest.raises(ModelNotInstalled) as exc:
        store.onnx_model_path("handdrawn")
    msg = str(exc.value)
    assert f"python -m streamer.models fetch handdrawn --models {store.root}" in msg
    assert "python -m streamer.models import FILE --style handdrawn" in msg


def _read_only_copy(models_dir: Path, root: Path, *names: str) -> Path:
    """A store holding `names` (paths under the store) with every write bit removed: what a
    shared, read-only store looks like, whoever runs the test (root included)."""
    for name in names:
        dst = root / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(models_dir / name, dst)
    for p in sorted(root.rglob("*"), reverse=True) + [root]:
        p.chmod(p.stat().st_mode & ~0o222)
    return root


def test_read_only_store_builds_onnx_in_the_user_cache(models_dir, tmp_path):
    ro = _read_only_copy(models_dir, tmp_path / "ro-store", "dctnet/cartoon_3d_bg.pb")
    try:
        store = Store(ro)
        assert not store.writable
        path = store.onnx_model_path("3d")
        assert path == tmp_path / "user-cache" / "onnx" / "3d_bg.onnx"
        assert path.is_file() and not (ro / "onnx").exists()
    finally:  # let pytest clean its tmp_path
        for p in [ro, *ro.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)


def test_sources_prefer_pb_and_head_falls_back_to_bg(models_dir):
    store = Store(models_dir)
    assert store.source_for("anime") == models_dir / "dctnet" / "cartoon_anime_bg.pb"
    assert store.source_for("anime", "h") is None
    assert store.onnx_model_path("anime", "h") == store.onnx_model_path("anime", "bg")
    # A head conversion is found by its published name (sketch_head288.tflite).
    assert store.source_for("sketch", "h") == models_dir / "dctnet" / "tflite" / "sketch_head288.tflite"
    with pytest.raises(UnknownModel, match="parts: bg, h"):
        store.onnx_model_path("anime", "face")


def test_file_helpers_find_the_mask_and_detector(models_dir, tmp_path):
    store = Store(models_dir)
    assert store.file_path("alpha.jpg") == models_dir / "dctnet" / "alpha.jpg"
    assert store.file_path("yunet.onnx") == models_dir / "face" / "yunet.onnx"
    with pytest.raises(ModelNotInstalled, match="fetch mask"):
        Store(tmp_path / "empty").file_path("alpha.jpg")


def test_module_functions_follow_the_env_setting(models_dir, monkeypatch):
    from streamer.models import file_path, onnx_model_path

    monkeypatch.setenv("TOONSTREAM_MODELS", str(models_dir))
    assert file_path("face") == models_dir / "face" / "yunet.onnx"
    assert onnx_model_path("sketch", precision="fp16").name == "sketch_bg_fp16.onnx"
