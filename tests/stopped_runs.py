"""run_stream.py and run_video.py in a child process, stopped by a signal while they work:
how a user (Ctrl+C, twice when the first seems slow), a service manager or `kill` ends
them, down to a signal at the very last moment of a run."""
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
                       *extra: str, output: str = "result.mp4", wait_s: float = 0.0,
                       again_after_s: float | None = None) -> tuple[int, str]:
    """Start `run_video.py SRC -o OUT_DIR/OUTPUT EXTRA`, send `sig` `wait_s` seconds after
    the temporary output appeared (frames are being written), and with `again_after_s` the
    same signal once more that much later, while it stops (a second Ctrl+C); (exit status,
    stderr)."""
    env = dict(os.environ, TOONSTREAM_MODELS=str(models_dir), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, str(ROOT / "run_video.py"), str(src), "-o",
                             str(out_dir / output), "--size", "240", "--device", "cpu",
                             *extra],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        while proc.poll() is None and not [p for p in out_dir.iterdir() if ".partial-" in p.name]:
            time.sleep(0.05)
        time.sleep(wait_s)
        assert proc.poll() is None, "finished before it could be stopped"
        proc.send_signal(sig)
        if again_after_s is not None:
            time.sleep(again_after_s)
            if proc.poll() is None:
                proc.send_signal(sig)
        proc.wait(timeout=120)
        reader.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, "".join(lines)


#: run_video with a SIGTERM at the very end: the process sends it to itself from inside
#: (argv: MOMENT, then run_video's arguments). "finishing": while the sink flushes and
#: renames the output; "renamed": just after the pipeline returned, the output renamed.
_LAST_MOMENT = """
import os, signal, sys, time
from streamer.pipeline.core import Pipeline
from streamer.sinks.video_file import VideoFileSink
from streamer.video.app import main

moment = sys.argv[1]
if moment == "finishing":
    finish = VideoFileSink.finish

    def finishing(self):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.5)  # the main thread takes the signal before the rename
        finish(self)
    VideoFileSink.finish = finishing
else:
    run = Pipeline.run

    def renamed(self, *args, **kwargs):
        stats = run(self, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # the signal ends this wait at once
        return stats
    Pipeline.run = renamed
sys.exit(main(sys.argv[2:]))
"""


def stop_at_the_last_moment(moment: str, args: list[str], models_dir: Path
                            ) -> tuple[int, str]:
    """run_video.py ARGS, stopped by SIGTERM at the `moment` of _LAST_MOMENT; (exit status,
    stderr)."""
    env = dict(os.environ, TOONSTREAM_MODELS=str(models_dir), PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-c", _LAST_MOMENT, moment, *map(str, args)],
                         cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                         text=True, timeout=300)
    return res.returncode, res.stderr
