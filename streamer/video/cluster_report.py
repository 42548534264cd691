"""What a run_video --ray job did: the report, its summary lines for the log, the closing
error line when a file failed (the run's last line, as without Ray: failures.py), and its
--stats-json (the totals, each file, and each worker's throughput)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from streamer.config import VideoSettings
from streamer.sinks.video_file import OutputError

from .cluster_plan import FileWork
from .cluster_pool import WorkerStats
from .failures import incomplete


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
    single: bool = False  # one input, a file: its own error is the closing line

    @property
    def failed(self) -> list[FileWork]:
        return [f for f in self.files if f.error]

    @property
    def skipped(self) -> list[FileWork]:
        return [f for f in self.files if f.skipped]

    @property
    def frames(self) -> int:
        return sum(f.frames for f in self.files if f.done)


def summary_lines(report: ClusterReport) -> list[str]:
    """The summary: skipped files, files, frames and time, failures counted, and per-worker
    throughput (the failed files had their `failed:` lines when they failed). Nothing but
    the skip note when no task ran and no file was finished: the error line says it all."""
    ok = [f for f in report.files if f.done]
    lines = []
    if report.skipped:
        lines.append(f"note: {len(report.skipped)} file(s) skipped because their output exists")
    if not ok and not report.tasks_run:
        if report.skipped and not report.failed:
            lines.append("done: nothing to convert (every output exists; -y converts them "
                         "again)")
        return lines
    frames = sum(f.frames for f in ok)
    fps = frames / report.seconds if report.seconds > 0 else 0.0
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


def closing_error(report: ClusterReport) -> str | None:
    """The run's last line when a file failed (after `error: `), as without Ray: a single
    input's own error, named; else how many of the files failed. None when none did."""
    if not report.failed:
        return None
    if report.single:
        f = report.failed[0]
        error = f.error or "failed"
        named = f.src.name in error or f.dst.name in error  # the line of the run without Ray
        return error if named else f"{f.src.name}: {error}"
    return incomplete(len(report.failed), len(report.files))


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
                   "resumed": f.resumed, "skipped": f.skipped, "error": f.error}
                  for f in report.files],
        "workers": [{**asdict(w), "fps": round(w.fps, 4)} for w in report.workers.values()],
    }
    try:
        Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write stats to {path} ({exc.strerror})") from None
