"""The CPU a benchmark ran on, by name: every printed figure says which machine made it
(developers' CPUs differ: AMD Zen, Intel Xeon with or without AMX)."""
from __future__ import annotations

import platform
from pathlib import Path


def cpu_name() -> str:
    """The model name from /proc/cpuinfo (Linux), else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
