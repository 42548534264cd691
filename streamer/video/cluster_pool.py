"""The Ray side of run_video --ray: joining Ray, sizing the workers to the cluster, and a small
pool of worker actors (cluster_worker.py), each running one task at a time.

Ray's own ActorPool does not fit: it cannot replace an actor that died, nor ask a busy one
how far it has got. This pool starts the actors and checks their hellos, hands out tasks,
reports the tasks that ended, polls progress, and starts a new actor in a dead one's place.
Which task runs next, and what a result means, is the job's (cluster.py).
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, Callable

from streamer.config import VideoSettings
from streamer.errors import UserError
from streamer.report import describe_error

from .cluster_messages import Hello, Outcome, TaskMessage
from .cluster_worker import actor_class
from .ray_address import check_ray_address

REPLACE_TIMEOUT_S = 120.0  # wait for room to replace a dead worker
DEFAULT_WORKER_CPUS = 4
_GPU_DEVICES = {"auto", "cuda", "tensorrt"}


class RayUnavailable(UserError):
    """Ray is not installed, or cannot be started or joined: the run failed (exit 1), the
    command itself was fine."""


def import_ray() -> Any:
    """The ray module, or a one-line error that names the extra to install."""
    try:
        import ray
    except ImportError:
        raise RayUnavailable("--ray needs Ray, which is not installed: "
                          "pip install 'toonstream[ray]'") from None
    return ray


def connect_ray(ray: Any, address: str | None) -> bool:
    """Start a local Ray (no address, or `local`) or join the one at `address`, unless the
    caller (a test, a notebook) already chose one. True when this call started or joined it,
    so that the job shuts it down at the end."""
    if ray.is_initialized():
        return False
    # one line within seconds, where Ray itself would retry a silent address for minutes
    check_ray_address(address)
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "logging_level": logging.ERROR}
    try:
        if address in (None, "", "local"):
            ray.init(**kwargs)
        else:
            ray.init(address=address, **kwargs)
    except Exception as exc:  # noqa: BLE001 - ConnectionError, ValueError, RuntimeError
        raise RayUnavailable(f"cannot start or join Ray at {address or 'this machine'}: "
                          f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                          ) from None
    return True


@dataclass(frozen=True)
class PoolShape:
    actors: int
    options: dict[str, float]  # each actor's resource request (num_cpus, num_gpus)
    threads: int  # engine threads per actor

    def describe(self) -> str:
        opts = ", ".join(f"{k} {v:g}" for k, v in self.options.items())
        return f"{self.actors} worker(s) ({opts}, engine threads {self.threads})"


def pool_shape(resources: dict[str, float], settings: VideoSettings, tasks: int) -> PoolShape:
    """The actors for `tasks` tasks on a cluster with `resources` (Ray's totals): one per GPU
    where there are GPUs and the device allows, else CPU actors of `worker_cpus` CPUs each;
    never more actors than tasks."""
    cpus = int(resources.get("CPU", 1)) or 1
    gpus = int(resources.get("GPU", 0))
    s = settings
    if gpus and s.device in _GPU_DEVICES:
        per_cpu = max(1, min(4, cpus // gpus))
        n = s.workers or gpus
        return PoolShape(max(1, min(n, tasks)), {"num_gpus": 1, "num_cpus": per_cpu}, per_cpu)
    per = s.worker_cpus or (max(1, cpus // s.workers) if s.workers
                            else min(DEFAULT_WORKER_CPUS, cpus))
    per = max(1, min(per, cpus))
    n = s.workers or max(1, cpus // per)
    return PoolShape(max(1, min(n, tasks)), {"num_cpus": per}, per)


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

    def record(self, out: Outcome) -> None:
        self.tasks += 1
        self.busy_s += out.seconds
        if out.ok:
            self.frames += out.frames


@dataclass
class Slot:
    """One actor and the task it runs (the job's object; None: idle)."""

    handle: Any
    name: str
    task: Any = None
    ref: Any = None
    done: int = 0  # frames of the running task, as last polled
    gone: bool = False  # died and could not be replaced


class WorkerPool:
    """The job's actors (see the module docstring). `workers`: throughput per actor ever
    started; `engine`: what the first worker runs, in words."""

    def __init__(self, ray: Any, settings: VideoSettings, log: Callable[[str], None],
                 shape: PoolShape):
        self.ray = ray
        self.settings = settings
        self.log = log
        self.shape = shape
        self.workers: dict[str, WorkerStats] = {}
        self.engine = "not started"
        self.slots: list[Slot] = []
        self._cls = actor_class(ray)
        self._models: list | None = None

    def start(self) -> None:
        """Start the shape's actors (they load their engines in parallel); UserError, one
        line, when a worker cannot work or reads other model files than the first."""
        self.slots = self._start(self.shape.actors)

    def _start(self, count: int, timeout: float | None = None) -> list[Slot]:
        """`timeout`: give up (GetTimeoutError) when the cluster has no room for them."""
        settings = asdict(self.settings)
        handles = [self._cls.options(**self.shape.options).remote(settings, self.shape.threads)
                   for _ in range(count)]
        try:
            hellos = self.ray.get([h.hello.remote() for h in handles], timeout=timeout)
        except self.ray.exceptions.GetTimeoutError:
            for h in handles:
                self.ray.kill(h)
            raise
        try:
            return [self._admit(h, hello) for h, hello in zip(handles, hellos)]
        except UserError:
            for h in handles:
                self.ray.kill(h)
            raise

    def _admit(self, handle: Any, hello: Hello) -> Slot:
        if hello.problems:
            raise UserError(f"worker on {hello.node}: {hello.problems[0]}")
        if self._models is None:
            self._models = hello.models
            for note in hello.notes:
                self.log(f"note: model store: {note}")
        elif hello.models != self._models:
            raise UserError(f"worker on {hello.node}: its model files differ from the first "
                            f"worker's; install the same store on every node")
        if self.engine == "not started":
            self.engine = hello.engine or "not started"
            self.log(f"engine: {hello.engine} on each worker; style {self.settings.style}, "
                     f"working short side {self.settings.size}, {hello.faces}")
        self.workers.setdefault(hello.name, WorkerStats(hello.name))
        return Slot(handle, hello.name)

    @property
    def busy(self) -> bool:
        return any(sl.task is not None for sl in self.slots)

    @property
    def all_gone(self) -> bool:
        return all(sl.gone for sl in self.slots)

    def idle(self) -> list[Slot]:
        return [sl for sl in self.slots if sl.task is None and not sl.gone]

    def submit(self, slot: Slot, task: Any, message: TaskMessage) -> None:
        slot.task, slot.done = task, 0
        slot.ref = slot.handle.run.remote(message)

    def wait(self, timeout: float) -> list[tuple[Slot, Any, Outcome | None]]:
        """The tasks that ended within `timeout`, as (slot, task, outcome); the slot is idle
        again. Outcome None: the actor died under the task (replace() it)."""
        ray = self.ray
        refs = [sl.ref for sl in self.slots if sl.task is not None]
        if not refs:
            return []
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        ended = []
        for sl in self.slots:
            if sl.task is None or sl.ref not in ready:
                continue
            task, sl.task = sl.task, None
            out: Outcome | None
            try:
                out = ray.get(sl.ref)
            except ray.exceptions.RayActorError:
                out = None
            except ray.exceptions.RayError as exc:
                out = Outcome(False, error=describe_error(exc).splitlines()[0])
            ended.append((sl, task, out))
        return ended

    def replace(self, slot: Slot) -> bool:
        """Count the dead actor of `slot` and start another in its place; False (the slot is
        gone) when the cluster has no room for one within REPLACE_TIMEOUT_S: a lost node
        takes its resources with it, and the job goes on with the workers that are left."""
        self.workers[slot.name].died += 1
        try:
            (new,) = self._start(1, timeout=REPLACE_TIMEOUT_S)
        except self.ray.exceptions.GetTimeoutError:
            slot.gone = True
            self.log(f"note: no room for a new worker after {REPLACE_TIMEOUT_S:.0f} s; going "
                     f"on with the others")
            return False
        slot.handle, slot.name, slot.ref, slot.done = new.handle, new.name, None, 0
        return True

    def progress(self, timeout: float) -> int:
        """Frames the running tasks have written so far (updates each slot's `done`)."""
        ray = self.ray
        busy = [sl for sl in self.slots if sl.task is not None]
        refs = [sl.handle.progress.remote() for sl in busy]
        live = 0
        if not refs:
            return 0
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout)
        for sl, ref in zip(busy, refs):
            if ref in ready:
                try:
                    tid, n = ray.get(ref)
                except ray.exceptions.RayError:
                    continue  # dead: wait() reports it
                if sl.task is not None and tid == sl.task.id:
                    sl.done = n
            live += sl.done if sl.task is not None else 0
        return live

    def close(self) -> None:
        """Stop every actor (those already dead too: killing them again is harmless)."""
        for sl in self.slots:
            try:
                self.ray.kill(sl.handle)
            except Exception:  # noqa: BLE001 - already gone
                pass
