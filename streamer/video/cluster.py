"""run_video on a Ray cluster: files and keyframe-aligned chunks converted by worker actors.

    run_video.py IN... -o OUT --ray [ADDRESS]

No address starts a local Ray on this machine; `auto` or `ray://host:port` joins a running
cluster. The process that runs run_video.py (the driver) plans the job, schedules it and
joins chunked videos; workers do the decoding, the model and the encoding.

- Tasks: one per file (the single-machine convert_video / convert_still, unchanged), and a
  video longer than about 1.5 chunks is cut into chunks at keyframes (chunks.py), each a
  task (chunk_encode.py); when a file's chunks are all done the driver joins them
  (join.py) without re-encoding the video and writes the audio once, as the sink would
  (--audio). Outputs are named as without Ray (targets.py); the plan is cluster_plan.py.
- Workers are actors (cluster_worker.py) that build their StyleFlows (the composition
  layer) once and keep the engines: one actor per GPU (`num_gpus=1`) where the cluster has
  GPUs and the device allows, else CPU actors of `worker_cpus` CPUs each (default 4), whose
  engine runs on that many threads while decoding (a quarter of them) and encoding run at a
  lower priority, so they fill the gaps instead of preempting the model. Each actor
  verifies its model store against the catalog first. The pool is cluster_pool.py; the
  messages between driver and workers, cluster_messages.py.
- Faults: an actor that dies mid-task (killed, node lost) is replaced and its task runs
  again (up to 3 times); pieces and outputs are written under temporary names and renamed
  when complete, so a half-written piece never reaches a join. Finished files and chunks
  are recorded, checksummed, in a manifest beside the output (manifest.py): a rerun after
  Ctrl+C or a crash does only what is missing; a job that runs to its end removes that
  folder, failures or not. A bad input fails its own task with the usual one-line error
  (a `failed:` line, as for a folder's file without Ray); the others finish, and the
  summary, the closing `error:` line and the exit status count it (cluster_report.py).
  As without Ray, a folder's file whose output exists is skipped unless -y.
- Paths: inputs and outputs must be paths every node and the driver see the same way (a
  shared filesystem mounted at the same place); a worker that cannot see one fails that
  task with a one-line error that says so.

Ray is an optional extra (`pip install 'toonstream[ray]'`); only cluster_pool.py imports it
(import_ray), when a job runs.
"""
from __future__ import annotations

import shutil
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

from streamer.config import VideoSettings
from streamer.errors import UserError
from streamer.models.catalog import load_catalog
from streamer.report import Log, describe_error
from streamer.sinks.png_sequence import is_sequence_pattern

from .cluster_messages import Outcome
from .cluster_plan import FileWork, JobPlan, Task, folder_labels, plan_job
from .cluster_pool import Slot, WorkerPool, connect_ray, import_ray, pool_shape
from .cluster_report import ClusterReport
from .join import join_pieces
from .failures import failed_line, own_message
from .manifest import Manifest, job_key, work_dir_for
from .progress import FramesBar
from .targets import OutputNaming, all_targets, default_output, make_output_folder

MAX_ATTEMPTS = 3  # runs of one task on workers that died under it


