"""Offline conversion: a video file, a still image, or a folder of them (run_video.py).

Every failure the user can cause or fix (bad input, unwritable output, unknown style,
missing model, unavailable device or encoder) ends as one `error: ...` line on stderr and a
non-zero exit, with nothing left behind: outputs are written under a temporary name and
renamed only when complete. Ctrl+C stops all stages, removes the temporary file and exits
with 130; SIGTERM and SIGHUP do the same and exit with 143 and 129 (streamer/signals.py).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

import numpy as np

from streamer.config import ConfigError, VideoSettings, add_face_options, build_settings
from streamer.sinks.image import write_image
from streamer.sinks.video_file import (CODECS, FORMATS, OutputError, VideoFileSink,
                                       check_output_folder, container_format)
from streamer.sources.image import IMAGE_SUFFIXES, is_image_path, read_image_alpha
from streamer.sources.video_file import MediaError, VideoFileSource
from streamer.toon.engine import (DEVICES, Engine, EngineSettings, EngineUnavailable,
                                  auto_device)
from streamer.toon.stage import Stylise, ToonStage, open_engine, ring_size

from streamer.pipeline.core import Pipeline, PipelineError, PipelineStats
from streamer.signals import Terminated, exit_status, signal_name, stop_signals

EXIT_ERROR = 1
#: still outputs that keep an input's transparency
ALPHA_SUFFIXES = (".png", ".webp", ".tif", ".tiff")
EXIT_INTERRUPTED = 130


def _store_errors() -> tuple[type[BaseException], ...]:
    try:
        from streamer.models import StoreError
    except ImportError:  # pragma: no cover - the store is part of the package
        return ()
    return (StoreError,)


def user_errors() -> tuple[type[BaseException], ...]:
    from streamer.models.dctnet.weights import ModelFormatError
    return (ConfigError, MediaError, OutputError, EngineUnavailable, ModelFormatError,
            *_store_errors())


def one_line(text: str) -> str:
    return " ".join(str(text).split())


class Log:
    """Human-facing lines on stderr (stdout stays free for the caller)."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr

    def __call__(self, line: str) -> None:
        print(line, file=self.stream, flush=True)


class Engines:
    """Start the engines once, on first use (a folder shares them), and say which run.

    Holds the style's whole-frame engine, its head engine and the face files when the
    faces setting turns the face-aware flow on; `stylise()` builds a fresh flow per video
    (face tracks must not carry from one file to the next) on the shared engines."""

    def __init__(self, settings: VideoSettings, log: Log, engine: Engine | None = None):
        self.settings = settings
        self.log = log
        self._engine: Engine | None = engine  # an engine already started (benchmarks)
        self._head: Engine | None = None
        self._store = None

    @property
    def store(self):
        if self._store is None:
            from streamer.models import open_store
            self._store = open_store(self.settings.models)
        return self._store

    @property
    def started(self) -> Engine | None:
        """The whole-frame engine if it has started (to share it), else None."""
        return self._engine

    def check_style(self) -> None:
        self.store.catalog.style(self.settings.style)  # UnknownModel lists the styles

    def _engine_settings(self) -> EngineSettings:
        s = self.settings
        return EngineSettings(device=s.device, precision=s.precision, threads=s.threads)

    @functools.cached_property
    def face_files(self) -> tuple[Path, Path] | None:
        """(detector, head mask) when faces are on, else None (see FaceSettings.faces)."""
        from streamer.toon.faces.flow import face_files
        files = face_files(self.store, self.settings.faces)
        if files is None and self.settings.faces == "auto":
            self.log("note: faces off: the face detector is not installed (run "
                     "`python -m streamer.models fetch face mask` to turn faces on)")
        return files

    def get(self) -> Engine:
        if self._engine is None:
            s = self.settings
            self._engine = open_engine(self.store, s.style, self._engine_settings())
            faces = "faces off"
            if self.face_files:
                from streamer.toon.faces.flow import describe_detection
                faces = (f"{self.settings.describe_faces()}, "
                         f"{describe_detection(self.official)}")
            self.log(f"engine: {self._engine.describe()}; style {s.style}, "
                     f"working short side {s.size}, {faces}")
        return self._engine

    def head(self) -> Engine:
        if self._head is None:
            from streamer.toon.faces.flow import open_head_engine
            self._head = open_head_engine(self.store, self.settings.style,
                                          self._engine_settings(), self.get())
        return self._head

    def stylise(self, ring: int, fps: float = 30.0) -> Stylise:
        """A new stylise callable for one video or still: the face-aware flow when faces
        are on, else the official full-frame flow."""
        from streamer.toon.faces.flow import build_flow
        s = self.settings
        return build_flow(self.get(), self.head, self.face_files, tracker=s.tracker_settings(),
                          short_side=s.size, ring=ring, fps=fps, official=self.official)

    @property
    def official(self) -> bool:
        """Exact precision composes faces the official way (detection on the official
        working image, see FaceAwareFlow); fast keeps the quicker 640 px detection."""
        return self.settings.precision == "exact"


