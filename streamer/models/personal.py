"""Personal styles in the model store: a LoRA adapter (dctnet/lora.py) on an official style,
kept as one safetensors file, `personal/<name>.safetensors`, and treated as a style.

The file is installed (`import`), removed, exported and verified here; like every store
file it has an install record with its sha256, and every load checks both that record and
the adapter's own tensor checksum. The store (store.py) merges the adapter into its base
style's weights before any engine sees them, so the ONNX builds (fp32, fp16, int8) and the
PyTorch module receive plain DCT-Net weights: nothing after the store sees the difference.
The head model is the base's head weights with the adapter's "h" part, or its "bg" part
when it trained none (a bg-only adapter restyles heads the same way).
"""
from __future__ import annotations

import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from .atomic import atomic_write
from .builds import CachedBuild
from .catalog import PARTS, Catalog
from .conversions import int8_onnx
from .dctnet.lora import (Adapter, AdapterError, adapter_metadata, load_adapter, merge,
                          save_adapter)
from .dctnet.weights import DctNetWeights
from .download import sha256_file
from .errors import (BadModelFile, ModelNotInstalled, StoreError, StoreNotWritable,
                     UnknownModel)
from .inventory import Check
from .layout import PRECISIONS, onnx_name, store_command
from .paths import is_writable_dir
from .records import InstallRecords

if TYPE_CHECKING:  # store.py imports this module
    from .store import Store

PERSONAL_DIR = "personal"
SUFFIX = ".safetensors"
NAME_RULE = re.compile(r"[a-z0-9_-]{1,40}")
# Names the store's commands already give a meaning (`fetch all|face|mask|seg`).
RESERVED = ("all",)


def adapter_part(adapter: Adapter, part: str) -> str:
    """The adapter part merged into the base's `part`: the head model takes the adapter's
    own head part when it trained one, else its whole-frame part."""
    return "h" if part == "h" and adapter.has_part("h") else "bg"


def _has_head_part(path: Path) -> bool:
    """Whether the file holds "h/..." tensors, from its header alone (no tensor is read)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "np") as f:
            return any(k.startswith("h/") for k in f.keys())
    except (SafetensorError, OSError, ValueError):
        return False  # a damaged file is refused with its reason when it is loaded


def _check_adapter(adapter: Adapter, label: str, catalog: Catalog) -> None:
    """Refuse an adapter whose base is no official style, or whose factors hold NaN or
    infinity (the checksum proves the bytes are as written, not that they are usable)."""
    if adapter.base not in catalog.styles:
        raise AdapterError(f"{label} is built on {adapter.base!r}, which is not an official "
                           f"style ({', '.join(catalog.styles)})")
    if not all(np.isfinite(t).all() for t in adapter.tensors().values()):
        raise AdapterError(f"{label} holds NaN or infinite values: train it again")


def _reason(exc: Exception, path: Path) -> str:
    """An adapter error's words without the file name it starts with."""
    return str(exc).removeprefix(f"{path}: ").removeprefix(f"{path.name}: ")


@dataclass(frozen=True)
class PersonalRow:
    """One personal style as `list` shows it (its metadata, read without verifying)."""

    name: str
    local: str
    base: str
    rank: str
    steps: str
    exemplars: str
    size: int
    sha256: str
    origin: str
    state: str  # "" when the file matches its install record


