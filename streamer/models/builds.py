"""Cached builds: an ONNX model made once from files in the store, kept with a .json record
beside it (what it was made from, its own sha256) and reused only while both still hold.

Every model the store builds (DCT-Net at fp32/fp16, its int8 quantization, the segmentation
model; see conversions.py) goes through `CachedBuild`, so each is rebuilt the same way when
its source or converter changes and when its own bytes no longer match the record.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from .atomic import atomic_write
from .download import sha256_file
from .errors import StoreError

log = logging.getLogger("streamer.models")


def _warn(message: str) -> None:
    """A warning the user must see: through the store's logger when an app configured one
    (the models CLI does), else as a `warning: ...` line on stderr."""
    if log.hasHandlers():
        log.warning("%s", message)
    else:
        print(f"warning: {message}", file=sys.stderr, flush=True)


def read_record(out: Path) -> dict[str, Any]:
    """The build record beside the model `out`; empty when it is missing or unreadable."""
    try:
        meta = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def built_models(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The models built in `folder`, each with its build record."""
    if not folder.is_dir():
        return []
    return [(path, read_record(path)) for path in sorted(folder.glob("*.onnx"))]


def build_state(path: Path, meta: Mapping[str, Any], rebuild_cmd: str) -> tuple[bool, str]:
    """(intact, words) for a built model: damaged when its bytes differ from the checksum
    recorded when it was built (`rebuild_cmd` rebuilds it now); stale when its source
    changed since."""
    recorded = meta.get("onnx_sha256")
    if recorded and sha256_file(path) != recorded:
        return False, (f"DAMAGED (its sha256 differs from the one recorded when it was "
                       f"built); rebuilt on next use, or now with `{rebuild_cmd}`")
    src = Path(meta.get("source_file", ""))
    if not recorded:
        return True, "no checksum recorded, rebuilt on next use"
    if src.is_file() and sha256_file(src) == meta.get("source_sha256"):
        return True, "current"
    return True, "stale, rebuilt on next use"


class CachedBuild:
    """The model `out`, made from what `key` says (source checksums, converter versions,
    settings): `current()` when its record holds `key` and its sha256, else build it and
    `save` it."""

    def __init__(self, out: Path, key: Mapping[str, Any]):
        self.out = out
        self.key = dict(key)
        self.damaged = False  # the cached copy's bytes differed from its record

    def current(self) -> Path | None:
        """The cached model when it was built from `key` and is intact, else None."""
        meta = read_record(self.out)
        if not (meta and self.out.is_file()
                and all(meta.get(k) == v for k, v in self.key.items())):
            return None
        # Hashing costs tens of milliseconds; loading a damaged model costs a run of noise,
        # so this happens on every use.
        if meta.get("onnx_sha256") == sha256_file(self.out):
            return self.out
        self.damaged = bool(meta.get("onnx_sha256"))
        return None

    def save(self, model: Any, record: Mapping[str, Any], source: str) -> Path:
        """Write `model` (an onnx.ModelProto) and then its record: `record`, the key, when
        and the model's sha256. `source` names what it was built from, for the log."""
        import onnx

        meta = {**record, **self.key, "built": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

        def write_model(p: Path) -> None:
            onnx.save_model(model, str(p))
            # Hash what was written, before the rename: another process may replace `out`.
            meta["onnx_sha256"] = sha256_file(p)

        try:
            atomic_write(self.out, write_model)
            # The record last: a model without a matching record is simply rebuilt.
            atomic_write(self.out.with_suffix(".json"), lambda p: p.write_text(
                json.dumps(meta, indent=2) + "\n", encoding="utf-8"))
        except OSError as exc:
            raise StoreError(f"cannot write the ONNX cache in {self.out.parent}: "
                             f"{exc.strerror}; set TOONSTREAM_CACHE to a writable folder") from None
        if self.damaged:
            _warn(f"the built model {self.out} was damaged (its sha256 differed from the one "
                  f"recorded when it was built); rebuilt it from {source}")
        else:
            log.info("built %s from %s", self.out, source)
        return self.out
