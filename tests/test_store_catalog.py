"""The model catalog and the one setting that places the store."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from streamer.models import load_catalog, parse_catalog, resolve_store_root, user_cache_dir
from streamer.models.catalog import CatalogError
from streamer.models.errors import UnknownModel
from streamer.models.paths import fallback_cache_dir, is_writable_dir

STYLES = {
    "anime": "damo/cv_unet_person-image-cartoon_compound-models",
    "3d": "damo/cv_unet_person-image-cartoon-3d_compound-models",
    "handdrawn": "damo/cv_unet_person-image-cartoon-handdrawn_compound-models",
    "sketch": "damo/cv_unet_person-image-cartoon-sketch_compound-models",
    "artstyle": "damo/cv_unet_person-image-cartoon-artstyle_compound-models",
    "sd-design": "damo/cv_unet_person-image-cartoon-sd-design_compound-models",
    "sd-illustration": "damo/cv_unet_person-image-cartoon-sd-illustration_compound-models",
}
ANIME_SHA = {"bg": "71efec51b4566cce3a3123822fb4e17794ad062c3e324b33f2a65df850c037ad",
             "h": "338e7bf7ab4014ba9da864c2dda104f26d8af6c7f468038782d92ccc8e2dedda"}


def test_catalog_lists_the_seven_official_styles_with_their_sources():
    cat = load_catalog()
    assert cat.styles == tuple(STYLES)
    for style, model_id in STYLES.items():
        for part in ("bg", "h"):
            rec = cat.style(style).file(part)
            assert rec.local == f"dctnet/cartoon_{style}_{part}.pb"
            assert rec.remote_path == f"cartoon_anime_{part}.pb"
            assert rec.size == 5_894_895
            assert rec.sha256 == (ANIME_SHA[part] if style == "anime" else None)
            assert rec.url == (f"https://modelscope.cn/api/v1/models/{model_id}/repo"
                               f"?Revision=v1.0.0&FilePath=cartoon_anime_{part}.pb")
            assert rec.url_for("http://mirror.local/m/") == \
                f"http://mirror.local/m/{model_id}/cartoon_anime_{part}.pb"


def test_catalog_has_the_face_detector_and_head_mask_without_assumed_checksums():
    cat = load_catalog()
    face = cat.asset("face").files[0]
    assert face.local == "face/yunet.onnx" and face.sha256 is None and face.size is None
    assert face.url == ("https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/"
                        "face_detection_yunet_2023mar.onnx")
    assert cat.model("face").licence == "MIT"
    mask = cat.asset("mask").files[0]
    assert mask.local == "dctnet/alpha.jpg" and mask.sha256 is None
    assert mask.url.endswith("cv_unet_person-image-cartoon_compound-models/repo?Revision=v1.0.0&FilePath=alpha.jpg")


def test_unknown_style_error_lists_styles():
    with pytest.raises(UnknownModel, match=r"unknown style 'pixar'; styles: anime, 3d, handdrawn"):
        load_catalog().style("pixar")


def test_broken_catalog_entries_are_refused():
    base = {"kind": "mask", "source": {"url": "http://x/a.jpg", "model_id": "m"},
            "files": [{"part": "mask", "path": "a.jpg", "local": "a.jpg", "sha256": "abc"}]}
    with pytest.raises(CatalogError, match="bad sha256"):
        parse_catalog({"models": {"mask": base}})
    base["files"][0] |= {"sha256": None, "local": "../escape.jpg"}
    with pytest.raises(CatalogError, match="inside the store"):
        parse_catalog({"models": {"mask": base}})


def test_store_root_comes_from_cli_then_env_then_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("TOONSTREAM_MODELS", str(tmp_path / "env"))
    assert resolve_store_root(str(tmp_path / "cli")) == tmp_path / "cli"
    assert resolve_store_root(None) == tmp_path / "env"
    monkeypatch.delenv("TOONSTREAM_MODELS")
    assert resolve_store_root(None) == user_cache_dir() / "models"


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="XDG applies to Linux")
def test_user_cache_honours_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert user_cache_dir() == tmp_path / "toonstream"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert user_cache_dir() == Path.home() / ".cache" / "toonstream"
    monkeypatch.delenv("TOONSTREAM_CACHE", raising=False)
    assert fallback_cache_dir() == Path.home() / ".cache" / "toonstream" / "onnx"
    monkeypatch.setenv("TOONSTREAM_CACHE", str(tmp_path / "c"))
    assert fallback_cache_dir() == tmp_path / "c" / "onnx"


def test_folder_without_write_bits_counts_as_read_only(tmp_path):
    # Even for root, who passes os.access everywhere: the shared store must stay untouched.
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert not is_writable_dir(ro)
        assert not is_writable_dir(ro / "not" / "yet")
        assert is_writable_dir(tmp_path / "new" / "store")
    finally:
        ro.chmod(0o755)
