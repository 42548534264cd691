"""The web tests' shared pieces: one page server per test run, the command line's reference
output, the browser, and a free port."""
from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Debian's chromium, driven by Playwright (never `playwright install`: no browser downloads)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
#: a synthetic camera that Chromium grants without asking (the webcam test)
FAKE_CAMERA_ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


def missing(what: str) -> None:
    """Skip for a genuinely missing piece; in CI (.ci/run installs everything) fail."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} (CI must have it: .ci/run installs chromium, `make test` "
                    f"installs the web and dev extras)")
    pytest.skip(what)


def require_web() -> None:
    try:
        import gradio  # noqa: F401
    except ImportError:
        missing("gradio is not installed: pip install -e '.[web]'")


def chromium_path() -> str:
    path = os.environ.get("TOONSTREAM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        missing("no chromium browser (apt-get install chromium)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing("the playwright package is not installed: pip install -e '.[dev]'")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_services: dict[str, object] = {}


def shared_service(models_dir: Path):
    """One ToonService per test run (engines and previews are made once), closed at exit."""
    from streamer.web.service import ToonService

    key = str(models_dir)
    svc = _services.get(key)
    if svc is None:
        svc = _services[key] = ToonService(models=key)
        atexit.register(svc.close)
    return svc


def run_cli(models_dir: Path, src: Path, dst: Path, style: str, *extra: str) -> Path:
    """`python run_video.py SRC -o DST --style STYLE` as a user runs it."""
    cmd = [sys.executable, str(ROOT / "run_video.py"), str(src), "-o", str(dst), "--style", style,
           "--models", str(models_dir), "-y", *extra]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert dst.is_file()
    return dst
