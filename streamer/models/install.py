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
from .layout import TFLITE_DIR, fmt_of, style_file
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
        if not src.is_file():
            raise StoreError(f"{src}: no such file")
        try:
            fmt = load_weights(src).source_format
        except ModelFormatError as exc:
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
        if dest.is_file() and not force and not dest.samefile(src):
            src_sha = sha256_file(src)
            if (src_sha != sha256_file(dest) and src_sha != rec.sha256
                    and self.records.damage(dest) is None):
                raise StoreError(
                    f"{local} is already installed and intact, and {src.name} holds other "
                    f"weights (sha256 {src_sha[:16]}...); if you mean to replace it, add "
                    f"--force")
        if not (dest.exists() and dest.samefile(src)):
            atomic_write(dest, lambda p: shutil.copyfile(src, p))
        self.records.add(local, f"import:{src.resolve()}", dest, custom)
        return dest, fmt, tuple(notes)
