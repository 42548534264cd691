"""Stop signals: SIGTERM and SIGHUP stop a command the way Ctrl+C does, a stop cannot be cut
short by the next signal, and an interrupt says what became of the outputs.

A service manager, `kill`, `timeout` or a closed terminal sends SIGTERM or SIGHUP; their
default action ends the process on the spot, which leaves a temporary `.partial-` output,
an unplayable recording or the web server's upload folder behind. Inside `stop_signals()`
they raise `Terminated` (a KeyboardInterrupt, so every cleanup path written for Ctrl+C runs)
or call the given handler; the command then exits with 128 + the signal number, as a shell
reports a process that a signal ended (143 for SIGTERM, 129 for SIGHUP, 130 for Ctrl+C).
A signal the process was started with ignored (`nohup` ignores SIGHUP) stays ignored.

Stopping takes a moment: the stage threads finish the model call they are in, files are
closed and removed. A second Ctrl+C (or a SIGTERM after it) that lands meanwhile must not
abandon that: a thread still inside ONNX Runtime, OpenVINO or OpenCV when Python exits is
torn down mid-call, and the process aborts ("terminate called without an active
exception", exit 134). `stop_once()` (the commands' frame) lets the first signal through and
ignores the ones after it until the stop is done; `deferred()` holds signals back for a
short section (starting or joining threads, renaming a finished file) and delivers them
after it.

An output that was being written when an interrupt came says what became of it on the
interrupt itself (`add_interrupt_note`): "the unfinished output X was removed", or "X was
already complete and is kept" when the interrupt came after its last-moment rename; the
command's one `interrupted` line carries these notes (`interrupt_notes`).
"""
from __future__ import annotations

import functools
import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

#: the signals handled like Ctrl+C (SIGHUP does not exist on Windows)
STOP_SIGNALS: tuple[int, ...] = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))
#: every signal that stops a command: Ctrl+C and the ones above
ALL_STOP_SIGNALS: tuple[int, ...] = (signal.SIGINT, *STOP_SIGNALS)

_NOTES = "toonstream_interrupt_notes"  # the attribute that carries an interrupt's notes


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


def interrupt_for(signum: int) -> KeyboardInterrupt:
    """The exception a stop signal raises: KeyboardInterrupt for SIGINT, else Terminated."""
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


def add_interrupt_note(exc: BaseException, note: str) -> None:
    """Say on an interrupt what it did to an output (kept or removed), for its message."""
    notes = exc.__dict__.setdefault(_NOTES, [])
    if note not in notes:
        notes.append(note)


def interrupt_notes(exc: BaseException) -> list[str]:
    """The notes added to `exc` while it unwound, in order."""
    return list(exc.__dict__.get(_NOTES, ()))


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _install(signums: tuple[int, ...], handler) -> dict[int, object]:
    """Install `handler` for each of `signums` that is handled or default now (one that is
    ignored stays ignored: nohup); the previous handlers, to restore."""
    old = {}
    for sig in signums:
        try:
            previous = signal.getsignal(sig)
            if previous in (signal.SIG_IGN, None):  # None: installed outside Python
                continue
            old[sig] = signal.signal(sig, handler)
        except (ValueError, OSError):
            pass
    return old


def _restore(old: dict[int, object]) -> None:
    for sig, previous in old.items():
        signal.signal(sig, previous)


@contextmanager
def stop_signals(handler: Callable[[int], None] | None = None) -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP call `handler(signum)`, or by default raise
    `Terminated` in the main thread. Only the main thread can install handlers: elsewhere
    (tests calling main() from a thread) this does nothing."""
    if not _main_thread():
        yield
        return

    def on_signal(signum, frame):
        if handler is None:
            raise Terminated(signum)
        handler(signum)

    old = _install(STOP_SIGNALS, on_signal)
    try:
        yield
    finally:
        _restore(old)


@contextmanager
def stop_once() -> Iterator[None]:
    """Within the block, the first of SIGINT, SIGTERM and SIGHUP raises its interrupt
    (KeyboardInterrupt, `Terminated`), and any that come after it are ignored until the
    block ends: the stop the first one began (threads joined, files closed and removed)
    runs to its end instead of being abandoned half-way. After such a stop they stay
    ignored when the block ends: the command is exiting, and one more signal could only
    cut its exit short (a traceback, a model call torn down). Without one, the previous
    handlers come back. Main thread only (elsewhere this does nothing); a handler
    installed inside the block (the live session's) takes over there until it restores
    this one."""
    if not _main_thread():
        yield
        return
    stopping: list[int] = []

    def on_signal(signum, frame):
        if stopping:
            return  # already stopping: the first signal's stop runs to its end
        stopping.append(signum)
        raise interrupt_for(signum)

    old = _install(ALL_STOP_SIGNALS, on_signal)
    try:
        yield
    finally:
        if stopping:
            for sig in old:
                signal.signal(sig, signal.SIG_IGN)
        else:
            _restore(old)


@contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP back for the block (a few lines that must not be
    cut in two: starting or joining threads, a rename and its bookkeeping) and deliver
    each one that arrived to the handler in place once the block has ended, so it acts as
    if it had come just then (an interrupt raised, or the default action). Main thread
    only: elsewhere this does nothing (signals reach Python in the main thread)."""
    if not _main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum, frame):
        if signum not in held:
            held.append(signum)

    old = _install(ALL_STOP_SIGNALS, hold)
    try:
        yield
    finally:
        _restore(old)
        for signum in held:
            signal.raise_signal(signum)  # the restored handler runs now


class _SignalStack:
    """sigaltstack(2) through ctypes (Linux and macOS only)."""

    def __init__(self) -> None:
        import ctypes

        class StackT(ctypes.Structure):
            _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int),
                        ("ss_size", ctypes.c_size_t)]

        self._ctypes, self._type = ctypes, StackT
        self._libc = ctypes.CDLL(None, use_errno=True)

    def get(self):
        current = self._type()
        self._libc.sigaltstack(None, self._ctypes.byref(current))
        return current

    def set(self, stack) -> None:
        self._libc.sigaltstack(self._ctypes.byref(stack), None)


@functools.cache
def _signal_stack() -> _SignalStack | None:
    """The process's sigaltstack access, made once; None where there is none (Windows)."""
    if not hasattr(signal, "SIGALRM"):  # no POSIX signals
        return None
    try:
        return _SignalStack()
    except (OSError, AttributeError):
        return None


@contextmanager
def keep_signal_stack() -> Iterator[None]:
    """Leave this thread's alternate signal stack as it was before the block.

    OpenVINO's CPU plugin (2026.4), loaded by a Core's first call on "CPU", gives the
    calling thread an alternate signal stack of its own, and puts back the one it found
    when that Core is freed. Two Cores (a style switch) freed in the order they were made
    put back a stack already unmapped, and the next signal the thread takes (Ctrl+C,
    SIGTERM) finds no stack to run on: the kernel ends the process with SIGSEGV (exit 139).
    Calls that may load the plugin or compile made inside this block leave the thread's
    own stack in place, so what OpenVINO puts back is always a live one."""
    stack = _signal_stack()
    if stack is None:
        yield
        return
    before = stack.get()
    try:
        yield
    finally:
        stack.set(before)
