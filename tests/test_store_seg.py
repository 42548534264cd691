"""`fetch seg`: the segmentation models from the catalog (source, size, sha256) through a real
HTTP server on 127.0.0.1, checked, and built into ONNX; a file that is not one is refused."""
from __future__ import annotations

import hashlib

import pytest

from streamer.models import Store, VerificationError, load_catalog
from streamer.models.cli import main

# the same local server (a pytest fixture) as the other fetches
from test_store_download import FAST, server  # noqa: F401


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    monkeypatch.delenv("TOONSTREAM_MODELS", raising=False)
    monkeypatch.delenv("TOONSTREAM_MODEL_MIRROR", raising=False)
    monkeypatch.setenv("TOONSTREAM_CACHE", str(tmp_path / "user-cache"))


def test_catalog_names_the_seg_files_with_size_and_sha256(models_dir):
    seg = load_catalog().model("seg")
    assert seg.kind == "seg" and seg.licence == "Apache-2.0"
    for rec in seg.files:
        data = (models_dir / rec.local).read_bytes()
        assert rec.size == len(data)
        assert rec.sha256 == hashlib.sha256(data).hexdigest()
        assert rec.url == f"https://storage.googleapis.com/mediapipe-assets/{rec.remote_path}"


def test_fetch_seg_downloads_checks_and_builds_both_models(server, models_dir, tmp_path, capsys):
    for name in ("selfie_segmentation.tflite", "selfie_segmentation_landscape.tflite"):
        server.put(f"mediapipe-assets/{name}", (models_dir / "seg" / name).read_bytes())
    root = tmp_path / "store"
    rc = main(["fetch", "seg", "--models", str(root), "--mirror", server.url, "--no-progress"])
    _, err = capsys.readouterr()
    assert rc == 0, err
    assert (root / "seg" / "selfie_segmentation.tflite").is_file()
    assert (root / "onnx" / "seg_general.onnx").is_file()
    assert (root / "onnx" / "seg_landscape.onnx").is_file()
    assert main(["verify", "--models", str(root)]) == 0


def test_a_dctnet_file_served_as_the_seg_model_is_refused(server, models_dir, tmp_path):
    # Same size as published would be caught by the checksum; with none, the structure check
    # (the segmentation importer) refuses it.
    data = (models_dir / "dctnet" / "tflite" / "sketch_head288.tflite").read_bytes()
    server.put("mediapipe-assets/selfie_segmentation.tflite", data)
    cat = load_catalog()
    store = Store(tmp_path / "store", cat)
    with pytest.raises(VerificationError):
        store.fetch("seg", mirror=server.url, options=FAST)
    assert not (tmp_path / "store" / "seg" / "selfie_segmentation.tflite").exists()
