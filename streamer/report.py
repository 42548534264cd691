"""The command-line frame every entry point shares: one-line messages on stderr, the exit
codes, and the one place that turns an exception into what the user reads.

run_video, run_stream, run_web and `python -m streamer.models` all parse their command line
with `CommandParser` and end through `fail()` (or `run_main()`), so a failure looks the same
everywhere: `error: <one line>`, never a traceback (set TOONSTREAM_DEBUG=1 to see one for an
unexpected error), and one rule for the exit status (README, "Errors, warnings and exit
codes"): 2 when the command as written is wrong (argparse refuses it, or a UsageError: a
setting out of range, a bad preset, an unknown style), 1 when the run failed, 128 + the
signal when it was stopped.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Callable, TextIO

from streamer.errors import UsageError, UserError

EXIT_OK = 0
EXIT_ERROR = 1  # the run failed: an input, an output, the model store, the network, a device
EXIT_USAGE = 2  # the command as written is wrong (as argparse exits): a UsageError
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl+C (143 SIGTERM, 129 SIGHUP)


def one_line(text: object) -> str:
    """`text` with all whitespace runs (newlines included) folded to single spaces."""
    return " ".join(str(text).split())


class Log:
    """Human-facing lines on stderr (stdout stays free for the caller's data).

    The stream is looked up at each call unless one is given, so a test that swaps
    sys.stderr (pytest's capsys) sees the lines."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream

    def __call__(self, line: str) -> None:
        print(line, file=self.stream or sys.stderr, flush=True)


def describe_error(exc: BaseException, stage: str | None = None) -> str:
    """The text after `error: `: a user error's own message; for anything else its type,
    so an unexpected failure is still one line but recognisable as a bug."""
    if isinstance(exc, UserError):
        return one_line(exc)
    where = f"{stage} stage: " if stage else ""
    return f"{where}{type(exc).__name__}: {one_line(exc)}"


class CommandLineError(UsageError):
    """argparse refused the command line; the message names the option and --help."""


class CommandParser(argparse.ArgumentParser):
    """argparse with the one-line error contract: a refused command line raises
    CommandLineError, which the entry point reports like every other failure (`error: ...
    (see PROG --help)`, exit 2) instead of argparse's usage block and exit. Subcommands'
    parsers are this class too (argparse makes them with the parent's class)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CommandLineError(f"{one_line(message)} (see {self.prog} --help)")


def failure_status(exc: BaseException) -> int:
    """The exit status for a failure: 2 for a command that is wrong as written
    (UsageError), 1 for everything else."""
    return EXIT_USAGE if isinstance(exc, UsageError) else EXIT_ERROR


def fail(exc: BaseException, log: Log, stage: str | None = None,
         status: int | None = None) -> int:
    """Report `exc` in one line and return the exit status for it (`status`, else
    failure_status(exc))."""
    if status is None:
        status = failure_status(exc)
    if isinstance(exc, OSError) and not isinstance(exc, UserError) and exc.strerror:
        # Disk full, permission denied and the like: the user's environment, not a bug.
        where = f" ({exc.filename})" if exc.filename else ""
        log(f"error: {one_line(exc.strerror)}{where}")
        return status
    log(f"error: {describe_error(exc, stage)}")
    if not isinstance(exc, UserError) and os.environ.get("TOONSTREAM_DEBUG"):
        traceback.print_exception(exc)
    return status


def run_main(body: Callable[[], int], log: Log,
             after_interrupt: str | Callable[[], str] = "") -> int:
    """Run an entry point's body and turn whatever escapes it into one line and an exit
    status: Ctrl+C, SIGTERM or SIGHUP -> "interrupted[ by SIGTERM]" + `after_interrupt` (or
    what it returns, when it says only then what was under way) + the outputs' notes ("the
    unfinished output X was removed", "X was already complete and is kept") and
    128 + the signal (see streamer.signals); a failed pipeline stage -> the stage's own
    error; anything else -> `fail()`."""
    from streamer.pipeline.core import PipelineError
    from streamer.signals import (Terminated, exit_status, interrupt_notes, signal_name,
                                  stop_once)

    # SIGTERM/SIGHUP unwind like Ctrl+C; a second signal cannot cut that unwinding short
    # (threads left in a model call abort the process at exit, a partial file stays).
    with stop_once():
        try:
            return body()
        except KeyboardInterrupt as exc:
            by = f" by {signal_name(exc.signum)}" if isinstance(exc, Terminated) else ""
            tail = after_interrupt() if callable(after_interrupt) else after_interrupt
            # what the outputs under way became (removed, or complete and kept)
            notes = "".join(f"; {note}" for note in interrupt_notes(exc))
            log(f"interrupted{by}{tail}{notes}")
            return exit_status(exc)
        except PipelineError as exc:
            return fail(exc.error, log, exc.stage)
        except Exception as exc:  # noqa: BLE001 - one line, never a traceback
            return fail(exc, log)