class PersonalStyles:
    """The personal styles of the store at `root` (official names from `catalog`)."""

    def __init__(self, root: Path, catalog: Catalog, records: InstallRecords):
        self.root = root
        self.catalog = catalog
        self.records = records

    # --- names and places ----------------------------------------------------------------

    @property
    def folder(self) -> Path:
        return self.root / PERSONAL_DIR

    def local(self, name: str) -> str:
        return f"{PERSONAL_DIR}/{name}{SUFFIX}"

    def path(self, name: str) -> Path:
        return self.root / self.local(name)

    def names(self) -> tuple[str, ...]:
        """The installed personal styles, sorted (files with other names are ignored)."""
        if not self.folder.is_dir():
            return ()
        return tuple(sorted(p.stem for p in self.folder.glob(f"*{SUFFIX}")
                            if p.is_file() and self._valid(p.stem)))

    def has(self, name: str) -> bool:
        return self._valid(name) and self.path(name).is_file()

    def _valid(self, name: str) -> bool:
        return bool(NAME_RULE.fullmatch(name)) and name not in self._official()

    def _official(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.catalog.models) + RESERVED

    def check_name(self, name: str) -> None:
        """Refuse a name a personal style cannot have, in one line."""
        if not NAME_RULE.fullmatch(name):
            raise StoreError(f"{name!r} cannot name a personal style: use 1 to 40 lowercase "
                             f"letters, digits, '-' or '_' (--name NAME)")
        if name in self.catalog.styles:
            raise StoreError(f"{name!r} is an official style; give the personal style another "
                             f"name with --name NAME")
        if name in self._official():
            raise StoreError(f"{name!r} names a model of the store's own; give the personal "
                             f"style another name with --name NAME")

    def unknown(self, name: str) -> UnknownModel:
        """The one-line error for a name that is no personal style here."""
        mine = ", ".join(self.names()) or "none installed"
        if name in self.catalog.styles:
            return UnknownModel(f"{name!r} is an official style, not a personal one; personal "
                                f"styles: {mine}")
        return UnknownModel(f"no personal style {name!r} in the model store {self.root}; "
                            f"personal styles: {mine}")

    def base(self, name: str) -> str:
        """The official style a personal style is built on, from its metadata (not verified:
        `load` verifies)."""
        base = adapter_metadata(self.path(name)).get("base", "")
        if base not in self.catalog.styles:
            words = f"is built on {base!r}, not an official style" if base else "is damaged"
            raise AdapterError(f"{self.local(name)} in the model store {self.root} {words}; "
                               f"{self.repair_hint(name)}")
        return base

    def has_head_part(self, name: str) -> bool:
        return _has_head_part(self.path(name))

    def repair_hint(self, name: str) -> str:
        origin = str(self.records.get(self.local(name)).get("origin", ""))
        src = shlex.quote(origin[7:]) if origin.startswith("import:") else "FILE.safetensors"
        return (f"import it again with "
                f"`{store_command(self.root, f'import {src} --name {name} -y')}`")

    # --- loading -------------------------------------------------------------------------

    def load(self, name: str) -> tuple[Adapter, str]:
        """The installed adapter and its file's sha256, checked against its install record
        and its own tensor checksum, its base an official style."""
        if not self.has(name):
            raise self.unknown(name)
        path, local = self.path(name), self.local(name)
        sha = sha256_file(path)
        recorded = self.records.get(local).get("sha256")
        if recorded and recorded != sha:
            raise BadModelFile(f"{local} in the model store {self.root} changed since it was "
                               f"installed (sha256 {sha[:16]}..., recorded {recorded[:16]}...); "
                               f"{self.repair_hint(name)}")
        try:
            adapter = load_adapter(path)
        except AdapterError as exc:
            raise AdapterError(f"{local} in the model store {self.root}: {_reason(exc, path)}"
                               ) from None
        _check_adapter(adapter, local, self.catalog)
        return adapter, sha

    # --- install, remove, export ---------------------------------------------------------

    def _require_writable(self, action: str) -> None:
        if not is_writable_dir(self.root):
            raise StoreNotWritable(f"cannot {action}: the model store {self.root} is "
                                   f"read-only; choose another with --models DIR or "
                                   f"TOONSTREAM_MODELS")

    def install(self, src: Path | str, name: str | None = None,
                overwrite: bool = False) -> Path:
        """Install the adapter file `src` as the personal style `name` (default: the name in
        its metadata). The file is verified first; an installed style of that name is
        replaced only with `overwrite`. Installed under another name, the file's metadata
        takes the new name (its tensors and checksum are unchanged)."""
        src = Path(src).expanduser()
        if not src.is_file():
            raise StoreError(f"{src}: no such file")
        if src.suffix.lower() != SUFFIX:
            raise StoreError(f"{src.name}: a personal style is a {SUFFIX} file (a .pb or "
                             f".tflite is imported with --style STYLE)")
        if name is not None:
            self.check_name(name)  # before reading the file: the cheaper refusal first
        adapter = load_adapter(src)  # AdapterError: damaged or not a personal style
        _check_adapter(adapter, src.name, self.catalog)
        name = name if name is not None else adapter.name
        self.check_name(name)
        dest, local = self.path(name), self.local(name)
        if dest.is_file() and not overwrite and not dest.samefile(src):
            raise StoreError(f"a personal style {name!r} is already installed; add -y to "
                             f"replace it, or choose another --name")
        self._require_writable("import")
        if not (dest.is_file() and dest.samefile(src)):
            def write(p: Path) -> None:
                if adapter.name == name:
                    shutil.copyfile(src, p)
                else:
                    adapter.name = name
                    save_adapter(p, adapter)
                load_adapter(p)  # what was written is what was verified

            atomic_write(dest, write)
        self.records.add(local, f"import:{src.resolve()}", dest, custom=True)
        return dest

    def remove(self, name: str, onnx_dir: Path) -> list[Path]:
        """Remove a personal style, its install record and the models built from it;
        returns what was removed."""
        if not self.has(name):
            raise self.unknown(name)
        self._require_writable("remove")
        gone = [self.path(name)]
        for part in PARTS:
            for precision in PRECISIONS:
                built = onnx_dir / onnx_name(name, part, precision)
                gone += [p for p in (built, built.with_suffix(".json")) if p.is_file()]
        for p in gone:
            p.unlink(missing_ok=True)
        self.records.remove(self.local(name))
        return gone

    def export(self, name: str, dest: Path | str, overwrite: bool = False) -> Path:
        """Copy the personal style's file, verified, to `dest` (a file, or a folder that
        receives `<name>.safetensors`) through a temporary name renamed when complete."""
        self.load(name)  # never share a damaged file
        dest = Path(dest).expanduser()
        if dest.is_dir():
            dest = dest / f"{name}{SUFFIX}"
        if dest.suffix.lower() != SUFFIX:
            raise StoreError(f"{dest}: name the exported file *{SUFFIX}, as import expects")
        if dest.exists() and not overwrite:
            raise StoreError(f"{dest} exists; add -y to replace it")
        if not dest.parent.is_dir():
            raise StoreError(f"{dest.parent}: no such folder")
        src = self.path(name)
        atomic_write(dest, lambda p: shutil.copyfile(src, p))
        return dest

    # --- list, verify --------------------------------------------------------------------

    def rows(self) -> list[PersonalRow]:
        """Every installed personal style with what its metadata says (not verified)."""
        out = []
        for name in self.names():
            path, local = self.path(name), self.local(name)
            meta, mine = adapter_metadata(path), self.records.get(local)
            sha = sha256_file(path)
            state = ("CHANGED since it was installed"
                     if mine.get("sha256") and mine["sha256"] != sha else "")
            out.append(PersonalRow(name, local, meta.get("base", "?"), meta.get("rank", "?"),
                                   meta.get("steps", "?"), meta.get("exemplars", "?"),
                                   path.stat().st_size, sha,
                                   str(mine.get("origin", "")) or "unknown (no install record)",
                                   state))
        return out

    def verify(self, base_installed: Callable[[str], bool]) -> list[Check]:
        """Check every personal style: install record, tensor checksum, base style."""
        checks = []
        for name in self.names():
            try:
                adapter, _ = self.load(name)
            except (AdapterError, BadModelFile) as exc:
                checks.append(Check(self.local(name), False, str(exc)))
                continue
            note = "" if base_installed(adapter.base) else f" (not installed: fetch {adapter.base})"
            parts = "+".join(p for p in PARTS if adapter.has_part(p))
            checks.append(Check(self.local(name), True,
                                f"personal style on {adapter.base}{note}, rank {adapter.rank}, "
                                f"parts {parts or 'none'}, checksum ok"))
        return checks


