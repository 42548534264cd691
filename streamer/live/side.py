"""A second thread for the toon thread's own work: one call at a time, handed over and
waited for without a queue, a future or a new thread per frame.

Why only beside the background half (live/toon.py), never beside a model run of the
heads: on a 2-core machine the runtime already spreads one inference over both cores, and
anything running beside it stalls its parallel sections (`python -m bench.second_core`:
on the Xeon of the README an int8 head took 48 ms alone and 94 ms with a paste loop
beside it). The background half is mostly a warp of the last background (face-first
scheduling), light work that the tracking on this thread overlaps well.
"""
from __future__ import annotations

import threading
from typing import Any, Callable


class SideThread:
    """`start(fn, *args)` runs `fn(*args)` on the side thread; `result()` waits for it and
    returns its value, or raises what it raised. The thread is a daemon made on first use;
    between calls it waits on an event and holds nothing."""

    def __init__(self, name: str = "toonstream-side"):
        self.name = name
        self._go = threading.Event()
        self._done = threading.Event()
        self._call: tuple[Callable[..., Any], tuple] | None = None
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._busy = False

    def start(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._busy:
            raise RuntimeError("SideThread.start: the previous call's result() was not taken")
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()
        self._call, self._busy = (fn, args), True
        self._done.clear()
        self._go.set()

    def result(self) -> Any:
        self._done.wait()
        self._busy = False
        value, error = self._value, self._error
        self._value = self._error = None
        if error is not None:
            raise error
        return value

    def _loop(self) -> None:
        while True:
            self._go.wait()
            self._go.clear()
            fn, args = self._call
            self._call = None
            try:
                self._value = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller by result()
                self._error = exc
            self._done.set()
