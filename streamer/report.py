"""The command-line frame every entry point shares: one-line messages on stderr, the exit
codes, and the one place that turns an exception into what the user reads.

run_video, run_stream, run_web and `python -m streamer.models` all end through `fail()`
(or `run_main()`), so a failure looks the same everywhere: `error: <one line>` and exit 1,
never a traceback (set TOONSTREAM_DEBUG=1 to see one for an unexpected error).
"""
from __future__ import annotations

import os
import sys
import traceback
from typing import Callable, TextIO

from streamer.errors import UserError

EXIT_OK = 0
EXIT_ERROR = 1  # the run failed (run_video, run_stream, run_web)
EXIT_USAGE = 2  # a bad command line, as argparse exits; the model CLI uses it for every error
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


def fail(exc: BaseException, log: Log, stage: str | None = None,
         status: int = EXIT_ERROR) -> int:
    """Report `exc` in one line and return the exit status for it."""
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
    what it returns, when it says only then what was under way) and
    128 + the signal (see streamer.signals); a failed pipeline stage -> the stage's own
    error; anything else -> `fail()`."""
    from streamer.pipeline.core import PipelineError
    from streamer.signals import Terminated, exit_status, signal_name, stop_signals

    try:
        with stop_signals():  # SIGTERM/SIGHUP unwind like Ctrl+C
            return body()
    except KeyboardInterrupt as exc:
        by = f" by {signal_name(exc.signum)}" if isinstance(exc, Terminated) else ""
        tail = after_interrupt() if callable(after_interrupt) else after_interrupt
        log(f"interrupted{by}{tail}")
        return exit_status(exc)
    except PipelineError as exc:
        return fail(exc.error, log, exc.stage)
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback
        return fail(exc, log)
