"""The install records: manifest.json at the store root says where each fetched or imported
file came from and what its bytes were, so a file changed since (a damaged disk, a broken
copy, an edit by hand) is refused with the command that repairs it."""
from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Any

from .atomic import atomic_write
from .catalog import PARTS, Catalog
from .download import sha256_file
from .errors import BadModelFile
from .layout import MANIFEST, TFLITE_DIR, store_command
from .structure import check_structure


class InstallRecords:
    """The install records of the store at `root`, read afresh on every call (another
    process may fetch or import meanwhile)."""

    def __init__(self, root: Path, catalog: Catalog):
        self.root = root
        self.catalog = catalog

    def _manifest(self) -> dict[str, Any]:
        try:
            data = json.loads((self.root / MANIFEST).read_text(encoding="utf-8"))
            return data if isinstance(data.get("files"), dict) else {"files": {}}
        except (OSError, ValueError, AttributeError):
            return {"files": {}}

    def files(self) -> dict[str, dict[str, Any]]:
        """Every record, by the file's path under the root."""
        return self._manifest()["files"]

    def get(self, local: str) -> dict[str, Any]:
        """The record of the file at `local` under the root; empty when it has none."""
        return self.files().get(local, {})

    def add(self, local: str, origin: str, path: Path, custom: bool = False) -> None:
        """Record the file at `local` as installed from `origin` (a URL or `import:FILE`);
        `custom` marks weights imported on purpose that differ from the published ones."""
        data = self._manifest()
        data["files"][local] = {"origin": origin, "size": path.stat().st_size,
                                "sha256": sha256_file(path), "custom": custom,
                                "installed": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        atomic_write(self.root / MANIFEST, lambda p: p.write_text(
            json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8"))

    def remove(self, local: str) -> None:
        """Forget the record of `local` (its file was removed on purpose)."""
        data = self._manifest()
        if data["files"].pop(local, None) is None:
            return
        atomic_write(self.root / MANIFEST, lambda p: p.write_text(
            json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8"))

    def repair_hint(self, local: str) -> str:
        """The command(s) that put a good copy of an installed file back."""
        rec = self.catalog.by_local(local)
        model = rec.model if rec is not None else None
        if model is None and local.startswith(TFLITE_DIR + "/"):
            model = Path(local).stem.split("_")[0]
        origin = str(self.get(local).get("origin", ""))
        cmds = []
        if model is not None:
            cmds.append(f"`{store_command(self.root, 'fetch ' + model)}`")
        if origin.startswith("import:"):
            args = f"import {shlex.quote(origin[7:])}"
            if rec is None or rec.part in PARTS:  # a style's weights (the seg model has none)
                args += f" --style {model or 'STYLE'}"
                args += " --part h" if rec is not None and rec.part == "h" else ""
            cmds.append(f"`{store_command(self.root, args)}`")
        return (" or ".join(cmds) if cmds
                else f"`{store_command(self.root, 'import FILE --style STYLE')}`")

    def check(self, path: Path, sha: str | None = None) -> str:
        """Refuse an installed file whose bytes differ from those recorded when it was
        fetched or imported. Files without a record (put in place by hand, a shared
        read-only store) pass; their structure and weight range are checked when they are
        built. Returns the file's sha256."""
        sha = sha or sha256_file(path)
        try:
            local = path.relative_to(self.root).as_posix()
        except ValueError:
            return sha
        recorded = self.get(local).get("sha256")
        if recorded and recorded != sha:
            raise BadModelFile(
                f"{local} in the model store {self.root} changed since it was installed "
                f"(sha256 {sha[:16]}..., recorded {recorded[:16]}...): it is damaged or was "
                f"replaced by hand; repair it with {self.repair_hint(local)}")
        return sha

    def damage(self, path: Path) -> str | None:
        """Why an installed file is damaged (its install record or its own checks), or None."""
        try:
            self.check(path)
        except BadModelFile:
            return "changed since it was installed"
        return check_structure(path)
