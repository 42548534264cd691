"""Convert one video, one still, or a folder of them: the work behind run_video.py and the web
page's photo and video tabs.

A `Job` holds what the files of one run share: the settings, the style flows (engines
started once, see streamer.toon.styles) and the log. Outputs are written under a temporary
name and renamed only when complete; anything that goes wrong removes them.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streamer.config import VideoSettings
from streamer.errors import UserError
from streamer.pipeline.core import Pipeline, PipelineError
from streamer.report import Log
from streamer.sinks.image import ALPHA_IMAGE_SUFFIXES, check_image_output, write_image
from streamer.sinks.png_sequence import PngSequenceSink, is_sequence_pattern
from streamer.sinks.video_file import OutputError, VideoFileSink
from streamer.sources.image import is_image_path, read_image_alpha
from streamer.sources.video_file import MediaError, VideoFileSource
from streamer.toon.engine import Engine, auto_device
from streamer.toon.link import Link
from streamer.toon.stage import ToonStage, ring_size
from streamer.toon.styles import StyleFlows

from .failures import failed_line, incomplete, own_failure, own_message
from .progress import Progress, ProgressCallback
from .targets import check_output_kind
from .targets import (OutputNaming, check_still_output, check_target, default_output,
                      file_target, folder_targets, make_output_folder)


class Job:
    """The settings, style flows and log that the files of one run share. The engine starts
    on first use and says once what runs."""

    def __init__(self, settings: VideoSettings, log: Log, flows: StyleFlows | None = None):
        self.settings = settings
        self.log = log
        self.flows = flows if flows is not None else StyleFlows.from_settings(settings, log)
        self._announced = False

    @property
    def official(self) -> bool:
        """Exact precision composes faces the official way (detection on the official
        working image, see FaceAwareFlow); fast keeps the quicker 640 px detection."""
        return self.settings.precision == "exact"

    @property
    def faces(self) -> bool | None:
        """The settings' faces switch for the style flows (None: "auto", as installed);
        shared flows may have been made for another job's setting (the web page)."""
        mode = self.settings.faces
        return None if mode == "auto" else mode == "on"

    @property
    def temporal(self) -> bool:
        """The settings' temporal switch (shared flows may have been made for another
        job's setting: the web page)."""
        return self.settings.temporal == "on" and self.settings.temporal_strength > 0

    def engine(self) -> Engine:
        s = self.settings
        engine = self.flows.engine(s.style)
        if not self._announced:
            self._announced = True
            self.log(f"engine: {engine.describe()}; {self.flows.describe_net()}, style "
                     f"{s.style}, working short side "
                     f"{s.size}, {self.flows.describe_faces(self.faces, self.official)}, "
                     f"{self.flows.describe_temporal(self.temporal)}")
        return engine

    def stylise(self, ring: int, fps: float = 30.0) -> Link:
        """A new stylise callable for one video or still (face tracks never carry over)."""
        self.engine()
        return self.flows.flow(self.settings.style, short_side=self.settings.size, ring=ring,
                               fps=fps, faces=self.faces, official=self.official,
                               background=self.settings.background_spec(),
                               temporal=self.temporal)

    @property
    def alpha(self) -> bool:
        """Outputs carry an alpha channel (--background transparent)."""
        return self.settings.background_spec().alpha

    @property
    def naming(self) -> OutputNaming:
        """The type of the outputs this run names itself (--format, --image-format)."""
        return OutputNaming.from_settings(self.settings)


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


def engine_batch(settings: VideoSettings, engine: Engine) -> int:
    """Frames per engine call: `--batch` when given, else the engine's own choice (several
    frames on a GPU, where batches fill the device; one on a CPU, where they gain nothing)."""
    return settings.batch or engine.preferred_batch


