"""run_stream.py: a camera (or a clip, a stream, a synthetic pattern) through the toon
stage to a virtual camera, a preview window, a network stream, a recording, or several.

    source thread --[1 frame, drop oldest]--> toon thread --[1 frame, drop oldest]--> sinks

Latency is bounded by construction: each live queue holds one frame (two at most) and a
full queue drops its oldest, so the toon stage always starts on the newest frame and a
frame waits at most one model run before it is picked up. Every drop is counted per stage.

Errors the user can fix end as one `error: ...` line and a non-zero exit, never a
traceback; they are found in the order that costs the least waiting: settings, style,
source (camera), sinks (virtual camera), then the model.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Callable, TextIO

from streamer.config import (ConfigError, LiveSettings, add_face_options, build_settings,
                             parse_size)
from streamer.pipeline.core import Pipeline, PipelineError
from streamer.signals import Terminated, exit_status, signal_name, stop_signals
from streamer.toon.engine import DEVICES

from .controls import HELP, Command, StdinCommands, key_command, step_style
from .stats import LiveStats, StatusReporter, summary
from .toon import LiveToon, work_note, working_size

EXIT_OK = 0
from streamer.video.app import _fail  # noqa: E402  one-line error report, shared

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
GPU_DEVICES = ("cuda", "tensorrt", "coreml", "directml")
STYLES_FALLBACK = ("anime", "3d", "handdrawn", "sketch", "artstyle", "sd-design",
                   "sd-illustration")


class LiveError(Exception):
    """A live-setup problem, in one line for the user."""


def one_line(text) -> str:
    return " ".join(str(text).split())


class Log:
    """Human-facing lines on stderr; stdout stays free."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream

    def __call__(self, line: str) -> None:
        print(line, file=self.stream or sys.stderr, flush=True)


def _user_errors() -> tuple[type[BaseException], ...]:
    from streamer.models import StoreError
    from streamer.sinks.network import StreamError
    from streamer.sinks.preview import PreviewError
    from streamer.sinks.video_file import OutputError
    from streamer.sinks.virtualcam import VirtualCameraError
    from streamer.sources.camera import CameraError
    from streamer.sources.video_file import MediaError
    from streamer.toon.engine import EngineUnavailable
    from streamer.models.dctnet.weights import ModelFormatError
    return (LiveError, ConfigError, CameraError, MediaError, VirtualCameraError, PreviewError,
            StreamError, OutputError, EngineUnavailable, StoreError, ModelFormatError)


