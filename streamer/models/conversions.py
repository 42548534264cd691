"""The store's ONNX conversions: DCT-Net weights at fp32 or fp16, the int8 quantization of
the fp32 model, and the selfie segmentation model. Each is a `CachedBuild` (builds.py) keyed
by what it is made from, so it is built on first use and again whenever that changes."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from .builds import CachedBuild, read_record
from .calibration import SYNTHETIC, user_material
from .download import sha256_file
from .errors import BadModelFile
from .layout import onnx_name


def dctnet_onnx(folder: Path, style: str, part: str, precision: str, src: Path, src_sha: str,
                load: Callable[[Path], Any]) -> Path:
    """The fp32 or fp16 model of a style part in `folder`, converted from the weight file
    `src` (sha256 `src_sha`), which `load` reads into a DctNetWeights."""
    from streamer.models.dctnet.onnx_graph import CONVERTER_VERSION, build_onnx

    cache = CachedBuild(folder / onnx_name(style, part, precision),
                        {"source_sha256": src_sha, "converter_version": CONVERTER_VERSION,
                         "precision": precision})
    if (cached := cache.current()) is not None:
        return cached
    weights = load(src)
    record = {"style": style, "part": part, "precision": precision,
              "source_file": str(src.resolve()), "source_sha256": src_sha,
              "source_format": weights.source_format}
    return cache.save(build_onnx(weights, precision), record, source=src.name)


def int8_onnx(folder: Path, style: str, part: str, src: Path, fp32: Path,
              calibration_source: str | None, frames: Callable[[str], list],
              say: Callable[[str], None], float_style: str | None = None) -> Path:
    """The int8 (QDQ) model beside the fp32 model `fp32` (built from `src`): quantized once
    with NNCF on `frames(source)`, telling the user through `say` since it takes a while.
    `calibration_source` is the calibration the user asked for (calibration.source_for); None
    asks for none, so a built model is kept whatever it was calibrated on, and a rebuild (new
    weights, a damaged file) keeps the calibration it had. `float_style`: the style whose
    measured float layers it keeps (a personal style keeps its base's), by default `style`."""
    from streamer.models.dctnet.int8 import (QUANTIZER_VERSION, float_layers, quantize_int8,
                                             weight_levels)

    layers = float_layers(float_style or style)
    cache = CachedBuild(folder / onnx_name(style, part, "int8"),
                        {"fp32_sha256": sha256_file(fp32), "quantizer_version": QUANTIZER_VERSION,
                         "float_layers": list(layers),
                         "weight_levels": weight_levels()})
    if calibration_source is not None:
        cache.key["calibration_source"] = calibration_source
    if (cached := cache.current()) is not None:
        return cached
    source = calibration_source or _previous_calibration(cache.out, say)
    shots = frames(source)
    say(f"int8: quantizing {style} {part} once (NNCF, {len(shots)} calibration frames "
        f"from {source}); cached in {cache.out.parent}")
    t0 = time.perf_counter()
    model, info = quantize_int8(fp32, shots, layers, weight_levels())
    record = {"style": style, "part": part, "precision": "int8",
              "source_file": str(src.resolve()), "source_sha256": sha256_file(src),
              "fp32_model": fp32.name, "calibration_source": source, **info,
              "build_seconds": round(time.perf_counter() - t0, 1)}
    out = cache.save(model, record, source=fp32.name)
    say(f"int8: {out.name} built in {time.perf_counter() - t0:.0f} s")
    return out


def _previous_calibration(out: Path, say: Callable[[str], None]) -> str:
    """The calibration source the model `out` was last built with (its record survives a
    damaged model and new weights), so a rebuild nobody asked a calibration of keeps the
    user's own material while it is there; else the built-in set."""
    before = read_record(out).get("calibration_source")
    mine = user_material(before) if isinstance(before, str) else None
    if mine is None:
        return SYNTHETIC
    if mine.exists():
        return before
    say(f"int8: {mine}, which {out.name} was calibrated on, is gone; calibrating on the "
        f"built-in set")
    return SYNTHETIC


def seg_onnx(folder: Path, variant: str, src: Path, repair: str) -> Path:
    """The segmentation model `variant` in `folder`, converted from the .tflite `src`;
    `repair` is the command that replaces an unusable `src`."""
    from streamer.models.selfie.graph import CONVERTER_VERSION, SegModelError, load_seg_model

    src_sha = sha256_file(src)
    cache = CachedBuild(folder / f"seg_{variant}.onnx",
                        {"source_sha256": src_sha, "converter_version": CONVERTER_VERSION})
    if (cached := cache.current()) is not None:
        return cached
    try:
        model, info = load_seg_model(src)
    except SegModelError as exc:
        raise BadModelFile(f"{exc} (in {src.parent}); replace it with `{repair}`") from None
    record = {"model": "seg", "part": variant, "precision": "fp32",
              "input": [info.height, info.width],
              "source_file": str(src.resolve()), "source_sha256": src_sha,
              "source_format": "tflite"}
    return cache.save(model, record, source=src.name)
