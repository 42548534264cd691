"""run_video.py: cartoonize a video file, a still image, or a folder of them.

Every failure the user can cause or fix (bad input, unwritable output, unknown style,
missing model, unavailable device or encoder) ends as one `error: ...` line on stderr and a
non-zero exit, with nothing left behind: outputs are written under a temporary name and
renamed only when complete. Ctrl+C stops all stages, removes the temporary file and exits
with 130; SIGTERM and SIGHUP do the same and exit with 143 and 129 (streamer/signals.py).
With `--ray` the same work runs on Ray workers (streamer/video/cluster.py); there Ctrl+C
keeps the finished files and chunks so that a rerun resumes.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from streamer.commands import prog
from streamer.config import (ConfigError, VideoSettings, add_background_options,
                             add_face_options, add_net_option, add_temporal_options,
                             build_settings, default_help)
from streamer.models.download import DownloadOptions
from streamer.models.ensure import add_fetch_option, ensure_models
from streamer.options import arg_type
from streamer.report import EXIT_ERROR, EXIT_OK, CommandParser, Log, run_main
from streamer.signals import exit_status
from streamer.sinks.audio_out import AUDIO_MODES
from streamer.sinks.video_file import CODECS, OutputError
from streamer.toon.engine import DEVICES, PRECISIONS

from .convert import FolderIncomplete, Job, Result, convert, engine_batch, summary
from .failures import failed_line, own_failure, own_message
from .targets import input_targets, make_output_folder


def build_parser() -> argparse.ArgumentParser:
    S = argparse.SUPPRESS  # settings not given keep the preset's (or the default) value
    d = default_help(VideoSettings)

    def num(name: str):  # the setting's own range, so the preset and the option agree
        return arg_type(VideoSettings, name)
    p = CommandParser(
        prog=prog("run_video.py"),
        description="Cartoonize a video file, a still image (JPEG, PNG, WebP), or a folder of "
                    "them with DCT-Net. Audio, timestamps and metadata are kept.",
        epilog="Settings come from the defaults, then --config, then these options. "
               "The output is written under a temporary name and renamed when complete.",
        argument_default=S)
    p.add_argument("input", nargs="+", help="video file, image, or folder (several: -o is "
                                            "a folder that receives each by name)")
    p.add_argument("-o", "--output", default=None,
                   help="output file (or folder for a folder input; FOLDER/%%05d.png for a "
                        "PNG sequence); default: INPUT_STYLE next to the input")
    p.add_argument("--config", default=None, metavar="NAME",
                   help="YAML preset: a path or a name in configs/ (video-hq, cpu, gpu)")
    p.add_argument("--style", help=f"anime, 3d, handdrawn, sketch, artstyle, sd-design, "
                                   f"sd-illustration {d('style')}")
    p.add_argument("--models", metavar="DIR",
                   help="model store (default: $TOONSTREAM_MODELS, else the user cache)")
    p.add_argument("--size", type=num("size"), metavar="PX",
                   help=f"working short side; larger frames are reduced, as the official "
                        f"code does {d('size')}")
    p.add_argument("--batch", type=num("batch"),
                   help="frames per engine call (default: the engine's choice, 8 with "
                        "torch-cuda, else 1)")
    p.add_argument("--device", choices=DEVICES, help=f"inference device {d('device')}")
    p.add_argument("--precision", choices=PRECISIONS,
                   help=f"exact: fp32, golden parity; fast: bf16/fp16 where available "
                        f"{d('precision')}")
    add_net_option(p)
    p.add_argument("--threads", type=num("threads"),
                   help="engine threads (default: the runtime's choice)")
    p.add_argument("--codec", help=f"video encoder: {', '.join(CODECS)} "
                                   f"(default libx264; libvpx-vp9 for .webm)")
    p.add_argument("--crf", type=num("crf"),
                   help="quality, lower is better (default: the encoder's own in "
                        "streamer/sinks/video_file.py)")
    p.add_argument("--preset", help="encoder speed preset (default: medium; p5 for NVENC; "
                                     "realtime for VP9, good or slower for smaller VP9 files)")
    p.add_argument("--audio", choices=AUDIO_MODES,
                   help=f"auto: copy each audio stream the container holds and re-encode the "
                        f"others (AAC into .webm becomes Opus), with a note; copy: copy or "
                        f"refuse; encode: re-encode every stream; none: no audio {d('audio')}")
    p.add_argument("--format", metavar="EXT",
                   help="container of the videos run_video names itself (a folder's, several "
                        "inputs', the default output): mp4, mkv, mov, webm ... (default: each "
                        "input's own; with --background transparent, .webm where it cannot "
                        "carry alpha)")
    p.add_argument("--image-format", metavar="EXT",
                   help="the same for stills: png, jpg, webp, tif ... (default: each input's "
                        "own; .png where it cannot carry alpha)")
    p.add_argument("--queue", type=num("queue"), help=f"frames per pipeline queue {d('queue')}")
    add_face_options(p)
    add_fetch_option(p)
    add_background_options(p, key_color=False)
    add_temporal_options(p)
    p.add_argument("-y", "--overwrite", action="store_true", help="overwrite the output")
    p.add_argument("--stats-json", metavar="PATH", help="write run statistics as JSON")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar")
    r = p.add_argument_group("Ray (pip install 'toonstream[ray]'; see streamer/video/cluster.py)")
    r.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="convert on Ray: no ADDRESS starts a local Ray on this machine; auto "
                        "or ray://HOST:PORT joins a running cluster")
    r.add_argument("--chunk-seconds", type=num("chunk_seconds"),
                   help=f"cut videos longer than 1.5 chunks at keyframes about this far apart "
                        f"{d('chunk_seconds')}")
    r.add_argument("--warmup-seconds", type=num("warmup_seconds"),
                   help=f"frames before each chunk that are stylised but not written, so face "
                        f"tracks settle {d('warmup_seconds')}")
    r.add_argument("--workers", type=num("workers"),
                   help="worker actors (default: one per GPU, else one per --worker-cpus CPUs)")
    r.add_argument("--worker-cpus", type=num("worker_cpus"),
                   help="CPUs per CPU worker (default: 4)")
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


def convert_many(inputs: list[Path], output: Path | None, job: Job) -> list[Result]:
    """Several inputs: each into the output folder by name, as a folder's files are; a file
    that fails, or a folder that fails in part, does not stop the others: each failed file
    is a `failed:` line, and FolderIncomplete at the end counts them (as on Ray)."""
    pairs = input_targets(inputs, output, job.naming)
    make_output_folder(output)
    results: list[Result] = []
    failed: list[tuple[str, str]] = []
    total = 0
    for src, dst in pairs:
        try:
            done = convert(src, dst, job)
        except FolderIncomplete as exc:
            results += exc.results
            failed += exc.failed
            total += exc.total
            continue
        except Exception as exc:  # noqa: BLE001 - the file's own failure; the rest re-raised
            cause = own_failure(exc)
            if cause is None:
                raise  # the model, the device: every input would fail the same way
            failed.append((str(src), own_message(src, cause)))
            job.log(failed_line(*failed[-1]))
            total += 1
            continue
        results += done
        total += len(done)
    if failed:
        raise FolderIncomplete(results, failed, total)
    return results


def run_on_ray(inputs: list[Path], output: Path | None, settings: VideoSettings, log: Log,
               **hooks: Any) -> int:
    """The --ray path: the same outputs, on Ray workers; a failed file fails alone."""
    from .cluster import run_cluster
    from .cluster_pool import import_ray
    from .cluster_report import closing_error, summary_lines, write_cluster_stats

    address = settings.ray
    if address not in ("local", "auto") and ":" not in address:
        # `--ray clip.mp4 ...` takes the first input as the address
        raise ConfigError(f"--ray {address!r} is not a Ray address (auto, HOST:PORT or "
                          f"ray://HOST:PORT); for a local Ray put --ray after the inputs")
    import_ray()  # a missing extra is one line before any work
    try:
        report = run_cluster(inputs, output, settings, log, **hooks)
    except KeyboardInterrupt as exc:
        log("interrupted: stopped; finished files and chunks are kept beside the output: "
            "run the same command again to resume")
        return exit_status(exc)
    for line in summary_lines(report):
        log(line)
    if settings.stats_json:
        write_cluster_stats(settings.stats_json, report, settings)
    error = closing_error(report)
    if error is not None:
        log(f"error: {error}")  # the last line, as without Ray
        return EXIT_ERROR
    return EXIT_OK


def main(argv: list[str] | None = None, log: Log | None = None) -> int:
    """The run_video.py command; returns the exit status."""
    log = log or Log()

    def body() -> int:
        args = build_parser().parse_args(argv)  # a refused option: exit 2, via run_main
        settings = settings_from_args(args)
        inputs = [Path(x) for x in args.input]
        output = Path(args.output) if args.output else None
        if settings.ray is not None:
            return run_on_ray(inputs, output, settings, log)
        job = Job(settings, log)
        # An unknown style, a blend without --net mobile, --net mobile without a light
        # network for the style: one line before any work. The light network needs no
        # official weights, so nothing is fetched for its style.
        job.flows.check_style(settings.style)
        # a mistyped input must not cost a download
        if settings.net == "official" and any(p.exists() for p in inputs):
            ensure_models(job.flows.store, settings.style, settings.faces,
                          fetch=getattr(args, "fetch", None), log=log,
                          options=DownloadOptions(progress=None if settings.progress else False),
                          mask=settings.background_spec().needs_mask)
        incomplete = None
        try:
            if len(inputs) > 1:
                results = convert_many(inputs, output, job)
            else:
                results = convert(inputs[0], output, job)
        except FolderIncomplete as exc:  # each file's line is above; the error line last
            incomplete, results = exc, exc.results
        if incomplete is None:
            log(_done_line(results, job))
        if settings.stats_json and results:
            write_stats(settings.stats_json, results, job)
        if incomplete is not None:
            raise incomplete
        return EXIT_OK

    # the output under way adds what became of it (removed unfinished, or kept complete)
    return run_main(body, log, after_interrupt=": stopped")
