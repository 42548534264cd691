"""Controls while streaming: keys in the preview window and lines on standard input.

    preview keys   1..7 a style (catalog order), n / p next / previous, o overlay on/off,
                   q or Esc quit
    stdin lines    `style 3d` or just `3d`, a number 1..7, a blend `anime+3d:0.3` (the
                   light network's, --net mobile), `next`, `prev`, `status`, `quit` (or
                   `q`), `help`

Commands are parsed here and queued; the main thread runs them, so nothing but the queue
is shared with the reader thread.
"""
from __future__ import annotations

import queue
import sys
import threading
from dataclasses import dataclass
from typing import TextIO

HELP = ("commands: style NAME (or just NAME), 1..7, A+B:T (a blend, --net mobile), next, "
        "prev, status, quit; "
        "preview keys: 1..7, n, p, o (overlay), q")


@dataclass(frozen=True)
class Command:
    action: str  # style | next | prev | quit | status | help | overlay | error
    arg: str = ""


def parse_line(line: str, styles: tuple[str, ...]) -> Command | None:
    """A command from one line of standard input; None for a blank line."""
    words = line.strip().lower().split()
    if not words:
        return None
    head, rest = words[0], words[1:]
    if head in ("q", "quit", "exit", "stop"):
        return Command("quit")
    if head in ("n", "next"):
        return Command("next")
    if head in ("p", "prev", "previous"):
        return Command("prev")
    if head in ("s", "status", "stats"):
        return Command("status")
    if head in ("h", "help", "?"):
        return Command("help")
    if head == "overlay":
        return Command("overlay")
    if head == "style":
        if not rest:
            return Command("error", f"which style? {', '.join(styles)}")
        head = rest[0]
    return _style_command(head, styles)


def _style_command(word: str, styles: tuple[str, ...]) -> Command:
    if word.isdigit() and 1 <= int(word) <= len(styles):
        return Command("style", styles[int(word) - 1])
    if word in styles:
        return Command("style", word)
    if "+" in word:  # a blend: its two names must be styles of this stream
        from streamer.models.mobile.student import StudentError, parse_blend

        try:
            unknown = [s for s in parse_blend(word) if s not in styles]
        except StudentError as exc:
            return Command("error", str(exc))
        if not unknown:
            return Command("style", word)
        return Command("error", f"unknown style {unknown[0]!r} in the blend {word!r}; styles: "
                                f"{', '.join(styles)}")
    return Command("error", f"unknown command or style {word!r}; styles: {', '.join(styles)} "
                            f"(or 1..{len(styles)}); type help")


def key_command(key: int | None, styles: tuple[str, ...]) -> Command | None:
    """A command from a key pressed in the preview window."""
    if key is None or key < 0:
        return None
    if key in (ord("q"), ord("Q"), 27):
        return Command("quit")
    ch = chr(key) if 32 <= key < 127 else ""
    if ch.isdigit() and 1 <= int(ch) <= len(styles):
        return Command("style", styles[int(ch) - 1])
    if ch in ("n", "N", " "):
        return Command("next")
    if ch in ("p", "P"):
        return Command("prev")
    if ch in ("o", "O"):
        return Command("overlay")
    if ch in ("s", "S"):
        return Command("status")
    return None


def step_style(current: str, styles: tuple[str, ...], step: int) -> str:
    i = styles.index(current) if current in styles else 0
    return styles[(i + step) % len(styles)]


class StdinCommands:
    """Read commands from a text stream in a daemon thread into `queue`.

    End of input (stdin closed or redirected from /dev/null) just stops the reader: it is
    not a request to quit, so the stream can run detached.
    """

    def __init__(self, styles: tuple[str, ...], stream: TextIO | None = None):
        self.styles = styles
        self.stream = stream if stream is not None else sys.stdin
        self.queue: queue.Queue[Command] = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> StdinCommands:
        if self.stream is None or getattr(self.stream, "closed", False):
            return self
        self._thread = threading.Thread(target=self._read, name="toonstream-stdin", daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        try:
            for line in self.stream:
                cmd = parse_line(line, self.styles)
                if cmd is not None:
                    self.queue.put(cmd)
        except (OSError, ValueError):  # closed underneath us
            pass

    def pending(self) -> list[Command]:
        out = []
        while True:
            try:
                out.append(self.queue.get_nowait())
            except queue.Empty:
                return out