@dataclass
class Result:
    kind: str  # video | image
    input: str
    output: str
    frames: int
    seconds: float
    stage_busy_s: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    audio_packets: int = 0
    latency_mean_s: float | None = None
    faces: dict[str, float] | None = None  # None: faces off
    warnings: list[str] = field(default_factory=list)  # damage decoded past, ends early

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


# --- progress ---------------------------------------------------------------------------


class Progress:
    """A tqdm bar on stderr: by frames when the container gives a count, else by stream
    time (MKV, WebM), with fps and ETA either way."""

    def __init__(self, total_frames: int, duration: float | None, start: float | None,
                 label: str, enabled: bool, file: TextIO | None = None):
        """`enabled`: show a bar (the caller decides; run_video shows one when stderr is a
        terminal)."""
        self.bar = None
        self.by_time = total_frames <= 0
        self.start = start or 0.0
        if not enabled:
            return
        from tqdm import tqdm
        out = file or sys.stderr
        if self.by_time:
            fmt = ("{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total_fmt} s "
                   "[{elapsed}<{remaining}{postfix}]")
            self.bar = tqdm(total=round(duration, 1) if duration else None, desc=label,
                            unit="s", bar_format=fmt if duration else None, file=out,
                            leave=False, dynamic_ncols=True)
        else:
            self.bar = tqdm(total=total_frames, desc=label, unit="frame", file=out,
                            leave=False, dynamic_ncols=True)

    def __call__(self, st: PipelineStats) -> None:
        bar = self.bar
        if bar is None:
            return
        if self.by_time:
            if st.last_time is not None:
                pos = max(0.0, st.last_time - self.start)
                if bar.total:
                    pos = min(pos, bar.total)
                bar.update(pos - bar.n)
                bar.set_postfix_str(f"{st.fps:.1f} fps", refresh=False)
        else:
            bar.update(st.frames_out - bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --- one video ----------------------------------------------------------------------------


def _check_target(src: Path, dst: Path, overwrite: bool) -> None:
    if dst.exists():
        if dst.is_dir():
            raise OutputError(f"{dst} is a folder")
        if src.exists() and src.resolve() == dst.resolve():
            raise OutputError(f"output {dst} is the input; choose another name")
        if not overwrite:
            raise OutputError(f"{dst} exists; add -y to overwrite it")
    check_output_folder(dst)


def _side_work(settings: VideoSettings) -> tuple[int, int]:
    """(decoder threads, nice increment for the source and sink threads).

    When the model runs on the CPU it is the bottleneck and needs every core: decoding and
    encoding (a few percent of the work) then run at a lower priority, so they fill the
    gaps instead of preempting inference threads mid-layer. The encoder is opened by the
    (reniced) sink thread so its worker threads inherit the priority; the decoder, opened
    while probing, gets few threads. With a GPU the encoder may be the bottleneck: FFmpeg
    picks the threads and nothing is reniced."""
    device = auto_device() if settings.device == "auto" else settings.device
    if device in ("cpu", "openvino"):
        return max(1, (os.cpu_count() or 2) // 4), 10
    return 0, 0


def convert_video(src: Path, dst: Path, settings: VideoSettings, engines: Engines,
                  log: Log, progress_factory: Callable[..., Progress] | None = None) -> Result:
    """Convert one video file. `progress_factory` (default Progress) is called with
    (total_frames, duration, start_time, label, enabled) and then with the pipeline's
    stats about every 0.2 s."""
    container_format(dst)  # a suffix we can write, before any work
    _check_target(src, dst, settings.overwrite)
    threads, nice = _side_work(settings)
    source = VideoFileSource(src, threads=threads)
    sink = None
    progress = None
    try:
        info = source.info
        sink = VideoFileSink(dst, info, source.audio_packets, codec=settings.codec,
                             crf=settings.crf, preset=settings.preset,
                             overwrite=settings.overwrite, open_in_writer=nice > 0)
        notes = info.notes + sink.notes
        for note in notes:
            log(f"note: {note}")
        fps = float(info.average_rate) if info.average_rate else 30.0
        flow = engines.stylise(ring_size(settings.queue, settings.batch), fps)
        stage = ToonStage(flow, settings.batch)
        pipe = Pipeline(source, stage, sink, queue_size=settings.queue, side_nice=nice)
        factory = progress_factory or Progress
        progress = factory(info.frames, info.duration, info.start_time, src.name,
                           settings.progress and sys.stderr.isatty())
        st = pipe.run(on_tick=progress)
        progress(st)
        if info.fixed_pts:
            notes.append(f"{info.fixed_pts} frame(s) had a missing or repeated timestamp; "
                         f"moved just past the previous frame")
            log(f"note: {notes[-1]}")
        if st.frames_out != st.frames_in:  # the offline pipeline drops nothing
            raise RuntimeError(f"wrote {st.frames_out} of {st.frames_in} frames")
        for warning in source.warnings:  # damage decoded past, or a file that ends early
            log(f"warning: {warning}")
        return Result("video", str(src), str(dst), st.frames_out, st.elapsed_s,
                      {"decode": st.busy_s["source"], "toon": st.busy_s["toon"],
                       "encode": st.busy_s["sink"]}, notes, sink.stats.audio_packets,
                      st.latency_sum_s / st.frames_out if st.frames_out else None,
                      _face_stats(flow), list(source.warnings))
    finally:
        if progress is not None:
            progress.close()
        if sink is not None:
            sink.abort()  # removes the temporary file unless finish() renamed it
        source.close()


# --- one still ----------------------------------------------------------------------------


def convert_still(src: Path, dst: Path, settings: VideoSettings, engines: Engines,
                  log: Log) -> Result:
    if dst.suffix.lower() not in IMAGE_SUFFIXES:
        raise OutputError(f"{dst.name}: a still image needs an image output "
                          f"({', '.join(IMAGE_SUFFIXES)})")
    _check_target(src, dst, settings.overwrite)
    img, alpha = read_image_alpha(src)
    flow = engines.stylise(ring=1)
    t0 = time.perf_counter()
    out = flow([img], [0.0])[0]
    t1 = time.perf_counter()
    notes = []
    if alpha is not None:
        if dst.suffix.lower() in ALPHA_SUFFIXES:
            # The model sees the colour as the official code reads it; the transparency
            # goes back on unchanged, so a cut-out stays a cut-out.
            out = np.dstack([out, alpha])
        else:
            notes.append(f"{src.name} has transparency (an alpha channel); {dst.suffix} "
                         f"cannot hold it, so it was dropped (write .png or .webp to keep it)")
            log(f"note: {notes[-1]}")
    write_image(out, dst, settings.overwrite)
    return Result("image", str(src), str(dst), 1, time.perf_counter() - t0,
                  {"toon": t1 - t0}, notes=notes, faces=_face_stats(flow))


def _face_stats(flow: Stylise) -> dict[str, float] | None:
    """Faces pasted and where the face path's time went, for the summary and stats JSON."""
    timings = getattr(flow, "timings", None)
    if timings is None:
        return None
    return {"faces": timings.faces, "head_s": round(timings.head_s, 4),
            "face_path_s": round(timings.face_s, 4)}


# --- dispatch -------------------------------------------------------------------------------


def _default_output(src: Path, style: str) -> Path:
    if src.is_dir():
        return src.with_name(f"{src.name}_{style}")
    suffix = src.suffix if src.suffix.lower() in FORMATS or is_image_path(src) else ".mkv"
    return src.with_name(f"{src.stem}_{style}{suffix}")


def _media_files(folder: Path, skip: Path) -> list[Path]:
    wanted = set(IMAGE_SUFFIXES) | set(FORMATS)
    out = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if skip in p.parents or p == skip:
            continue
        if p.is_file() and p.suffix.lower() in wanted:
            out.append(p)
    return out


def convert(src: Path, dst: Path | None, settings: VideoSettings, engines: Engines,
            log: Log) -> list[Result]:
    """Convert a video, a still or a folder; returns one Result per file written."""
    engines.check_style()
    try:
        src.stat()
    except FileNotFoundError:
        raise MediaError(f"{src}: no such file or folder") from None
    except OSError as exc:
        raise MediaError(f"{src}: cannot read ({exc.strerror})") from None
    if dst is None:
        dst = _default_output(src, settings.style)
    if src.is_dir():
        return convert_folder(src, dst, settings, engines, log)
    if dst.is_dir():
        dst = dst / src.name
    if is_image_path(src):
        return [convert_still(src, dst, settings, engines, log)]
    return [convert_video(src, dst, settings, engines, log)]


class FolderIncomplete(Exception):
    """Some files of a folder could not be converted; the others were (`results`)."""

    def __init__(self, results: list[Result], failed: list[tuple[str, str]], total: int):
        super().__init__(f"{len(failed)} of {total} files could not be converted "
                         f"(each is listed above as 'failed:')")
        self.results = results
        self.failed = failed


def _file_errors() -> tuple[type[BaseException], ...]:
    """What fails one file of a folder but not the others: its data, or its output."""
    return (MediaError, OutputError, PipelineError)


def convert_folder(src: Path, dst: Path, settings: VideoSettings, engines: Engines,
                   log: Log) -> list[Result]:
    """Convert every image and video under `src` into the same names under `dst`.

    A file that fails (damaged, unreadable, an output that cannot be written) is reported
    in one `failed:` line and the rest go on; FolderIncomplete at the end counts them. An
    output that already exists is skipped unless -y: outputs are only ever complete files
    (written under a temporary name, renamed at the end), so a rerun after a failure or an
    interruption finishes the rest. Problems common to all files (the model, the device,
    Ctrl+C) stop the folder at once."""
    if dst.exists() and not dst.is_dir():
        raise OutputError(f"{dst} is a file; a folder input needs an output folder")
    files = _media_files(src, dst.resolve() if dst.exists() else dst.absolute())
    if not files:
        raise MediaError(f"{src}: no images or videos in this folder")
    try:
        dst.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output folder {dst} ({exc.strerror})") from None
    results: list[Result] = []
    failed: list[tuple[str, str]] = []
    skipped = 0
    for i, f in enumerate(files, 1):
        rel = f.relative_to(src)
        target = dst / rel
        if target.is_file() and not settings.overwrite:
            log(f"[{i}/{len(files)}] {rel}: skipped, {target} exists (-y converts it again)")
            skipped += 1
            continue
        log(f"[{i}/{len(files)}] {rel}")
        try:
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputError(f"cannot create {target.parent} ({exc.strerror})") from None
            convert_one = convert_still if is_image_path(f) else convert_video
            r = convert_one(f, target, settings, engines, log)
        except _file_errors() as exc:
            cause = exc.error if isinstance(exc, PipelineError) else exc
            if not isinstance(cause, (MediaError, OutputError)):
                raise  # a stage failed for a reason that is not this file's
            failed.append((str(rel), one_line(cause)))
            log(f"failed: {rel}: {one_line(cause)}")
            continue
        log(_summary(r, engines))
        results.append(r)
    if skipped:
        log(f"note: {skipped} file(s) skipped because their output exists")
    if failed:
        raise FolderIncomplete(results, failed, len(files))
    return results


def _summary(r: Result, engines: Engines) -> str:
    engine = engines.get().describe()
    faces = f", {r.faces['faces']} face(s) pasted" if r.faces is not None else ""
    if r.kind == "image":
        return f"done: {r.input} -> {r.output} in {r.seconds:.2f} s with {engine}{faces}"
    busy = ", ".join(f"{k} {v:.1f} s" for k, v in r.stage_busy_s.items())
    return (f"done: {r.frames} frames in {r.seconds:.1f} s ({r.fps:.2f} fps) with {engine}"
            f"{faces}; busy: {busy} -> {r.output}")


def _write_stats(path: str, results: list[Result], settings: VideoSettings,
                 engines: Engines) -> None:
    engine = engines.get()
    total_frames = sum(r.frames for r in results)
    total_s = sum(r.seconds for r in results)
    data: dict[str, Any] = {
        "frames": total_frames, "seconds": round(total_s, 4),
        "fps": round(total_frames / total_s, 4) if total_s else 0.0,
        "backend": engine.backend, "device": engine.device, "precision": engine.precision,
        "engine": engine.describe(),
        "settings": asdict(settings),
        "items": [{**asdict(r), "fps": round(r.fps, 4)} for r in results],
    }
    try:
        Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write stats to {path} ({exc.strerror})") from None


# --- command line ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    S = argparse.SUPPRESS  # settings not given keep the preset's (or the default) value
    p = argparse.ArgumentParser(
        prog="run_video.py",
        description="Cartoonize a video file, a still image (JPEG, PNG, WebP), or a folder of "
                    "them with DCT-Net. Audio, timestamps and metadata are kept.",
        epilog="Settings come from the defaults, then --config, then these options. "
               "The output is written under a temporary name and renamed when complete.",
        argument_default=S)
    p.add_argument("input", help="video file, image, or folder")
    p.add_argument("-o", "--output", default=None,
                   help="output file (or folder for a folder input); default: "
                        "INPUT_STYLE next to the input")
    p.add_argument("--config", default=None, metavar="NAME",
                   help="YAML preset: a path or a name in configs/ (video-hq, cpu, gpu)")
    p.add_argument("--style", help="anime (default), 3d, handdrawn, sketch, artstyle, "
                                   "sd-design, sd-illustration")
    p.add_argument("--models", metavar="DIR",
                   help="model store (default: $TOONSTREAM_MODELS, else the user cache)")
    p.add_argument("--size", type=int, metavar="PX",
                   help="working short side; larger frames are reduced (default 720, as the "
                        "official code)")
    p.add_argument("--batch", type=int, help="frames per engine call (default 1)")
    p.add_argument("--device", choices=DEVICES, help="inference device (default auto)")
    p.add_argument("--precision", choices=("exact", "fast"),
                   help="exact: fp32, golden parity (default); fast: bf16/fp16 where available")
    p.add_argument("--threads", type=int, help="engine threads (default: the runtime's choice)")
    p.add_argument("--codec", help=f"video encoder: {', '.join(CODECS)} "
                                   f"(default libx264; libvpx-vp9 for .webm)")
    p.add_argument("--crf", type=int, help="quality, lower is better (default 18 for libx264)")
    p.add_argument("--preset", help="encoder speed preset (default medium; p5 for NVENC)")
    p.add_argument("--queue", type=int, help="frames per pipeline queue (default 4)")
    add_face_options(p)
    p.add_argument("-y", "--overwrite", action="store_true", help="overwrite the output")
    p.add_argument("--stats-json", metavar="PATH", help="write run statistics as JSON")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar")
    return p


def settings_from_args(args: argparse.Namespace) -> VideoSettings:
    overrides = {k: v for k, v in vars(args).items()
                 if k not in ("input", "output", "config")}
    return build_settings(VideoSettings, args.config, overrides)


def main(argv: list[str] | None = None, log: Log | None = None) -> int:
    """The run_video.py command; returns the exit status."""
    log = log or Log()
    args = build_parser().parse_args(argv)
    with stop_signals():  # SIGTERM/SIGHUP clean up like Ctrl+C
        return _main(args, log)


def _main(args: argparse.Namespace, log: Log) -> int:
    errors = user_errors()
    try:
        settings = settings_from_args(args)
        engines = Engines(settings, log)
        incomplete = None
        try:
            results = convert(Path(args.input), Path(args.output) if args.output else None,
                              settings, engines, log)
        except FolderIncomplete as exc:
            incomplete, results = exc, exc.results
        if incomplete is not None:
            pass  # each file's line is above; the error line comes last
        elif not results:
            log("done: nothing to convert (every output exists; -y converts them again)")
        elif len(results) == 1:
            log(_summary(results[0], engines))
        else:
            frames = sum(r.frames for r in results)
            seconds = sum(r.seconds for r in results)
            log(f"done: {len(results)} files, {frames} frames in {seconds:.1f} s "
                f"with {engines.get().describe()}")
        if settings.stats_json and results:
            _write_stats(settings.stats_json, results, settings, engines)
        if incomplete is not None:
            log(f"error: {incomplete}")
            return EXIT_ERROR
        return 0
    except KeyboardInterrupt as exc:
        what = f" by {signal_name(exc.signum)}" if isinstance(exc, Terminated) else ""
        log(f"interrupted{what}: stopped; the unfinished output was removed")
        return exit_status(exc)
    except PipelineError as exc:
        return _fail(exc.error, errors, log, exc.stage)
    except errors as exc:
        log(f"error: {one_line(exc)}")
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback
        return _fail(exc, errors, log)


def _fail(exc: BaseException, errors, log: Log, stage: str | None = None) -> int:
    if isinstance(exc, errors):
        log(f"error: {one_line(exc)}")
    else:
        where = f"{stage} stage: " if stage else ""
        log(f"error: {where}{type(exc).__name__}: {one_line(exc)}")
        if os.environ.get("TOONSTREAM_DEBUG"):
            import traceback
            traceback.print_exception(exc)
    return EXIT_ERROR
