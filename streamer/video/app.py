"""run_video.py: cartoonize a video file, a still image, or a folder of them.

Every failure the user can cause or fix (bad input, unwritable output, unknown style,
missing model, unavailable device or encoder) ends as one `error: ...` line on stderr and a
non-zero exit, with nothing left behind: outputs are written under a temporary name and
renamed only when complete. Ctrl+C stops all stages, removes the temporary file and exits
with 130; SIGTERM and SIGHUP do the same and exit with 143 and 129 (streamer/signals.py).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from streamer.commands import prog
from streamer.config import (VideoSettings, add_background_options, add_face_options,
                             add_temporal_options, build_settings, default_help)
from streamer.models.download import DownloadOptions
from streamer.models.ensure import add_fetch_option, ensure_models
from streamer.report import EXIT_OK, Log, run_main
from streamer.sinks.video_file import CODECS, OutputError
from streamer.toon.engine import DEVICES, PRECISIONS

from .convert import FolderIncomplete, Job, Result, convert, engine_batch, summary


def build_parser() -> argparse.ArgumentParser:
    S = argparse.SUPPRESS  # settings not given keep the preset's (or the default) value
    d = default_help(VideoSettings)
    p = argparse.ArgumentParser(
        prog=prog("run_video.py"),
        description="Cartoonize a video file, a still image (JPEG, PNG, WebP), or a folder of "
                    "them with DCT-Net. Audio, timestamps and metadata are kept.",
        epilog="Settings come from the defaults, then --config, then these options. "
               "The output is written under a temporary name and renamed when complete.",
        argument_default=S)
    p.add_argument("input", help="video file, image, or folder")
    p.add_argument("-o", "--output", default=None,
                   help="output file (or folder for a folder input; FOLDER/%%05d.png for a "
                        "PNG sequence); default: INPUT_STYLE next to the input")
    p.add_argument("--config", default=None, metavar="NAME",
                   help="YAML preset: a path or a name in configs/ (video-hq, cpu, gpu)")
    p.add_argument("--style", help=f"anime, 3d, handdrawn, sketch, artstyle, sd-design, "
                                   f"sd-illustration {d('style')}")
    p.add_argument("--models", metavar="DIR",
                   help="model store (default: $TOONSTREAM_MODELS, else the user cache)")
    p.add_argument("--size", type=int, metavar="PX",
                   help=f"working short side; larger frames are reduced, as the official "
                        f"code does {d('size')}")
    p.add_argument("--batch", type=int, help="frames per engine call (default: the engine's "
                                             "choice, 8 with torch-cuda, else 1)")
    p.add_argument("--device", choices=DEVICES, help=f"inference device {d('device')}")
    p.add_argument("--precision", choices=PRECISIONS,
                   help=f"exact: fp32, golden parity; fast: bf16/fp16 where available "
                        f"{d('precision')}")
    p.add_argument("--threads", type=int, help="engine threads (default: the runtime's choice)")
    p.add_argument("--codec", help=f"video encoder: {', '.join(CODECS)} "
                                   f"(default libx264; libvpx-vp9 for .webm)")
    p.add_argument("--crf", type=int, help="quality, lower is better (default: the encoder's "
                                           "own in streamer/sinks/video_file.py)")
    p.add_argument("--preset", help="encoder speed preset (default: medium; p5 for NVENC)")
    p.add_argument("--queue", type=int, help=f"frames per pipeline queue {d('queue')}")
    add_face_options(p)
    add_fetch_option(p)
    add_background_options(p, key_color=False)
    add_temporal_options(p)
    p.add_argument("-y", "--overwrite", action="store_true", help="overwrite the output")
    p.add_argument("--stats-json", metavar="PATH", help="write run statistics as JSON")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar")
    return p


def settings_from_args(args: argparse.Namespace) -> VideoSettings:
    overrides = {k: v for k, v in vars(args).items()
                 if k not in ("input", "output", "config", "fetch")}
    return build_settings(VideoSettings, args.config, overrides)


def write_stats(path: str, results: list[Result], job: Job) -> None:
    engine = job.engine()
    total_frames = sum(r.frames for r in results)
    total_s = sum(r.seconds for r in results)
    data: dict[str, Any] = {
        "frames": total_frames, "seconds": round(total_s, 4),
        "fps": round(total_frames / total_s, 4) if total_s else 0.0,
        "backend": engine.backend, "device": engine.device, "precision": engine.precision,
        "engine": engine.describe(), "batch": engine_batch(job.settings, engine),
        "settings": asdict(job.settings),
        "items": [{**asdict(r), "fps": round(r.fps, 4)} for r in results],
    }
    try:
        Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write stats to {path} ({exc.strerror})") from None


def _done_line(results: list[Result], job: Job) -> str:
    if not results:
        return "done: nothing to convert (every output exists; -y converts them again)"
    if len(results) == 1:
        return summary(results[0], job)
    frames = sum(r.frames for r in results)
    seconds = sum(r.seconds for r in results)
    return (f"done: {len(results)} files, {frames} frames in {seconds:.1f} s "
            f"with {job.engine().describe()}")


def main(argv: list[str] | None = None, log: Log | None = None) -> int:
    """The run_video.py command; returns the exit status."""
    log = log or Log()
    args = build_parser().parse_args(argv)

    def body() -> int:
        settings = settings_from_args(args)
        job = Job(settings, log)
        if Path(args.input).exists():  # a mistyped input must not cost a download first
            ensure_models(job.flows.store, settings.style, settings.faces,
                          fetch=getattr(args, "fetch", None), log=log,
                          options=DownloadOptions(progress=None if settings.progress else False))
        incomplete = None
        try:
            results = convert(Path(args.input), Path(args.output) if args.output else None, job)
        except FolderIncomplete as exc:  # each file's line is above; the error line last
            incomplete, results = exc, exc.results
        if incomplete is None:
            log(_done_line(results, job))
        if settings.stats_json and results:
            write_stats(settings.stats_json, results, job)
        if incomplete is not None:
            raise incomplete
        return EXIT_OK

    return run_main(body, log, after_interrupt=": stopped; the unfinished output was removed")
