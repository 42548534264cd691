"""run_stream.py and run_video.py in a child process, stopped by a signal while they work:
how a user (Ctrl+C), a service manager or `kill` ends them."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
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


def stop_while_writing(src: Path, out_dir: Path, models_dir: Path, sig: int,
                       *extra: str) -> tuple[int, str]:
    """Start `run_video.py SRC -o OUT_DIR/result.mp4 EXTRA`, send `sig` once encoded frames
    are being written to the temporary file; (exit status, stderr)."""
    env = dict(os.environ, TOONSTREAM_MODELS=str(models_dir), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, str(ROOT / "run_video.py"), str(src), "-o",
                             str(out_dir / "result.mp4"), "--size", "240", "--device", "cpu",
                             *extra],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        while proc.poll() is None and not [p for p in out_dir.iterdir() if ".partial-" in p.name]:
            time.sleep(0.05)
        assert proc.poll() is None, "finished before it could be stopped"
        proc.send_signal(sig)
        proc.wait(timeout=120)
        reader.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, "".join(lines)