class PersonalStyleMethods:
    """The Store's methods for styles, official and personal (Store derives from this, so
    its callers hold one object; the class body stays in store.py's size)."""

    # what Store provides
    root: Path
    catalog: Catalog
    records: InstallRecords
    onnx_dir: Path

    @property
    def personal(self) -> PersonalStyles:
        """The personal styles (LoRA adapters) installed in this store."""
        return PersonalStyles(self.root, self.catalog, self.records)

    @property
    def styles(self) -> tuple[str, ...]:
        """Every style a run may name: the catalog's, then the installed personal ones."""
        return tuple(self.catalog.styles) + self.personal.names()

    def check_style(self, style: str) -> None:
        """UnknownModel, listing every style, for a name that is no style here."""
        if style not in self.catalog.styles and not self.personal.has(style):
            raise UnknownModel(f"unknown style {style!r}; styles: {', '.join(self.styles)}")

    def base_style(self, style: str) -> str:
        """The official style whose weights `style` runs on: itself, or a personal style's
        base (from its metadata)."""
        if style in self.catalog.styles:
            return style
        self.check_style(style)
        return self.personal.base(style)

    def install_personal(self, path: Path | str, name: str | None = None,
                         overwrite: bool = False) -> Path:
        """Install a personal style's adapter file (see PersonalStyles.install)."""
        return self.personal.install(path, name, overwrite)

    def remove_personal(self, name: str) -> list[Path]:
        """Remove a personal style and the models built from it; returns what went."""
        return self.personal.remove(name, self.onnx_dir)

    def export_personal(self, name: str, dest: Path | str, overwrite: bool = False) -> Path:
        """Copy a personal style's single file, verified, to `dest` to share it."""
        return self.personal.export(name, dest, overwrite)


