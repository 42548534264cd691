"""What a run_video --ray job did: the report, its summary lines for the log, and its
--stats-json (the totals, each file, and each worker's throughput)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from streamer.config import VideoSettings
from streamer.sinks.video_file import OutputError

from .cluster_plan import FileWork
from .cluster_pool import WorkerStats


@dataclass
class ClusterReport:
    files: list[FileWork]
    workers: dict[str, WorkerStats]
    seconds: float
    engine: str
    tasks_run: int = 0
    tasks_resumed: int = 0
    retries: int = 0
    chunks: int = 0

    @property
    def failed(self) -> list[FileWork]:
        return [f for f in self.files if f.error]

    @property
    def frames(self) -> int:
        return sum(f.frames for f in self.files if f.done)


def summary_lines(report: ClusterReport) -> list[str]:
    """The summary: files, frames and time, failures, and per-worker throughput."""
    ok = [f for f in report.files if f.done]
    frames = sum(f.frames for f in ok)
    fps = frames / report.seconds if report.seconds > 0 else 0.0
    lines = []
    for f in report.failed:
        # the file's own one-line error, named as run_video names it
        lines.append(f"error: {f.error}" if f.src.name in f.error
                     else f"error: {f.src.name}: {f.error}")
    resumed = sum(1 for f in ok if f.resumed)
    extra = f", {resumed} kept from an earlier run" if resumed else ""
    chunks = f" ({report.chunks} chunks)" if report.chunks else ""
    failed = f"; {len(report.failed)} failed" if report.failed else ""
    lines.append(f"done: {len(ok)} of {len(report.files)} file(s){chunks}, {frames} frames in "
                 f"{report.seconds:.1f} s ({fps:.2f} fps) on {len(report.workers)} worker(s) "
                 f"with {report.engine}{extra}{failed}")
    if report.retries:
        lines.append(f"note: {report.retries} task(s) ran again after their worker died")
    for w in report.workers.values():
        lines.append(f"  worker {w.name}: {w.tasks} task(s), {w.frames} frames, busy "
                     f"{w.busy_s:.1f} s ({w.fps:.2f} fps)" + (f", died {w.died}x" if w.died
                                                              else ""))
    return lines


def write_cluster_stats(path: str, report: ClusterReport, settings: VideoSettings) -> None:
    """--stats-json for a Ray run: the totals, each file, and each worker's throughput."""
    frames = report.frames
    data = {
        "frames": frames, "seconds": round(report.seconds, 4),
        "fps": round(frames / report.seconds, 4) if report.seconds else 0.0,
        "engine": report.engine, "settings": asdict(settings),
        "tasks_run": report.tasks_run, "tasks_resumed": report.tasks_resumed,
        "retries": report.retries, "chunks": report.chunks,
        "items": [{"input": str(f.src), "output": str(f.dst), "frames": f.frames,
                   "chunks": len(f.chunks), "seconds": round(f.seconds, 4),
                   "plan_s": round(f.plan_s, 4), "join_s": round(f.join_s, 4),
                   "resumed": f.resumed, "error": f.error} for f in report.files],
        "workers": [{**asdict(w), "fps": round(w.fps, 4)} for w in report.workers.values()],
    }
    try:
        Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write stats to {path} ({exc.strerror})") from None
