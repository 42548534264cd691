"""The Ray driver's plan of a run_video job: each input file (FileWork) and the tasks that
convert it (Task), one per file, or one per chunk for a long video in a container whose
pieces join (chunks.py). What the manifest records as finished is kept, not planned again.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from streamer.config import VideoSettings
from streamer.errors import UserError
from streamer.report import describe_error
from streamer.sinks.png_sequence import is_sequence_pattern
from streamer.sinks.video_file import output_encoder
from streamer.sources.image import is_image_path
from streamer.sources.video_file import MediaError

from .chunk_encode import piece_suffix
from .chunks import Chunk, plan_chunks
from .cluster_messages import TaskMessage
from .join import plan_audio
from .manifest import Manifest, input_fingerprint, work_dir_for
from .targets import check_still_output, check_target

# Containers whose video carries a global header, so pieces join without touching the
# bitstream (MPEG-TS, AVI and FLV repeat headers in-band: those files are converted whole).
CHUNKABLE = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".nut"}


@dataclass
class FileWork:
    """One input file and what became of it."""

    src: Path
    dst: Path
    fingerprint: list[int] = field(default_factory=list)
    frames: int = 0
    chunks: list[Chunk] = field(default_factory=list)  # empty: converted whole
    pieces: dict[int, dict] = field(default_factory=dict)  # chunk index -> ChunkResult dict
    label: str = ""  # how the failed: lines name it: its path in its folder, or as given
    in_folder: bool = False  # found in a folder input: an existing output is skipped
    error: str | None = None
    done: bool = False
    resumed: bool = False  # finished by an earlier run
    skipped: bool = False  # its output exists (a folder's file, without -y)
    seconds: float = 0.0
    plan_s: float = 0.0  # reading the packet flags (driver)
    join_s: float = 0.0  # joining the pieces and copying the audio (driver)
    notes: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        """The input as the manifest names it."""
        return str(self.src.resolve())


@dataclass
class Task:
    id: int
    kind: str  # file | chunk
    src: str
    dst: str
    frames: int  # expected, for the progress bar
    item: FileWork
    chunk: Chunk | None = None
    codec: str | None = None  # chunks: the final output's encoder
    attempts: int = 0

    def message(self) -> TaskMessage:
        return TaskMessage(self.id, self.kind, self.src, self.dst, self.chunk, self.codec)

    def describe(self) -> str:
        return Path(self.src).name + (f" chunk {self.chunk.index}" if self.chunk else "")


@dataclass
class JobPlan:
    items: list[FileWork]
    tasks: list[Task]
    resumed: int  # tasks a previous run finished (files and chunks)


def folder_labels(inputs: list[Path], pairs: list[tuple[Path, Path]]) -> dict[Path, str]:
    """The files of `pairs` found in a folder among `inputs`, each with its path inside that
    folder (as the single-machine run names a folder's files)."""
    labels: dict[Path, str] = {}
    for folder in (p for p in inputs if p.is_dir()):
        for src, _dst in pairs:
            if folder in src.parents:
                labels.setdefault(src, str(src.relative_to(folder)))
    return labels


def plan_job(pairs: list[tuple[Path, Path]], manifest: Manifest, settings: VideoSettings,
             output_root: Path, labels: dict[Path, str] | None = None) -> JobPlan:
    """The tasks for (input, output) `pairs` (targets.all_targets); a file that cannot be
    planned carries its one-line error and gets no task. `output_root`: the job's output,
    beside which the chunk pieces are kept. `labels`: the files found in folders
    (folder_labels); as without Ray, their outputs that exist are skipped unless -y."""
    plan = JobPlan([], [], 0)
    labels = labels or {}
    for src, dst in pairs:
        item = FileWork(src, dst, label=labels.get(src, str(src)), in_folder=src in labels)
        plan.items.append(item)
        try:
            _plan_file(item, plan, manifest, settings, output_root)
        except UserError as exc:
            item.error = describe_error(exc)
        except OSError as exc:
            item.error = f"{src}: {exc.strerror or exc}"
    return plan


def _plan_file(item: FileWork, plan: JobPlan, manifest: Manifest, s: VideoSettings,
               output_root: Path) -> None:
    src, dst = item.src, item.dst
    if not src.exists():
        raise MediaError(f"{src}: no such file or folder")
    item.fingerprint = input_fingerprint(src)
    if manifest.output_done(item.key, item.fingerprint, dst.resolve()):
        item.done = item.resumed = True
        plan.resumed += 1
        return
    if item.in_folder and not s.overwrite and dst.is_file():
        item.skipped = True
        item.notes.append(f"skipped, {dst} exists (-y converts it again)")
        return
    # the output, checked as the single-machine run checks it, before Ray starts (its kind
    # is all_targets' to check)
    background = s.background_spec()
    still = is_image_path(src)
    if still:
        check_still_output(dst, background.alpha)
    sequence = is_sequence_pattern(dst)
    if not sequence:
        check_target(src, dst, s.overwrite)
    if still:
        item.frames = 1
        _add(plan, "file", item, str(dst.resolve()), 1)
        return
    # the official full-frame flow keeps no state between frames (faces off, the temporal
    # step off, and no person mask, whose smoothing carries over): no warm-up
    stateless = (s.faces == "off" and s.temporal_settings() is None
                 and not background.needs_mask)
    t0 = time.perf_counter()
    chunked = plan_chunks(src, s.chunk_seconds, 0.0 if stateless else s.warmup_seconds)
    item.plan_s = time.perf_counter() - t0
    # The output's container and encoder, checked as the sink checks them once the input
    # has opened (without its trial open: the driver may lack a GPU encoder the workers
    # have), so that an output that cannot be written, or cannot carry alpha, fails here,
    # before Ray starts, with the single-machine run's line; the audio too (--audio), whose
    # notes are the join's to say (a whole file's worker says them itself).
    codec = None if sequence else output_encoder(dst, s.codec, alpha=background.alpha)
    audio_notes = [] if sequence else plan_audio(src, dst, s.audio, alpha=background.alpha,
                                                 video_codec=s.codec)
    item.frames = chunked.frames
    if chunked.note:
        item.notes.append(chunked.note)
    chunkable = not sequence and dst.suffix.lower() in CHUNKABLE
    if chunked.chunked and sequence:
        item.notes.append("a PNG sequence output is converted whole")
    elif chunked.chunked and not chunkable:
        item.notes.append(f"{dst.suffix} output is converted whole (its video repeats headers "
                          f"in-band; chunks join in {', '.join(sorted(CHUNKABLE))})")
    if not (chunked.chunked and chunkable):
        _add(plan, "file", item, str(dst.resolve()), chunked.frames)
        return
    item.notes += audio_notes
    # every piece is encoded as the output would be, alpha included, in a container that
    # holds that encoding (chunk_encode.piece_suffix)
    suffix = piece_suffix(codec, background.alpha)
    item.chunks = list(chunked.chunks)
    folder = work_dir_for(output_root) / hashlib.sha1(item.key.encode()).hexdigest()[:12]
    folder.mkdir(parents=True, exist_ok=True)
    for ch in chunked.chunks:
        prev = manifest.chunk_done(item.key, item.fingerprint, ch.index, ch.to_dict())
        if prev is not None:
            item.pieces[ch.index] = prev
            plan.resumed += 1
            continue
        t = _add(plan, "chunk", item, str(folder / f"piece-{ch.index:05d}{suffix}"), ch.frames)
        t.chunk, t.codec = ch, codec


def _add(plan: JobPlan, kind: str, item: FileWork, dst: str, frames: int) -> Task:
    t = Task(len(plan.tasks) + 1, kind, item.key, dst, frames, item)
    plan.tasks.append(t)
    return t
