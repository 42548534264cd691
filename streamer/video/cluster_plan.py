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
from streamer.sinks.video_file import default_codec_for
from streamer.sources.image import is_image_path
from streamer.sources.video_file import MediaError

from .chunks import Chunk, plan_chunks
from .cluster_messages import TaskMessage
from .manifest import Manifest, input_fingerprint, work_dir_for
from .targets import check_target

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
    error: str | None = None
    done: bool = False
    resumed: bool = False  # finished by an earlier run
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


def plan_job(pairs: list[tuple[Path, Path]], manifest: Manifest, settings: VideoSettings,
             output_root: Path) -> JobPlan:
    """The tasks for (input, output) `pairs` (targets.all_targets); a file that cannot be
    planned carries its one-line error and gets no task. `output_root`: the job's output,
    beside which the chunk pieces are kept."""
    plan = JobPlan([], [], 0)
    for src, dst in pairs:
        item = FileWork(src, dst)
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
    if is_image_path(src):
        item.frames = 1
        _add(plan, "file", item, str(dst.resolve()), 1)
        return
    # the official full-frame flow keeps no state between frames (faces off and the
    # temporal step off): no warm-up
    stateless = s.faces == "off" and s.temporal_settings() is None
    t0 = time.perf_counter()
    chunked = plan_chunks(src, s.chunk_seconds, 0.0 if stateless else s.warmup_seconds)
    item.plan_s = time.perf_counter() - t0
    item.frames = chunked.frames
    if chunked.note:
        item.notes.append(chunked.note)
    chunkable = dst.suffix.lower() in CHUNKABLE
    if chunked.chunked and not chunkable:
        item.notes.append(f"{dst.suffix} output is converted whole (its video repeats headers "
                          f"in-band; chunks join in {', '.join(sorted(CHUNKABLE))})")
    if not (chunked.chunked and chunkable):
        _add(plan, "file", item, str(dst.resolve()), chunked.frames)
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    check_target(src, dst, s.overwrite)
    codec = s.codec or default_codec_for(dst)  # every piece is encoded as the output would be
    item.chunks = list(chunked.chunks)
    folder = work_dir_for(output_root) / hashlib.sha1(item.key.encode()).hexdigest()[:12]
    folder.mkdir(parents=True, exist_ok=True)
    for ch in chunked.chunks:
        prev = manifest.chunk_done(item.key, item.fingerprint, ch.index, ch.to_dict())
        if prev is not None:
            item.pieces[ch.index] = prev
            plan.resumed += 1
            continue
        t = _add(plan, "chunk", item, str(folder / f"piece-{ch.index:05d}.mp4"), ch.frames)
        t.chunk, t.codec = ch, codec


def _add(plan: JobPlan, kind: str, item: FileWork, dst: str, frames: int) -> Task:
    t = Task(len(plan.tasks) + 1, kind, item.key, dst, frames, item)
    plan.tasks.append(t)
    return t