# --- settings ------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    S = argparse.SUPPRESS
    p = argparse.ArgumentParser(
        prog="run_stream.py",
        description="Cartoonize a camera live with DCT-Net and send it to a virtual camera "
                    "(Zoom, Meet, Teams, OBS), a preview window, a network stream or a file.",
        epilog="Settings come from the defaults, then --config (default: live-720p when a "
               "GPU runs the model, else live-cpu), then these options. While running: type "
               "a style name or 1..7 and Enter (or press 1..7 / n / p in the preview); "
               "q or Ctrl+C quits.",
        argument_default=S)
    p.add_argument("--config", default=None, metavar="NAME",
                   help="YAML preset: a path or a name in configs/ (live-720p, live-cpu)")
    src = p.add_argument_group("source")
    src.add_argument("--source", "--camera", dest="source", metavar="SRC",
                     help="camera index (0) or device path (/dev/video2), 'synthetic', a "
                          "video file, or a stream URL (default 0)")
    src.add_argument("--synthetic", dest="source", action="store_const", const="synthetic",
                     help="a paced synthetic camera instead of a real one")
    src.add_argument("--camera-size", metavar="WxH", help="mode asked of the camera (1280x720)")
    src.add_argument("--camera-fps", type=float, metavar="FPS", help="(default 30)")
    src.add_argument("--camera-fourcc", metavar="CODE", help="pixel format asked (default MJPG)")
    src.add_argument("--camera-exact", action="store_true",
                     help="fail when the camera gives another mode instead of using it")
    src.add_argument("--reconnect", type=float, metavar="S",
                     help="seconds to wait for a camera that stopped (default 5)")
    src.add_argument("--loop", action="store_true", help="replay a video file source")
    toon = p.add_argument_group("toon")
    toon.add_argument("--style", help="anime (default), 3d, handdrawn, sketch, artstyle, "
                                      "sd-design, sd-illustration")
    toon.add_argument("--models", metavar="DIR",
                      help="model store (default: $TOONSTREAM_MODELS, else the user cache)")
    toon.add_argument("--work", metavar="PX|WxH",
                      help="working size: a short side (144) or WIDTHxHEIGHT (256x144); the "
                           "result is resized to the output size")
    toon.add_argument("--device", choices=DEVICES, help="inference device (default auto)")
    toon.add_argument("--precision", choices=("exact", "fast"),
                      help="fast (default for live): bf16/fp16 where available; exact: fp32")
    toon.add_argument("--threads", type=int, help="engine threads")
    add_face_options(p)
    out = p.add_argument_group("output")
    out.add_argument("--sink", dest="sinks", action="append", metavar="SINK",
                     help="vcam (default), preview, null, udp://HOST:PORT, rtmp://HOST/APP/KEY, "
                          "or a file (.mp4 .mkv .ts) to record; repeat for several")
    out.add_argument("--preview", action="store_true", help="also show a preview window")
    out.add_argument("--no-overlay", dest="overlay", action="store_false",
                     help="no fps/latency/style text on the preview")
    out.add_argument("--output-size", metavar="WxH", help="size of every sink (default: the source's)")
    out.add_argument("--fps", type=float, help="output rate (default: the source's)")
    out.add_argument("--vcam-device", metavar="NAME", help="virtual camera device (/dev/video10)")
    out.add_argument("--vcam-backend", metavar="NAME", help="pyvirtualcam backend")
    out.add_argument("--bitrate", type=int, metavar="KBPS", help="network stream bitrate (2500)")
    out.add_argument("--gop", type=float, metavar="S", help="seconds between key frames (1)")
    out.add_argument("-y", "--overwrite", action="store_true", help="a recording may replace a file")
    run = p.add_argument_group("running")
    run.add_argument("--queue", type=int, choices=(1, 2), help="frames per live queue (default 1)")
    run.add_argument("--status-every", type=float, metavar="S",
                     help="seconds between status lines (default 5; 0: none)")
    run.add_argument("--stats-json", metavar="PATH", help="write run statistics at exit")
    run.add_argument("--seconds", type=float, help="stop after this many seconds")
    run.add_argument("--no-commands", dest="commands", action="store_false",
                     help="do not read commands from standard input")
    return p


def auto_preset(device: str) -> tuple[str, str]:
    """(preset, why) when --config is not given: the GPU preset only where a GPU runs it."""
    from streamer.toon.engine import auto_device
    real = auto_device() if device == "auto" else device
    if real in GPU_DEVICES:
        return "live-720p", f"{real} found"
    return "live-cpu", f"no GPU: the model runs on {real}"


def settings_from_args(args: argparse.Namespace, log: Log | None = None) -> LiveSettings:
    overrides = {k: v for k, v in vars(args).items() if k != "config"}
    if "sinks" in overrides:
        overrides["sinks"] = tuple(overrides["sinks"])
    preset = args.config
    if preset is None:
        preset, why = auto_preset(overrides.get("device", "auto"))
        if log is not None:
            log(f"preset: {preset} ({why}; --config to choose)")
    return build_settings(LiveSettings, preset, overrides)


# --- building the parts -------------------------------------------------------------------

def open_source(s: LiveSettings):
    w, h = parse_size(s.camera_size, "camera-size")
    src = str(s.source).strip()
    if src == "synthetic":
        from streamer.sources.synthetic import SyntheticSource
        return SyntheticSource(w, h, s.camera_fps)
    from streamer.sources.playback import PlaybackSource, is_url
    if src.isdigit() or src.startswith("/dev/") or src.startswith("video="):
        from streamer.sources.camera import CameraSource
        return CameraSource(src, w, h, s.camera_fps, fourcc=s.camera_fourcc,
                            exact=s.camera_exact, reconnect_s=s.reconnect)
    if is_url(src) or Path(src).is_file():
        return PlaybackSource(src, loop=s.loop)
    raise LiveError(f"source {src!r} is not a camera index, a device path, 'synthetic', an "
                    f"existing video file or a URL")


