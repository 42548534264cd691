"""The messages between run_video's Ray driver and its workers: what a worker says when it
starts (Hello), a task to run (TaskMessage) and what became of it (Outcome).

Plain dataclasses: Ray pickles them, and both sides read named fields instead of dict keys.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .chunks import Chunk


@dataclass
class Hello:
    """A started worker: where it runs, what it reads and whether it can work."""

    node: str
    pid: int
    problems: list[str] = field(default_factory=list)  # it cannot work: the first says why
    notes: list[str] = field(default_factory=list)  # for the log (a checksum that differs)
    engine: str | None = None
    faces: str | None = None  # how faces are composed, in words
    models: list[tuple[str, str]] = field(default_factory=list)  # (file, sha256) it reads

    @property
    def name(self) -> str:
        return f"{self.node}:{self.pid}"


@dataclass(frozen=True)
class TaskMessage:
    """One task for a worker: a whole file (convert_video / convert_still) or one chunk of a
    video (encode_chunk) into a piece."""

    id: int
    kind: str  # file | chunk
    src: str
    dst: str
    chunk: Chunk | None = None
    codec: str | None = None  # chunks: the final output's encoder, the same for every piece


@dataclass
class Outcome:
    """What became of a task. A worker never raises: a failure is `ok` False and `error`,
    the one line run_video prints for it."""

    ok: bool
    frames: int = 0  # written (when not ok: as far as it got)
    seconds: float = 0.0
    result: dict | None = None  # the chunk's ChunkResult or the file's Result, as a dict
    error: str | None = None
    lines: list[str] = field(default_factory=list)  # what the worker's job logged
