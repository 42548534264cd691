"""The first run: fetch what a command needs from the model store, when the user agrees.

A new user's store is empty. run_video and run_stream call `ensure_models` before any work:
what the run needs and lacks is downloaded (verified, with the store's progress bar) when
the user said so with `--fetch`, or answered yes to a prompt on a terminal. Without that
consent nothing is downloaded and a missing style is a one-line error that names `--fetch`
and the fetch command. The web server never calls this: a server must not download on its
own (it reports what to fetch at start-up instead).

What a run needs: the style's weights (required), the person segmentation models with a
`--background` other than keep (required), and the face detector and head mask, which are
required with `--faces on` and wanted with `--faces auto` (the default look is face-aware,
but a failed optional download only turns faces off, with a note).
"""
from __future__ import annotations

import argparse
import logging
import shlex
import sys
from dataclasses import dataclass
from typing import Callable, TextIO

from .download import DownloadOptions
from .errors import ModelNotInstalled, StoreError
from .store import Store

Log = Callable[[str], None]
_FACE_TARGETS = ("face", "mask")  # catalog models: the YuNet detector and the head mask
_SEG_TARGET = "seg"  # the catalog model of the person mask (--background)


@dataclass(frozen=True)
class Missing:
    """Fetch targets (catalog model names) a run lacks."""

    required: tuple[str, ...]  # the run fails without these
    optional: tuple[str, ...]  # the run works without these, with less (faces off)

    @property
    def all(self) -> tuple[str, ...]:
        return self.required + self.optional


def add_fetch_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """`--fetch` / `--no-fetch` for interactive commands; unset means: ask on a terminal."""
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--fetch", dest="fetch", action="store_true", default=argparse.SUPPRESS,
                   help="download a missing style (and the face files it can use) into the "
                        "model store first, verified; without it a terminal asks, a script "
                        "gets an error naming the fetch command")
    g.add_argument("--no-fetch", dest="fetch", action="store_false", default=argparse.SUPPRESS,
                   help="never download or ask: a missing style is an error")


def missing_for(store: Store, style: str, faces: str = "auto", mask: bool = False) -> Missing:
    """What a run of `style` with the faces setting (auto/on/off) lacks in `store`; `mask`:
    the run needs the person mask (a --background other than keep), so the segmentation
    models too."""
    store.check_style(style)  # an unknown style is an error that lists the styles
    base = store.base_style(style)  # a personal style runs on its official base's weights
    required: list[str] = []
    if store.source_for(base, "bg") is None:  # the head model falls back to bg
        required.append(base)
    if mask and not all((store.root / f.local).is_file()
                        for f in store.catalog.asset(_SEG_TARGET).files):
        required.append(_SEG_TARGET)
    face = [t for t in _FACE_TARGETS
            if not (store.root / store.catalog.asset(t).files[0].local).is_file()]
    if faces == "on":
        return Missing(tuple(required + face), ())
    return Missing(tuple(required), tuple(face) if faces == "auto" else ())


def _describe(store: Store, targets: tuple[str, ...]) -> str:
    """'anime (11.8 MB), face, mask' with the published sizes where there are any."""
    parts = []
    for t in targets:
        sizes = [f.size for f in store.catalog.model(t).files if f.size is not None]
        known = len(sizes) == len(store.catalog.model(t).files)
        parts.append(f"{t} ({sum(sizes) / 1e6:.1f} MB)" if known else t)
    return ", ".join(parts)


def _fetch_command(store: Store, target: str) -> str:
    return f"python -m streamer.models fetch {target} --models {shlex.quote(str(store.root))}"


def _not_installed(store: Store, style: str, required: tuple[str, ...]) -> str:
    """The one-line error for a run that lacks `required` and may not fetch it."""
    root = shlex.quote(str(store.root))
    if style in required:
        return (f"style {style!r} is not installed in the model store {store.root}: run again "
                f"with --fetch to download it, or run `{_fetch_command(store, style)}` (or "
                f"`python -m streamer.models import FILE --style {style} --models {root}` for "
                f"a file you downloaded yourself)")
    files, needs = [], []
    if any(t in _FACE_TARGETS for t in required):
        files += [store.catalog.asset(t).files[0].local for t in required if t in _FACE_TARGETS]
        needs.append("--faces on")
    if _SEG_TARGET in required:
        files += [f.local for f in store.catalog.asset(_SEG_TARGET).files]
        needs.append("a --background other than keep")
    return (f"{', '.join(files)} not in the model store {store.root} (needed with "
            f"{' and '.join(needs)}): run again with --fetch to download, or run "
            f"`{_fetch_command(store, ' '.join(required))}`")


def ask_yes_no(question: str, stdin: TextIO | None = None, out: TextIO | None = None) -> bool:
    """A y/N question on the terminal; anything but yes (or end of input) is no."""
    out = out or sys.stderr
    print(f"{question} [y/N] ", end="", file=out, flush=True)
    line = (stdin or sys.stdin).readline()
    return line.strip().lower() in ("y", "yes")


class _ToLog(logging.Handler):
    """The store's log records (retries, checks) as `note:` lines of the app's log."""

    def __init__(self, log: Log):
        super().__init__(logging.INFO)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        level = "note" if record.levelno < logging.WARNING else record.levelname.lower()
        self.log(f"{level}: {record.getMessage()}")


def ensure_models(store: Store, style: str, faces: str, *, fetch: bool | None, log: Log,
                  ask: Callable[[str], bool] | None = None,
                  interactive: bool | None = None,
                  options: DownloadOptions = DownloadOptions(),
                  mask: bool = False) -> tuple[str, ...]:
    """Make sure `store` holds what a run of `style` needs; returns the targets fetched.

    `fetch`: True downloads what is missing (the user passed --fetch); False never does;
    None asks (`ask`, by default a y/N prompt) when `interactive` (default: stdin is a
    terminal) and something required is missing. Without consent a missing style raises
    ModelNotInstalled naming `--fetch` and the fetch command; missing optional files are
    left to the run (faces auto: off, with its note). `mask`: the run needs the person mask
    (a --background other than keep), so the segmentation models are required too."""
    need = missing_for(store, style, faces, mask)
    if not need.all or (not need.required and fetch is not True):
        return ()
    if fetch is None:
        if interactive is None:
            interactive = sys.stdin is not None and sys.stdin.isatty()
        if interactive:
            verb = "is" if len(need.required) == 1 else "are"
            fetch = (ask or ask_yes_no)(f"{_describe(store, need.required)} {verb} not in the "
                                        f"model store {store.root}; download "
                                        f"{_describe(store, need.all)} now?")
    if not fetch:
        raise ModelNotInstalled(_not_installed(store, store.base_style(style), need.required))
    handler = _ToLog(log)
    logger = logging.getLogger("streamer.models")
    logger.addHandler(handler)
    old_level, old_propagate = logger.level, logger.propagate
    logger.setLevel(logging.INFO)
    logger.propagate = False  # one copy of each line, through the app's log
    fetched: list[str] = []
    try:
        for target in need.all:
            log(f"fetching {_describe(store, (target,))} into the model store {store.root}")
            try:
                # No ONNX build here: the engine builds the precision it runs on first use.
                store.fetch(target, options=options, build=False)
            except StoreError as exc:
                if target in need.required:
                    raise
                log(f"note: {target} could not be fetched ({exc}); faces stay off")
                continue
            fetched.append(target)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate
    if fetched:
        log(f"fetched and verified: {', '.join(fetched)}")
    return tuple(fetched)
