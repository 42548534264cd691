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

import numpy as np
import platform
from fractions import Fraction
from pathlib import Path
from typing import TextIO

from streamer.commands import prog
from streamer.config import (LIVE_PRECISIONS, LiveSettings, add_background_options,
                             add_face_options, add_net_option, add_temporal_options, build_settings,
                             default_help, parse_size)
from streamer.frame import StreamInfo
from streamer.models.ensure import add_fetch_option, ensure_models
from streamer.options import arg_type
from streamer.report import EXIT_ERROR, EXIT_OK, CommandParser, Log, run_main
from streamer.signals import exit_status
from streamer.stages import Sink, Source
from streamer.toon.engine import DEVICES
from streamer.toon.stage import ring_size
from streamer.toon.styles import StyleFlows

from .controls import StdinCommands
from .parts import LiveError, open_sinks, open_source, sink_specs
from .precision import PrecisionChooser, engine_shapes, int8_unavailable, time_engine
from .session import LiveSession
from .schedule import AUTO_SIZES, FaceFirstScheduler, ScheduleSettings
from .toon import LiveToon, style_factory, work_note, working_size

GPU_DEVICES = ("cuda", "tensorrt", "coreml", "directml", "torch-cuda")


# --- settings ------------------------------------------------------------------------------

def _num(name: str):
    """The argparse type of a number option: the setting's own range (config.py), so the
    command line and a preset refuse the same values."""
    return arg_type(LiveSettings, name)


def _source_options(p: argparse.ArgumentParser, d) -> None:
    src = p.add_argument_group("source")
    src.add_argument("--source", "--camera", dest="source", metavar="SRC",
                     help=f"camera index or device path (/dev/video2), 'synthetic', a video "
                          f"file, or a stream URL {d('source')}")
    src.add_argument("--synthetic", dest="source", action="store_const", const="synthetic",
                     help="a paced synthetic camera instead of a real one")
    src.add_argument("--camera-size", metavar="WxH",
                     help=f"mode asked of the camera {d('camera_size')}")
    src.add_argument("--camera-fps", type=_num("camera_fps"), metavar="FPS", help=d("camera_fps"))
    src.add_argument("--camera-fourcc", metavar="CODE",
                     help=f"pixel format asked {d('camera_fourcc')}")
    src.add_argument("--camera-exact", action="store_true",
                     help="fail when the camera gives another mode instead of using it")
    src.add_argument("--reconnect", type=_num("reconnect"), metavar="S",
                     help=f"seconds to wait for a camera that stopped {d('reconnect')}")
    src.add_argument("--loop", action="store_true", help="replay a video file source")


def _toon_options(p: argparse.ArgumentParser, d) -> None:
    toon = p.add_argument_group("toon")
    toon.add_argument("--style", help=f"anime, 3d, handdrawn, sketch, artstyle, sd-design, "
                                      f"sd-illustration {d('style')}")
    toon.add_argument("--models", metavar="DIR",
                      help="model store (default: $TOONSTREAM_MODELS, else the user cache)")
    toon.add_argument("--work", metavar="PX|WxH|auto",
                      help=f"working size: a short side (144), WIDTHxHEIGHT (256x144), or auto "
                           f"(measured at start, adjusted to the load); the result is resized "
                           f"to the output size {d('work')}")
    toon.add_argument("--schedule", choices=("face-first", "off"),
                      help=f"face-first: with faces on, heads run on every frame at full "
                           f"detail and the background yields its size, then its rate "
                           f"(reused, warped along the motion) to hold the camera rate "
                           f"{d('schedule')}")
    toon.add_argument("--device", choices=DEVICES, help=f"inference device {d('device')}")
    toon.add_argument("--precision", choices=LIVE_PRECISIONS,
                      help=f"fast: bf16/fp16 where available; exact: fp32; int8: quantized "
                           f"(OpenVINO, built once); auto: the fastest of these (and the "
                           f"light network where installed) that keeps the face, measured "
                           f"at start and again when the load changes {d('precision')}")
    add_net_option(toon)
    toon.add_argument("--threads", type=_num("threads"), help="engine threads")
    add_fetch_option(toon)