class RecordingSink:
    """A live recording through the offline file sink (temporary name, renamed when the
    stream ends cleanly; removed after an error). Encoded with a fast x264 preset so it
    keeps up with the camera."""

    name = "record"

    def __init__(self, path: str, width: int, height: int, fps: float, time_base: Fraction,
                 overwrite: bool):
        from streamer.sinks.video_file import VideoFileSink, check_output_folder
        from streamer.sources.video_file import VideoInfo
        final = Path(path)
        check_output_folder(final)
        if final.exists() and not overwrite:
            raise LiveError(f"{final} exists; add -y to overwrite it")
        info = VideoInfo(path=final, container="", codec="", coded_width=width,
                         coded_height=height, width=width, height=height, rotation=0, flip="",
                         time_base=time_base, average_rate=Fraction(fps).limit_denominator(1001),
                         start_time=None, duration=None, frames=0, pix_fmt="yuv420p",
                         bit_depth=8, chroma="4:2:0", colorspace=2, color_range=0,
                         color_primaries=2, color_trc=2, sample_aspect_ratio=None)
        self.path = final
        self._sink = VideoFileSink(final, info, None, crf=20, preset="veryfast",
                                   overwrite=overwrite)
        self._finished = False

    def describe(self) -> str:
        return f"recording {self.path}"

    def write(self, frame) -> None:
        self._sink.write(frame)

    def finish(self) -> None:
        self._sink.finish()
        self._finished = True

    def close(self) -> None:
        if not self._finished:
            self._sink.abort()


def sink_kind(spec: str) -> str:
    """vcam | preview | null | stream | record; LiveError for anything else."""
    from streamer.sinks.network import is_stream_url
    from streamer.sinks.video_file import FORMATS
    key = spec.strip()
    if key in ("vcam", "virtualcam"):
        return "vcam"
    if key in ("preview", "null"):
        return key
    if is_stream_url(key):
        from streamer.sinks.network import StreamError, check_stream_url
        try:
            check_stream_url(key)
        except StreamError as exc:
            raise LiveError(f"sink {exc}") from None
        return "stream"
    if Path(key).suffix.lower() in FORMATS:
        return "record"
    raise LiveError(f"unknown sink {spec!r}: use vcam, preview, null, udp://HOST:PORT, "
                    f"rtmp://HOST/APP/KEY, or a file name ending in {', '.join(sorted(FORMATS))}")


def sink_specs(s: LiveSettings) -> list[str]:
    specs = [spec.strip() for spec in s.sinks]
    if s.preview and "preview" not in specs:
        specs.append("preview")
    seen: dict[str, str] = {}
    for spec in specs:
        kind = sink_kind(spec)
        # The same file or address twice would be two writers on one target: the session
        # would run to the end and then fail (or interleave packets). Refuse it now.
        key = str(Path(spec).expanduser().resolve()) if kind == "record" else spec
        if kind in ("record", "stream") and key in seen:
            raise LiveError(f"sink {spec!r} is given twice (as {seen[key]!r} too); give each "
                            f"file or address once")
        seen[key] = spec
    return specs


