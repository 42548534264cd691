"""A Ray worker of run_video --ray: the body of one actor, which checks its model store,
builds its style flows once, keeps the engines, and runs one file or chunk task at a time.

It answers with the messages of cluster_messages.py and never raises: a failed task is an
Outcome with the usual one-line error. The actor is threaded (two calls at once) so that the
driver can ask progress() while run() works.
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from streamer.config import VideoSettings
from streamer.models.store import check_structure
from streamer.report import describe_error
from streamer.sinks.png_sequence import is_sequence_pattern
from streamer.sinks.video_file import OutputError
from streamer.sources.image import is_image_path
from streamer.sources.video_file import MediaError

from .cluster_messages import Hello, Outcome, TaskMessage


class ToonWorker:
    """One actor's body (see the module docstring); `actor_class` wraps it for Ray."""

    def __init__(self, settings: dict, threads: int):
        self.settings = VideoSettings(**{**settings, "threads": settings.get("threads") or threads,
                                         "progress": False, "stats_json": None})
        self.lines: list[str] = []
        self.job = None
        self.task_id: int | None = None
        self.done = 0

    def _log(self, line: str) -> None:
        self.lines.append(line)

    def hello(self) -> Hello:
        """Open the store, check it against the catalog and start the engine.

        `models`: what this job reads (the style's weights, the face files): the driver
        refuses workers whose files differ from the first worker's, since their chunks would
        not match. A file whose checksum differs from the catalog's is a note, as it is
        without Ray; one whose structure is wrong, a problem."""
        from streamer.toon.styles import StyleFlows

        from .convert import Job
        out = Hello(socket.gethostname(), os.getpid())
        try:
            flows = StyleFlows.from_settings(self.settings, self._log)
            if not flows.store.root.is_dir():
                out.problems.append(f"model store {flows.store.root} is not there")
                return out
            style = self.settings.style
            for e in flows.store.entries():
                if not e.installed or e.label.split()[0] not in (style, "face", "mask"):
                    continue
                problem = check_structure(e.path)
                if problem:
                    out.problems.append(f"{e.local}: {problem}")
                elif not e.ok:
                    out.notes.append(f"{e.local}: {e.catalog}")
                out.models.append((e.local, e.sha256))
            if out.problems:
                return out
            self.job = Job(self.settings, self._log, flows)
            out.engine = self.job.engine().describe()
            out.faces = flows.describe_faces(self.job.faces)
        except Exception as exc:  # noqa: BLE001 - reported by the driver in one line
            out.problems.append(describe_error(exc))
        return out

    def progress(self) -> tuple[int | None, int]:
        """(the running task's id or None, its frames written so far)."""
        return self.task_id, self.done

    def _set_done(self, n: int) -> None:
        self.done = n

    def run(self, task: TaskMessage) -> Outcome:
        """Run one task; never raises (the outcome says what failed, in one line)."""
        self.task_id, self.done = task.id, 0
        self.lines = []
        t0 = time.perf_counter()
        try:
            result, frames = self._convert(task)
            return Outcome(True, frames, time.perf_counter() - t0, result, lines=self.lines)
        except Exception as exc:  # noqa: BLE001 - one line, as run_video reports it
            from streamer.pipeline.core import PipelineError
            if isinstance(exc, PipelineError):
                text = describe_error(exc.error, exc.stage)
            else:
                text = describe_error(exc)
            return Outcome(False, self.done, time.perf_counter() - t0, error=text,
                           lines=self.lines)
        finally:
            self.task_id = None

    def _convert(self, task: TaskMessage) -> tuple[dict[str, Any], int]:
        """(the result as a dict, frames written)."""
        from .chunk_encode import encode_chunk
        from .convert import convert_still, convert_video

        src, dst = Path(task.src), Path(task.dst)
        node = os.uname().nodename
        if not src.exists():
            raise MediaError(f"{src}: this worker ({node}) cannot see the input; --ray needs "
                             f"paths every node sees the same way")
        # a PNG sequence's folder is the sink's to make: its parent must be there
        folder = dst.parent.parent if is_sequence_pattern(dst) else dst.parent
        if not folder.is_dir():
            raise OutputError(f"{folder}: this worker ({node}) cannot see the output "
                              f"folder; --ray needs paths every node sees the same way")
        if task.kind == "chunk":
            r = encode_chunk(src, task.chunk, dst, self.job, codec=task.codec,
                             on_frames=self._set_done,
                             decode_threads=max(1, (self.settings.threads or 1) // 4))
            return r.to_dict(), r.frames
        if is_image_path(src):
            return asdict(convert_still(src, dst, self.job)), 1
        r = convert_video(src, dst, self.job, on_progress=lambda _f, n, _t: self._set_done(n))
        return asdict(r), r.frames


def actor_class(ray: Any) -> Any:
    """ToonWorker as a Ray actor class: threaded, so progress() answers while run() works;
    never restarted by Ray (the driver replaces a dead worker and reruns its task)."""
    return ray.remote(max_concurrency=2, max_restarts=0)(ToonWorker)
