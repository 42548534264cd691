"""The model store: official weight files under one root, and the ONNX models built from them.

Layout under the root (the same as the shared test store):

    dctnet/cartoon_<style>_bg.pb     whole-frame model        (fetch STYLE / import)
    dctnet/cartoon_<style>_h.pb      face-crop model, optional: the style's bg model serves
    dctnet/tflite/<style>_<part>.tflite   TFLite conversions (import)
    dctnet/alpha.jpg                 head mask                (fetch mask)
    face/yunet.onnx                  face detector            (fetch face)
    seg/selfie_segmentation*.tflite  person segmentation, general and landscape (fetch seg)
    onnx/<style>_<part>.onnx + .json built models (and seg_<variant>.onnx), or under $TOONSTREAM_CACHE/onnx (else the
                                     per-user cache) when the root is read-only
    manifest.json                    where each fetched/imported file came from
"""
from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .catalog import PARTS, Catalog, FileRecord, load_catalog
from .download import DownloadOptions, check_file, check_mirror, download, sha256_file
from .errors import BadModelFile, ModelNotInstalled, StoreError, StoreNotWritable, UnknownModel
from .paths import fallback_cache_dir, is_writable_dir, resolve_store_root

log = logging.getLogger("streamer.models")

PRECISIONS = ("fp32", "fp16", "int8")
MANIFEST = "manifest.json"
TFLITE_DIR = "dctnet/tflite"
SEG_DIR = "seg"
SEG_VARIANTS = ("general", "landscape")  # catalog parts of the seg model
# Public TFLite conversions name the face model "head" (e.g. sketch_head288.tflite).
_TFLITE_ALIASES = {"bg": ("bg",), "h": ("h", "head")}
_ASSET_NAMES = {"mask": "mask", "alpha.jpg": "mask", "face": "face", "yunet.onnx": "face"}


@dataclass(frozen=True)
class Entry:
    """One row of `list`: a catalog file (installed or not) or an extra model file found."""

    label: str                 # "anime bg", "face", "tflite"
    local: str                 # path under the root
    path: Path
    installed: bool
    fmt: str                   # pb, tflite, onnx, jpg
    size: int | None = None
    sha256: str | None = None
    catalog: str = ""          # how it compares with the catalog
    ok: bool = True            # False when it contradicts the catalog or its install record
    origin: str = ""           # URL or imported file, from the manifest


@dataclass(frozen=True)
class Check:
    """One result of `verify`."""

    local: str
    ok: bool
    message: str


@dataclass(frozen=True)
class ImportResult:
    path: Path
    source_format: str
    onnx: Path
    notes: tuple[str, ...]


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write via a temporary file and rename, so readers (other processes building or using
    the same cache) never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _warn(message: str) -> None:
    """A warning the user must see: through the store's logger when an app configured one
    (the models CLI does), else as a `warning: ...` line on stderr."""
    if log.hasHandlers():
        log.warning("%s", message)
    else:
        print(f"warning: {message}", file=sys.stderr, flush=True)


def _fmt_of(path: Path) -> str:
    return path.suffix.lstrip(".").lower()


def _check_structure(path: Path, fmt: str | None = None) -> str | None:
    """Why `path` is not a usable file of its kind (`fmt`, by default its suffix), or None.
    Model files go through the same reader the engine uses, so verify accepts exactly what
    will load."""
    fmt = fmt or _fmt_of(path)
    if fmt == "tflite" and path.parent.name == SEG_DIR:
        # Segmentation models live under seg/ (see the layout above); they are not DCT-Net.
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