def personal_source(store: Store, name: str, part: str) -> Path | None:
    """Store.source_for for a personal style: its adapter file while its base is installed
    (else None: not runnable here); for the head part only when the head model differs
    from the bg model (the base has head weights, or the adapter a head part), so that,
    as for an official style, None means the bg engine serves heads."""
    store.check_style(name)
    base = store.personal.base(name)
    if store.source_for(base, "bg") is None:
        return None
    if part == "h" and store.source_for(base, "h") is None and \
            not store.personal.has_head_part(name):
        return None
    return store.personal.path(name)


def personal_weights(store: Store, name: str, part: str) -> DctNetWeights:
    """Store.weights for a personal style: its base's weights for `part` (with the base's
    own checks and head fallback) with the adapter merged in."""
    store.check_style(name)  # an unknown name lists every style
    adapter, _ = store.personal.load(name)
    return merge(store.weights(adapter.base, part), adapter, adapter_part(adapter, part))


def personal_onnx(store: Store, name: str, part: str, precision: str) -> Path:
    """Store.onnx_model_path for a personal style: the merged weights built and cached at
    `precision` like an official style's (int8 quantized from the fp32 model, keeping the
    base's float layers); rebuilt when the adapter file, its tensors, the base's weights or
    the converter change."""
    from streamer.models.dctnet.onnx_graph import CONVERTER_VERSION, build_onnx

    store.check_style(name)  # an unknown name lists every style
    adapter, sha = store.personal.load(name)
    if part == "h" and personal_source(store, name, "h") is None:
        return personal_onnx(store, name, "bg", precision)  # the same weights
    base_src = store.source_for(adapter.base, part) or store.source_for(adapter.base, "bg")
    if base_src is None:
        raise ModelNotInstalled(f"personal style {name!r} is built on {adapter.base!r}, which "
                                f"is not installed in the model store {store.root}: run "
                                f"`{store_command(store.root, 'fetch ' + adapter.base)}`")
    path = store.personal.path(name)
    fp = "fp32" if precision == "int8" else precision
    cache = CachedBuild(store.onnx_dir / onnx_name(name, part, fp),
                        {"source_sha256": sha, "adapter_checksum": adapter.checksum(),
                         "base_sha256": store.records.check(base_src),
                         "converter_version": CONVERTER_VERSION, "precision": fp})
    built = cache.current()
    if built is None:
        merged = personal_weights(store, name, part)
        record = {"style": name, "part": part, "precision": fp, "base": adapter.base,
                  "adapter_part": adapter_part(adapter, part),
                  "source_file": str(path.resolve()), "source_sha256": sha,
                  "source_format": f"{merged.source_format}+lora"}
        built = cache.save(build_onnx(merged, fp), record, source=path.name)
    if precision != "int8":
        return built
    say = store.notify or (lambda line: print(line, file=sys.stderr, flush=True))
    return int8_onnx(store.onnx_dir, name, part, path, built, store.calibration_source,
                     store.calibration_frames, say, float_style=adapter.base)
