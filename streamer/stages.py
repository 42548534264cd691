"""The lifecycle every source and sink keeps, so that the pipeline and the apps drive them
without knowing their types.

    source = SomeSource(...)   # opens: a camera, a file; fails here with a UserError
    source.info                # StreamInfo: what it delivers (and source.audio, if any)
    source.describe()          # one line for the log
    for frame in source.frames(): ...   # once, in the pipeline's source thread
    source.stop()              # any thread: frames() ends soon after
    source.close()             # releases the device or file; exactly once, idempotent

    sink = SomeSink(...)       # opens (a file under a temporary name, a device)
    sink.write(frame)          # in the pipeline's sink thread
    sink.finish()              # the stream ended normally: flush and commit
    sink.close()               # releases; without finish() the output is discarded

`close()` may be called any number of times from any thread (an app's `finally`, a second
Ctrl+C); the release runs once. Both are context managers that close on exit; a sink left
by an interrupt says on it what became of its output (`interrupt_note`).
"""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Iterator

from streamer.frame import AudioTrack, Frame, StreamInfo
from streamer.signals import add_interrupt_note


class _ClosesOnce:
    """close() runs `_release()` exactly once, whoever calls it and however often."""

    _close_lock: threading.Lock
    _closed: bool = False

    def close(self) -> None:
        lock = self.__dict__.get("_close_lock")
        if lock is None:
            lock = self.__dict__.setdefault("_close_lock", threading.Lock())
        with lock:
            if self._closed:
                return
            self._closed = True
        self._release()

    @property
    def closed(self) -> bool:
        return self._closed

    def _release(self) -> None:
        """Free what the stage holds (override)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Source(_ClosesOnce, ABC):
    """Where frames come from; see the module docstring for the lifecycle."""

    name = "source"
    info: StreamInfo
    audio: AudioTrack | None = None  # the side stream of a file's audio, if it has one
    skipped: int = 0  # frames a live source had to leave out (it fell behind the clock)
    ended_reason: str | None = None  # why frames() ended: "end", "stopped" or a failure

    @abstractmethod
    def frames(self) -> Iterator[Frame]:
        """Yield frames in presentation order; runs in the source thread."""

    def stop(self) -> None:
        """Ask frames() to end soon (any thread). Sources that block on a device override
        this to wake it."""
        self.__dict__["_stop_requested"] = True

    @property
    def stop_requested(self) -> bool:
        return self.__dict__.get("_stop_requested", False)

    def describe(self) -> str:
        return self.name


class Sink(_ClosesOnce, ABC):
    """Where frames go; see the module docstring for the lifecycle."""

    name = "sink"

    @abstractmethod
    def write(self, frame: Frame) -> None:
        """Consume one frame; runs in the sink thread."""

    def finish(self) -> None:
        """The stream ended normally: flush and commit (not called after an error)."""

    def interrupt_note(self) -> str | None:
        """After close(): what became of the output, for the line an interrupt prints
        ("the unfinished output X was removed", "X was already complete and is kept");
        None when there is nothing to say (a device, a stream)."""
        return None

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()
        if isinstance(exc, KeyboardInterrupt):
            note = self.interrupt_note()
            if note:
                add_interrupt_note(exc, note)

    def describe(self) -> str:
        return self.name
