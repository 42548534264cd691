"""The store's ONNX conversions: DCT-Net weights at fp32 or fp16, the int8 quantization of
the fp32 model, and the selfie segmentation model. Each is a `CachedBuild` (builds.py) keyed
by what it is made from, so it is built on first use and again whenever that changes."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from .builds import CachedBuild
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
              calibration_source: str, frames: Callable[[], list],
              say: Callable[[str], None]) -> Path:
    """The int8 (QDQ) model beside the fp32 model `fp32` (built from `src`): quantized once
    with NNCF on `frames()` (described by `calibration_source`), telling the user through
    `say` since it takes a while."""
    from streamer.models.dctnet.int8 import (QUANTIZER_VERSION, float_layers, quantize_int8,
                                             weight_levels)

    cache = CachedBuild(folder / onnx_name(style, part, "int8"),
                        {"fp32_sha256": sha256_file(fp32), "quantizer_version": QUANTIZER_VERSION,
                         "calibration_source": calibration_source,
                         "float_layers": list(float_layers(style)),
                         "weight_levels": weight_levels()})
    if (cached := cache.current()) is not None:
        return cached
    shots = frames()
    say(f"int8: quantizing {style} {part} once (NNCF, {len(shots)} calibration frames "
        f"from {calibration_source}); cached in {cache.out.parent}")
    t0 = time.perf_counter()
    model, info = quantize_int8(fp32, shots, float_layers(style), weight_levels())
    record = {"style": style, "part": part, "precision": "int8",
              "source_file": str(src.resolve()), "source_sha256": sha256_file(src),
              "fp32_model": fp32.name, **info,
              "build_seconds": round(time.perf_counter() - t0, 1)}
    out = cache.save(model, record, source=fp32.name)
    say(f"int8: {out.name} built in {time.perf_counter() - t0:.0f} s")
    return out


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
