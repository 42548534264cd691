"""Style switching for the live toon: never stops the stream, never blocks the toon thread.

`switch()` starts a loader thread that builds the new style's chain (through the factory)
and warms it up at the working size (OpenVINO compiles per shape, ONNX Runtime sizes its
arena on the first run), then swaps it in with one reference assignment. The toon thread
reads that reference once per batch (`active`), so no lock is held across inference.
Built styles are cached (the last `cache_size`), so switching back is instant. Requests
made while a style loads are coalesced: the last one wins.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable

from streamer.toon.link import Link

Factory = Callable[[str], Link]


class StyleSwitcher:
    """The current style's chain, and the switches to another one (any thread)."""

    def __init__(self, factory: Factory, style: str, first: Link,
                 warm: Callable[[Link], None], *, cache_size: int = 3,
                 on_event: Callable[[str], None] | None = None,
                 calls: Callable[[], int] = lambda: 0):
        """`warm`: warms a newly built chain up at the current working size; `calls`: the
        toon's call count, recorded with each switch."""
        self.factory = factory
        self.warm = warm
        self.cache_size = max(1, cache_size)
        self.on_event = on_event
        self._calls = calls
        self.style = style
        self.active: Link = first  # one reference: a switch lands between batches
        self._cache: OrderedDict[str, Link] = OrderedDict([(style, first)])
        self._lock = threading.Lock()  # guards the switch bookkeeping only
        self._wanted: str | None = None
        self._loader: threading.Thread | None = None
        self._loader_running = False  # under _lock: a loader will still look at _wanted
        self._rebuild = False  # under _lock: the current style is being built again
        self.loading: str | None = None
        self.switches: list[dict] = []
        self.errors: list[str] = []

    def switch(self, style: str) -> None:
        """Ask for `style`; returns at once. The swap happens when it is ready."""
        with self._lock:
            if style == self.style and self.loading is None:
                return
            cached = self._cache.get(style)
            if cached is not None and self.loading is None:
                self._swap(style, cached, 0.0)
                return
            self._wanted = style
            if not self._loader_running:
                self._loader_running = True
                self._loader = threading.Thread(target=self._load, name="toonstream-style",
                                                daemon=True)
                self._loader.start()

    def rebuild(self) -> None:
        """Build the current style again through the factory, whose engines changed (a
        precision move, live/precision.py), and swap it in when it is warm; the cached
        chains of the old engines are dropped. Returns at once."""
        with self._lock:
            self._cache.clear()
            self._rebuild = True
            self._wanted = self.style
            if not self._loader_running:
                self._loader_running = True
                self._loader = threading.Thread(target=self._load, name="toonstream-style",
                                                daemon=True)
                self._loader.start()

    def _swap(self, style: str, chain: Link, load_s: float) -> None:
        previous = self.style
        self.active = chain
        self.style = style
        self._cache[style] = chain
        self._cache.move_to_end(style)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        if previous == style:  # a rebuild, not a switch
            if self.on_event:
                self.on_event(f"style: {style} rebuilt on the new engines in {load_s:.1f} s")
            return
        self.switches.append({"from": previous, "to": style, "load_s": round(load_s, 3),
                              "at_call": self._calls()})
        if self.on_event:
            self.on_event(f"style: {previous} -> {style}"
                          + (f" (loaded in {load_s:.1f} s)" if load_s else ""))

    def _load(self) -> None:
        while True:
            with self._lock:
                style, self._wanted = self._wanted, None
                if style is None:
                    self.loading = None
                    self._loader_running = False
                    return
                self.loading = style
                cached = None if self._rebuild else self._cache.get(style)
            t0 = time.perf_counter()
            try:
                chain = cached if cached is not None else self.factory(style)
                if cached is None:
                    self.warm(chain)  # so the first live frame of the style is not slow
            except Exception as exc:  # noqa: BLE001 - keep streaming the old style
                msg = (f"style {style!r} failed to load, keeping {self.style}: "
                       f"{' '.join(str(exc).split())}")
                self.errors.append(msg)
                if self.on_event:
                    self.on_event(msg)
                continue
            with self._lock:
                if self._wanted is None or self._wanted == style:
                    self._wanted = None
                    if style != self.style or self._rebuild:
                        self._rebuild = False
                        self._swap(style, chain, time.perf_counter() - t0)
                else:
                    self._cache[style] = chain  # superseded: keep it for later

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until no style is loading (tests, benchmarks)."""
        t = self._loader
        if t is not None:
            t.join(timeout)
            return not t.is_alive()
        return True
