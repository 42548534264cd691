"""The model store: official weight files under one root, and the ONNX models built from them.

`Store` is the one object callers hold: it finds installed files and hands out the built
models, delegating each job to its own module: where files live (layout.py), the install
records (records.py), fetch and import (install.py), cached ONNX builds (builds.py,
conversions.py), `list`/`verify` (inventory.py) and personal styles (personal.py: LoRA
adapters on an official style, merged into its weights here, before any build).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable

from .builds import build_state, built_models
from .catalog import PARTS, Catalog, FileRecord, load_catalog
from .conversions import dctnet_onnx, int8_onnx, seg_onnx
from .download import DownloadOptions
from .errors import BadModelFile, ModelNotInstalled, UnknownModel
from .install import ImportResult, Installer
from .inventory import Check, Entry, entries, verify
from .layout import (ASSET_NAMES, PRECISIONS, SEG_DIR, SEG_VARIANTS, find_tflite, onnx_name,
                     store_command, style_file)
from .paths import fallback_cache_dir, is_writable_dir, resolve_store_root
from .personal import PersonalStyleMethods, personal_onnx, personal_source, personal_weights
from .records import InstallRecords
from .structure import check_structure

# check_structure is re-exported: workers (video/cluster_worker.py) check files with it.
__all__ = ["PRECISIONS", "Store", "check_structure", "file_path", "onnx_model_path",
           "open_store"]


class Store(PersonalStyleMethods):
    """A model store rooted at `root`, judged against `catalog`. Its styles are the
    catalog's and the personal ones (the methods for those: PersonalStyleMethods)."""

    def __init__(self, root: Path | str, catalog: Catalog | None = None):
        self.root = Path(root).expanduser()
        self.catalog = catalog if catalog is not None else load_catalog()
        # int8 calibration (TOONSTREAM_CALIBRATION or --calibration): None when the user set
        # none, `builtin` for the built-in synthetic set alone, else a folder, image or video
        # of their own, calibrated on beside the built-in set
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

    @property
    def records(self) -> InstallRecords:
        """The install records: where each installed file came from and its checksum."""
        return InstallRecords(self.root, self.catalog)

    def _cmd(self, args: str) -> str:
        return store_command(self.root, args)

    def file_path(self, name: str) -> Path:
        """An installed non-style file: "mask"/"alpha.jpg" or "face"/"yunet.onnx"."""
        kind = ASSET_NAMES.get(name)
        if kind is None:
            raise UnknownModel(f"unknown store file {name!r}; known: {', '.join(ASSET_NAMES)}")
        rec = self.catalog.asset(kind).files[0]
        path = self.root / rec.local
        if not path.is_file():
            raise ModelNotInstalled(f"{rec.local} is not in the model store {self.root}: "
                                    f"run `{self._cmd('fetch ' + rec.model)}`")
        self.records.check(path)
        # No checksum is published for either file and a hand-placed copy has no record, so
        # read it as its consumer will (a few ms): a cut or damaged detector must be one
        # line naming the fix, not OpenCV's parser error.
        problem = check_structure(path)
        if problem:
            raise BadModelFile(f"{rec.local} in the model store {self.root} is unusable "
                               f"({problem}); repair it with {self.repair_hint(rec.local)}")
        return path

    def source_for(self, style: str, part: str = "bg") -> Path | None:
        """The installed weight file for a style part: the official .pb first (it is the
        reference), then a .tflite conversion. No fallback from h to bg here. (A personal
        style: see personal_source.)"""
        if style not in self.catalog.styles:
            return personal_source(self, style, part)
        pb = self.root / style_file(self.catalog, style, part).local
        return pb if pb.is_file() else find_tflite(self.root, style, part)

    # --- integrity -----------------------------------------------------------------------

    def repair_hint(self, local: str) -> str:
        """The command(s) that put a good copy of an installed file back."""
        return self.records.repair_hint(local)

    def onnx_state(self, path: Path, meta: dict[str, Any]) -> tuple[bool, str]:
        """(intact, words) for a built ONNX model: damaged when its bytes differ from the
        checksum recorded when it was built; stale when its weights changed since."""
        if meta.get("model") == "seg" or path.name.startswith("seg_"):
            variant = meta.get("part") or path.stem.removeprefix("seg_")
            rebuild = self._cmd(f"path seg --part {variant}")
        else:
            rebuild = self._cmd(f"path {meta.get('style', 'STYLE')} --part "
                                f"{meta.get('part', 'bg')} --precision "
                                f"{meta.get('precision', 'fp32')}")
        return build_state(path, meta, rebuild)

    # --- built models ------------------------------------------------------------------

    def onnx_model_path(self, style: str, part: str = "bg", precision: str = "fp32") -> Path:
        """The ONNX model for a style part, built from the installed weights on first use
        and rebuilt whenever the weights or the converter change. The head part falls back
        to the style's bg model (the official files hold the same weights for most styles)."""
        if precision not in PRECISIONS:
            raise UnknownModel(f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")
        if style not in self.catalog.styles:
            return personal_onnx(self, style, part, precision)
        src = self.source_for(style, part)
        if src is None:
            if part == "h":
                return self.onnx_model_path(style, "bg", precision)
            raise ModelNotInstalled(
                f"style {style!r} is not installed in the model store {self.root}: run "
                f"`{self._cmd('fetch ' + style)}`, or "
                f"`{self._cmd('import FILE --style ' + style)}` "
                f"for a file you downloaded yourself")
        # Hashing the weights costs tens of milliseconds; building from a damaged file costs
        # a run of noise, so the install record is checked on every load.
        float_precision = "fp32" if precision == "int8" else precision
        built = dctnet_onnx(self.onnx_dir, style, part, float_precision, src,
                            self.records.check(src), self._load_weights)
        if precision != "int8":
            return built
        # int8 is quantized from the fp32 model just built.
        say = self.notify or (lambda line: print(line, file=sys.stderr, flush=True))
        return int8_onnx(self.onnx_dir, style, part, src, built, self.calibration_source,
                         self.calibration_frames, say)

    def int8_built(self, style: str, part: str = "bg") -> bool:
        """Whether the style part's int8 model is already built (nothing is built here: a
        build takes about a minute, see `onnx_model_path`)."""
        if part == "h" and style in self.catalog.styles and self.source_for(style, "h") is None:
            part = "bg"
        return (self.onnx_dir / onnx_name(style, part, "int8")).is_file()

    def weights(self, style: str, part: str = "bg"):
        """The style part's generator weights (a DctNetWeights) for engines that build the
        network themselves (PyTorch), read with the same checks `onnx_model_path` makes on
        every load (install record, structure, weight range); the head part falls back to
        bg the same way. A personal style's part is its base's with the adapter merged in."""
        if style not in self.catalog.styles:
            return personal_weights(self, style, part)
        src = self.source_for(style, part)
        if src is None and part == "h":
            return self.weights(style, "bg")
        if src is None:
            self.onnx_model_path(style, part)  # raises ModelNotInstalled with the commands
        self.records.check(src)
        return self._load_weights(src)

    def _load_weights(self, src: Path):
        """`src` read as DctNetWeights; a file that is not usable DCT-Net is one line naming
        the repair."""
        from streamer.models.dctnet.weights import ModelFormatError, load_weights

        try:
            return load_weights(src)
        except ModelFormatError as exc:
            inside = src.is_relative_to(self.root)
            local = src.relative_to(self.root).as_posix() if inside else str(src)
            reason = str(exc).removeprefix(f"{src.name}: ")
            raise BadModelFile(f"{local} in the model store {self.root} is unusable ({reason}); "
                               f"repair it with {self.repair_hint(local)}") from None

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
        self.records.check(src)  # a changed .tflite is refused like a style's weights
        return seg_onnx(self.onnx_dir, variant, src, self._cmd("fetch seg"))

    def calibration_frames(self, source: str | None = None) -> list:
        """The frames int8 models are calibrated on for `source` (a calibration source,
        calibration.source_for; by default what `calibration` asks for, else the built-in
        set): the synthetic set, plus the user's own frames when it names some."""
        from .calibration import SYNTHETIC, frames_for

        return frames_for(source or self.calibration_source or SYNTHETIC)

    @property
    def calibration_source(self) -> str | None:
        """The calibration int8 models must have: None when the user set none (a built model
        is reused whatever it was calibrated on), "synthetic" for `builtin`, else the
        built-in set plus their own material."""
        from .calibration import source_for

        return source_for(self.calibration)

    # --- fetch / import ------------------------------------------------------------------

    def import_file(self, src: Path | str, style: str | None, part: str = "bg",
                    precision: str = "fp32", force: bool = False) -> ImportResult:
        """Add a hand-downloaded official .pb or .tflite conversion of `style`, or with no
        style (or "seg") MediaPipe's selfie segmentation .tflite, then build its ONNX (see
        Installer.import_file and import_seg for what is checked before anything changes)."""
        installer = Installer(self.root, self.catalog)
        if style is None or style == "seg":
            dest, fmt, notes = installer.import_seg(Path(src).expanduser(), force)
            variant = self.catalog.by_local(dest.relative_to(self.root).as_posix()).part
            return ImportResult(path=dest, source_format=fmt,
                                onnx=self.seg_model_path(variant), notes=notes)
        dest, fmt, notes = installer.import_file(Path(src).expanduser(), style, part, force)
        onnx = self.onnx_model_path(style, part, precision)
        return ImportResult(path=dest, source_format=fmt, onnx=onnx, notes=notes)

    def targets(self, target: str) -> list[FileRecord]:
        """The files that `fetch TARGET` downloads: one style, face, mask, seg or all."""
        return Installer(self.root, self.catalog).targets(target)

    def fetch(self, target: str, *, mirror: str | None = None,
              options: DownloadOptions = DownloadOptions(), build: bool = True,
              precision: str = "fp32") -> list[Path]:
        """Download what `target` names (skipping files already installed and correct),
        verify each, then build the ONNX of every style fetched."""
        installer = Installer(self.root, self.catalog)
        records = installer.targets(target)
        done = installer.fetch(records, mirror=mirror, options=options)
        if build:
            self.build(target, precision)
        return done

    def build(self, target: str, precision: str = "fp32") -> None:
        """Build (or check, when current) the ONNX models of what `fetch TARGET` installs:
        every style's parts at `precision`, the segmentation models."""
        records = self.targets(target)
        for style in dict.fromkeys(r.model for r in records if r.part in PARTS):
            for part in PARTS:
                self.onnx_model_path(style, part, precision)
        for rec in records:
            if rec.part in SEG_VARIANTS and rec.local.startswith(SEG_DIR + "/"):
                self.seg_model_path(rec.part)

    # --- list / verify -------------------------------------------------------------------

    def entries(self) -> list[Entry]:
        """Every catalog file (installed or not) and extra .tflite files."""
        return entries(self.root, self.catalog)

    def onnx_entries(self) -> list[tuple[Path, dict[str, Any]]]:
        """Built ONNX models in the cache folder with their metadata."""
        return built_models(self.onnx_dir)

    def verify(self) -> list[Check]:
        """Re-hash every installed file against the catalog and check model structure."""
        checks = verify(self.root, self.entries(), self.onnx_entries(), self.onnx_state)
        return checks + self.personal.verify(lambda s: self.source_for(s, "bg") is not None)


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
