"""One live run: source -> toon (LiveToon) -> all sinks, with controls and status lines.

The session owns its sinks (it closes them); the source belongs to the caller.
"""
from __future__ import annotations

import signal
import threading
import time
from typing import Callable

from streamer.pipeline.core import Pipeline
from streamer.report import Log
from streamer.signals import Terminated, signal_name, stop_signals
from streamer.sinks.multi import MultiSink
from streamer.sinks.preview import PreviewSink
from streamer.stages import Sink, Source
from streamer.toon.stage import ToonStage

from .controls import HELP, Command, StdinCommands, key_command, step_style
from .stats import LiveStats, StatusReporter, summary
from .toon import LiveToon


class LiveSession:
    """One live run: source -> ToonStage(LiveToon) -> MultiSink, with controls and stats."""

    def __init__(self, source: Source, sinks: list[Sink], toon: LiveToon, *,
                 styles: tuple[str, ...], queue: int = 1, status_every: float = 5.0,
                 seconds: float | None = None, describe: Callable[[], str] | None = None,
                 commands: StdinCommands | None = None, log: Callable[[str], None] | None = None):
        self.source, self.toon = source, toon
        # the one sink with keys and a window to pump
        self.preview = next((k for k in sinks if isinstance(k, PreviewSink)), None)
        self.styles = styles
        self.log = log or Log()
        self.stats = LiveStats()
        self.sink = MultiSink(sinks, on_written=self.stats.record_latency)
        self.stage = ToonStage(toon, batch_size=1)
        self.pipeline = Pipeline(source, self.stage, self.sink, queue_size=queue, live=True)
        self.seconds = seconds
        self.commands = commands
        self._describe = describe or (lambda: "")
        self.reporter = StatusReporter(self.stats, lambda: self.pipeline.stats.frames_in,
                                       self.drops, self.describe, every=status_every,
                                       emit=self.log)
        self.quit_reason: str | None = None
        self._interrupts = 0
        self.stop_signal: int | None = None  # SIGTERM/SIGHUP that stopped the session

    def describe(self) -> str:
        style = self.toon.style + (f" -> {self.toon.loading} (loading)" if self.toon.loading
                                   else "")
        return f"style {style}  {self._describe()}"

    def drops(self) -> dict[str, int]:
        return {"source": self.source.skipped,
                "toon": self.pipeline.q_in.dropped, "sink": self.pipeline.q_out.dropped}

    def overlay_text(self) -> str:
        w = self.reporter.latest
        if w is None or w.p50_ms is None:  # before the first status window: last 2 s
            lat = sorted(self.stats.recent(time.monotonic() - 2.0))
            head = f"latency {lat[len(lat) // 2] * 1000:.0f} ms" if lat else "latency -"
        else:
            head = f"{w.fps_out:.0f} fps  latency {w.p50_ms:.0f} ms"
        loading = f" -> {self.toon.loading}..." if self.toon.loading else ""
        return f"{head}\n{self.toon.style}{loading}"

    def stop(self, reason: str) -> None:
        if self.quit_reason is None:
            self.quit_reason = reason
        self.pipeline.request_stop()  # stops the source too

    def handle(self, cmd: Command) -> None:
        if cmd.action == "quit":
            self.log("quitting")
            self.stop("quit")
        elif cmd.action == "style":
            self.toon.switch(cmd.arg)
        elif cmd.action in ("next", "prev"):
            target = self.toon.loading or self.toon.style
            self.toon.switch(step_style(target, self.styles, 1 if cmd.action == "next" else -1))
        elif cmd.action == "status":
            self.log(self.reporter.line(self.reporter.window()))
        elif cmd.action == "overlay" and self.preview is not None:
            self.preview.overlay = not self.preview.overlay
        elif cmd.action == "help":
            self.log(HELP)
        elif cmd.action == "error":
            self.log(cmd.arg)

    def _tick(self, _stats) -> None:
        if self.preview is not None:
            cmd = key_command(self.preview.pump(), self.styles)
            if cmd is not None:
                self.handle(cmd)
        if self.commands is not None:
            for cmd in self.commands.pending():
                self.handle(cmd)
        self.reporter.tick()
        if (self.seconds is not None and self.quit_reason is None
                and time.monotonic() - self.stats.started >= self.seconds):
            self.stop("time")

    def _on_sigint(self, signum, frame) -> None:
        self._interrupts += 1
        if self._interrupts == 1:
            self.log("stopping (Ctrl+C again to abort)")
            self.stop("interrupt")
        else:
            raise KeyboardInterrupt

    def _on_stop_signal(self, signum: int) -> None:
        """SIGTERM/SIGHUP: the first stops cleanly like Ctrl+C (the recording is finished),
        a second aborts; the command then exits with 128 + signum."""
        if self.stop_signal is not None:
            raise Terminated(signum)
        self.stop_signal = signum
        self.log(f"stopping ({signal_name(signum)})")
        self.stop("interrupt")

    def run(self) -> dict:
        """Stream until the source ends, a quit, or `seconds`; returns the summary.
        Raises PipelineError for a failing stage, KeyboardInterrupt on a second Ctrl+C."""
        old = None
        if threading.current_thread() is threading.main_thread():
            old = signal.signal(signal.SIGINT, self._on_sigint)
        tick = 1 / 60 if self.preview is not None else 0.05
        self.stats.started = time.monotonic()
        self.reporter.restart(self.stats.started)
        try:
            with stop_signals(self._on_stop_signal):
                self.pipeline.run(on_tick=self._tick, tick_s=tick)
        finally:
            if old is not None:
                signal.signal(signal.SIGINT, old)
            self.sink.close()
        return self.summary()

    def summary(self) -> dict:
        elapsed = time.monotonic() - self.stats.started
        out = summary(self.stats, self.pipeline.stats.frames_in, self.drops(), elapsed)
        model = self.toon.model_ms()
        out["model_ms_median"] = None if model is None else round(model, 2)
        seg, treat = self.toon.seg_ms(), self.toon.treat_ms()
        out["seg_ms_median"] = None if seg is None else round(seg, 2)
        out["background_ms_median"] = None if treat is None else round(treat, 2)
        out["style"] = self.toon.style
        out["style_switches"] = list(self.toon.switches)
        out["faces_pasted"] = self.toon.faces_pasted
        out["ended"] = self.quit_reason or self.source.ended_reason or "end"
        return out
