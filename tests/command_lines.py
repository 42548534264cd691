"""The five commands as the option and exit-code tests drive them: each one's main (called
in-process: it returns the exit status) and its parsers, and a walk over every number
option they declare."""
from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Command:
    name: str  # as the user types it
    main: Callable[[list[str]], int]
    parser: Callable[[], argparse.ArgumentParser]
    argv: tuple[str, ...]  # how a process starts it (python ...)


def _video_main(argv: list[str]) -> int:
    from streamer.video.app import main
    return main(argv)


def _live_main(argv: list[str]) -> int:
    from streamer.live.app import main
    return main(argv)


def _web_main(argv: list[str]) -> int:
    from streamer.web.cli import main
    return main(argv)


def _models_main(argv: list[str]) -> int:
    from streamer.models.cli import main
    return main(argv)


def _video_parser() -> argparse.ArgumentParser:
    from streamer.video.app import build_parser
    return build_parser()


def _live_parser() -> argparse.ArgumentParser:
    from streamer.live.app import build_parser
    return build_parser()


def _web_parser() -> argparse.ArgumentParser:
    from streamer.web.cli import build_parser
    return build_parser()


def _train_main(argv: list[str]) -> int:
    from streamer.train.cli import main
    return main(argv)


def _train_parser() -> argparse.ArgumentParser:
    from streamer.train.cli import build_parser
    return build_parser()


def _models_parser() -> argparse.ArgumentParser:
    from streamer.models.cli import _build_parser
    return _build_parser()


COMMANDS = {
    "run_video": Command("run_video", _video_main, _video_parser, ("run_video.py",)),
    "run_stream": Command("run_stream", _live_main, _live_parser, ("run_stream.py",)),
    "run_web": Command("run_web", _web_main, _web_parser, ("run_web.py",)),
    "models": Command("models", _models_main, _models_parser, ("-m", "streamer.models")),
    "run_train": Command("run_train", _train_main, _train_parser, ("run_train.py",)),
}


def option_actions(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
                   ) -> Iterator[tuple[tuple[str, ...], argparse.Action]]:
    """(subcommand path, action) for every option of `parser` and of its subcommands; an
    option shared by several subcommands is listed under each."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from option_actions(sub, prefix + (name,))
        elif action.option_strings:
            yield prefix, action


def number_options(command: Command) -> Iterator[tuple[tuple[str, ...], str, object]]:
    """(subcommand path, option, Range) for every ranged number option of `command`."""
    for sub, action in option_actions(command.parser()):
        rng = getattr(action.type, "range", None)
        if rng is not None:
            yield sub, action.option_strings[-1], rng


def run_process(command: Command, *args: str, env: dict | None = None, timeout: float = 120
                ) -> subprocess.CompletedProcess:
    """The command in a fresh interpreter, as a user runs it (exit status and stderr)."""
    return subprocess.run([sys.executable, *command.argv, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def error_lines(text: str) -> list[str]:
    return [line for line in text.strip().splitlines() if line.strip()]
