"""run_video as the tests call it: in the test's own process (exit status and everything it
printed) or in a child process (where a crash in native code shows as a signal exit), and the
check that a refusal is one `error:` line without a traceback."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from streamer.video.app import main

ROOT = Path(__file__).resolve().parents[1]
SIZE = "64"  # working short side: tiny, so CI stays fast on two cores


def run(capfd, *args) -> tuple[int, str]:
    """`run_video.py ARGS` in this process; (exit status, stdout and stderr together)."""
    rc = main([str(a) for a in args])
    out, err = capfd.readouterr()
    return rc, out + err


def run_video_process(*args, timeout: float = 600) -> subprocess.CompletedProcess:
    """run_video.py in its own process: a crash in native code shows as a signal exit."""
    return subprocess.run([sys.executable, str(ROOT / "run_video.py"), *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def one_error_line(log: str, words: str) -> None:
    """`log` has exactly one `error: ` line, it holds `words`, and there is no traceback."""
    errors = [ln for ln in log.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and words in errors[0], log
    assert "Traceback" not in log, log
