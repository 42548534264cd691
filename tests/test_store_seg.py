"""`fetch seg`: the segmentation models from the catalog (source, size, sha256) through a real
HTTP server on 127.0.0.1, checked, and built into ONNX; a file that is not one is refused."""
from __future__ import annotations

import hashlib

import pytest

from streamer.models import BadModelFile, Store, VerificationError, load_catalog
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


# --- issue 23: built seg models recorded, checksummed and rebuilt; import and --fetch ------

def _store_without_builds(models_dir, root, seg: bool = True):
    """A writable store over the shared 3d weights (the shared anime copy is fp16-rounded
    and fails verify by design) and the face files, with the seg models unless `seg` is
    False; built models go to root/onnx."""
    (root / "dctnet").mkdir(parents=True)
    for name in ("cartoon_3d_bg.pb", "alpha.jpg"):
        (root / "dctnet" / name).symlink_to(models_dir / "dctnet" / name)
    for name in ("face",) + (("seg",) if seg else ()):
        (root / name).symlink_to(models_dir / name)
    return root


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("record", ["with checksum", "older record without one"])
def test_a_truncated_built_seg_model_is_rebuilt_not_run(models_dir, media_dir, tmp_path,
                                                         capsys, record):
    import json
    import shlex

    from streamer.models.download import sha256_file
    from streamer.video.app import main as run_video

    root = _store_without_builds(models_dir, tmp_path / "store")
    store = Store(root)
    built = [store.seg_model_path(v) for v in ("general", "landscape")]
    for path in built:
        if record != "with checksum":  # a record written before checksums were kept
            meta_path = path.with_suffix(".json")
            meta = json.loads(meta_path.read_text())
            del meta["onnx_sha256"]
            meta_path.write_text(json.dumps(meta))
        _truncate(path)

    # verify says what happens to it, and the command it names rebuilds it
    rc = main(["verify", "--models", str(root)])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "onnx/seg_general.onnx" in line]
    assert len(lines) == 1, out
    if record == "with checksum":
        assert rc != 0 and lines[0].startswith("FAIL") and "DAMAGED" in lines[0]
        cmd = lines[0].split("`")[1]
        assert cmd == f"python -m streamer.models path seg --part general --models {shlex.quote(str(root))}"
        assert main(shlex.split(cmd)[3:]) == 0
        assert capsys.readouterr().out.strip() == str(built[0])
        assert sha256_file(built[0]) == json.loads(built[0].with_suffix(".json").read_text())["onnx_sha256"]
        _truncate(built[0])
    else:
        assert "no checksum recorded, rebuilt on next use" in lines[0]

    # a --background run rebuilds what it uses instead of failing in ONNX Runtime
    # (a square picture: the general model)
    out_png = tmp_path / "out.png"
    rc = run_video([str(media_dir / "bryan_115px.png"), "-o", str(out_png), "--models",
                    str(root), "--style", "3d", "--background", "blur", "--faces", "off",
                    "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert out_png.is_file() and "INVALID_PROTOBUF" not in err
    meta = json.loads(built[0].with_suffix(".json").read_text())
    assert sha256_file(built[0]) == meta["onnx_sha256"]
    main(["verify", "--models", str(root)])
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if "onnx/seg_general.onnx" in line] == [
        "ok    onnx/seg_general.onnx: built model, current"]
    store.seg_model_path("landscape")  # the other one too, once used
    assert main(["verify", "--models", str(root)]) == 0, capsys.readouterr().out


def test_import_installs_the_seg_models_without_a_style(models_dir, tmp_path, capsys):
    root = tmp_path / "store"
    root.mkdir()
    for name, variant in (("selfie_segmentation.tflite", "general"),
                          ("selfie_segmentation_landscape.tflite", "landscape")):
        src = models_dir / "seg" / name
        # with a style, the file is named for what it is and the way to import it
        assert main(["import", str(src), "--style", "anime", "--models", str(root)]) != 0
        err = capsys.readouterr().err.strip()
        assert err == (f"error: {name} is MediaPipe's selfie segmentation model ({variant}), "
                       f"not a style's weights: import it without --style (and --part)")
        assert main(["import", str(src), "--models", str(root)]) == 0, capsys.readouterr().err
        out = capsys.readouterr().out
        assert f"imported {root / 'seg' / name} (tflite)" in out
        assert f"built {root / 'onnx' / f'seg_{variant}.onnx'}" in out
        assert (root / "seg" / name).read_bytes() == src.read_bytes()
    assert main(["verify", "--models", str(root)]) == 0
    capsys.readouterr()

    # a DCT-Net file without --style is told to name its style; options for a style refused
    pb = models_dir / "dctnet" / "cartoon_3d_bg.pb"
    assert main(["import", str(pb), "--models", str(root)]) != 0
    assert "holds DCT-Net weights: name their style with --style NAME" in capsys.readouterr().err
    src = models_dir / "seg" / "selfie_segmentation.tflite"
    assert main(["import", str(src), "--part", "h", "--models", str(root)]) == 2
    assert "--part h applies to a style's weights" in capsys.readouterr().err

    # the imported file is checked on use like a style's, and its repair names the import
    # that works (no --style)
    seg = root / "seg" / "selfie_segmentation.tflite"
    seg.unlink()
    data = bytearray(src.read_bytes())
    data[len(data) // 2] ^= 0xFF
    seg.write_bytes(bytes(data))
    with pytest.raises(BadModelFile) as info:
        Store(root).seg_model_path("general")
    text = str(info.value)
    assert "changed since it was installed" in text
    assert text.endswith(f"`python -m streamer.models import {src} --models {root}`")
    assert "--style" not in text


def _serve_seg(server, models_dir):
    for f in load_catalog().model("seg").files:
        server.put(f.mirror_path, (models_dir / f.local).read_bytes())


def test_fetch_flag_fetches_the_missing_seg_model_for_a_background(server, models_dir,
                                                                  media_dir, tmp_path, capsys,
                                                                  monkeypatch):
    from streamer.video.app import main as run_video

    _serve_seg(server, models_dir)
    monkeypatch.setenv("TOONSTREAM_MODEL_MIRROR", server.url)
    root = _store_without_builds(models_dir, tmp_path / "store", seg=False)
    args = [str(media_dir / "bryan_115px.png"), "-o", str(tmp_path / "out.png"), "--models",
            str(root), "--style", "3d", "--background", "blur", "--faces", "off",
            "--no-progress"]

    # without consent nothing is downloaded, and the error names both ways to get it
    assert run_video(args + ["--no-fetch"]) != 0
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: seg/selfie_segmentation.tflite, "
                           "seg/selfie_segmentation_landscape.tflite not in the model store")
    assert "--background other than keep" in last and "--fetch" in last
    assert "python -m streamer.models fetch seg --models" in last
    assert server.requests == [] and not (tmp_path / "out.png").exists()

    assert run_video(args + ["--fetch"]) == 0
    err = capsys.readouterr().err
    assert "fetched and verified: seg" in err, err
    assert (tmp_path / "out.png").is_file()
    for f in load_catalog().model("seg").files:
        assert (root / f.local).read_bytes() == (models_dir / f.local).read_bytes()

    # keep needs no mask: nothing is asked for
    n = len(server.requests)
    (root / "seg" / "selfie_segmentation.tflite").unlink()
    keep = [a for a in args if a not in ("--background", "blur")]
    assert run_video(keep + ["-y", "--no-fetch"]) == 0, capsys.readouterr().err
    assert len(server.requests) == n
