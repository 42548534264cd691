"""A built wheel works outside the checkout: `pip install 'toonstream[web]'` from the wheel in
a fresh virtual environment (no --system-site-packages: every dependency comes from the
package index, as for a user), then the console scripts run from an unrelated folder and
find the presets, the model catalog and the sample inside the installed package.

Needs the package index (pip downloads the dependencies, about half a minute with a warm
pip cache), hence `slow`; `make test` runs it."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{out}"
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The bin folder of a fresh venv with the wheel (and the web extra) installed."""
    tmp = tmp_path_factory.mktemp("wheel")
    # Build from a copy of what the project tracks, so nothing the checkout has beside the
    # package (build/, an editable install's files) can leak into the wheel.
    src = tmp / "src"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copytree(ROOT / "streamer", src / "streamer",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp / "dist", src],
         cwd=tmp)
    wheels = list((tmp / "dist").glob("toonstream-*.whl"))
    assert len(wheels) == 1, wheels
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", venv], cwd=tmp)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    _run([bindir / "python", "-m", "pip", "install", "-q", f"{wheels[0]}[web]"], cwd=tmp)
    return bindir


@pytest.fixture
def elsewhere(tmp_path, models_dir) -> tuple[Path, dict[str, str]]:
    """A folder that is not the checkout, and an environment that does not point at it."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(TOONSTREAM_MODELS=str(models_dir), TOONSTREAM_CACHE=str(tmp_path / "cache"))
    work = tmp_path / "work"
    work.mkdir()
    return work, env


def test_the_installed_package_is_the_wheel_not_the_checkout(installed, elsewhere):
    work, env = elsewhere
    out = _run([installed / "python", "-c",
                "import streamer, streamer.samples as s; print(streamer.__file__); "
                "print(s.SAMPLE.is_file())"], cwd=work, env=env).split()
    assert "site-packages" in out[0] and not out[0].startswith(str(ROOT))
    assert out[1] == "True"


def test_toonstream_video_converts_a_still_from_another_folder_with_a_packaged_preset(
        installed, elsewhere, golden_dir):
    work, env = elsewhere
    src = work / "luciano.png"
    shutil.copy(golden_dir / "flow" / "luciano.png", src)
    # --config video-hq is found by name inside the installed package; faces off gives the
    # official full-frame flow, whose reference output is in the golden set.
    log = _run([installed / "toonstream-video", "luciano.png", "-o", "toon.png", "--style",
                "anime", "--faces", "off", "--config", "video-hq", "--no-progress"],
               cwd=work, env=env)
    assert "done: luciano.png -> toon.png" in log
    got = cv2.imread(str(work / "toon.png")).astype(np.int16)
    want = cv2.imread(str(golden_dir / "flow" / "luciano__anime.png")).astype(np.int16)
    assert got.shape == want.shape
    assert int(np.abs(got - want).max()) <= 1


def test_the_other_console_scripts_start_and_the_model_tool_reads_the_packaged_catalog(
        installed, elsewhere):
    work, env = elsewhere
    listing = _run([installed / "toonstream-models", "list"], cwd=work, env=env)
    assert "anime bg" in listing and "sd-illustration bg" in listing  # catalog rows
    for script in ("toonstream-video", "toonstream-stream", "toonstream-web",
                   "toonstream-models"):
        assert _run([installed / script, "--help"], cwd=work, env=env).startswith(
            f"usage: {script} ")  # the name the user typed, not run_*.py
