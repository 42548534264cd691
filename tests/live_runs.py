"""run_stream.py in a child process, stopped by a signal once it streams: how a user, a
service manager or `kill` ends a live session."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def stop_while_streaming(args: list[str], models_dir: Path, sig: int,
                         after_s: float = 1.5) -> tuple[int, str]:
    """Start `run_stream.py ARGS` (the live-cpu preset, a synthetic 320x180 camera), send
    `sig` `after_s` seconds after it says it is streaming; (exit status, everything it
    printed on stderr)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), TOONSTREAM_MODELS=str(models_dir))
    p = subprocess.Popen([sys.executable, str(ROOT / "run_stream.py"), "--config", "live-cpu",
                          "--synthetic", "--camera-size", "320x180", "--work", "64",
                          "--status-every", "0", "--seconds", "60", *args],
                         stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         env=env, cwd=ROOT)
    lines = []
    try:
        for line in p.stderr:  # wait until it is streaming
            lines.append(line)
            if line.startswith("controls:"):
                break
        time.sleep(after_s)
        p.send_signal(sig)
        _, rest = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    return p.returncode, "".join(lines) + rest
