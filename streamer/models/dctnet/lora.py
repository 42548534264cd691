"""Low-rank adapters (LoRA) on the DCT-Net generator's convolutions: a personal style.

A personal style is an official style's weights, frozen, plus for some convolutions a
low-rank change `delta W = (alpha / rank) * B @ A`, learned by the trainer
(streamer/train). It is stored as ONE safetensors file and merged into the base weights
when an engine is built, so it costs nothing per frame and runs on every engine and
precision like an official style.

Layout, per part ("bg": the whole-frame model, "h": the head model) and convolution:

    "{part}/{conv}/A"  float32 [rank, kh * kw * cin]   (flattened in H, W, I order)
    "{part}/{conv}/B"  float32 [cout, rank]

so `delta` in the project's HWIO kernel layout is `(B @ A).T.reshape(kh, kw, cin, cout)`.
The file's metadata (strings) say what it is: `format` ("toonstream-lora"), `version`,
`name`, `base` (the official style it starts from), `rank`, `alpha`, `losses` (JSON:
the loss weights it was trained with), `steps`, `exemplars` (how many cartoon images),
`created`, and `checksum`: the sha256 of the tensors (names, shapes and bytes, in name
order), which `load_adapter` checks, so a damaged file is refused even where the store has
no record of it.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streamer.errors import UserError

from .weights import GENERATOR_CONVS, DctNetWeights

FORMAT = "toonstream-lora"
VERSION = "1"
PARTS = ("bg", "h")
SPECS = {s.name: s for s in GENERATOR_CONVS}


class AdapterError(UserError, ValueError):
    """The adapter file is missing, damaged or not a Toonstream personal style (one line)."""


@dataclass
class LoraPair:
    """One convolution's low-rank factors (see the module docstring for the layout)."""

    a: np.ndarray  # [rank, kh * kw * cin]
    b: np.ndarray  # [cout, rank]

    def delta(self, scale: float) -> np.ndarray:
        """The kernel change in HWIO layout, float32."""
        flat = (self.b @ self.a).astype(np.float32) * np.float32(scale)  # [cout, k*k*cin]
        return flat.T

    @property
    def rank(self) -> int:
        return int(self.a.shape[0])


@dataclass
class Adapter:
    """A personal style: the base style, and low-rank factors per part and convolution."""

    name: str
    base: str
    rank: int
    alpha: float
    parts: dict[str, dict[str, LoraPair]]
    meta: dict[str, str] = field(default_factory=dict)  # losses, steps, exemplars, created

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def has_part(self, part: str) -> bool:
        return bool(self.parts.get(part))

    def tensors(self) -> dict[str, np.ndarray]:
        out = {}
        for part, convs in self.parts.items():
            for conv, pair in convs.items():
                out[f"{part}/{conv}/A"] = np.ascontiguousarray(pair.a, np.float32)
                out[f"{part}/{conv}/B"] = np.ascontiguousarray(pair.b, np.float32)
        return out

    def checksum(self) -> str:
        return tensor_checksum(self.tensors())

    def parameter_count(self) -> int:
        return sum(t.size for t in self.tensors().values())


