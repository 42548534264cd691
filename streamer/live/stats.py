"""Live measurements: capture-to-sink latency for every frame, fps in and out, drops per
stage, and the periodic one-line status.

Latency is kept two ways so memory stays flat however long the stream runs: a log-spaced
histogram over the whole run (1 % wide bins from 0.1 ms to 100 s, so a percentile is
exact to within 1 %), and the raw values of the current status window (a few seconds).
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable


class LatencyHistogram:
    """Seconds -> counts in log-spaced bins; percentiles within `GROWTH` of the truth."""

    LOW = 1e-4  # 0.1 ms
    HIGH = 100.0
    GROWTH = 1.01

    def __init__(self) -> None:
        self._log_growth = math.log(self.GROWTH)
        self.bins = [0] * (int(math.log(self.HIGH / self.LOW) / self._log_growth) + 2)
        self.count = 0
        self.total = 0.0
        self.max = 0.0
        self.min = math.inf

    def add(self, seconds: float) -> None:
        if seconds <= self.LOW:
            i = 0
        else:
            i = min(len(self.bins) - 1, 1 + int(math.log(seconds / self.LOW) / self._log_growth))
        self.bins[i] += 1
        self.count += 1
        self.total += seconds
        self.max = max(self.max, seconds)
        self.min = min(self.min, seconds)

    def percentile(self, q: float) -> float | None:
        """The q-th percentile (0..100) in seconds: the upper edge of the bin that holds it
        (clamped to the observed extremes); None with no samples."""
        if not self.count:
            return None
        rank = max(1, math.ceil(self.count * q / 100.0))
        seen = 0
        for i, n in enumerate(self.bins):
            seen += n
            if seen >= rank:
                edge = self.LOW * self.GROWTH ** i
                return min(max(edge, self.min), self.max)
        return self.max

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None


def percentile(values, q: float) -> float | None:
    """Nearest-rank percentile of raw values (None when empty)."""
    vals = sorted(values)
    if not vals:
        return None
    return vals[max(0, math.ceil(len(vals) * q / 100.0) - 1)]


@dataclass
class Window:
    """What one status line reports."""

    seconds: float
    fps_in: float
    fps_out: float
    p50_ms: float | None
    p95_ms: float | None
    drops: dict[str, int]
    frames_out: int


@dataclass
class LiveStats:
    """Counters shared by the live threads. `record(frame)` runs in the sink thread after
    every frame; everything else reads."""

    started: float = field(default_factory=time.monotonic)
    histogram: LatencyHistogram = field(default_factory=LatencyHistogram)
    frames_out: int = 0
    first_out: float | None = None
    last_out: float | None = None
    window: deque = field(default_factory=lambda: deque(maxlen=4096))  # (t, latency)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record_latency(self, latency: float, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self.histogram.add(latency)
            self.frames_out += 1
            if self.first_out is None:
                self.first_out = now
            self.last_out = now
            self.window.append((now, latency))

    def recent(self, since: float) -> list[float]:
        with self._lock:
            return [lat for t, lat in self.window if t >= since]


class StatusReporter:
    """Builds the status line every `every` seconds from the live counters.

    `frames_in()` and `drops()` are callables so the reporter reads whatever the pipeline
    and sources count (queue drops, source skips, sink drops) without owning them.
    """

    def __init__(self, stats: LiveStats, frames_in: Callable[[], int],
                 drops: Callable[[], dict[str, int]], describe: Callable[[], str],
                 every: float = 5.0, emit: Callable[[str], None] | None = None):
        self.stats = stats
        self.frames_in = frames_in
        self.drops = drops
        self.describe = describe
        self.every = every
        self.emit = emit
        self._last_t = stats.started
        self._last_in = 0
        self._last_out = 0
        self._last_drops: dict[str, int] = {}
        self.latest: Window | None = None

    def restart(self, now: float) -> None:
        """Count the first window from `now` (the moment the stream starts)."""
        self._last_t = now

    def window(self, now: float | None = None) -> Window:
        now = time.monotonic() if now is None else now
        dt = max(now - self._last_t, 1e-9)
        n_in, n_out = self.frames_in(), self.stats.frames_out
        lat = self.stats.recent(self._last_t)
        drops = self.drops()
        w = Window(seconds=dt, fps_in=(n_in - self._last_in) / dt,
                   fps_out=(n_out - self._last_out) / dt,
                   p50_ms=_ms(percentile(lat, 50)), p95_ms=_ms(percentile(lat, 95)),
                   drops={k: v - self._last_drops.get(k, 0) for k, v in drops.items()},
                   frames_out=n_out)
        self._last_t, self._last_in, self._last_out, self._last_drops = now, n_in, n_out, drops
        self.latest = w
        return w

    def line(self, w: Window, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        lat = (f"p50 {w.p50_ms:.0f} ms p95 {w.p95_ms:.0f} ms" if w.p50_ms is not None
               else "p50 - p95 -")
        drops = " ".join(f"{k} {v}" for k, v in w.drops.items())
        return (f"[{now - self.stats.started:7.1f}s] in {w.fps_in:5.1f} fps  out {w.fps_out:5.1f} "
                f"fps  latency {lat}  drops {drops}  {self.describe()}")

    def tick(self, now: float | None = None) -> str | None:
        """Emit and return a status line when `every` seconds have passed."""
        now = time.monotonic() if now is None else now
        if self.every <= 0 or now - self._last_t < self.every:
            return None
        text = self.line(self.window(now), now)
        if self.emit is not None:
            self.emit(text)
        return text


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def summary(stats: LiveStats, frames_in: int, drops: dict[str, int], elapsed: float) -> dict:
    """Whole-run numbers for --stats-json and the closing line."""
    h = stats.histogram
    span = ((stats.last_out - stats.first_out) if stats.first_out is not None
            and stats.last_out is not None else 0.0)
    return {
        "seconds": round(elapsed, 3),
        "frames_in": frames_in,
        "frames_out": stats.frames_out,
        "fps_in": round(frames_in / elapsed, 2) if elapsed > 0 else 0.0,
        "fps_out": round((stats.frames_out - 1) / span, 2) if span > 0 else 0.0,
        "latency_ms": {
            "p50": _round(_ms(h.percentile(50))), "p95": _round(_ms(h.percentile(95))),
            "p99": _round(_ms(h.percentile(99))), "mean": _round(_ms(h.mean)),
            "max": _round(_ms(h.max if h.count else None)),
            "min": _round(_ms(h.min if h.count else None)),
        },
        "drops": dict(drops),
    }


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 2)
