"""run_video on a Ray cluster: files and keyframe-aligned chunks converted by worker actors.

    run_video.py IN... -o OUT --ray [ADDRESS]

No address starts a local Ray on this machine; `auto` or `ray://host:port` joins a running
cluster. The process that runs run_video.py (the driver) plans the job, schedules it and
joins chunked videos; workers do the decoding, the model and the encoding.

- Tasks: one per file (the single-machine convert_video / convert_still, unchanged), and a
  video longer than about 1.5 chunks is cut into chunks at keyframes (chunks.py), each a
  task (chunk_encode.py); when a file's chunks are all done the driver joins them
  (join.py) without re-encoding and copies the audio once.
- Workers are actors that build their StyleFlows (the composition layer) once and keep the
  engines: one actor per GPU (`num_gpus=1`) where the cluster has GPUs and the device
  allows, else CPU actors of `worker_cpus` CPUs each (default 4), whose engine runs on that
  many threads while decoding (a quarter of them) and encoding run at a lower priority, so
  they fill the gaps instead of preempting the model. Each actor verifies its model store against the catalog first.
- Faults: an actor that dies mid-task (killed, node lost) is replaced and its task runs
  again (up to 3 times); pieces and outputs are written under temporary names and renamed
  when complete, so a half-written piece never reaches a join. Finished files and chunks
  are recorded, checksummed, in a manifest beside the output (manifest.py): a rerun after
  Ctrl+C or a crash does only what is missing. A bad input fails its own task with the
  usual one-line error; the others finish, and the exit status and summary count it.
- Paths: inputs and outputs must be paths every node and the driver see the same way (a
  shared filesystem mounted at the same place); a worker that cannot see one fails that
  task with a one-line error that says so.

Ray is an optional extra (`pip install 'toonstream[ray]'`); it is imported only here.
"""
from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from streamer.config import ConfigError, VideoSettings
from streamer.errors import UserError
from streamer.report import Log, describe_error
from streamer.sinks.video_file import FORMATS, OutputError
from streamer.sources.image import is_image_path
from streamer.sources.video_file import MediaError

from .chunks import Chunk, plan_chunks
from .manifest import Manifest, input_fingerprint, job_key, work_dir_for

MAX_ATTEMPTS = 3  # runs of one task on workers that died under it
REPLACE_TIMEOUT_S = 120.0  # wait for room to replace a dead worker
DEFAULT_WORKER_CPUS = 4
# Containers whose video carries a global header, so pieces join without touching the
# bitstream (MPEG-TS, AVI and FLV repeat headers in-band: those files are converted whole).
CHUNKABLE = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".nut"}
_GPU_DEVICES = {"auto", "cuda", "tensorrt"}