def _output_options(p: argparse.ArgumentParser, d) -> None:
    out = p.add_argument_group("output")
    out.add_argument("--sink", dest="sinks", action="append", metavar="SINK",
                     help="vcam (default), preview, null, ndi:NAME (with alpha; needs "
                          "toonstream[ndi]), udp://HOST:PORT, rtmp://HOST/APP/KEY, or a file "
                          "(.mp4 .mkv .ts; .webm .mov keep alpha) to record; repeat for several")
    out.add_argument("--preview", action="store_true", help="also show a preview window")
    out.add_argument("--no-overlay", dest="overlay", action="store_false",
                     help="no fps/latency/style text on the preview")
    out.add_argument("--output-size", metavar="WxH",
                     help="size of every sink (default: the source's)")
    out.add_argument("--fps", type=_num("fps"), help="output rate (default: the source's)")
    out.add_argument("--vcam-device", metavar="NAME", help="virtual camera device (/dev/video10)")
    out.add_argument("--vcam-backend", metavar="NAME", help="pyvirtualcam backend")
    out.add_argument("--bitrate", type=_num("bitrate"), metavar="KBPS",
                     help=f"network stream bitrate {d('bitrate')}")
    out.add_argument("--gop", type=_num("gop"), metavar="S",
                     help=f"seconds between key frames {d('gop')}")
    out.add_argument("-y", "--overwrite", action="store_true",
                     help="a recording may replace a file")


def _run_options(p: argparse.ArgumentParser, d) -> None:
    run = p.add_argument_group("running")
    run.add_argument("--queue", type=_num("queue"), metavar="N",
                     help=f"frames per live queue {d('queue')}")
    run.add_argument("--status-every", type=_num("status_every"), metavar="S",
                     help=f"seconds between status lines; 0: none {d('status_every')}")
    run.add_argument("--stats-json", metavar="PATH", help="write run statistics at exit")
    run.add_argument("--seconds", type=_num("seconds"), metavar="S",
                     help="stop after this many seconds (default: at q or Ctrl+C)")
    run.add_argument("--no-commands", dest="commands", action="store_false",
                     help="do not read commands from standard input")


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(
        prog=prog("run_stream.py"),
        description="Cartoonize a camera live with DCT-Net and send it to a virtual camera "
                    "(Zoom, Meet, Teams, OBS), a preview window, a network stream or a file.",
        epilog="Settings come from the defaults, then --config (default: live-720p when a "
               "GPU runs the model, else live-cpu), then these options. While running: type "
               "a style name or 1..7 and Enter (or press 1..7 / n / p in the preview); "
               "q or Ctrl+C quits.",
        argument_default=argparse.SUPPRESS)
    p.add_argument("--config", default=None, metavar="NAME",
                   help="YAML preset: a path or a name in configs/ (live-720p, live-cpu)")
    d = default_help(LiveSettings)
    _source_options(p, d)
    _toon_options(p, d)
    add_face_options(p)
    add_background_options(p)
    add_temporal_options(p)
    _output_options(p, d)
    _run_options(p, d)
    return p


def auto_preset(device: str) -> tuple[str, str]:
    """(preset, why) when --config is not given: the GPU preset only where a GPU runs it."""
    from streamer.toon.engine import auto_device
    real = auto_device() if device == "auto" else device
    if real in GPU_DEVICES:
        return "live-720p", f"{real} found"
    return "live-cpu", f"no GPU: the model runs on {real}"


def settings_from_args(args: argparse.Namespace, log: Log | None = None) -> LiveSettings:
    overrides = {k: v for k, v in vars(args).items() if k not in ("config", "fetch")}
    if "sinks" in overrides:
        overrides["sinks"] = tuple(overrides["sinks"])
    preset = args.config
    if preset is None:
        preset, why = auto_preset(overrides.get("device", "auto"))
        if log is not None:
            log(f"preset: {preset} ({why}; --config to choose)")
    return build_settings(LiveSettings, preset, overrides)


# --- running -------------------------------------------------------------------------------

