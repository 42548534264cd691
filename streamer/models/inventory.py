"""What a store holds, for `list` and `verify`: every catalog file (installed or not), extra
TFLite conversions and built models, each judged against the catalog and its install
record."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .catalog import PARTS, Catalog, FileRecord
from .download import sha256_file
from .layout import TFLITE_DIR, fmt_of
from .records import InstallRecords
from .structure import check_structure


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


def judge(rec: FileRecord | None, sha: str, size: int, mine: dict[str, Any]) -> tuple[str, bool]:
    """How an installed file (`size` bytes, `sha`) compares with its catalog record `rec`
    and its install record `mine`: (words, ok)."""
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


def entries(root: Path, catalog: Catalog) -> list[Entry]:
    """Every catalog file (installed or not) and extra .tflite files in the store at `root`."""
    records = InstallRecords(root, catalog).files()
    rows: list[Entry] = []

    def installed(label: str, rec: FileRecord | None, path: Path) -> Entry:
        size, sha = path.stat().st_size, sha256_file(path)
        local = path.relative_to(root).as_posix()
        mine = records.get(local, {})
        verdict, ok = judge(rec, sha, size, mine)
        return Entry(label, local, path, True, fmt_of(path), size, sha, verdict, ok,
                     mine.get("origin", "") or "unknown (no install record)")

    for rec in catalog.files:
        label = f"{rec.model} {rec.part}" if rec.part in PARTS else rec.model
        path = root / rec.local
        if path.is_file():
            rows.append(installed(label, rec, path))
        else:
            note = "not installed" + (", the bg model serves" if rec.part == "h" else "")
            rows.append(Entry(label, rec.local, path, False, fmt_of(path), catalog=note))
    tfl = root / TFLITE_DIR
    for path in sorted(tfl.glob("*.tflite")) if tfl.is_dir() else []:
        rows.append(installed(f"tflite {path.stem}", None, path))
    return rows


def verify(root: Path, files: list[Entry], built: list[tuple[Path, dict[str, Any]]],
           state: Callable[[Path, dict[str, Any]], tuple[bool, str]]) -> list[Check]:
    """Check the installed `files` (catalog verdict, then structure) and the `built` models
    (their `state`) of the store at `root`."""
    checks = []
    for e in files:
        if not e.installed:
            continue
        problem = (None if e.ok else e.catalog) or check_structure(e.path)
        if problem:
            checks.append(Check(e.local, False, problem))
        else:
            checks.append(Check(e.local, True, f"{e.size:,} B, {e.catalog}, structure ok"))
    for path, meta in built:
        try:
            label = path.relative_to(root).as_posix()
        except ValueError:  # built in the user cache beside a read-only store
            label = str(path)
        ok, words = state(path, meta)
        checks.append(Check(label, ok, f"built model, {words}"))
    return checks
