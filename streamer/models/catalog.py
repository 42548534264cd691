"""The model catalog (streamer/models/catalog.yaml) as frozen records.

Every file the store knows is described once, with its source and checksums, so fetch,
import, list and verify all judge files by the same facts.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import StoreError, UnknownModel

# The catalog is package data (an installed wheel carries it; the repository's
# models/catalog.yaml links here); callers and tests may pass another one.
DEFAULT_CATALOG = Path(str(resources.files("streamer.models") / "catalog.yaml"))

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
KINDS = ("style", "face", "mask", "seg")
PARTS = ("bg", "h")


class CatalogError(StoreError):
    """The catalog file itself is broken."""


@dataclass(frozen=True)
class FileRecord:
    """One downloadable file: where it comes from, where it goes, how to check it."""

    model: str            # the record it belongs to: a style name, "face", "mask" or "seg"
    part: str             # bg / h for styles; the asset name otherwise
    remote_path: str      # path inside the source repository
    local: str            # path under the store root, with forward slashes
    url: str              # official download URL
    mirror_path: str      # "<model_id>/<remote_path>", appended to a mirror base URL
    size: int | None      # None: not published
    sha256: str | None    # None: not published, only the size can be checked

    @property
    def name(self) -> str:
        return Path(self.local).name

    def url_for(self, mirror: str | None = None) -> str:
        """The official URL, or the same file under a mirror: `<mirror>/<model_id>/<path>`."""
        if not mirror:
            return self.url
        return mirror.rstrip("/") + "/" + self.mirror_path


@dataclass(frozen=True)
class ModelRecord:
    name: str
    kind: str
    description: str
    licence: str
    homepage: str
    files: tuple[FileRecord, ...]

    def file(self, part: str) -> FileRecord | None:
        return next((f for f in self.files if f.part == part), None)


@dataclass(frozen=True)
class Catalog:
    models: tuple[ModelRecord, ...]
    source: str = "<memory>"

    @property
    def styles(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models if m.kind == "style")

    @property
    def files(self) -> tuple[FileRecord, ...]:
        return tuple(f for m in self.models for f in m.files)

    def model(self, name: str) -> ModelRecord:
        for m in self.models:
            if m.name == name:
                return m
        known = ", ".join(m.name for m in self.models)
        raise UnknownModel(f"unknown model {name!r}; known: {known}")

    def style(self, name: str) -> ModelRecord:
        """The style's record; an unknown name is a one-line error that lists the styles."""
        for m in self.models:
            if m.name == name and m.kind == "style":
                return m
        raise UnknownModel(f"unknown style {name!r}; styles: {', '.join(self.styles)}")

    def asset(self, kind: str) -> ModelRecord:
        for m in self.models:
            if m.kind == kind:
                return m
        raise UnknownModel(f"the catalog has no {kind} model")

    def by_local(self, local: str) -> FileRecord | None:
        return next((f for f in self.files if f.local == local), None)


def _req(d: dict[str, Any], key: str, where: str) -> Any:
    if key not in d or d[key] in (None, ""):
        raise CatalogError(f"catalog: {where} lacks '{key}'")
    return d[key]


def _file(model: str, raw: dict[str, Any], source: dict[str, Any], templates: dict[str, str],
          single: bool) -> FileRecord:
    where = f"model {model!r}"
    remote = str(_req(raw, "path", where))
    local = str(_req(raw, "local", where))
    if local.startswith("/") or ".." in Path(local).parts:
        raise CatalogError(f"catalog: {where}: local path {local!r} must stay inside the store")
    model_id = str(_req(source, "model_id", where))
    if "url" in source:
        # A plain URL names exactly one file; several files need a hub template.
        if not single:
            raise CatalogError(f"catalog: {where}: a source url serves one file only")
        url = str(source["url"])
    else:
        hub = str(_req(source, "hub", where))
        if hub not in templates:
            raise CatalogError(f"catalog: {where}: no url template for hub {hub!r}")
        url = templates[hub].format(model_id=model_id, revision=_req(source, "revision", where),
                                    path=remote)
    size = raw.get("size")
    sha = raw.get("sha256")
    if size is not None and (not isinstance(size, int) or size <= 0):
        raise CatalogError(f"catalog: {where}: bad size {size!r}")
    if sha is not None:
        sha = str(sha).lower()
        if not _SHA256.match(sha):
            raise CatalogError(f"catalog: {where}: bad sha256 {raw.get('sha256')!r}")
    return FileRecord(model=model, part=str(_req(raw, "part", where)), remote_path=remote,
                      local=local, url=url, mirror_path=f"{model_id}/{remote}", size=size,
                      sha256=sha)


def parse_catalog(data: dict[str, Any], source: str = "<memory>") -> Catalog:
    """Build a Catalog from the YAML's structure (tests build small ones this way)."""
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise CatalogError(f"catalog {source}: no 'models' mapping")
    templates = {str(k): str(v) for k, v in (data.get("url_templates") or {}).items()}
    models = []
    for name, raw in data["models"].items():
        name = str(name)
        kind = str(_req(raw, "kind", f"model {name!r}"))
        if kind not in KINDS:
            raise CatalogError(f"catalog: model {name!r}: kind must be one of {KINDS}")
        files_raw = raw.get("files") or []
        src = _req(raw, "source", f"model {name!r}")
        files = tuple(_file(name, f, src, templates, len(files_raw) == 1) for f in files_raw)
        if kind == "style" and sorted(f.part for f in files) != sorted(PARTS):
            raise CatalogError(f"catalog: style {name!r} needs exactly one bg and one h file")
        models.append(ModelRecord(name=name, kind=kind, description=str(raw.get("description", "")),
                                  licence=str(raw.get("licence", "")),
                                  homepage=str(raw.get("homepage", "")), files=files))
    return Catalog(models=tuple(models), source=source)


def load_catalog(path: Path | None = None) -> Catalog:
    """Read the catalog YAML (the packaged catalog.yaml by default)."""
    path = Path(path) if path else DEFAULT_CATALOG
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CatalogError(f"cannot read the model catalog {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise CatalogError(f"the model catalog {path} is not valid YAML: "
                           f"{str(exc).splitlines()[0]}") from None
    return parse_catalog(data, str(path))