def import_ray():
    """The ray module, or a one-line error that names the extra to install."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray, which is not installed: "
                          "pip install 'toonstream[ray]'") from None
    return ray


# --- the worker ------------------------------------------------------------------------------


class ToonWorker:
    """A Ray actor's body (wrapped by ray.remote in `_actor_class`): one Job, kept."""

    def __init__(self, settings: dict, threads: int):
        self.settings = VideoSettings(**{**settings, "threads": settings.get("threads") or threads,
                                         "progress": False, "stats_json": None})
        self.lines: list[str] = []
        self.job = None
        self.task_id: int | None = None
        self.done = 0

    def _log(self, line: str) -> None:
        self.lines.append(line)

    def hello(self) -> dict:
        """Open the store, check it against the catalog and start the engine.

        `models`: (file, sha256) of what this job reads (the style's weights, the face
        files): the driver refuses workers whose files differ from the first worker's,
        since their chunks would not match. A file whose checksum differs from the
        catalog's is a note, as it is without Ray; one whose structure is wrong, an error."""
        import socket

        from streamer.models.store import _check_structure
        from streamer.toon.styles import StyleFlows

        from .convert import Job
        out: dict[str, Any] = {"node": socket.gethostname(), "pid": os.getpid(),
                               "problems": [], "notes": [], "engine": None, "models": []}
        try:
            flows = StyleFlows.from_settings(self.settings, self._log)
            if not flows.store.root.is_dir():
                out["problems"].append(f"model store {flows.store.root} is not there")
                return out
            style = self.settings.style
            for e in flows.store.entries():
                if not e.installed or e.label.split()[0] not in (style, "face", "mask"):
                    continue
                problem = _check_structure(e.path)
                if problem:
                    out["problems"].append(f"{e.local}: {problem}")
                elif not e.ok:
                    out["notes"].append(f"{e.local}: {e.catalog}")
                out["models"].append([e.local, e.sha256])
            if out["problems"]:
                return out
            self.job = Job(self.settings, self._log, flows)
            out["engine"] = self.job.engine().describe()
            out["faces"] = flows.describe_faces(self.job.faces)
        except Exception as exc:  # noqa: BLE001 - reported by the driver in one line
            out["problems"].append(describe_error(exc))
        return out

    def progress(self) -> tuple[int | None, int]:
        return self.task_id, self.done

    def _set_done(self, n: int) -> None:
        self.done = n

    def run(self, task: dict) -> dict:
        """Run one task; never raises (the outcome says what failed, in one line)."""
        from .chunk_encode import encode_chunk
        from .convert import convert_still, convert_video

        self.task_id, self.done = task["id"], 0
        self.lines = []
        t0 = time.perf_counter()
        try:
            src, dst = Path(task["src"]), Path(task["dst"])
            if not src.exists():
                raise MediaError(f"{src}: this worker ({os.uname().nodename}) cannot see the "
                                 f"input; --ray needs paths every node sees the same way")
            if not dst.parent.is_dir():
                raise OutputError(f"{dst.parent}: this worker ({os.uname().nodename}) cannot "
                                  f"see the output folder; --ray needs paths every node sees "
                                  f"the same way")
            if task["kind"] == "chunk":
                r = encode_chunk(src, Chunk.from_dict(task["chunk"]), dst, self.job,
                                 codec=task["codec"], on_frames=self._set_done,
                                 decode_threads=max(1, (self.settings.threads or 1) // 4))
                result = r.to_dict()
                frames = r.frames
            elif is_image_path(src):
                r = convert_still(src, dst, self.job)
                result, frames = asdict(r), 1
            else:
                r = convert_video(src, dst, self.job,
                                  on_progress=lambda _f, n, _t: self._set_done(n))
                result, frames = asdict(r), r.frames
            return {"ok": True, "result": result, "frames": frames,
                    "seconds": time.perf_counter() - t0, "lines": self.lines}
        except Exception as exc:  # noqa: BLE001 - one line, as run_video reports it
            from streamer.pipeline.core import PipelineError
            if isinstance(exc, PipelineError):
                text = describe_error(exc.error, exc.stage)
            else:
                text = describe_error(exc)
            return {"ok": False, "error": text, "frames": self.done,
                    "seconds": time.perf_counter() - t0, "lines": self.lines}
        finally:
            self.task_id = None


def _actor_class(ray):
    # max_concurrency 2: progress() answers while run() works (a threaded actor).
    return ray.remote(max_concurrency=2, max_restarts=0)(ToonWorker)


# --- the driver ------------------------------------------------------------------------------


@dataclass
class Task:
    id: int
    kind: str  # file | chunk
    src: str
    dst: str
    frames: int  # expected, for the progress bar
    item: FileWork
    chunk: dict | None = None
    attempts: int = 0


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


@dataclass
class WorkerStats:
    name: str
    tasks: int = 0
    frames: int = 0
    busy_s: float = 0.0
    died: int = 0

    @property
    def fps(self) -> float:
        return self.frames / self.busy_s if self.busy_s > 0 else 0.0


@dataclass
class Slot:
    """One actor and the task it runs."""

    handle: Any
    name: str
    task: Task | None = None
    ref: Any = None
    done: int = 0  # frames of the running task, as last polled
    gone: bool = False  # died and could not be replaced


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


def _targets(inputs: list[Path], output: Path | None, style: str) -> list[tuple[Path, Path]]:
    """(input file, output file) pairs, as run_video maps them without Ray."""
    from .convert import default_output, media_files

    pairs = []
    many = len(inputs) > 1
    if many:
        if output is None:
            raise OutputError("several inputs need -o FOLDER")
        if output.exists() and not output.is_dir():
            raise OutputError(f"{output} is a file; several inputs need an output folder")
    for src in inputs:
        if not src.exists():
            pairs.append((src, (output / src.name) if many else (output or src)))
            continue
        dst = (output / src.name) if many else (output or default_output(src, style))
        if src.is_dir():
            if dst.exists() and not dst.is_dir():
                raise OutputError(f"{dst} is a file; a folder input needs an output folder")
            skip = dst.resolve() if dst.exists() else dst.absolute()
            files = media_files(src, skip)
            if not files:
                raise MediaError(f"{src}: no images or videos in this folder")
            pairs += [(f, dst / f.relative_to(src)) for f in files]
        else:
            if dst.is_dir():
                dst = dst / src.name
            pairs.append((src, dst))
    return pairs


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
        self.workers: dict[str, WorkerStats] = {}
        self.engine = "not started"
        self.retries = 0
        self.tasks_run = 0
        self.tasks_resumed = 0
        self._next_id = 0
        self._started_ray = False
        self._models: list | None = None

    # --- Ray ---------------------------------------------------------------------------

    def _connect(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return  # the caller (a test, a notebook) already chose the cluster
        address = self.settings.ray
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "logging_level": logging.ERROR}
        try:
            if address in (None, "", "local"):
                ray.init(**kwargs)
            else:
                ray.init(address=address, **kwargs)
        except Exception as exc:  # noqa: BLE001 - ConnectionError, ValueError, RuntimeError
            raise ConfigError(f"cannot start or join Ray at {address or 'this machine'}: "
                              f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                              ) from None
        self._started_ray = True

    def _shape(self, tasks: int) -> tuple[int, dict[str, float], int]:
        """(actors, their resource request, engine threads)."""
        res = self.ray.cluster_resources()
        cpus = int(res.get("CPU", 1)) or 1
        gpus = int(res.get("GPU", 0))
        s = self.settings
        if gpus and s.device in _GPU_DEVICES:
            per_cpu = max(1, min(4, cpus // gpus))
            n = s.workers or gpus
            return max(1, min(n, tasks)), {"num_gpus": 1, "num_cpus": per_cpu}, per_cpu
        per = s.worker_cpus or (max(1, cpus // s.workers) if s.workers
                                else min(DEFAULT_WORKER_CPUS, cpus))
        per = max(1, min(per, cpus))
        n = s.workers or max(1, cpus // per)
        return max(1, min(n, tasks)), {"num_cpus": per}, per

    def _new_slots(self, count: int, options: dict, threads: int,
                   timeout: float | None = None) -> list[Slot]:
        """Start `count` actors; they load their engines and check their stores in
        parallel. A worker whose store is broken, or differs from the first's, is an error.
        `timeout`: give up (GetTimeoutError) when the cluster has no room for them."""
        settings = asdict(self.settings)
        handles = [self._cls.options(**options).remote(settings, threads)
                   for _ in range(count)]
        try:
            hellos = self.ray.get([h.hello.remote() for h in handles], timeout=timeout)
        except self.ray.exceptions.GetTimeoutError:
            for h in handles:
                self.ray.kill(h)
            raise
        slots = []
        try:
            for handle, hello in zip(handles, hellos):
                if hello["problems"]:
                    raise UserError(f"worker on {hello['node']}: {hello['problems'][0]}")
                if self._models is None:
                    self._models = hello["models"]
                    for note in hello["notes"]:
                        self.log(f"note: model store: {note}")
                elif hello["models"] != self._models:
                    raise UserError(f"worker on {hello['node']}: its model files differ from "
                                    f"the first worker's; install the same store on every node")
                if self.engine == "not started":
                    self.engine = hello["engine"]
                    self.log(f"engine: {hello['engine']} on each worker; style "
                             f"{self.settings.style}, working short side {self.settings.size}, "
                             f"{hello.get('faces')}")
                name = f"{hello['node']}:{hello['pid']}"
                self.workers.setdefault(name, WorkerStats(name))
                slots.append(Slot(handle, name))
        except UserError:
            for h in handles:
                self.ray.kill(h)
            raise
        return slots

    # --- planning ----------------------------------------------------------------------

    def _plan(self, pairs: list[tuple[Path, Path]], manifest: Manifest) -> tuple[list[FileWork], list[Task]]:
        s = self.settings
        from .convert import _check_target

        items, tasks = [], []
        for src, dst in pairs:
            item = FileWork(src, dst)
            items.append(item)
            try:
                if not src.exists():
                    raise MediaError(f"{src}: no such file or folder")
                item.fingerprint = input_fingerprint(src)
                key = str(src.resolve())
                if manifest.output_done(key, item.fingerprint, dst.resolve()):
                    item.done = item.resumed = True
                    self.tasks_resumed += 1
                    continue
                if is_image_path(src):
                    item.frames = 1
                    tasks.append(self._task("file", item, str(dst.resolve()), 1))
                    continue
                # the official full-frame flow keeps no state between frames (faces off and
                # the temporal step off): no warm-up
                stateless = s.faces == "off" and s.temporal_settings() is None
                warmup = 0.0 if stateless else s.warmup_seconds
                t0 = time.perf_counter()
                plan = plan_chunks(src, s.chunk_seconds, warmup)
                item.plan_s = time.perf_counter() - t0
                item.frames = plan.frames
                if plan.note:
                    item.notes.append(plan.note)
                chunkable = dst.suffix.lower() in CHUNKABLE
                if plan.chunked and not chunkable:
                    item.notes.append(f"{dst.suffix} output is converted whole (its video "
                                      f"repeats headers in-band; chunks join in "
                                      f"{', '.join(sorted(CHUNKABLE))})")
                if not (plan.chunked and chunkable):
                    tasks.append(self._task("file", item, str(dst.resolve()), plan.frames))
                    continue
                if dst.suffix.lower() not in FORMATS:
                    raise OutputError(f"{dst.name}: unknown video container {dst.suffix!r}")
                dst.parent.mkdir(parents=True, exist_ok=True)
                _check_target(src, dst, s.overwrite)
                item.chunks = list(plan.chunks)
                folder = work_dir_for(self.output_root) / hashlib.sha1(
                    key.encode()).hexdigest()[:12]
                folder.mkdir(parents=True, exist_ok=True)
                for ch in plan.chunks:
                    cd = ch.to_dict()
                    prev = manifest.chunk_done(key, item.fingerprint, ch.index, cd)
                    if prev is not None:
                        item.pieces[ch.index] = prev
                        self.tasks_resumed += 1
                        continue
                    t = self._task("chunk", item, str(folder / f"piece-{ch.index:05d}.mp4"),
                                   ch.frames)
                    t.chunk = cd
                    tasks.append(t)
            except UserError as exc:
                item.error = describe_error(exc)
            except OSError as exc:
                item.error = f"{src}: {exc.strerror or exc}"
        return items, tasks

    def _task(self, kind: str, item: FileWork, dst: str, frames: int) -> Task:
        self._next_id += 1
        return Task(self._next_id, kind, str(item.src.resolve()), dst, frames, item)

    # --- running -----------------------------------------------------------------------

    def run(self, inputs: list[Path], output: Path | None) -> ClusterReport:
        t0 = time.perf_counter()
        s = self.settings
        from streamer.models.catalog import load_catalog

        from .convert import default_output

        load_catalog().style(s.style)  # an unknown style: one line, before any work
        pairs = _targets(inputs, output, s.style)
        if output is None:  # one input (several need -o): its default output
            output = default_output(inputs[0], s.style)
        self.output_root = output.absolute()
        if len(inputs) > 1 or inputs[0].is_dir():
            try:
                output.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputError(f"cannot create the output folder {output} "
                                  f"({exc.strerror})") from None
            for _src, dst in pairs:
                dst.parent.mkdir(parents=True, exist_ok=True)
        manifest = Manifest(work_dir_for(self.output_root), job_key(s))
        if manifest.stale:
            self.log("note: the work left by an earlier, different job beside the output is "
                     "not reused")
        items, tasks = self._plan(pairs, manifest)
        for it in items:
            for note in it.notes:
                self.log(f"note: {it.src.name}: {note}")
        if tasks:
            self._connect()
            try:
                self._schedule(items, tasks, manifest)
            finally:
                if self._started_ray:
                    self.ray.shutdown()
        for it in items:  # every chunk done by an earlier run: only the join is left
            if it.chunks and not it.done and not it.error and len(it.pieces) == len(it.chunks):
                self._join(it, manifest)
        report = ClusterReport(items, self.workers, time.perf_counter() - t0, self.engine,
                               self.tasks_run, self.tasks_resumed, self.retries,
                               sum(len(it.chunks) for it in items))
        if not report.failed:
            import shutil
            shutil.rmtree(work_dir_for(self.output_root), ignore_errors=True)
        return report

    def _schedule(self, items: list[FileWork], tasks: list[Task], manifest: Manifest) -> None:
        ray = self.ray
        self._cls = _actor_class(ray)
        n, options, threads = self._shape(max(1, len(tasks)))
        slots = self._new_slots(n, options, threads)
        self.log(f"ray: {n} worker(s) ({', '.join(f'{k} {v:g}' for k, v in options.items())}, "
                 f"engine threads {threads}); {len(tasks)} task(s), {self.tasks_resumed} "
                 f"already done")
        pending = deque(tasks)
        total = sum(it.frames for it in items if not it.error)
        done_frames = sum(it.frames for it in items if it.done) + sum(
            p["frames"] for it in items for p in it.pieces.values())
        bar = self._bar(total, done_frames)
        last_poll = 0.0
        try:
            while pending or any(sl.task for sl in slots):
                if all(sl.gone for sl in slots):
                    raise UserError("every Ray worker died and none could be replaced; "
                                    "rerun to resume")
                for sl in slots:
                    if sl.task is None and pending and not sl.gone:
                        t = pending.popleft()
                        if t.item.error:  # another chunk of this file failed
                            continue
                        sl.task, sl.done = t, 0
                        sl.ref = sl.handle.run.remote({"id": t.id, "kind": t.kind,
                                                       "src": t.src, "dst": t.dst,
                                                       "chunk": t.chunk, "codec": self._codec(t)})
                refs = [sl.ref for sl in slots if sl.task is not None]
                if not refs:
                    continue
                ready, _ = ray.wait(refs, num_returns=1, timeout=self.poll_s)
                for sl in slots:
                    if sl.task is None or sl.ref not in ready:
                        continue
                    t, sl.task = sl.task, None
                    try:
                        out = ray.get(sl.ref)
                    except ray.exceptions.RayActorError as exc:
                        self._lost(sl, t, pending, options, threads, exc)
                        continue
                    except ray.exceptions.RayError as exc:
                        out = {"ok": False, "error": describe_error(exc).splitlines()[0],
                               "frames": 0, "seconds": 0.0, "lines": []}
                    done_frames += self._finished(sl, t, out, manifest)
                now = time.perf_counter()
                if now - last_poll >= self.poll_s:
                    last_poll = now
                    live = self._poll(slots)
                    if bar is not None:
                        bar.update(done_frames + live - bar.n)
            if bar is not None:
                bar.update(done_frames - bar.n)
        except KeyboardInterrupt:
            for sl in slots:
                try:
                    ray.kill(sl.handle)
                except Exception:  # noqa: BLE001 - already gone
                    pass
            raise
        finally:
            if bar is not None:
                bar.close()
        for sl in slots:
            if not sl.gone:
                ray.kill(sl.handle)

    def _codec(self, t: Task) -> str:
        from streamer.sinks.video_file import default_codec_for
        return self.settings.codec or default_codec_for(t.item.dst)

    def _bar(self, total: int, initial: int):
        if not (self.settings.progress and sys.stderr.isatty()):
            return None
        from tqdm import tqdm
        return tqdm(total=total, initial=initial, desc="cluster", unit="frame",
                    file=sys.stderr, leave=False, dynamic_ncols=True)

    def _poll(self, slots: list[Slot]) -> int:
        """Frames the running tasks have written so far (one bar for the whole job)."""
        ray = self.ray
        busy = [sl for sl in slots if sl.task is not None]
        refs = [sl.handle.progress.remote() for sl in busy]
        live = 0
        if refs:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=max(0.2, self.poll_s))
            for sl, ref in zip(busy, refs):
                if ref in ready:
                    try:
                        tid, n = ray.get(ref)
                    except ray.exceptions.RayError:
                        continue  # dead: its run() reports it
                    if sl.task is not None and tid == sl.task.id:
                        sl.done = n
                live += sl.done if sl.task is not None else 0
        if self.on_poll is not None:
            self.on_poll(slots)
        return live

    def _lost(self, sl: Slot, t: Task, pending: deque, options: dict, threads: int,
              exc: BaseException) -> None:
        """The actor died under `t`: replace it and run the task again (at the front)."""
        self.retries += 1
        self.workers[sl.name].died += 1
        t.attempts += 1
        what = f"{Path(t.src).name}" + (f" chunk {t.chunk['index']}" if t.chunk else "")
        if t.attempts >= MAX_ATTEMPTS:
            t.item.error = f"{what}: its worker died {t.attempts} times"
        else:
            self.log(f"note: worker {sl.name} died during {what}; running it again")
            pending.appendleft(t)
        try:
            # a lost node takes its resources with it: wait a while for room, then go on
            # with the workers that are left
            (new,) = self._new_slots(1, options, threads, timeout=REPLACE_TIMEOUT_S)
        except self.ray.exceptions.GetTimeoutError:
            sl.gone = True
            self.log(f"note: no room for a new worker after {REPLACE_TIMEOUT_S:.0f} s; going "
                     f"on with the others")
            return
        sl.handle, sl.name, sl.ref, sl.done = new.handle, new.name, None, 0

    def _finished(self, sl: Slot, t: Task, out: dict, manifest: Manifest) -> int:
        """Record a finished task; returns the frames it adds to the done count."""
        w = self.workers[sl.name]
        w.tasks += 1
        w.busy_s += out.get("seconds", 0.0)
        self.tasks_run += 1
        it = t.item
        for line in out.get("lines", []):
            if line.startswith("note:"):
                self.log(f"note: {it.src.name}: {line[5:].strip()}")
        if not out["ok"]:
            it.error = out["error"]
            return 0
        w.frames += out["frames"]
        key = str(it.src.resolve())
        it.seconds += out["seconds"]
        if t.kind == "file":
            it.done = True
            manifest.record_output(key, it.fingerprint, it.dst.resolve())
        else:
            it.pieces[t.chunk["index"]] = out["result"]
            manifest.record_chunk(key, it.fingerprint, t.chunk, out["result"])
            if len(it.pieces) == len(it.chunks):
                self._join(it, manifest)
        if self.on_task_done is not None:
            self.on_task_done(t)
        return out["frames"] if t.kind == "chunk" or it.done else 0

    def _join(self, it: FileWork, manifest: Manifest) -> None:
        """Join a file's pieces (on the driver: a remux, no decoding)."""
        from .join import join_pieces

        t0 = time.perf_counter()
        pieces = [Path(it.pieces[c.index]["path"]) for c in it.chunks]
        try:
            join_pieces(it.src, pieces, it.dst, end_pts=it.pieces[it.chunks[-1].index]["end_pts"],
                        overwrite=self.settings.overwrite)
        except UserError as exc:
            it.error = describe_error(exc)
            return
        it.done = True
        it.join_s = time.perf_counter() - t0
        it.seconds += it.join_s
        manifest.record_output(str(it.src.resolve()), it.fingerprint, it.dst.resolve())
        for p in pieces:
            p.unlink(missing_ok=True)


def run_cluster(inputs: list[Path], output: Path | None, settings: VideoSettings, log: Log,
                **hooks: Any) -> ClusterReport:
    """The `--ray` path of run_video: convert `inputs` into `output` on Ray."""
    return ClusterJob(settings, log, **hooks).run(inputs, output)


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
    import json

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