def tensor_checksum(tensors: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = np.ascontiguousarray(tensors[key], np.float32)
        h.update(key.encode() + b"\0" + repr(t.shape).encode() + b"\0")
        h.update(t.tobytes())
    return h.hexdigest()


def merge(weights: DctNetWeights, adapter: Adapter, part: str) -> DctNetWeights:
    """The base weights with the adapter's `part` added in (new arrays; `weights` is kept).
    A part the adapter does not train is the base unchanged."""
    convs = adapter.parts.get(part) or {}
    kernels = dict(weights.kernels)
    for conv, pair in convs.items():
        k = kernels[conv]
        kh, kw, cin, cout = k.shape
        kernels[conv] = (k + pair.delta(adapter.scale).reshape(kh, kw, cin, cout)).astype(np.float32)
    return DctNetWeights(kernels, dict(weights.biases), weights.source_format)


def _check_pair(part: str, conv: str, a: np.ndarray, b: np.ndarray, rank: int) -> None:
    spec = SPECS.get(conv)
    if part not in PARTS or spec is None:
        raise AdapterError(f"unknown tensor {part}/{conv}: not a DCT-Net convolution")
    fan_in = spec.kernel * spec.kernel * spec.cin
    if a.shape != (rank, fan_in) or b.shape != (spec.cout, rank):
        raise AdapterError(f"{part}/{conv}: factors {a.shape} x {b.shape} do not fit a rank-{rank} "
                           f"adapter of a {spec.kernel}x{spec.kernel} {spec.cin}->{spec.cout} "
                           f"convolution")


def save_adapter(path: Path | str, adapter: Adapter) -> str:
    """Write the adapter as one safetensors file (through a temporary name, renamed when
    complete); returns the tensors' checksum written into its metadata."""
    from safetensors.numpy import save_file

    path = Path(path)
    tensors = adapter.tensors()
    for part, convs in adapter.parts.items():
        for conv, pair in convs.items():
            _check_pair(part, conv, pair.a, pair.b, adapter.rank)
    checksum = tensor_checksum(tensors)
    meta = {k: str(v) for k, v in adapter.meta.items()}
    meta.update({"format": FORMAT, "version": VERSION, "name": adapter.name,
                 "base": adapter.base, "rank": str(adapter.rank),
                 "alpha": repr(float(adapter.alpha)), "checksum": checksum})
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return checksum


def load_adapter(path: Path | str) -> Adapter:
    """Read and verify an adapter file; AdapterError (one line) when it is not one, is
    damaged, or its tensors do not match its checksum."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(path)
    if not path.is_file():
        raise AdapterError(f"{path}: no such personal style file")
    try:
        meta = _read_metadata(path)
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as exc:
        raise AdapterError(f"{path.name}: not a readable safetensors file ({str(exc).splitlines()[0]})"
                           f"; export it again from the machine that trained it") from None
    if meta.get("format") != FORMAT:
        raise AdapterError(f"{path.name}: not a Toonstream personal style (format "
                           f"{meta.get('format')!r}); train one with run_train.py")
    if meta.get("version") != VERSION:
        raise AdapterError(f"{path.name}: personal style format version {meta.get('version')!r}; "
                           f"this Toonstream reads version {VERSION}: upgrade Toonstream")
    try:
        rank, alpha = int(meta["rank"]), float(meta["alpha"])
        name, base, checksum = meta["name"], meta["base"], meta["checksum"]
    except (KeyError, ValueError):
        raise AdapterError(f"{path.name}: the personal style's metadata is incomplete") from None
    if tensor_checksum(tensors) != checksum:
        raise AdapterError(f"{path.name}: the personal style is damaged (its tensors do not match "
                           f"its checksum); export or train it again")
    parts: dict[str, dict[str, LoraPair]] = {}
    for key in tensors:
        pieces = key.split("/")
        if len(pieces) < 3 or pieces[-1] not in ("A", "B"):
            raise AdapterError(f"{path.name}: unexpected tensor {key!r}")
        part, conv = pieces[0], "/".join(pieces[1:-1])
        if pieces[-1] != "A":
            continue
        b = tensors.get(f"{part}/{conv}/B")
        if b is None:
            raise AdapterError(f"{path.name}: {part}/{conv} has no B factor")
        _check_pair(part, conv, tensors[key], b, rank)
        parts.setdefault(part, {})[conv] = LoraPair(tensors[key], b)
    extra = {k: v for k, v in meta.items()
             if k not in ("format", "version", "name", "base", "rank", "alpha", "checksum")}
    return Adapter(name, base, rank, alpha, parts, extra)


def _read_metadata(path: Path) -> dict[str, str]:
    """The safetensors header's `__metadata__` (8-byte little-endian length, then JSON)."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError("file too short")
        n = int.from_bytes(head, "little")
        if n <= 0 or n > 100_000_000:
            raise ValueError("bad header length")
        header = json.loads(f.read(n))
    return {str(k): str(v) for k, v in (header.get("__metadata__") or {}).items()}


def adapter_metadata(path: Path | str) -> dict[str, str]:
    """The file's metadata only (fast: for listing), without verifying the tensors."""
    try:
        return _read_metadata(Path(path))
    except (OSError, ValueError, json.JSONDecodeError):
        return {}
