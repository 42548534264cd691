"""Whether a store file is usable as its kind: model files are read by the same reader the
engine uses, so fetch, import and verify accept exactly what will load."""
from __future__ import annotations

from pathlib import Path

from .layout import SEG_DIR, fmt_of


def check_structure(path: Path, fmt: str | None = None) -> str | None:
    """Why `path` is not a usable file of its kind (`fmt`, by default its suffix), or None."""
    fmt = fmt or fmt_of(path)
    if fmt == "tflite" and path.parent.name == SEG_DIR:
        # Segmentation models live under seg/ (see layout.py); they are not DCT-Net.
        from streamer.models.selfie.graph import SegModelError, load_seg_model

        try:
            load_seg_model(path)
        except SegModelError as exc:
            return str(exc).removeprefix(f"{path.name}: ")
        return None
    if fmt in ("pb", "tflite"):
        from streamer.models.dctnet.weights import ModelFormatError, load_weights

        try:
            got = load_weights(path).source_format
        except ModelFormatError as exc:
            return str(exc).removeprefix(f"{path.name}: ")
        if got != fmt:
            return f"holds a {got} model but is named .{fmt}"
        return None
    if fmt == "onnx":
        import onnx

        try:
            onnx.checker.check_model(onnx.load(str(path)))
        except Exception as exc:  # onnx raises protobuf and checker errors of many types
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return f"not a valid ONNX model ({first})"
        return None
    if fmt in ("jpg", "jpeg"):
        data = path.read_bytes()
        if not (data[:3] == b"\xff\xd8\xff" and data.rstrip(b"\0")[-2:] == b"\xff\xd9"):
            return "not a complete JPEG image"
    return None
