"""Damaged model files (issue 12, item 2): every file the store installs or builds is
checksummed when it is installed or built and checked when it is loaded; weights must be
finite and in a sane range; a bad file is one error line that names the repairing command,
and `import` of a damaged file never replaces a good one."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamer.models import BadModelFile, Store
from streamer.models.cli import main
from streamer.models.dctnet.weights import load_weights

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    monkeypatch.delenv("TOONSTREAM_MODELS", raising=False)
    monkeypatch.delenv("TOONSTREAM_MODEL_MIRROR", raising=False)
    monkeypatch.setenv("TOONSTREAM_CACHE", str(tmp_path / "user-cache"))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _weight_offset(data: bytes, pb: Path, conv: str = "Conv_6") -> int:
    """Where a convolution's float32 kernel starts inside the .pb bytes."""
    kernel = load_weights(pb).kernels[conv]
    offset = data.find(kernel.tobytes()[:256])
    assert offset > 0
    return offset


def flip_exponents(pb: Path, out: Path, count: int = 8) -> Path:
    """The .pb with `count` weights' sign-and-exponent bytes XOR 0xFF: bytes flipped inside
    the weights, same size and structure, finite but absurd values (what a bad disk or a
    broken copy does)."""
    data = bytearray(pb.read_bytes())
    start = _weight_offset(bytes(data), pb)
    for i in range(count):
        data[start + 4 * (97 * i + 5) + 3] ^= 0xFF
    out.write_bytes(bytes(data))
    return out


def nudge_mantissas(pb: Path, out: Path) -> Path:
    """The .pb with a few weights' lowest mantissa bits changed: plausible values that only
    a checksum can tell from the installed ones."""
    data = bytearray(pb.read_bytes())
    start = _weight_offset(bytes(data), pb)
    for i in range(8):
        data[start + 4 * (97 * i + 5)] ^= 0x01
    out.write_bytes(bytes(data))
    return out


def _error_line(capsys) -> str:
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture
def pb_3d(models_dir) -> Path:
    # 3d has no published sha256: only the file's own checks can catch damage.
    return models_dir / "dctnet" / "cartoon_3d_bg.pb"


# --- weights in a sane range ---------------------------------------------------------------

def test_flipped_bytes_make_weights_the_loader_refuses(pb_3d, tmp_path):
    bad = flip_exponents(pb_3d, tmp_path / "bad.pb")
    assert bad.stat().st_size == pb_3d.stat().st_size
    with pytest.raises(ValueError, match=r"damaged: generator/Conv_6 holds a weight of .* times"):
        load_weights(bad)


def test_every_shared_style_passes_the_range_check(models_dir):
    pbs = sorted((models_dir / "dctnet").glob("*.pb"))
    tflites = sorted((models_dir / "dctnet" / "tflite").glob("*.tflite"))
    # an empty glob would check nothing and still pass
    assert pbs, f"no .pb weights in {models_dir / 'dctnet'}"
    assert tflites, f"no .tflite weights in {models_dir / 'dctnet' / 'tflite'}"
    for pb in pbs:
        load_weights(pb)
    for tfl in tflites:
        load_weights(tfl)