def open_sinks(s: LiveSettings, width: int, height: int, fps: float, time_base: Fraction,
               overlay_text: Callable[[], str]) -> tuple[list, object | None]:
    """The sinks in the order given, and the preview sink (also in the list) if any."""
    sinks, preview = [], None
    try:
        for spec in sink_specs(s):
            kind = sink_kind(spec)
            if kind == "vcam":
                from streamer.sinks.virtualcam import VirtualCamSink
                sinks.append(VirtualCamSink(width, height, fps, device=s.vcam_device,
                                            backend=s.vcam_backend))
            elif kind == "preview":
                from streamer.sinks.preview import PreviewSink
                preview = PreviewSink(overlay=s.overlay, overlay_text=overlay_text)
                sinks.append(preview)
            elif kind == "null":
                from streamer.sinks.null import NullSink
                sinks.append(NullSink())
            elif kind == "stream":
                from streamer.sinks.network import NetworkSink
                sinks.append(NetworkSink(spec, width, height, fps, bitrate_kbps=s.bitrate,
                                         gop_s=s.gop))
            else:
                sinks.append(RecordingSink(spec, width, height, fps, time_base, s.overwrite))
    except BaseException:
        for sink in sinks:
            try:
                sink.close()
            except Exception:  # noqa: BLE001
                pass
        raise
    return sinks, preview


class EngineFactory:
    """style -> stylise callable at the working size, through the model store: the official
    full-frame flow, or with faces on the face-aware flow (LiveToon pastes its heads at the
    output size). Engines are kept per style so the status can name them."""

    def __init__(self, settings: LiveSettings, work_wh: tuple[int, int]):
        from streamer.models import open_store
        from streamer.toon.engine import EngineSettings
        from streamer.toon.faces.flow import face_files
        self.settings = settings
        self.store = open_store(settings.models)
        self.engine_settings = EngineSettings(device=settings.device,
                                              precision=settings.precision,
                                              threads=settings.threads)
        self.work_wh = work_wh
        self.faces = face_files(self.store, settings.faces)
        self.engines: dict[str, object] = {}

    def styles(self) -> tuple[str, ...]:
        return tuple(self.store.catalog.styles)

    def __call__(self, style: str):
        from streamer.toon.faces.flow import build_flow, open_head_engine
        from streamer.toon.stage import open_engine
        self.store.catalog.style(style)
        engine = open_engine(self.store, style, self.engine_settings)
        self.engines[style] = engine
        s = self.settings
        return build_flow(engine,
                          lambda: open_head_engine(self.store, style, self.engine_settings, engine),
                          self.faces, tracker=s.tracker_settings(), short_side=min(self.work_wh),
                          ring=2, fps=s.fps or s.camera_fps)

    def describe(self, style: str) -> str:
        engine = self.engines.get(style)
        return engine.describe() if engine is not None else "?"

    def describe_faces(self) -> str:
        if self.faces is not None:
            return self.settings.describe_faces()
        if self.settings.faces == "auto":
            return "faces off (the face detector is not installed: `python -m " \
                   "streamer.models fetch face mask`)"
        return "faces off (--faces on turns them on)"


# --- running -----------------------------------------------------------------------------