def output_stream(s: LiveSettings, source: Source) -> StreamInfo:
    """What every sink gets: the --output-size (else the source's size, made even for
    4:2:0 video) at the --fps (else the source's rate)."""
    src = source.info
    if s.output_size:
        w, h = parse_size(s.output_size, "output-size")
    else:
        w, h = src.width + (src.width & 1), src.height + (src.height & 1)
    rate = Fraction(s.fps).limit_denominator(1001) if s.fps else src.rate
    return StreamInfo(w, h, src.time_base, rate)


def live_toon(s: LiveSettings, flows: StyleFlows, source: Source, out: StreamInfo,
              log: Log) -> LiveToon:
    """The toon callable at the working size, warmed up so the first frame is not slow.
    With faces on and `schedule: face-first`, a FaceFirstScheduler decides the background's
    size (with `work: auto`, from model times measured here) and rate. With `precision:
    auto` the precision (and network) is chosen here by measurement (live/precision.py);
    `toon.flows()` is then the chosen candidate's."""
    src = source.info
    frame_w = out.width if s.output_size else src.width
    frame_h = out.height if s.output_size else src.height
    work = s.work_size
    work_wh = working_size(frame_w, frame_h, work.start)
    note = work_note(frame_w, frame_h, work.start)
    if note:
        log(f"note: {note}")
    faces = flows.face_files() is not None
    scheduled = s.schedule == "face-first" and faces
    sides = (min(AUTO_SIZES), 288) if (scheduled and work.auto) else (min(work_wh),)
    chooser = None
    # --net mobile names its network: auto runs it at the fast precision, nothing to choose
    if s.precision == "auto" and s.net == "official":
        chooser = PrecisionChooser(flows, s.style, lambda: engine_shapes((frame_w, frame_h), sides),
                                   int8_unavailable(s.device), log, faces=faces)
        flows = chooser.current
    sched = None
    if scheduled:
        sched = FaceFirstScheduler(ScheduleSettings(fps=float(out.fps), auto_size=work.auto),
                                   work_short=min(work_wh))
        sched.set_aspect(frame_w, frame_h)
        if chooser is not None:  # measured already, side by side with the other candidates
            bg_times, head_s = dict(chooser.chosen.bg_s), chooser.chosen.head_s
        else:
            bg_times, head_s = startup_times(flows.engine(s.style), flows.head_engine(s.style),
                                             (frame_w, frame_h), sides)
        chosen = sched.calibrate(bg_times, head_s)
        if work.auto:
            work_wh = working_size(frame_w, frame_h, chosen)
        log(f"schedule: {sched.describe()}" + (
            f"; measured background {', '.join(f'{k}p {v * 1e3:.0f} ms' for k, v in bg_times.items())}"
            f", head {head_s * 1e3:.0f} ms" if work.auto else ""))
    # With auto the flow may later be given larger frames than it starts with.
    factory = style_factory(chooser if chooser is not None else flows, work_wh, out.fps,
                            short_side=max(AUTO_SIZES) if work.auto else None)
    background = s.background_spec()
    toon = LiveToon(factory, s.style, work_wh, (out.width, out.height),
                    ring=ring_size(s.queue, 1), on_event=log, background=background,
                    segmenter=flows.segmenter() if background.needs_mask else None,
                    schedule=sched, precision=chooser)
    toon.warm_up()
    if background.needs_mask:
        # Start the segmentation model now (it compiles on first use), not on frame one.
        toon.segmenter.step([np.zeros((out.height, out.width, 3), np.uint8)])
        toon.segmenter.reset()
    return toon


def startup_times(bg_engine, head_engine, frame_wh: tuple[int, int], sides: tuple[int, ...],
                  repeat: int = 3) -> tuple[dict[int, float], float]:
    """Median seconds of a background run at each working short side in `sides` and of one
    288x288 head run, each after a warm-up run (which also compiles the shape)."""
    from streamer.toon.faces.align import CROP_SIZE

    bg = {side: time_engine(bg_engine, shape, repeat)
          for side, shape in engine_shapes(frame_wh, sides).items()}
    return bg, time_engine(head_engine, (1, CROP_SIZE, CROP_SIZE, 3), repeat)


