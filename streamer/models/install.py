"""Putting weight files into a store: `fetch` downloads catalog files (from their URLs or a
mirror), `import_file` adds one downloaded by hand. Each file is checked before it
replaces anything and recorded in the install records after; building the ONNX models from
the new files is the store's job (store.py)."""
from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .atomic import atomic_write
from .catalog import Catalog, FileRecord
from .download import DownloadOptions, check_file, check_mirror, download, sha256_file
from .errors import BadModelFile, StoreError, StoreNotWritable, UnknownModel
from .layout import SEG_INPUTS, TFLITE_DIR, fmt_of, style_file
from .paths import is_writable_dir
from .records import InstallRecords
from .structure import check_structure

log = logging.getLogger("streamer.models")


@dataclass(frozen=True)
class ImportResult:
    """What `import` installed: the file, its format, the ONNX built from it, notes."""

    path: Path
    source_format: str
    onnx: Path
    notes: tuple[str, ...]


class Installer:
    """Installs files into the store at `root`, judged against `catalog`."""

    def __init__(self, root: Path, catalog: Catalog):
        self.root = root
        self.catalog = catalog
        self.records = InstallRecords(root, catalog)

    def require_writable(self, action: str) -> None:
        """Refuse `action` (fetch, import) on a store we must not write to."""
        if not is_writable_dir(self.root):
            raise StoreNotWritable(f"cannot {action}: the model store {self.root} is read-only; "
                                   f"choose another with --models DIR or TOONSTREAM_MODELS")

    def targets(self, target: str) -> list[FileRecord]:
        """The files that `fetch TARGET` downloads: one style, face, mask, seg or all."""
        if target == "all":
            return list(self.catalog.files)
        names = [m.name for m in self.catalog.models]
        if target not in names:
            raise UnknownModel(f"unknown model {target!r}; choose a style "
                               f"({', '.join(self.catalog.styles)}), face, mask, seg or all")
        return list(self.catalog.model(target).files)

    def fetch(self, records: list[FileRecord], *, mirror: str | None = None,
              options: DownloadOptions = DownloadOptions()) -> list[Path]:
        """Download `records` (skipping files already installed and correct), verify and
        record each; returns the installed paths."""
        if mirror:
            check_mirror(mirror, "mirror")
        else:
            mirror = os.environ.get("TOONSTREAM_MODEL_MIRROR") or None
            if mirror:
                check_mirror(mirror, "TOONSTREAM_MODEL_MIRROR")
        self.require_writable("fetch")
        done: list[Path] = []
        for rec in records:
            dest = self.root / rec.local
            if dest.is_file():
                problem = check_file(dest, rec.size, rec.sha256) or self.records.damage(dest)
                if problem is None:
                    log.info("%s: already installed", rec.local)
                    done.append(dest)
                    continue
                log.info("%s: installed copy fails a check (%s); downloading it again",
                         rec.local, problem)
            url = rec.url_for(mirror)
            fmt = fmt_of(dest)  # the .part file's own suffix says nothing
            download(url, dest, size=rec.size, sha256=rec.sha256, options=options,
                     label=rec.name, validate=lambda p: check_structure(p, fmt))
            if rec.sha256 is None:
                what = "size and structure" if rec.size is not None else "structure"
                log.info("%s: no published sha256, checked %s only (sha256 %s)",
                         rec.name, what, sha256_file(dest))
            self.records.add(rec.local, url, dest)
            done.append(dest)
        return done

    def import_file(self, src: Path, style: str, part: str = "bg",
                    force: bool = False) -> tuple[Path, str, tuple[str, ...]]:
        """Add a hand-downloaded official .pb or .tflite conversion: (installed path, its
        format, notes for the user).

        Nothing installed changes unless the new file passes every check; an installed file
        that is intact is replaced by different weights only with `force` (or when the new
        file is the published one), so a damaged download cannot displace a good model."""
        from streamer.models.dctnet.weights import ModelFormatError, load_weights

        rec = style_file(self.catalog, style, part)
        _check_source(src)
        try:
            fmt = load_weights(src).source_format
        except ModelFormatError as exc:
            variant = seg_variant(src)
            if variant is not None:
                raise BadModelFile(f"{src.name} is MediaPipe's selfie segmentation model "
                                   f"({variant}), not a style's weights: import it without "
                                   f"--style (and --part)") from None
            kept = ""
            if (self.root / rec.local).is_file():
                kept = f"; the installed {rec.local} is left as it was"
            raise BadModelFile(f"{exc}{kept}") from None
        self.require_writable("import")
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
        self._refuse_other_weights(src, dest, local, rec, force)
        if not (dest.exists() and dest.samefile(src)):
            atomic_write(dest, lambda p: shutil.copyfile(src, p))
        self.records.add(local, f"import:{src.resolve()}", dest, custom)
        return dest, fmt, tuple(notes)

    def _refuse_other_weights(self, src: Path, dest: Path, local: str, rec: FileRecord,
                              force: bool) -> None:
        """Refuse to replace the installed, intact `dest` by other bytes without `force`
        (unless the new file is the published one)."""
        if dest.is_file() and not force and not dest.samefile(src):
            src_sha = sha256_file(src)
            if (src_sha != sha256_file(dest) and src_sha != rec.sha256
                    and self.records.damage(dest) is None):
                raise StoreError(
                    f"{local} is already installed and intact, and {src.name} holds other "
                    f"weights (sha256 {src_sha[:16]}...); if you mean to replace it, add "
                    f"--force")

    def import_seg(self, src: Path, force: bool = False) -> tuple[Path, str, tuple[str, ...]]:
        """Add a hand-downloaded MediaPipe selfie segmentation .tflite: (installed path, its
        format, notes). Its input size says which of the catalog's models it is (general
        256x256, landscape 144x256); the same checks as a style's import apply."""
        from streamer.models.dctnet.weights import ModelFormatError, load_weights
        from streamer.models.selfie.graph import SegModelError, load_seg_model

        _check_source(src)
        try:
            _, info = load_seg_model(src)
        except SegModelError as exc:
            try:
                load_weights(src)
            except ModelFormatError:
                raise BadModelFile(f"{exc}; without --style, import takes MediaPipe's "
                                   f"selfie segmentation model or a personal style "
                                   f"(.safetensors), and a style's .pb or .tflite needs "
                                   f"--style NAME") from None
            raise BadModelFile(f"{src.name} holds DCT-Net weights: name their style with "
                               f"--style NAME ({', '.join(self.catalog.styles)})") from None
        variant = SEG_INPUTS.get((info.height, info.width))
        if variant is None:
            sizes = ", ".join(f"{v} {h}x{w}" for (h, w), v in SEG_INPUTS.items())
            raise BadModelFile(f"{src.name} is a selfie segmentation model for "
                               f"{info.width}x{info.height} inputs; the store takes {sizes}")
        rec = self.catalog.asset("seg").file(variant)
        assert rec is not None  # the catalog names both variants
        self.require_writable("import")
        notes: list[str] = []
        problem = check_file(src, rec.size, rec.sha256)
        if problem:
            notes.append(f"{src.name} is not the published {rec.remote_path} ({problem}); "
                         f"imported as your own {variant} segmentation model")
        dest = self.root / rec.local
        self._refuse_other_weights(src, dest, rec.local, rec, force)
        if not (dest.exists() and dest.samefile(src)):
            atomic_write(dest, lambda p: shutil.copyfile(src, p))
        self.records.add(rec.local, f"import:{src.resolve()}", dest, custom=bool(problem))
        return dest, "tflite", tuple(notes)


def seg_variant(src: Path) -> str | None:
    """Which of the store's segmentation models (general, landscape) the file `src` is, or
    None when it is neither."""
    from streamer.models.selfie.graph import SegModelError, load_seg_model

    try:
        _, info = load_seg_model(src)
    except SegModelError:
        return None
    return SEG_INPUTS.get((info.height, info.width))


def _check_source(src: Path) -> None:
    """The file to import is there and is a file."""
    if src.is_dir():
        raise StoreError(f"{src} is a folder; import takes one .pb or .tflite file")
    if not src.is_file():
        raise StoreError(f"{src}: no such file")
