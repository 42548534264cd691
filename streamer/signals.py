"""SIGTERM and SIGHUP stop a command the way Ctrl+C does.

A service manager, `kill`, `timeout` or a closed terminal sends SIGTERM or SIGHUP; their
default action ends the process on the spot, which leaves a temporary `.partial-` output,
an unplayable recording or the web server's upload folder behind. Inside `stop_signals()`
they raise `Terminated` (a KeyboardInterrupt, so every cleanup path written for Ctrl+C runs)
or call the given handler; the command then exits with 128 + the signal number, as a shell
reports a process that a signal ended (143 for SIGTERM, 129 for SIGHUP, 130 for Ctrl+C).
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

#: the signals handled like Ctrl+C (SIGHUP does not exist on Windows)
STOP_SIGNALS: tuple[int, ...] = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class Terminated(KeyboardInterrupt):
    """A stop signal other than SIGINT arrived (see the module docstring)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def exit_status(exc: BaseException | None = None, signum: int | None = None) -> int:
    """128 + the signal that stopped the command: from `Terminated`, from `signum`, else
    SIGINT (a plain KeyboardInterrupt)."""
    if signum is None:
        signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
    return 128 + int(signum)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


@contextmanager
def stop_signals(handler: Callable[[int], None] | None = None) -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP call `handler(signum)`, or by default raise
    `Terminated` in the main thread. Only the main thread can install handlers: elsewhere
    (tests calling main() from a thread) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum, frame):
        if handler is None:
            raise Terminated(signum)
        handler(signum)

    old = {}
    for sig in STOP_SIGNALS:
        try:
            old[sig] = signal.signal(sig, on_signal)
        except (ValueError, OSError):
            pass
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)
