"""`python -m streamer.models list|verify|path` output and the one-line error contract."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from streamer.models.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    monkeypatch.delenv("TOONSTREAM_MODELS", raising=False)
    monkeypatch.setenv("TOONSTREAM_CACHE", str(tmp_path / "user-cache"))


@pytest.fixture
def small_store(models_dir, tmp_path) -> Path:
    """A writable store holding copies of a few shared files."""
    root = tmp_path / "store"
    for rel in ("dctnet/cartoon_3d_bg.pb", "dctnet/alpha.jpg", "face/yunet.onnx",
                "dctnet/tflite/sketch_head288.tflite"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(models_dir / rel, root / rel)
    return root


def test_list_shows_files_origin_and_checksums(models_dir, capsys):
    assert main(["list", "--models", str(models_dir)]) == 0
    out = capsys.readouterr().out
    assert f"model store: {models_dir}  (from --models)" in out
    for rel in ("dctnet/cartoon_sketch_bg.pb", "face/yunet.onnx", "dctnet/alpha.jpg",
                "dctnet/tflite/anime_bg720.tflite"):
        assert rel in out
    assert "ebafce4e3c118d6554634be5c27ab333b4c047a9a8c3faf1d7cf93101c22f0f0" in out  # yunet
    assert "SHA256 DIFFERS from the published 71efec51" in out  # fp16-rounded anime copy
    assert "not installed, the bg model serves" in out
    assert "built ONNX models in" in out


def test_list_reports_built_models(small_store, capsys):
    assert main(["path", "3d", "--models", str(small_store)]) == 0
    assert capsys.readouterr().out.strip() == str(small_store / "onnx" / "3d_bg.onnx")
    main(["list", "--models", str(small_store)])
    assert "3d_bg.onnx" in capsys.readouterr().out


def test_verify_passes_on_good_files(small_store, capsys):
    assert main(["verify", "--models", str(small_store)]) == 0
    out = capsys.readouterr().out
    assert "ok    dctnet/cartoon_3d_bg.pb: 5,894,895 B, size matches; no published sha256" in out
    assert "ok    face/yunet.onnx" in out and "ok    dctnet/tflite/sketch_head288.tflite" in out
    assert "all 4 files verified" in out


def test_verify_fails_on_a_damaged_file(small_store, capsys):
    pb = small_store / "dctnet" / "cartoon_3d_bg.pb"
    data = bytearray(pb.read_bytes())
    data[100:4000] = b"\xff" * 3900  # same size, broken structure
    pb.write_bytes(bytes(data))
    assert main(["verify", "--models", str(small_store)]) == 1  # the run failed (issue 23.14)
    out, err = capsys.readouterr()
    assert "FAIL  dctnet/cartoon_3d_bg.pb" in out
    assert err.strip() == (f"error: 1 of 4 files failed verification in {small_store} "
                           f"(first: dctnet/cartoon_3d_bg.pb)")


def test_verify_flags_a_checksum_that_differs_from_the_published_one(models_dir, capsys):
    assert main(["verify", "--models", str(models_dir)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  dctnet/cartoon_anime_bg.pb: SHA256 DIFFERS" in out
    assert "ok    dctnet/cartoon_sketch_bg.pb" in out


def test_verify_of_an_empty_store_is_an_error(tmp_path, capsys):
    assert main(["verify", "--models", str(tmp_path / "none")]) == 1
    assert capsys.readouterr().err.startswith("error: no model files in ")


@pytest.mark.parametrize("args", [["list"], ["verify"], ["fetch", "anime"], ["path", "anime"],
                                  ["import", "x.pb", "--style", "anime"]])
def test_every_command_takes_models(args, tmp_path, capsys):
    from streamer.models.cli import _build_parser

    ns = _build_parser().parse_args(args + ["--models", str(tmp_path)])
    assert ns.models == str(tmp_path)


def test_user_errors_are_one_line_without_traceback(tmp_path):
    """Run as users do: a fresh interpreter, a bad style, a bad option."""
    # 2: the command is wrong as written; 1: the run failed (nothing installed)
    for args, status in ((["fetch", "pixar"], 2), (["path", "anime", "--part", "x"], 2),
                         (["path", "anime"], 1)):
        proc = subprocess.run([sys.executable, "-m", "streamer.models", *args, "--models",
                               str(tmp_path / "empty")], cwd=REPO, capture_output=True, text=True,
                              timeout=60)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == status, proc.stderr
        assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
