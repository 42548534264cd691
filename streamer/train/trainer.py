"""The one training loop, for personal styles and for distillation alike.

A `Task` knows its networks, data and losses; the `Trainer` runs its steps with what a user
expects of a long job: a progress bar with the losses and an ETA, a preview sheet every N
steps, a loss-curve PNG at the end, and a checkpoint that Ctrl+C (or SIGTERM) writes before
the command exits, which `--resume` continues from. Checkpoints and sheets go to the run's
working folder; the result (an adapter, a student) goes to the model store through the
task, only when the run completes.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch

from streamer.errors import UserError

from .sheets import loss_curves, write_png

CHECKPOINT = "checkpoint.pt"


class ResumeError(UserError, ValueError):
    """--resume without a usable checkpoint, or one made for other settings (one line)."""


class Task(Protocol):
    """One kind of training run (see the module docstring)."""

    def step(self, step: int) -> dict[str, float]: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...
    def preview(self) -> np.ndarray: ...
    def signature(self) -> dict: ...


@dataclass
class TrainResult:
    steps: int
    seconds: float
    history: dict[str, list[float]] = field(default_factory=dict)
    previews: list[Path] = field(default_factory=list)
    curve: Path | None = None


class TrainingStopped(KeyboardInterrupt):
    """Ctrl+C or a stop signal during training: the checkpoint is written (`step` done)."""

    def __init__(self, step: int, checkpoint: Path, cause: KeyboardInterrupt):
        super().__init__(str(cause))
        self.step, self.checkpoint, self.cause = step, checkpoint, cause
        self.signum = getattr(cause, "signum", None)


class Trainer:
    def __init__(self, task: Task, steps: int, workdir: Path, *, preview_every: int = 100,
                 progress: bool = True, log: Callable[[str], None] = print):
        if steps < 1:
            raise ValueError("--steps must be at least 1")
        self.task = task
        self.steps = steps
        self.workdir = Path(workdir)
        self.preview_every = preview_every
        self.progress = progress
        self.log = log

    @property
    def checkpoint(self) -> Path:
        return self.workdir / CHECKPOINT

    def _save(self, step: int, history: dict[str, list[float]], seconds: float) -> None:
        state = {"step": step, "history": history, "seconds": seconds,
                 "signature": self.task.signature(), "task": self.task.state_dict(),
                 "rng": torch.get_rng_state()}
        tmp = self.checkpoint.with_name(f".{CHECKPOINT}.partial-{os.getpid()}")
        torch.save(state, tmp)
        tmp.replace(self.checkpoint)

    def _load(self) -> tuple[int, dict[str, list[float]], float]:
        if not self.checkpoint.is_file():
            raise ResumeError(f"--resume: no checkpoint in {self.workdir}; start without "
                              f"--resume")
        try:
            state = torch.load(self.checkpoint, map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001 - a damaged file, whatever torch says
            raise ResumeError(f"--resume: {self.checkpoint} cannot be read "
                              f"({str(exc).splitlines()[0]}); start again without --resume") from None
        mine, theirs = self.task.signature(), state.get("signature", {})
        changed = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        if changed:
            raise ResumeError(f"--resume: the checkpoint was made with other settings "
                              f"({', '.join(changed)}); give the same ones or start again")
        self.task.load_state_dict(state["task"])
        torch.set_rng_state(state["rng"])
        return int(state["step"]), state["history"], float(state.get("seconds", 0.0))

    def run(self, resume: bool = False) -> TrainResult:
        from tqdm import tqdm

        self.workdir.mkdir(parents=True, exist_ok=True)
        start, history, before = self._load() if resume else (0, {}, 0.0)
        if resume:
            self.log(f"resuming at step {start} of {self.steps}")
        result = TrainResult(start, before, history)
        t0 = time.perf_counter()
        step = start
        bar = None
        try:
            bar = tqdm(total=self.steps, initial=start, disable=not self.progress, unit="step",
                       dynamic_ncols=True, leave=True)
            if start == 0 and self.preview_every:
                result.previews.append(self._preview(0))
            while step < self.steps:
                losses = self.task.step(step)
                step += 1
                for k, v in losses.items():
                    history.setdefault(k, []).append(float(v))
                bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items()}, refresh=False)
                bar.update(1)
                if self.preview_every and step % self.preview_every == 0 and step < self.steps:
                    result.previews.append(self._preview(step))
        except KeyboardInterrupt as exc:
            if bar is not None:
                bar.close()
            self._save(step, history, before + time.perf_counter() - t0)
            raise TrainingStopped(step, self.checkpoint, exc) from None
        bar.close()
        result.steps = step
        result.seconds = before + time.perf_counter() - t0
        self._save(step, history, result.seconds)
        if self.preview_every:
            result.previews.append(self._preview(step))
        result.curve = self.workdir / "losses.png"
        write_png(result.curve, loss_curves(history))
        return result

    def _preview(self, step: int) -> Path:
        path = self.workdir / "previews" / f"step_{step:06d}.png"
        write_png(path, self.task.preview())
        return path
