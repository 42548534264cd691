"""Where things live in a model store, and the command lines that name a store.

Layout under the root (the same as the shared test store):

    dctnet/cartoon_<style>_bg.pb     whole-frame model        (fetch STYLE / import)
    dctnet/cartoon_<style>_h.pb      face-crop model, optional: the style's bg model serves
    dctnet/tflite/<style>_<part>.tflite   TFLite conversions (import)
    dctnet/alpha.jpg                 head mask                (fetch mask)
    face/yunet.onnx                  face detector            (fetch face)
    seg/selfie_segmentation*.tflite  person segmentation, general and landscape (fetch seg)
    onnx/<style>_<part>.onnx + .json built models (and seg_<variant>.onnx), or under
                                     $TOONSTREAM_CACHE/onnx (else the per-user cache) when
                                     the root is read-only
    personal/<name>.safetensors      personal styles: LoRA adapters (personal.py)
    manifest.json                    where each fetched/imported file came from
"""
from __future__ import annotations

import shlex
from pathlib import Path

from .catalog import PARTS, Catalog, FileRecord
from .errors import UnknownModel

PRECISIONS = ("fp32", "fp16", "int8")
MANIFEST = "manifest.json"
TFLITE_DIR = "dctnet/tflite"
SEG_DIR = "seg"
SEG_VARIANTS = ("general", "landscape")  # catalog parts of the seg model
# The input size (height, width) of each: how an imported .tflite is told apart.
SEG_INPUTS = {(256, 256): "general", (144, 256): "landscape"}
# Public TFLite conversions name the face model "head" (e.g. sketch_head288.tflite).
TFLITE_ALIASES = {"bg": ("bg",), "h": ("h", "head")}
ASSET_NAMES = {"mask": "mask", "alpha.jpg": "mask", "face": "face", "yunet.onnx": "face"}


def store_command(root: Path, args: str) -> str:
    """The `python -m streamer.models` command line that runs `args` on the store at `root`."""
    return f"python -m streamer.models {args} --models {shlex.quote(str(root))}"


def fmt_of(path: Path) -> str:
    """A file's format as its suffix names it: pb, tflite, onnx, jpg."""
    return path.suffix.lstrip(".").lower()


def onnx_name(style: str, part: str, precision: str) -> str:
    """The file name of a style part's built model at `precision`."""
    suffix = "" if precision == "fp32" else f"_{precision}"
    return f"{style}_{part}{suffix}.onnx"


def style_file(catalog: Catalog, style: str, part: str) -> FileRecord:
    """The catalog record of a style part's official weight file."""
    model = catalog.style(style)
    if part not in PARTS:
        raise UnknownModel(f"unknown part {part!r}; parts: {', '.join(PARTS)}")
    rec = model.file(part)
    assert rec is not None  # parse_catalog guarantees both parts
    return rec


def find_tflite(root: Path, style: str, part: str) -> Path | None:
    """An installed TFLite conversion of a style part, by its exact name or a public alias."""
    folder = root / TFLITE_DIR
    exact = folder / f"{style}_{part}.tflite"
    if exact.is_file():
        return exact
    if not folder.is_dir():
        return None
    for alias in TFLITE_ALIASES[part]:
        # Conversions carry their input size in the name (anime_bg720.tflite).
        found = sorted(p for p in folder.glob(f"{style}_{alias}*.tflite")
                       if p.stem[len(style) + 1 + len(alias):].isdigit() or
                       p.stem == f"{style}_{alias}")
        if found:
            return found[0]
    return None