class Store:
    """A model store rooted at `root`, judged against `catalog`."""

    def __init__(self, root: Path | str, catalog: Catalog | None = None):
        self.root = Path(root).expanduser()
        self.catalog = catalog if catalog is not None else load_catalog()
        # int8 calibration: None for the built-in synthetic set, else a folder, image or
        # video of the user's own (TOONSTREAM_CALIBRATION or --calibration)
        self.calibration: str | None = os.environ.get("TOONSTREAM_CALIBRATION") or None
        self.notify: Callable[[str], None] | None = None  # progress lines (else stderr)

    @classmethod
    def open(cls, cli_value: str | os.PathLike[str] | None = None,
             catalog: Catalog | None = None) -> Store:
        """The store named by `--models` / $TOONSTREAM_MODELS / the per-user default."""
        return cls(resolve_store_root(cli_value), catalog)

    # --- locations ---------------------------------------------------------------------

    @property
    def writable(self) -> bool:
        return is_writable_dir(self.root)

    @property
    def onnx_dir(self) -> Path:
        own = self.root / "onnx"
        if is_writable_dir(own if own.exists() else self.root):
            return own
        return fallback_cache_dir()

    def _cmd(self, args: str) -> str:
        return f"python -m streamer.models {args} --models {shlex.quote(str(self.root))}"

    def file_path(self, name: str) -> Path:
        """An installed non-style file: "mask"/"alpha.jpg" or "face"/"yunet.onnx"."""
        kind = _ASSET_NAMES.get(name)
        if kind is None:
            raise UnknownModel(f"unknown store file {name!r}; known: {', '.join(_ASSET_NAMES)}")
        rec = self.catalog.asset(kind).files[0]
        path = self.root / rec.local
        if not path.is_file():
            raise ModelNotInstalled(f"{rec.local} is not in the model store {self.root}: "
                                    f"run `{self._cmd('fetch ' + rec.model)}`")
        self._check_installed(path)
        # No checksum is published for either file and a hand-placed copy has no record, so
        # read it as its consumer will (a few ms): a cut or damaged detector must be one
        # line naming the fix, not OpenCV's parser error.
        problem = _check_structure(path)
        if problem:
            raise BadModelFile(f"{rec.local} in the model store {self.root} is unusable "
                               f"({problem}); repair it with {self.repair_hint(rec.local)}")
        return path

    # --- integrity -----------------------------------------------------------------------

    def _local(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def repair_hint(self, local: str) -> str:
        """The command(s) that put a good copy of an installed file back."""
        rec = self.catalog.by_local(local)
        model = rec.model if rec is not None else None
        if model is None and local.startswith(TFLITE_DIR + "/"):
            model = Path(local).stem.split("_")[0]
        origin = str(self._manifest()["files"].get(local, {}).get("origin", ""))
        cmds = []
        if model is not None:
            cmds.append(f"`{self._cmd('fetch ' + model)}`")
        if origin.startswith("import:"):
            part = "h" if rec is not None and rec.part == "h" else "bg"
            style = model or "STYLE"
            extra = "" if part == "bg" else " --part h"
            cmds.append(f"`{self._cmd(f'import {shlex.quote(origin[7:])} --style {style}{extra}')}`")
        return " or ".join(cmds) if cmds else f"`{self._cmd('import FILE --style STYLE')}`"

    def _check_installed(self, path: Path, sha: str | None = None) -> str:
        """Refuse an installed file whose bytes differ from those recorded when it was
        fetched or imported (a damaged disk, a broken copy, an edit by hand). Files without
        a record (put in place by hand, a shared read-only store) pass; their structure and
        weight range are checked when they are built. Returns the file's sha256."""
        sha = sha or sha256_file(path)
        try:
            local = self._local(path)
        except ValueError:
            return sha
        recorded = self._manifest()["files"].get(local, {}).get("sha256")
        if recorded and recorded != sha:
            raise BadModelFile(
                f"{local} in the model store {self.root} changed since it was installed "
                f"(sha256 {sha[:16]}..., recorded {recorded[:16]}...): it is damaged or was "
                f"replaced by hand; repair it with {self.repair_hint(local)}")
        return sha

    def _damage(self, path: Path) -> str | None:
        """Why an installed file is damaged (its install record or its own checks), or None."""
        try:
            self._check_installed(path)
        except BadModelFile:
            return "changed since it was installed"
        return _check_structure(path)

    def onnx_state(self, path: Path, meta: dict[str, Any]) -> tuple[bool, str]:
        """(intact, words) for a built ONNX model: damaged when its bytes differ from the
        checksum recorded when it was built; stale when its weights changed since."""
        recorded = meta.get("onnx_sha256")
        if recorded and sha256_file(path) != recorded:
            cmd = self._cmd(f"path {meta.get('style', 'STYLE')} --part {meta.get('part', 'bg')} "
                            f"--precision {meta.get('precision', 'fp32')}")
            return False, (f"DAMAGED (its sha256 differs from the one recorded when it was "
                           f"built); rebuilt on next use, or now with `{cmd}`")
        src = Path(meta.get("source_file", ""))
        if not recorded:
            return True, "no checksum recorded, rebuilt on next use"
        if src.is_file() and sha256_file(src) == meta.get("source_sha256"):
            return True, "current"
        return True, "stale, rebuilt on next use"

    def _tflite_for(self, style: str, part: str) -> Path | None:
        folder = self.root / TFLITE_DIR
        exact = folder / f"{style}_{part}.tflite"
        if exact.is_file():
            return exact
        if not folder.is_dir():
            return None
        for alias in _TFLITE_ALIASES[part]:
            # Conversions carry their input size in the name (anime_bg720.tflite).
            found = sorted(p for p in folder.glob(f"{style}_{alias}*.tflite")
                           if p.stem[len(style) + 1 + len(alias):].isdigit() or
                           p.stem == f"{style}_{alias}")
            if found:
                return found[0]
        return None

    def source_for(self, style: str, part: str = "bg") -> Path | None:
        """The installed weight file for a style part: the official .pb first (it is the
        reference), then a .tflite conversion. No fallback from h to bg here."""
        rec = self._style_file(style, part)
        pb = self.root / rec.local
        return pb if pb.is_file() else self._tflite_for(style, part)

    def _style_file(self, style: str, part: str) -> FileRecord:
        model = self.catalog.style(style)
        if part not in PARTS:
            raise UnknownModel(f"unknown part {part!r}; parts: {', '.join(PARTS)}")
        rec = model.file(part)
        assert rec is not None  # parse_catalog guarantees both parts
        return rec

    # --- ONNX cache --------------------------------------------------------------------

    def onnx_model_path(self, style: str, part: str = "bg", precision: str = "fp32") -> Path:
        """The ONNX model for a style part, built from the installed weights on first use
        and rebuilt whenever the weights or the converter change. The head part falls back
        to the style's bg model (the official files hold the same weights for most styles)."""
        if precision not in PRECISIONS:
            raise UnknownModel(f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")
        src = self.source_for(style, part)
        if src is None:
            if part == "h":
                return self.onnx_model_path(style, "bg", precision)
            raise ModelNotInstalled(
                f"style {style!r} is not installed in the model store {self.root}: run "
                f"`{self._cmd('fetch ' + style)}`, or "
                f"`{self._cmd('import FILE --style ' + style)}` "
                f"for a file you downloaded yourself")
        if precision == "int8":
            return self._build_int8(style, part, src)
        return self._build(style, part, precision, src)

    def weights(self, style: str, part: str = "bg"):
        """The style part's generator weights (a DctNetWeights) for engines that build the
        network themselves (PyTorch), read with the same checks `onnx_model_path` makes on
        every load (install record, structure, weight range); the head part falls back to
        bg the same way."""
        from streamer.models.dctnet.weights import ModelFormatError, load_weights

        src = self.source_for(style, part)
        if src is None and part == "h":
            return self.weights(style, "bg")
        if src is None:
            self.onnx_model_path(style, part)  # raises ModelNotInstalled with the commands
        self._check_installed(src)
        try:
            return load_weights(src)
        except ModelFormatError as exc:
            local = self._local(src) if src.is_relative_to(self.root) else str(src)
            reason = str(exc).removeprefix(f"{src.name}: ")
            raise BadModelFile(f"{local} in the model store {self.root} is unusable ({reason}); "
                               f"repair it with {self.repair_hint(local)}") from None

    def _onnx_name(self, style: str, part: str, precision: str) -> str:
        suffix = "" if precision == "fp32" else f"_{precision}"
        return f"{style}_{part}{suffix}.onnx"

    def _build(self, style: str, part: str, precision: str, src: Path) -> Path:
        from streamer.models.dctnet.onnx_graph import CONVERTER_VERSION, build_onnx
        from streamer.models.dctnet.weights import ModelFormatError, load_weights

        out = self.onnx_dir / self._onnx_name(style, part, precision)
        meta_path = out.with_suffix(".json")
        # Hashing both files costs tens of milliseconds; loading a damaged one costs a run
        # of noise, so this happens on every load.
        src_sha = self._check_installed(src)
        damaged = False
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if (out.is_file() and meta.get("source_sha256") == src_sha
                    and meta.get("converter_version") == CONVERTER_VERSION
                    and meta.get("precision") == precision):
                if meta.get("onnx_sha256") == sha256_file(out):
                    return out
                damaged = bool(meta.get("onnx_sha256"))
        except (OSError, ValueError, AttributeError):
            pass  # no usable metadata: build
        try:
            weights = load_weights(src)
        except ModelFormatError as exc:
            local = self._local(src) if src.is_relative_to(self.root) else str(src)
            reason = str(exc).removeprefix(f"{src.name}: ")
            raise BadModelFile(f"{local} in the model store {self.root} is unusable ({reason}); "
                               f"repair it with {self.repair_hint(local)}") from None
        import onnx

        model = build_onnx(weights, precision)
        meta = {"style": style, "part": part, "precision": precision,
                "source_file": str(src.resolve()), "source_sha256": src_sha,
                "source_format": weights.source_format, "converter_version": CONVERTER_VERSION,
                "built": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

        def save(p: Path) -> None:
            onnx.save_model(model, str(p))
            # Hash what was written, before the rename: another process may replace `out`.
            meta["onnx_sha256"] = sha256_file(p)

        try:
            _atomic_write(out, save)
            # Metadata last: a model without matching metadata is simply rebuilt.
            _atomic_write(meta_path, lambda p: p.write_text(json.dumps(meta, indent=2) + "\n",
                                                            encoding="utf-8"))
        except OSError as exc:
            raise StoreError(f"cannot write the ONNX cache in {out.parent}: {exc.strerror}; "
                             f"set TOONSTREAM_CACHE to a writable folder") from None
        if damaged:
            _warn(f"the built model {out} was damaged (its sha256 differed from the one "
                  f"recorded when it was built); rebuilt it from {src.name}")
        else:
            log.info("built %s from %s", out, src.name)
        return out

    # --- person segmentation --------------------------------------------------------------

    def seg_model_path(self, variant: str = "general") -> Path:
        """The ONNX graph of the selfie segmentation model `variant` (general 256x256 or
        landscape 144x256), built from the installed .tflite on first use and rebuilt when
        the file or the converter changes."""
        if variant not in SEG_VARIANTS:
            raise UnknownModel(f"unknown segmentation model {variant!r}; choose "
                               f"{' or '.join(SEG_VARIANTS)}")
        rec = self.catalog.asset("seg").file(variant)
        if rec is None:
            raise UnknownModel(f"the catalog's seg model has no {variant!r} file")
        src = self.root / rec.local
        if not src.is_file():
            raise ModelNotInstalled(f"{rec.local} is not in the model store {self.root}: "
                                    f"run `{self._cmd('fetch seg')}`")
        from streamer.models.selfie.graph import CONVERTER_VERSION, SegModelError, load_seg_model

        out = self.onnx_dir / f"seg_{variant}.onnx"
        meta_path = out.with_suffix(".json")
        src_sha = sha256_file(src)
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if (out.is_file() and meta.get("source_sha256") == src_sha
                    and meta.get("converter_version") == CONVERTER_VERSION):
                return out
        except (OSError, ValueError):
            pass  # no usable metadata: build
        try:
            model, info = load_seg_model(src)
        except SegModelError as exc:
            raise BadModelFile(f"{exc} (in {src.parent}); replace it with "
                               f"`{self._cmd('fetch seg')}`") from None
        import onnx

        meta = {"model": "seg", "part": variant, "precision": "fp32",
                "input": [info.height, info.width],
                "source_file": str(src.resolve()), "source_sha256": src_sha,
                "source_format": "tflite", "converter_version": CONVERTER_VERSION,
                "built": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        try:
            _atomic_write(out, lambda p: onnx.save_model(model, str(p)))
            _atomic_write(meta_path, lambda p: p.write_text(json.dumps(meta, indent=2) + "\n",
                                                            encoding="utf-8"))
        except OSError as exc:
            raise StoreError(f"cannot write the ONNX cache in {out.parent}: {exc.strerror}; "
                             f"set TOONSTREAM_CACHE to a writable folder") from None
        log.info("built %s from %s", out, src.name)
        return out

    def _build_int8(self, style: str, part: str, src: Path) -> Path:
        """The int8 (QDQ) model beside the fp32 one: quantized once from it with NNCF on
        the store's calibration frames, kept with metadata and the model's own sha256, and
        re-verified against that checksum on every use (a damaged file is rebuilt)."""
        from streamer.models.dctnet.int8 import (QUANTIZER_VERSION, float_layers, quantize_int8,
                                                 weight_levels)

        fp32 = self._build(style, part, "fp32", src)
        out = self.onnx_dir / self._onnx_name(style, part, "int8")
        meta_path = out.with_suffix(".json")
        fp32_sha = sha256_file(fp32)
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if (out.is_file() and meta.get("fp32_sha256") == fp32_sha
                    and meta.get("quantizer_version") == QUANTIZER_VERSION
                    and meta.get("calibration_source") == self.calibration_source
                    and meta.get("float_layers") == list(float_layers(style))
                    and meta.get("weight_levels") == weight_levels()
                    and meta.get("onnx_sha256") == sha256_file(out)):
                return out
            if out.is_file() and meta.get("onnx_sha256") not in (None, sha256_file(out)):
                log.warning("%s does not match its recorded sha256: rebuilding it", out.name)
        except (OSError, ValueError):
            pass  # no usable metadata: build
        frames = self.calibration_frames()
        say = self.notify or (lambda line: print(line, file=sys.stderr, flush=True))
        say(f"int8: quantizing {style} {part} once (NNCF, {len(frames)} calibration frames "
            f"from {self.calibration_source}); cached in {out.parent}")
        t0 = time.perf_counter()
        model, info = quantize_int8(fp32, frames, float_layers(style), weight_levels())
        import onnx

        try:
            _atomic_write(out, lambda p: onnx.save_model(model, str(p)))
            meta = {"style": style, "part": part, "precision": "int8",
                    "source_file": str(src.resolve()), "source_sha256": sha256_file(src),
                    "fp32_model": fp32.name, "fp32_sha256": fp32_sha,
                    "calibration_source": self.calibration_source,
                    **info, "onnx_sha256": sha256_file(out),
                    "build_seconds": round(time.perf_counter() - t0, 1),
                    "built": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            _atomic_write(meta_path, lambda p: p.write_text(json.dumps(meta, indent=2) + "\n",
                                                            encoding="utf-8"))
        except OSError as exc:
            raise StoreError(f"cannot write the ONNX cache in {out.parent}: {exc.strerror}; "
                             f"set TOONSTREAM_CACHE to a writable folder") from None
        say(f"int8: {out.name} built in {time.perf_counter() - t0:.0f} s")
        return out

    def calibration_frames(self) -> list:
        """The frames int8 models are calibrated on: the built-in synthetic set, plus the
        user's own (`calibration` set to a folder, image or video). The synthetic scenes stay
        in: a clip alone covers one lighting and palette, and the rounding fitted to it
        generalised worse (measured: anime on luciano 1.18 calibrated on the tears clip
        alone, 0.93 with the synthetic set)."""
        from .calibration import frames_from, synthetic_frames

        frames = synthetic_frames()
        if self.calibration is not None:
            frames += frames_from(self.calibration)
        return frames

    @property
    def calibration_source(self) -> str:
        if self.calibration is None:
            return "synthetic"
        return "synthetic + " + str(Path(self.calibration).expanduser().resolve())

    # --- manifest ------------------------------------------------------------------------

    def _manifest(self) -> dict[str, Any]:
        try:
            data = json.loads((self.root / MANIFEST).read_text(encoding="utf-8"))
            return data if isinstance(data.get("files"), dict) else {"files": {}}
        except (OSError, ValueError, AttributeError):
            return {"files": {}}

    def _record(self, local: str, origin: str, path: Path, custom: bool = False) -> None:
        data = self._manifest()
        data["files"][local] = {"origin": origin, "size": path.stat().st_size,
                                "sha256": sha256_file(path), "custom": custom,
                                "installed": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        _atomic_write(self.root / MANIFEST, lambda p: p.write_text(
            json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8"))

    def _require_writable(self, action: str) -> None:
        if not self.writable:
            raise StoreNotWritable(f"cannot {action}: the model store {self.root} is read-only; "
                                   f"choose another with --models DIR or TOONSTREAM_MODELS")

    # --- import --------------------------------------------------------------------------

    def import_file(self, src: Path | str, style: str, part: str = "bg",
                    precision: str = "fp32", force: bool = False) -> ImportResult:
        """Add a hand-downloaded official .pb or .tflite conversion, then build its ONNX.

        Nothing installed changes unless the new file passes every check; an installed file
        that is intact is replaced by different weights only with `force` (or when the new
        file is the published one), so a damaged download cannot displace a good model."""
        from streamer.models.dctnet.weights import ModelFormatError, load_weights

        src = Path(src).expanduser()
        rec = self._style_file(style, part)
        if not src.is_file():
            raise StoreError(f"{src}: no such file")
        try:
            fmt = load_weights(src).source_format
        except ModelFormatError as exc:
            kept = ""
            if (self.root / rec.local).is_file():
                kept = f"; the installed {rec.local} is left as it was"
            raise BadModelFile(f"{exc}{kept}") from None
        self._require_writable("import")
        notes: list[str] = []
        custom = False
        if fmt == "pb":
            local = rec.local
            problem = check_file(src, rec.size, rec.sha256)
            if problem:
                # Re-exported or fine-tuned weights of the same network are legitimate; the
                # structure check above already proved it is DCT-Net.
                custom = True
                notes.append(f"{src.name} is not the published {rec.remote_path} of "
                             f"{style} ({problem}); imported as your own weights")
            elif rec.sha256 is None:
                notes.append(f"no published sha256 for {style} {part}: "
                             f"checked size and structure only")
        else:
            local = f"{TFLITE_DIR}/{style}_{part}.tflite"
            pb = self.root / rec.local
            if pb.is_file():
                notes.append(f"{rec.local} is also installed and takes precedence over the .tflite")
        dest = self.root / local
        if dest.is_file() and not force and not dest.samefile(src):
            src_sha = sha256_file(src)
            if (src_sha != sha256_file(dest) and src_sha != rec.sha256
                    and self._damage(dest) is None):
                raise StoreError(
                    f"{local} is already installed and intact, and {src.name} holds other "
                    f"weights (sha256 {src_sha[:16]}...); if you mean to replace it, add "
                    f"--force")
        if not (dest.exists() and dest.samefile(src)):
            _atomic_write(dest, lambda p: shutil.copyfile(src, p))
        self._record(local, f"import:{src.resolve()}", dest, custom)
        onnx_path = self.onnx_model_path(style, part, precision)
        return ImportResult(path=dest, source_format=fmt, onnx=onnx_path, notes=tuple(notes))

    # --- fetch ---------------------------------------------------------------------------

    def targets(self, target: str) -> list[FileRecord]:
        """The files that `fetch TARGET` downloads: one style, face, mask, seg or all."""
        if target == "all":
            return list(self.catalog.files)
        names = [m.name for m in self.catalog.models]
        if target not in names:
            raise UnknownModel(f"unknown model {target!r}; choose a style "
                               f"({', '.join(self.catalog.styles)}), face, mask, seg or all")
        return list(self.catalog.model(target).files)

    def fetch(self, target: str, *, mirror: str | None = None,
              options: DownloadOptions = DownloadOptions(), build: bool = True,
              precision: str = "fp32") -> list[Path]:
        """Download what `target` names (skipping files already installed and correct),
        verify each, then build the ONNX of every style fetched."""
        records = self.targets(target)
        if mirror:
            check_mirror(mirror, "mirror")
        else:
            mirror = os.environ.get("TOONSTREAM_MODEL_MIRROR") or None
            if mirror:
                check_mirror(mirror, "TOONSTREAM_MODEL_MIRROR")
        self._require_writable("fetch")
        done: list[Path] = []
        for rec in records:
            dest = self.root / rec.local
            if dest.is_file():
                problem = check_file(dest, rec.size, rec.sha256) or self._damage(dest)
                if problem is None:
                    log.info("%s: already installed", rec.local)
                    done.append(dest)
                    continue
                log.info("%s: installed copy fails a check (%s); downloading it again",
                         rec.local, problem)
            url = rec.url_for(mirror)
            fmt = _fmt_of(dest)  # the .part file's own suffix says nothing
            download(url, dest, size=rec.size, sha256=rec.sha256, options=options,
                     label=rec.name, validate=lambda p: _check_structure(p, fmt))
            if rec.sha256 is None:
                what = "size and structure" if rec.size is not None else "structure"
                log.info("%s: no published sha256, checked %s only (sha256 %s)",
                         rec.name, what, sha256_file(dest))
            self._record(rec.local, url, dest)
            done.append(dest)
        if build:
            for style in dict.fromkeys(r.model for r in records if r.part in PARTS):
                for part in PARTS:
                    self.onnx_model_path(style, part, precision)
            for rec in records:
                if rec.part in SEG_VARIANTS and rec.local.startswith(SEG_DIR + "/"):
                    self.seg_model_path(rec.part)
        return done

    # --- list / verify -------------------------------------------------------------------

    def _judge(self, rec: FileRecord | None, path: Path, size: int, sha: str,
               manifest: dict[str, Any]) -> tuple[str, bool]:
        """How an installed file compares with the catalog and its install record."""
        mine = manifest.get("files", {}).get(path.relative_to(self.root).as_posix(), {})
        if mine.get("sha256") and mine["sha256"] != sha:
            return "CHANGED since it was installed", False
        if rec is None:
            return "not in the catalog", True
        if rec.size is not None and size != rec.size:
            return f"SIZE DIFFERS from the published {rec.size:,} B", False
        if rec.sha256 is not None:
            if sha == rec.sha256:
                return "matches the published sha256", True
            if mine.get("custom"):
                return "differs from the published sha256 (imported as your own weights)", True
            return f"SHA256 DIFFERS from the published {rec.sha256[:16]}...", False
        if rec.size is not None:
            return "size matches; no published sha256", True
        return "no published size or sha256", True

    def entries(self) -> list[Entry]:
        """Every catalog file (installed or not), extra .tflite files and built ONNX models."""
        manifest = self._manifest()
        rows: list[Entry] = []

        def installed(label: str, rec: FileRecord | None, path: Path) -> Entry:
            size, sha = path.stat().st_size, sha256_file(path)
            verdict, ok = self._judge(rec, path, size, sha, manifest)
            local = path.relative_to(self.root).as_posix()
            origin = manifest["files"].get(local, {}).get("origin", "")
            return Entry(label, local, path, True, _fmt_of(path), size, sha, verdict, ok,
                         origin or "unknown (no install record)")

        for rec in self.catalog.files:
            label = f"{rec.model} {rec.part}" if rec.part in PARTS else rec.model
            path = self.root / rec.local
            if path.is_file():
                rows.append(installed(label, rec, path))
            else:
                note = "not installed" + (", the bg model serves" if rec.part == "h" else "")
                rows.append(Entry(label, rec.local, path, False, _fmt_of(path), catalog=note))
        tfl = self.root / TFLITE_DIR
        for path in sorted(tfl.glob("*.tflite")) if tfl.is_dir() else []:
            rows.append(installed(f"tflite {path.stem}", None, path))
        return rows

    def onnx_entries(self) -> list[tuple[Path, dict[str, Any]]]:
        """Built ONNX models in the cache folder with their metadata."""
        out = []
        folder = self.onnx_dir
        for path in sorted(folder.glob("*.onnx")) if folder.is_dir() else []:
            try:
                meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                meta = {}
            out.append((path, meta))
        return out

    def verify(self) -> list[Check]:
        """Re-hash every installed file against the catalog and check model structure."""
        checks = []
        for e in self.entries():
            if not e.installed:
                continue
            problem = None if e.ok else e.catalog
            problem = problem or _check_structure(e.path)
            if problem:
                checks.append(Check(e.local, False, problem))
            else:
                checks.append(Check(e.local, True, f"{e.size:,} B, {e.catalog}, structure ok"))
        for path, meta in self.onnx_entries():
            try:
                label = self._local(path)
            except ValueError:  # built in the user cache beside a read-only store
                label = str(path)
            ok, words = self.onnx_state(path, meta)
            checks.append(Check(label, ok, f"built model, {words}"))
        return checks


def open_store(cli_value: str | os.PathLike[str] | None = None,
               catalog: Catalog | None = None) -> Store:
    """The store chosen by `--models` / $TOONSTREAM_MODELS / the per-user default."""
    return Store.open(cli_value, catalog)


def onnx_model_path(style: str, part: str = "bg", precision: str = "fp32", *,
                    models: str | os.PathLike[str] | None = None) -> Path:
    """The ONNX model for `style`/`part`, built on first use (see Store.onnx_model_path)."""
    return open_store(models).onnx_model_path(style, part, precision)


def file_path(name: str, *, models: str | os.PathLike[str] | None = None) -> Path:
    """An installed asset: "alpha.jpg" (or "mask") and "yunet.onnx" (or "face")."""
    return open_store(models).file_path(name)