def _write_json(path: str, data: dict) -> None:
    try:
        Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise LiveError(f"cannot write {path}: {exc.strerror}") from None


def _stream(s: LiveSettings, flows: StyleFlows, source: Source, log: Log,
            stdin: TextIO | None) -> int:
    """Everything after the source opened: sinks, model, the session, the report."""
    styles = flows.styles
    out = output_stream(s, source)
    session_ref: list[LiveSession] = []
    sinks: list[Sink] = open_sinks(
        s, out, lambda: session_ref[0].overlay_text() if session_ref else "")
    try:
        log(f"sinks: {'; '.join(k.describe() for k in sinks)}")
        toon = live_toon(s, flows, source, out, log)

        def engine_text() -> str:
            return (toon.precision or flows).describe(toon.style)

        log(f"toon: {s.style} at {toon.work_w}x{toon.work_h} -> {out.width}x{out.height} @ "
            f"{out.fps:g} fps, {engine_text()}, "
            f"{(toon.precision.current if toon.precision else flows).describe_net()}; "
            f"{flows.describe_faces()}, "
            f"{flows.describe_temporal()}; {flows.describe_background()}")
        commands = None
        if s.commands:
            commands = StdinCommands(styles, stdin).start()
            log(f"controls: type a style ({', '.join(styles)}) or 1..{len(styles)} and Enter"
                + (", or press 1..7 / n / p in the preview" if "preview" in sink_specs(s)
                   else "") + "; q or Ctrl+C quits")
        session = LiveSession(source, sinks, toon, styles=styles, queue=s.queue,
                              status_every=s.status_every, seconds=s.seconds,
                              describe=lambda: "; ".join(filter(None, (
                                  engine_text(), toon.schedule_text()))),
                              commands=commands, log=log)
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    session_ref.append(session)
    try:
        result = session.run()  # the session closes the sinks
    finally:
        toon.settle()  # a style switch or resize still loading must not outlive the run
    result.update({"source": source.describe(), "sinks": session.sink.describe(),
                   "work_size": [toon.work_w, toon.work_h],
                   "output_size": [out.width, out.height], "fps_target": out.fps,
                   "engine": engine_text(), "platform": platform.platform()})
    if toon.precision is not None:
        result["precision_auto"] = toon.precision.choice.stats()
    if toon.schedule is not None:
        result["schedule"] = {**toon.schedule.stats(), "bg_reused": toon.bg_reused,
                              "work_size_now": [toon.work_w, toon.work_h]}
    lat = result["latency_ms"]
    log(f"done: {result['frames_out']} frames in {result['seconds']:.1f} s "
        f"({result['fps_out']:.1f} fps out), latency p50 {lat['p50']} ms p95 {lat['p95']} ms, "
        f"drops {result['drops']}")
    if s.stats_json:
        _write_json(s.stats_json, result)
    lost = source.ended_reason
    if session.quit_reason is None and lost not in (None, "end", "stopped"):
        log(f"error: {lost}")
        return EXIT_ERROR
    if session.stop_signal is not None:  # stopped cleanly, but by a signal: say so
        return exit_status(signum=session.stop_signal)
    return EXIT_OK


def main(argv: list[str] | None = None, log: Log | None = None,
         stdin: TextIO | None = None) -> int:
    """The run_stream.py command; returns the exit status."""
    log = log or Log()

    def body() -> int:
        args = build_parser().parse_args(argv)  # a refused option: exit 2, via run_main
        s = settings_from_args(args, log)
        flows = StyleFlows.from_settings(s, log)
        flows.check_style(s.style)  # an unknown style fails before the camera opens
        sink_specs(s)  # so does an unknown sink
        if s.net == "official":  # the light network needs no official weights
            ensure_models(flows.store, s.style, s.faces, fetch=getattr(args, "fetch", None),
                          log=log, mask=s.background_spec().needs_mask)
        with open_source(s) as source:
            log(f"source: {source.describe()}")
            return _stream(s, flows, source, log, stdin)

    return run_main(body, log)
