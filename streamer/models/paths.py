"""Where the store lives: one setting, resolved the same way by every entry point."""
from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

ENV_MODELS = "TOONSTREAM_MODELS"
ENV_CACHE = "TOONSTREAM_CACHE"
APP = "toonstream"


def user_cache_dir() -> Path:
    """The per-user cache folder for toonstream, following each platform's convention."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / APP
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / APP
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says relative values are invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / APP


def resolve_store_root(cli_value: str | os.PathLike[str] | None) -> Path:
    """The model store root: `--models DIR`, else $TOONSTREAM_MODELS, else the user cache."""
    if cli_value:
        return Path(cli_value).expanduser()
    env = os.environ.get(ENV_MODELS)
    if env:
        return Path(env).expanduser()
    return user_cache_dir() / "models"


def describe_root_origin(cli_value: str | os.PathLike[str] | None) -> str:
    """Which of the three settings chose the root, for `list` to show."""
    if cli_value:
        return "--models"
    if os.environ.get(ENV_MODELS):
        return f"${ENV_MODELS}"
    return "per-user default"


def fallback_cache_dir() -> Path:
    """Where built ONNX files go when the store itself is read-only."""
    env = os.environ.get(ENV_CACHE)
    return (Path(env).expanduser() if env else user_cache_dir()) / "onnx"


def is_writable_dir(path: Path) -> bool:
    """Whether we may create files in `path` (or, if it does not exist yet, in its nearest
    existing ancestor).

    A folder whose mode grants write to nobody counts as read-only even when os.access says
    yes: root passes os.access everywhere, and a shared read-only store must stay untouched.
    """
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        mode = p.stat().st_mode
    except OSError:
        return False
    return stat.S_ISDIR(mode) and os.access(p, os.W_OK) and bool(mode & 0o222)
