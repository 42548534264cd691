"""Whether training runs its convolutions in bf16 (autocast) or fp32: measured, not assumed.

A CPU with bf16 instructions (AMX, AVX-512 BF16) runs autocast bf16 several times faster;
one without them emulates it, often slower than fp32. So the choice is a measurement on the
machine that trains: a few timed steps of each, side by side, and the faster one wins.
"""
from __future__ import annotations

import contextlib
import statistics
import time
from typing import Callable

import torch


def autocast(device: str, on: bool):
    """The autocast context for a training step (a no-op context when off)."""
    if not on:
        return contextlib.nullcontext()
    return torch.autocast("cuda" if device == "torch-cuda" else "cpu", dtype=torch.bfloat16
                          if device != "torch-cuda" else torch.float16)


def choose(step: Callable[[bool], None], device: str, mode: str = "auto", reps: int = 3
           ) -> tuple[bool, dict[str, float]]:
    """(autocast on?, median seconds per step of each candidate). `mode` "on"/"off" is
    taken as given; "auto" times `step(on)` for both and keeps the faster (fp32 on a tie)."""
    if mode in ("on", "off"):
        return mode == "on", {}
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(reps):  # interleaved, so a burst of load hits both alike
        for name in ("fp32", "bf16"):
            t = time.perf_counter()
            step(name == "bf16")
            if device == "torch-cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v[1:] or v) for k, v in times.items()}
    return med["bf16"] < 0.9 * med["fp32"], med