class LiveSession:
    """One live run: source -> ToonStage(LiveToon) -> MultiSink, with controls and stats."""

    def __init__(self, source, sinks: list, toon: LiveToon, *, styles: tuple[str, ...],
                 preview=None, queue: int = 1, status_every: float = 5.0,
                 seconds: float | None = None, describe: Callable[[], str] | None = None,
                 commands: StdinCommands | None = None, log: Log | None = None):
        from streamer.sinks.multi import MultiSink
        from streamer.toon.stage import ToonStage
        self.source, self.toon, self.preview = source, toon, preview
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
        return {"source": int(getattr(self.source, "skipped", 0)),
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
        self.pipeline.request_stop()
        stop = getattr(self.source, "stop", None)
        if stop is not None:
            stop()

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
        self.reporter._last_t = self.stats.started
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
        out["style"] = self.toon.style
        out["style_switches"] = list(self.toon.switches)
        out["faces_pasted"] = self.toon.faces_pasted
        out["ended"] = self.quit_reason or getattr(self.source, "ended_reason", None) or "end"
        return out


def _write_json(path: str, data: dict) -> None:
    try:
        Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise LiveError(f"cannot write {path}: {exc.strerror}") from None


def main(argv: list[str] | None = None, log: Log | None = None,
         stdin: TextIO | None = None) -> int:
    """The run_stream.py command; returns the exit status."""
    log = log or Log()
    args = build_parser().parse_args(argv)
    with stop_signals():  # before streaming, SIGTERM/SIGHUP unwind like Ctrl+C
        return _main(args, log, stdin)


def _main(args: argparse.Namespace, log: Log, stdin: TextIO | None) -> int:
    errors = _user_errors()
    source = None
    sinks: list = []
    try:
        s = settings_from_args(args, log)
        from streamer.models import open_store
        store = open_store(s.models)
        styles = tuple(store.catalog.styles)
        store.catalog.style(s.style)  # an unknown style fails before the camera opens
        sink_specs(s)  # so does an unknown sink

        source = open_source(s)
        log(f"source: {source.describe()}")
        out_w, out_h = (parse_size(s.output_size, "output-size") if s.output_size
                        else (source.width + (source.width & 1), source.height + (source.height & 1)))
        fps = s.fps or source.fps
        frame_wh = (out_w, out_h) if s.output_size else (source.width, source.height)
        work_wh = working_size(*frame_wh, s.work_spec())
        note = work_note(*frame_wh, s.work_spec())
        if note:
            log(f"note: {note}")

        session_ref: list[LiveSession] = []
        sinks, preview = open_sinks(
            s, out_w, out_h, fps, getattr(source, "time_base", Fraction(1, 1000)),
            lambda: session_ref[0].overlay_text() if session_ref else "")
        log(f"sinks: {'; '.join(getattr(k, 'describe', lambda: k.name)() for k in sinks)}")

        factory = EngineFactory(s, work_wh)
        from streamer.toon.stage import ring_size
        toon = LiveToon(factory, s.style, work_wh, (out_w, out_h), ring=ring_size(s.queue, 1),
                        on_event=log)
        toon.warm_up()
        log(f"toon: {s.style} at {work_wh[0]}x{work_wh[1]} -> {out_w}x{out_h} @ {fps:g} fps, "
            f"{factory.describe(s.style)}; {factory.describe_faces()}")
        commands = None
        if s.commands:
            commands = StdinCommands(styles, stdin).start()
            log(f"controls: type a style ({', '.join(styles)}) or 1..{len(styles)} and Enter"
                + (", or press 1..7 / n / p in the preview" if preview is not None else "")
                + "; q or Ctrl+C quits")
        session = LiveSession(source, sinks, toon, styles=styles, preview=preview,
                              queue=s.queue, status_every=s.status_every, seconds=s.seconds,
                              describe=lambda: factory.describe(toon.style),
                              commands=commands, log=log)
        session_ref.append(session)
        sinks = []  # the session owns them now (and closes them)
        result = session.run()
        result.update({"source": source.describe(), "sinks": session.sink.describe(),
                       "work_size": list(work_wh), "output_size": [out_w, out_h],
                       "fps_target": fps, "engine": factory.describe(toon.style),
                       "platform": platform.platform()})
        lat = result["latency_ms"]
        log(f"done: {result['frames_out']} frames in {result['seconds']:.1f} s "
            f"({result['fps_out']:.1f} fps out), latency p50 {lat['p50']} ms p95 {lat['p95']} ms, "
            f"drops {result['drops']}")
        if s.stats_json:
            _write_json(s.stats_json, result)
        lost = getattr(source, "ended_reason", None)
        if session.quit_reason is None and lost not in (None, "end", "stopped"):
            log(f"error: {lost}")
            return EXIT_ERROR
        if session.stop_signal is not None:  # stopped cleanly, but by a signal: say so
            return exit_status(signum=session.stop_signal)
        return EXIT_OK
    except KeyboardInterrupt as exc:
        log("interrupted")
        return exit_status(exc)
    except PipelineError as exc:
        return _fail(exc.error, errors, log, exc.stage)
    except errors as exc:
        log(f"error: {one_line(exc)}")
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback
        return _fail(exc, errors, log)
    finally:
        for sink in sinks:
            try:
                sink.close()
            except Exception:  # noqa: BLE001
                pass
        if source is not None:
            close = getattr(source, "close", None) or getattr(source, "stop", None)
            if close is not None:
                try:
                    close()
                except Exception:  # noqa: BLE001
                    pass


