"""Process memory for the live benchmarks: resident size, and a run sampled once settled."""
from __future__ import annotations

import resource
import sys
import threading
from pathlib import Path


def rss_mb() -> float:
    """Resident memory now (Linux /proc), else the peak (other systems)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def run_with_memory(session, seconds: float) -> tuple[dict, float | None, float]:
    """(session.run()'s result, resident MB once the first frames have filled the buffers
    and allocator arenas (5 s in, or half the run), resident MB at the end): flat memory
    means the last two agree."""
    settled: list[float] = []
    timer = threading.Timer(min(5.0, seconds / 2), lambda: settled.append(rss_mb()))
    timer.daemon = True
    timer.start()
    result = session.run()
    timer.cancel()
    return result, (settled[0] if settled else None), rss_mb()