def test_verify_fails_a_damaged_pb_of_a_style_without_published_checksum(pb_3d, tmp_path, capsys):
    root = tmp_path / "store"
    (root / "dctnet").mkdir(parents=True)
    flip_exponents(pb_3d, root / "dctnet" / "cartoon_3d_bg.pb")  # put there by hand
    assert main(["verify", "--models", str(root)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  dctnet/cartoon_3d_bg.pb: damaged: generator/Conv_6" in out
    assert "structure ok" not in out


def test_building_from_damaged_weights_is_an_error_naming_the_fetch_command(pb_3d, tmp_path,
                                                                              capsys):
    root = tmp_path / "store"
    (root / "dctnet").mkdir(parents=True)
    flip_exponents(pb_3d, root / "dctnet" / "cartoon_3d_bg.pb")
    assert main(["path", "3d", "--models", str(root)]) == 1
    line = _error_line(capsys)
    assert "damaged" in line and f"python -m streamer.models fetch 3d --models {root}" in line
    assert not (root / "onnx" / "3d_bg.onnx").exists()


# --- installed files: recorded at install, checked at load -----------------------------------

def test_installed_weights_changed_after_import_are_refused_at_load(pb_3d, tmp_path, capsys):
    store = Store(tmp_path / "store")
    store.import_file(pb_3d, "3d")
    installed = store.root / "dctnet" / "cartoon_3d_bg.pb"
    # Plausible values, so only the checksum recorded at import can catch it.
    nudge_mantissas(pb_3d, tmp_path / "nudged.pb")
    load_weights(tmp_path / "nudged.pb")
    shutil.copyfile(tmp_path / "nudged.pb", installed)
    with pytest.raises(BadModelFile) as exc:
        store.onnx_model_path("3d")
    msg = str(exc.value)
    assert "dctnet/cartoon_3d_bg.pb" in msg and "changed since it was installed" in msg
    assert f"python -m streamer.models fetch 3d --models {store.root}" in msg
    assert f"python -m streamer.models import {pb_3d.resolve()} --style 3d" in msg
    assert main(["verify", "--models", str(store.root)]) == 1
    assert "FAIL  dctnet/cartoon_3d_bg.pb: CHANGED since it was installed" in capsys.readouterr().out


def test_changed_face_detector_is_refused_at_load(models_dir, tmp_path):
    store = Store(tmp_path / "store")
    dest = store.root / "face" / "yunet.onnx"
    dest.parent.mkdir(parents=True)
    shutil.copyfile(models_dir / "face" / "yunet.onnx", dest)
    store.records.add("face/yunet.onnx", "https://example.invalid/yunet.onnx", dest)
    assert store.file_path("yunet.onnx") == dest
    data = bytearray(dest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dest.write_bytes(bytes(data))
    with pytest.raises(BadModelFile, match=r"face/yunet.onnx .*changed since it was installed.*"
                                           r"python -m streamer.models fetch face"):
        store.file_path("yunet.onnx")


def test_run_video_with_damaged_installed_weights_is_a_one_line_error(pb_3d, tmp_path, capfd):
    from streamer.video.app import main as run_video

    store = Store(tmp_path / "store")
    store.import_file(pb_3d, "3d")
    flip_exponents(pb_3d, store.root / "dctnet" / "cartoon_3d_bg.pb")
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.full((48, 64, 3), 128, np.uint8))
    rc = run_video([str(photo), "-o", str(tmp_path / "out.png"), "--style", "3d", "--faces",
                    "off", "--models", str(store.root), "--no-progress"])
    out, err = capfd.readouterr()
    errors = [ln for ln in (out + err).splitlines() if ln.startswith("error: ")]
    assert rc != 0 and len(errors) == 1, out + err
    assert "changed since it was installed" in errors[0]
    assert "python -m streamer.models fetch 3d" in errors[0]
    assert "Traceback" not in out + err
    assert not (tmp_path / "out.png").exists()


# --- import never replaces a good file with a damaged one ----------------------------------

def test_import_of_a_damaged_pb_leaves_the_good_installed_file(pb_3d, tmp_path, capsys):
    store = Store(tmp_path / "store")
    store.import_file(pb_3d, "3d")
    installed = store.root / "dctnet" / "cartoon_3d_bg.pb"
    onnx_path = store.root / "onnx" / "3d_bg.onnx"
    before = (_sha(installed), _sha(onnx_path), (store.root / "manifest.json").read_text())
    bad = flip_exponents(pb_3d, tmp_path / "download.pb")
    assert main(["import", str(bad), "--style", "3d", "--models", str(store.root)]) == 1
    assert "damaged" in _error_line(capsys)
    assert (_sha(installed), _sha(onnx_path),
            (store.root / "manifest.json").read_text()) == before
    assert main(["verify", "--models", str(store.root)]) == 0


def test_import_over_a_good_file_with_other_plausible_weights_needs_force(pb_3d, tmp_path,
                                                                           capsys):
    store = Store(tmp_path / "store")
    store.import_file(pb_3d, "3d")
    installed = store.root / "dctnet" / "cartoon_3d_bg.pb"
    other = nudge_mantissas(pb_3d, tmp_path / "mine.pb")
    assert main(["import", str(other), "--style", "3d", "--models", str(store.root)]) == 1
    line = _error_line(capsys)
    assert "already installed and intact" in line and "--force" in line
    assert _sha(installed) == _sha(pb_3d)
    assert main(["import", str(other), "--style", "3d", "--force",
                 "--models", str(store.root)]) == 0
    assert _sha(installed) == _sha(other)
    assert main(["verify", "--models", str(store.root)]) == 0


def test_import_repairs_a_damaged_installed_file(pb_3d, tmp_path):
    store = Store(tmp_path / "store")
    store.import_file(pb_3d, "3d")
    installed = store.root / "dctnet" / "cartoon_3d_bg.pb"
    flip_exponents(pb_3d, installed)
    store.import_file(pb_3d, "3d")  # no --force needed: what is there is damaged
    assert _sha(installed) == _sha(pb_3d)
    assert all(c.ok for c in store.verify())


# --- built ONNX models: recorded when built, checked when loaded ----------------------------

@pytest.mark.parametrize("damage", ["flipped", "truncated"])
def test_damaged_built_onnx_is_rebuilt_with_a_warning(pb_3d, tmp_path, capsys, damage):
    store = Store(tmp_path / "store")
    store.import_file(pb_3d, "3d")
    path = store.onnx_model_path("3d")
    good = path.read_bytes()
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["onnx_sha256"] == hashlib.sha256(good).hexdigest()
    data = bytearray(good)
    if damage == "flipped":
        data[len(data) // 2: len(data) // 2 + 64] = bytes(b ^ 0xFF for b in data[len(data) // 2:
                                                                              len(data) // 2 + 64])
    else:
        del data[len(data) * 2 // 3:]
    path.write_bytes(bytes(data))

    assert main(["list", "--models", str(store.root)]) == 0
    assert "3d_bg.onnx" in (out := capsys.readouterr().out) and "DAMAGED" in out
    assert "current" not in [ln for ln in out.splitlines() if "3d_bg.onnx" in ln][0]
    assert main(["verify", "--models", str(store.root)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  onnx/3d_bg.onnx: built model, DAMAGED" in out
    assert f"python -m streamer.models path 3d --part bg --precision fp32 --models " in out

    assert main(["path", "3d", "--models", str(store.root)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(path)
    assert "warning: " in err and "damaged" in err and "rebuilt" in err
    assert path.read_bytes() == good
    assert main(["verify", "--models", str(store.root)]) == 0


def test_engines_report_an_unloadable_model_in_one_line(pb_3d, tmp_path):
    from streamer.toon.engine import EngineSettings, EngineUnavailable, create_engine

    store = Store(tmp_path / "store")
    store.import_file(pb_3d, "3d")
    cut = tmp_path / "cut.onnx"
    data = store.onnx_model_path("3d").read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    for device in ("cpu", "openvino"):
        with pytest.raises(EngineUnavailable) as exc:
            create_engine(lambda p: cut, EngineSettings(device=device))
        msg = str(exc.value)
        assert "\n" not in msg and str(cut) in msg and "damaged" in msg, msg


def test_a_store_damaged_file_is_one_line_in_a_fresh_interpreter(pb_3d, tmp_path):
    root = tmp_path / "store"
    (root / "dctnet").mkdir(parents=True)
    flip_exponents(pb_3d, root / "dctnet" / "cartoon_3d_bg.pb")
    proc = subprocess.run([sys.executable, "-m", "streamer.models", "path", "3d", "--models",
                           str(root)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1  # the run failed (issue 23.14)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr


@pytest.mark.parametrize("rel", ["face/yunet.onnx", "dctnet/alpha.jpg"])
def test_a_cut_detector_or_mask_put_in_by_hand_is_refused_naming_fetch(models_dir, tmp_path,
                                                                        rel):
    store = Store(tmp_path / "store")
    dest = store.root / rel
    dest.parent.mkdir(parents=True)
    data = (models_dir / rel).read_bytes()
    dest.write_bytes(data[: len(data) // 2])  # no install record: only its own check
    model = "face" if rel.startswith("face") else "mask"
    with pytest.raises(BadModelFile, match=rf"{rel} .* is unusable .*"
                                           rf"python -m streamer.models fetch {model}"):
        store.file_path(rel.split("/")[-1])