def _side_work(settings: VideoSettings) -> tuple[int, int]:
    """(decoder threads, nice increment for the source and sink threads).

    When the model runs on the CPU it is the bottleneck and needs every core: decoding and
    encoding (a few percent of the work) then run at a lower priority, so they fill the
    gaps instead of preempting inference threads mid-layer. The encoder is opened by the
    (reniced) sink thread so its worker threads inherit the priority; the decoder, opened
    while probing, gets few threads. With a GPU the encoder may be the bottleneck: FFmpeg
    picks the threads and nothing is reniced."""
    device = auto_device() if settings.device == "auto" else settings.device
    if device in ("cpu", "openvino", "torch-cpu"):
        return max(1, (os.cpu_count() or 2) // 4), 10
    return 0, 0


def _face_stats(flow: Link) -> dict[str, float] | None:
    """Faces pasted and where the face path's time went, for the summary and stats JSON
    (None with faces off); found through the chain's contract, whatever links wrap it."""
    face = flow.face_layer
    if face is None:
        return None
    timings = face.timings
    return {"faces": timings.faces, "head_s": round(timings.head_s, 4),
            "face_path_s": round(timings.face_s, 4)}


def convert_video(src: Path, dst: Path, job: Job,
                  on_progress: ProgressCallback | None = None) -> Result:
    """Convert one video file; `on_progress` gets the progress about every 0.2 s."""
    settings, log = job.settings, job.log
    sequence = is_sequence_pattern(dst)
    if not sequence:
        # the container and encoder are the sink's to check (choose_encoder), when it opens
        check_target(src, dst, settings.overwrite)
    threads, nice = _side_work(settings)
    with VideoFileSource(src, threads=threads) as source:
        info = source.info
        video_sink: VideoFileSink | None = None
        if sequence:
            sink = PngSequenceSink(dst, overwrite=settings.overwrite, audio=source.audio)
            extra = ["a PNG sequence holds no audio: the input's audio is not kept"] \
                if source.audio is not None and source.audio.streams \
                and settings.audio != "none" else []
        else:
            sink = video_sink = VideoFileSink(
                dst, info, source.audio, codec=settings.codec, crf=settings.crf,
                preset=settings.preset, overwrite=settings.overwrite, open_in_writer=nice > 0,
                alpha=job.alpha, audio_mode=settings.audio)
            extra = sink.notes
        with sink:
            notes = source.probe.notes + extra
            for note in notes:
                log(f"note: {note}")
            batch = engine_batch(settings, job.engine())
            flow = job.stylise(ring_size(settings.queue, batch), info.fps)
            pipe = Pipeline(source, ToonStage(flow, batch), sink,
                            queue_size=settings.queue, side_nice=nice)
            progress = Progress(info.frames, info.duration, info.start_time, src.name,
                                settings.progress and sys.stderr.isatty(),
                                on_update=on_progress)
            try:
                st = pipe.run(on_tick=progress)
                progress(st)
            finally:
                progress.close()
            if source.fixed_pts:
                notes.append(f"{source.fixed_pts} frame(s) had a missing or repeated "
                             f"timestamp; moved just past the previous frame")
                log(f"note: {notes[-1]}")
            if st.frames_out != st.frames_in:  # the offline pipeline drops nothing
                raise RuntimeError(f"wrote {st.frames_out} of {st.frames_in} frames")
            # damage decoded past, or a file that ends early; damaged audio re-encoded past
            warnings = list(source.warnings) + (video_sink.warnings if video_sink else [])
            for warning in warnings:
                log(f"warning: {warning}")
            return Result("video", str(src), str(dst), st.frames_out, st.elapsed_s,
                          {"decode": st.busy_s["source"], "toon": st.busy_s["toon"],
                           "encode": st.busy_s["sink"]}, notes, sink.stats.audio_packets,
                          st.latency_sum_s / st.frames_out if st.frames_out else None,
                          _face_stats(flow), warnings)


def convert_still(src: Path, dst: Path, job: Job) -> Result:
    """Stylise one still. Every refusal (the output's type, an alpha channel it cannot
    carry, a size its format cannot hold, the target itself) comes before the model runs."""
    suffix = dst.suffix.lower()
    check_still_output(dst, job.alpha)
    check_target(src, dst, job.settings.overwrite)
    img, alpha = read_image_alpha(src)
    keep_alpha = job.alpha or (alpha is not None and suffix in ALPHA_IMAGE_SUFFIXES)
    check_image_output(dst, img.shape[1], img.shape[0], 4 if keep_alpha else 3)
    flow = job.stylise(ring=1)
    t0 = time.perf_counter()
    out = flow([img], [0.0])[0]
    t1 = time.perf_counter()
    notes = []
    if alpha is not None and out.shape[2] == 4:
        # --background transparent made its own alpha: the input's cut-out stays cut out
        out = out.copy()
        np.minimum(out[..., 3], alpha, out=out[..., 3])
    elif alpha is not None:
        if suffix in ALPHA_IMAGE_SUFFIXES:
            # The model sees the colour as the official code reads it; the transparency
            # goes back on unchanged, so a cut-out stays a cut-out.
            out = np.dstack([out, alpha])
        else:
            notes.append(f"{src.name} has transparency (an alpha channel); {dst.suffix} "
                         f"cannot hold it, so it was dropped (write "
                         f"{', '.join(ALPHA_IMAGE_SUFFIXES)} to keep it)")
            job.log(f"note: {notes[-1]}")
    write_image(out, dst, job.settings.overwrite)
    return Result("image", str(src), str(dst), 1, time.perf_counter() - t0,
                  {"toon": t1 - t0}, notes=notes, faces=_face_stats(flow))


def convert(src: Path, dst: Path | None, job: Job) -> list[Result]:
    """Convert a video, a still or a folder; returns one Result per file written."""
    job.flows.check_style(job.settings.style)
    try:
        src.stat()
    except FileNotFoundError:
        raise MediaError(f"{src}: no such file or folder") from None
    except OSError as exc:
        raise MediaError(f"{src}: cannot read ({exc.strerror})") from None
    if dst is None:
        dst = default_output(src, job.settings.style, naming=job.naming)
    check_output_kind(src, dst)
    if src.is_dir():
        return convert_folder(src, dst, job)
    dst = file_target(src, dst, job.naming)
    if is_image_path(src):
        return [convert_still(src, dst, job)]
    return [convert_video(src, dst, job)]


class FolderIncomplete(UserError):
    """Some files of a folder could not be converted; the others were (`results`)."""

    def __init__(self, results: list[Result], failed: list[tuple[str, str]], total: int):
        super().__init__(incomplete(len(failed), total))
        self.results = results
        self.failed = failed
        self.total = total


def convert_folder(src: Path, dst: Path, job: Job) -> list[Result]:
    """Convert every image and video under `src` into the same names under `dst`.

    A file that fails (damaged, unreadable, an output that cannot be written) is reported
    in one `failed:` line and the rest go on; FolderIncomplete at the end counts them. An
    output that already exists is skipped unless -y: outputs are only ever complete files
    (written under a temporary name, renamed at the end), so a rerun after a failure or an
    interruption finishes the rest. Problems common to all files (the model, the device,
    Ctrl+C) stop the folder at once."""
    files = folder_targets(src, dst, job.naming)
    make_output_folder(dst)
    results: list[Result] = []
    failed: list[tuple[str, str]] = []
    skipped = 0
    for i, (f, target) in enumerate(files, 1):
        rel = f.relative_to(src)
        if target.is_file() and not job.settings.overwrite:
            job.log(f"[{i}/{len(files)}] {rel}: skipped, {target} exists (-y converts it again)")
            skipped += 1
            continue
        job.log(f"[{i}/{len(files)}] {rel}")
        try:
            r = _convert_one(f, target, job)
        except (MediaError, OutputError, PipelineError) as exc:
            cause = own_failure(exc)
            if cause is None:
                raise  # a stage failed for a reason that is not this file's
            failed.append((str(rel), own_message(f, cause)))
            job.log(failed_line(*failed[-1]))
            continue
        job.log(summary(r, job))
        results.append(r)
    if skipped:
        job.log(f"note: {skipped} file(s) skipped because their output exists")
    if failed:
        raise FolderIncomplete(results, failed, len(files))
    return results


def _convert_one(src: Path, target: Path, job: Job) -> Result:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {target.parent} ({exc.strerror})") from None
    if is_image_path(src):
        return convert_still(src, target, job)
    return convert_video(src, target, job)


def summary(r: Result, job: Job) -> str:
    engine = job.engine().describe()
    faces = f", {r.faces['faces']} face(s) pasted" if r.faces is not None else ""
    if r.kind == "image":
        return f"done: {r.input} -> {r.output} in {r.seconds:.2f} s with {engine}{faces}"
    busy = ", ".join(f"{k} {v:.1f} s" for k, v in r.stage_busy_s.items())
    return (f"done: {r.frames} frames in {r.seconds:.1f} s ({r.fps:.2f} fps) with {engine}"
            f"{faces}; busy: {busy} -> {r.output}")