class ClusterJob:
    """Plan, schedule and finish one run_video job on Ray (see the module docstring).

    `on_poll(slots)`: called at every progress poll (tests kill a worker from it);
    `on_task_done(task)`: after each finished task is recorded (tests interrupt from it)."""

    def __init__(self, settings: VideoSettings, log: Log, *, poll_s: float = 0.5,
                 on_poll: Callable[[list[Slot]], None] | None = None,
                 on_task_done: Callable[[Task], None] | None = None):
        self.settings = settings
        self.log = log
        self.poll_s = poll_s
        self.on_poll = on_poll
        self.on_task_done = on_task_done
        self.ray = import_ray()
        self.pool: WorkerPool | None = None
        self.retries = 0
        self.tasks_run = 0
        self.single = True  # one input, a file (not a folder, not several)
        self._started_ray = False

    def _connect(self) -> None:
        self._started_ray = connect_ray(self.ray, self.settings.ray)

    def run(self, inputs: list[Path], output: Path | None) -> ClusterReport:
        t0 = time.perf_counter()
        s = self.settings
        check_style_names(s)  # an unknown style: one line, before any work
        # outputs named as without Ray: --format, --image-format, a type that carries alpha
        naming = OutputNaming.from_settings(s)
        if output is None and len(inputs) == 1:  # its default output
            output = default_output(inputs[0], s.style, naming=naming)
        pairs = all_targets(inputs, output, s.style, naming)  # several without -o: one line
        output_root = output.absolute()
        self.single = len(inputs) == 1 and not inputs[0].is_dir()
        if not self.single:
            make_output_folder(output)
            for _src, dst in pairs:
                dst.parent.mkdir(parents=True, exist_ok=True)
        manifest = Manifest(work_dir_for(output_root), job_key(s))
        if manifest.stale:
            self.log("note: the work left by an earlier, different job beside the output is "
                     "not reused")
        plan = plan_job(pairs, manifest, s, output_root, folder_labels(inputs, pairs))
        for it in plan.items:
            for note in it.notes:
                self.log(f"note: {it.label}: {note}")
            if it.error:
                self._failed(it)
        if plan.tasks:
            self._connect()
            try:
                self._schedule(plan, manifest)
            finally:
                if self._started_ray:
                    self.ray.shutdown()
        for it in plan.items:  # every chunk done by an earlier run: only the join is left
            if it.chunks and not it.done and not it.error and len(it.pieces) == len(it.chunks):
                self._join(it, manifest)
        pool = self.pool
        report = ClusterReport(plan.items, pool.workers if pool else {},
                               time.perf_counter() - t0, pool.engine if pool else "not started",
                               self.tasks_run, plan.resumed, self.retries,
                               sum(len(it.chunks) for it in plan.items), self.single)
        # The job ran to its end: nothing is left to resume (a failed file fails again until
        # it is fixed, and a rerun skips the finished outputs), so the work folder goes,
        # failures or not. Only a job stopped on the way (Ctrl+C, every worker lost) keeps it.
        shutil.rmtree(work_dir_for(output_root), ignore_errors=True)
        return report

    def _failed(self, it: FileWork) -> None:
        """Say at once that `it` failed: a `failed:` line for a folder's (or one of several
        inputs') file; a single input's error is the run's last line (cluster_report)."""
        if not self.single:
            self.log(failed_line(it.label, own_message(it.src, it.error or "")))

    # --- scheduling --------------------------------------------------------------------

    def _schedule(self, plan: JobPlan, manifest: Manifest) -> None:
        shape = pool_shape(self.ray.cluster_resources(), self.settings, max(1, len(plan.tasks)))
        pool = self.pool = WorkerPool(self.ray, self.settings, self.log, shape)
        pool.start()
        self.log(f"ray: {shape.describe()}; {len(plan.tasks)} task(s), {plan.resumed} "
                 f"already done")
        pending = deque(plan.tasks)
        items = plan.items
        total = sum(it.frames for it in items if not it.error)
        done_frames = sum(it.frames for it in items if it.done) + sum(
            p["frames"] for it in items for p in it.pieces.values())
        bar = FramesBar(total, done_frames, self.settings.progress and sys.stderr.isatty())
        last_poll = 0.0
        try:
            while pending or pool.busy:
                if pool.all_gone:
                    raise UserError("every Ray worker died and none could be replaced; "
                                    "rerun to resume")
                for sl in pool.idle():
                    t = self._next(pending)
                    if t is not None:
                        pool.submit(sl, t, t.message())
                if not pool.busy:
                    continue
                for sl, t, out in pool.wait(self.poll_s):
                    if out is None:
                        self._lost(pool, sl, t, pending)
                    else:
                        done_frames += self._finished(pool, sl, t, out, manifest)
                now = time.perf_counter()
                if now - last_poll >= self.poll_s:
                    last_poll = now
                    live = pool.progress(max(0.2, self.poll_s))
                    if self.on_poll is not None:
                        self.on_poll(pool.slots)
                    bar.show(done_frames + live)
            bar.show(done_frames)
        finally:
            bar.close()
            pool.close()

    @staticmethod
    def _next(pending: deque[Task]) -> Task | None:
        """The next task to run; the rest of a file whose chunk failed is dropped."""
        while pending:
            t = pending.popleft()
            if not t.item.error:
                return t
        return None

    def _lost(self, pool: WorkerPool, sl: Slot, t: Task, pending: deque[Task]) -> None:
        """The actor died under `t`: replace it and run the task again (at the front)."""
        self.retries += 1
        t.attempts += 1
        if t.attempts >= MAX_ATTEMPTS:
            t.item.error = f"{t.describe()}: its worker died {t.attempts} times"
            self._failed(t.item)
        else:
            self.log(f"note: worker {sl.name} died during {t.describe()}; running it again")
            pending.appendleft(t)
        pool.replace(sl)

    def _finished(self, pool: WorkerPool, sl: Slot, t: Task, out: Outcome,
                  manifest: Manifest) -> int:
        """Record a finished task; returns the frames it adds to the done count."""
        pool.workers[sl.name].record(out)
        self.tasks_run += 1
        it = t.item
        for line in out.lines:
            if line.startswith("note:"):
                self.log(f"note: {it.src.name}: {line[5:].strip()}")
        if not out.ok:
            if not it.error:  # a file's first failed chunk; the rest are dropped (_next)
                it.error = out.error
                self._failed(it)
            return 0
        it.seconds += out.seconds
        if t.kind == "file":
            it.done = True
            if not is_sequence_pattern(it.dst):  # a folder of frames has no one checksum:
                manifest.record_output(it.key, it.fingerprint, it.dst.resolve())  # redone
        else:
            it.pieces[t.chunk.index] = out.result
            manifest.record_chunk(it.key, it.fingerprint, t.chunk.to_dict(), out.result)
            if len(it.pieces) == len(it.chunks):
                self._join(it, manifest)
        if self.on_task_done is not None:
            self.on_task_done(t)
        return out.frames if t.kind == "chunk" or it.done else 0

    def _join(self, it: FileWork, manifest: Manifest) -> None:
        """Join a file's pieces (on the driver: a remux, no decoding)."""
        t0 = time.perf_counter()
        pieces = [Path(it.pieces[c.index]["path"]) for c in it.chunks]
        s = self.settings
        try:
            joined = join_pieces(it.src, pieces, it.dst,
                                 end_pts=it.pieces[it.chunks[-1].index]["end_pts"],
                                 overwrite=s.overwrite, audio=s.audio,
                                 alpha=s.background_spec().alpha, video_codec=s.codec)
        except UserError as exc:
            it.error = describe_error(exc)
            self._failed(it)
            return
        for warning in joined["warnings"]:  # damaged audio re-encoded past
            self.log(f"warning: {it.label}: {warning}")
        it.done = True
        it.join_s = time.perf_counter() - t0
        it.seconds += it.join_s
        manifest.record_output(it.key, it.fingerprint, it.dst.resolve())
        for p in pieces:
            p.unlink(missing_ok=True)


def check_style_names(s: VideoSettings) -> None:
    """The style's names against the catalog, on the driver (the workers check the store):
    with --net mobile a blend `A+B:T` of two official styles is a style too."""
    from streamer.models.errors import UnknownModel
    from streamer.models.mobile.student import StudentError, parse_blend

    catalog = load_catalog()
    if s.net != "mobile":
        catalog.style(s.style)
        return
    try:
        mix = parse_blend(s.style)
    except StudentError as exc:
        raise UnknownModel(str(exc)) from None
    for name in mix:
        catalog.style(name)


def run_cluster(inputs: list[Path], output: Path | None, settings: VideoSettings, log: Log,
                **hooks: Any) -> ClusterReport:
    """The `--ray` path of run_video: convert `inputs` into `output` on Ray."""
    return ClusterJob(settings, log, **hooks).run(inputs, output)
