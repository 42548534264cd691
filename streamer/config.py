"""Settings as dataclasses, filled from one place: defaults <- YAML preset <- command line.

A preset is a flat YAML mapping of setting names (dashes or underscores) to values, found by
path or by name in the project's configs/ folder (`--config video-hq` reads
configs/video-hq.yaml). Options given on the command line override the preset; options not
given leave it alone, which is why the parsers declare no defaults of their own
(argparse.SUPPRESS) and the defaults live here. Nothing is global: every call returns a new
settings object.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

from streamer.toon.engine import DEVICES, PRECISIONS
from streamer.toon.flow import OFFICIAL_SHORT_SIDE

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class ConfigError(ValueError):
    """A bad preset or setting, in one line for the user."""


@dataclass(frozen=True)
class VideoSettings:
    """Everything run_video needs besides the input and output paths."""

    style: str = "anime"
    models: str | None = None  # model store root; None: $TOONSTREAM_MODELS, else user cache
    size: int = OFFICIAL_SHORT_SIDE  # working short side (frames are never enlarged)
    batch: int = 1  # frames per engine call
    device: str = "auto"
    precision: str = "exact"  # exact: fp32, golden parity; fast: bf16/fp16 where available
    threads: int | None = None  # engine threads; None: the runtime's choice
    codec: str | None = None  # None: libx264 (libvpx-vp9 for .webm)
    crf: int | None = None  # None: the codec's default in streamer.sinks.video_file
    preset: str | None = None
    queue: int = 4  # frames each pipeline queue holds
    overwrite: bool = False
    stats_json: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.size < 16:
            raise ConfigError(f"size must be at least 16 pixels, got {self.size}")
        if self.batch < 1:
            raise ConfigError(f"batch must be at least 1, got {self.batch}")
        if self.queue < 1:
            raise ConfigError(f"queue must be at least 1, got {self.queue}")
        if self.device not in DEVICES:
            raise ConfigError(f"unknown device {self.device!r}; choose one of {', '.join(DEVICES)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}; choose exact or fast")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be at least 1, got {self.threads}")
        if self.crf is not None and not 0 <= self.crf <= 63:
            raise ConfigError(f"crf must be 0..63, got {self.crf}")


S = TypeVar("S")


def find_preset(name: str, config_dir: Path = CONFIG_DIR) -> Path:
    """A preset by path (`configs/cpu.yaml`, `~/my.yaml`) or by name (`cpu`)."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    by_name = config_dir / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    if by_name.is_file():
        return by_name
    known = sorted(p.stem for p in config_dir.glob("*.yaml")) if config_dir.is_dir() else []
    raise ConfigError(f"no preset {name!r} (looked for {path} and {by_name}); "
                      f"presets: {', '.join(known) or 'none'}")


def load_preset(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The preset's settings with underscore keys."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read preset {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"preset {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"preset {path} must be a mapping of setting: value")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _coerce(cls_field: dataclasses.Field, value: Any, where: str) -> Any:
    """Check a preset value against the field's type (YAML already parsed numbers)."""
    if value is None:
        return None
    kind = str(cls_field.type)
    name = cls_field.name
    if kind.startswith("bool"):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {name} must be true or false, got {value!r}")
        return value
    if kind.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {name} must be a whole number, got {value!r}")
        return value
    if kind.startswith("str"):
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: {name} must be text, got {value!r}")
        return str(value)
    return value


def build_settings(cls: type[S], preset: str | None = None,
                   overrides: Mapping[str, Any] | None = None,
                   config_dir: Path = CONFIG_DIR) -> S:
    """`cls` defaults, then the preset (if any), then the explicit `overrides`."""
    names = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    if preset:
        path = find_preset(preset, config_dir)
        data = load_preset(path)
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(f"preset {path.name}: unknown setting(s) {', '.join(unknown)}; "
                              f"known: {', '.join(n.replace('_', '-') for n in names)}")
        values.update({k: _coerce(names[k], v, path.name) for k, v in data.items()})
    for k, v in (overrides or {}).items():
        if k not in names:
            raise ConfigError(f"unknown setting {k!r}")
        values[k] = v
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(str(exc)) from None
