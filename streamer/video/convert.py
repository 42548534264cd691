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

from streamer.config import VideoSettings
from streamer.pipeline.core import Pipeline
from streamer.report import Log
from streamer.sinks.image import write_image
from streamer.sinks.video_file import (FORMATS, OutputError, VideoFileSink,
                                       check_output_folder, container_format)
from streamer.sources.image import IMAGE_SUFFIXES, is_image_path, read_image
from streamer.sources.video_file import MediaError, VideoFileSource
from streamer.toon.engine import Engine, auto_device
from streamer.toon.stage import Stylise, ToonStage, ring_size
from streamer.toon.styles import StyleFlows

from .progress import Progress, ProgressCallback


class Job:
    """The settings, style flows and log that the files of one run share. The engine starts
    on first use and says once what runs."""

    def __init__(self, settings: VideoSettings, log: Log, flows: StyleFlows | None = None):
        self.settings = settings
        self.log = log
        self.flows = flows if flows is not None else StyleFlows.from_settings(settings, log)
        self._announced = False

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
            self.log(f"engine: {engine.describe()}; style {s.style}, working short side "
                     f"{s.size}, {self.flows.describe_faces(self.faces)}, "
                     f"{self.flows.describe_temporal(self.temporal)}")
        return engine

    def stylise(self, ring: int, fps: float = 30.0) -> Stylise:
        """A new stylise callable for one video or still (face tracks never carry over)."""
        self.engine()
        return self.flows.flow(self.settings.style, short_side=self.settings.size, ring=ring,
                               fps=fps, faces=self.faces, temporal=self.temporal)


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

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


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


def _face_stats(flow: Stylise) -> dict[str, float] | None:
    """Faces pasted and where the face path's time went, for the summary and stats JSON."""
    timings = getattr(flow, "timings", None)  # only the face-aware flow keeps them
    if timings is None:
        return None
    return {"faces": timings.faces, "head_s": round(timings.head_s, 4),
            "face_path_s": round(timings.face_s, 4)}


def convert_video(src: Path, dst: Path, job: Job,
                  on_progress: ProgressCallback | None = None) -> Result:
    """Convert one video file; `on_progress` gets the progress about every 0.2 s."""
    settings, log = job.settings, job.log
    container_format(dst)  # a suffix we can write, before any work
    _check_target(src, dst, settings.overwrite)
    threads, nice = _side_work(settings)
    with VideoFileSource(src, threads=threads) as source:
        info = source.info
        with VideoFileSink(dst, info, source.audio, codec=settings.codec, crf=settings.crf,
                           preset=settings.preset, overwrite=settings.overwrite,
                           open_in_writer=nice > 0) as sink:
            notes = source.probe.notes + sink.notes
            for note in notes:
                log(f"note: {note}")
            flow = job.stylise(ring_size(settings.queue, settings.batch), info.fps)
            pipe = Pipeline(source, ToonStage(flow, settings.batch), sink,
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
            return Result("video", str(src), str(dst), st.frames_out, st.elapsed_s,
                          {"decode": st.busy_s["source"], "toon": st.busy_s["toon"],
                           "encode": st.busy_s["sink"]}, notes, sink.stats.audio_packets,
                          st.latency_sum_s / st.frames_out if st.frames_out else None,
                          _face_stats(flow))


def convert_still(src: Path, dst: Path, job: Job) -> Result:
    if dst.suffix.lower() not in IMAGE_SUFFIXES:
        raise OutputError(f"{dst.name}: a still image needs an image output "
                          f"({', '.join(IMAGE_SUFFIXES)})")
    _check_target(src, dst, job.settings.overwrite)
    img = read_image(src)
    flow = job.stylise(ring=1)
    t0 = time.perf_counter()
    out = flow([img], [0.0])[0]
    t1 = time.perf_counter()
    write_image(out, dst, job.settings.overwrite)
    return Result("image", str(src), str(dst), 1, time.perf_counter() - t0,
                  {"toon": t1 - t0}, faces=_face_stats(flow))


def default_output(src: Path, style: str) -> Path:
    if src.is_dir():
        return src.with_name(f"{src.name}_{style}")
    suffix = src.suffix if src.suffix.lower() in FORMATS or is_image_path(src) else ".mkv"
    return src.with_name(f"{src.stem}_{style}{suffix}")


def media_files(folder: Path, skip: Path) -> list[Path]:
    """The images and videos under `folder` (hidden ones and `skip` left out), sorted."""
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
        dst = default_output(src, job.settings.style)
    if src.is_dir():
        return convert_folder(src, dst, job)
    if dst.is_dir():
        dst = dst / src.name
    if is_image_path(src):
        return [convert_still(src, dst, job)]
    return [convert_video(src, dst, job)]


def convert_folder(src: Path, dst: Path, job: Job) -> list[Result]:
    if dst.exists() and not dst.is_dir():
        raise OutputError(f"{dst} is a file; a folder input needs an output folder")
    files = media_files(src, dst.resolve() if dst.exists() else dst.absolute())
    if not files:
        raise MediaError(f"{src}: no images or videos in this folder")
    try:
        dst.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output folder {dst} ({exc.strerror})") from None
    results = []
    for i, f in enumerate(files, 1):
        target = dst / f.relative_to(src)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {target.parent} ({exc.strerror})") from None
        job.log(f"[{i}/{len(files)}] {f.relative_to(src)}")
        r = convert_still(f, target, job) if is_image_path(f) else convert_video(f, target, job)
        job.log(summary(r, job))
        results.append(r)
    return results


def summary(r: Result, job: Job) -> str:
    engine = job.engine().describe()
    faces = f", {r.faces['faces']} face(s) pasted" if r.faces is not None else ""
    if r.kind == "image":
        return f"done: {r.input} -> {r.output} in {r.seconds:.2f} s with {engine}{faces}"
    busy = ", ".join(f"{k} {v:.1f} s" for k, v in r.stage_busy_s.items())
    return (f"done: {r.frames} frames in {r.seconds:.1f} s ({r.fps:.2f} fps) with {engine}"
            f"{faces}; busy: {busy} -> {r.output}")
