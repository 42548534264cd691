"""Shared pytest fixtures."""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Gradio keeps uploads in /tmp/gradio unless told otherwise; that folder, made by another user
# (an earlier run as root), is not writable, so the web tests keep their own.
_GRADIO_TMP = tempfile.mkdtemp(prefix="toonstream-test-gradio-")
os.environ.setdefault("GRADIO_TEMP_DIR", _GRADIO_TMP)
atexit.register(shutil.rmtree, _GRADIO_TMP, True)


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The read-only model store the tests run against: $TOONSTREAM_MODELS, else the shared
    test data beside the project (what .ci/run points at). Skips when neither exists."""
    path = Path(os.environ.get("TOONSTREAM_MODELS")
                or Path(__file__).resolve().parents[1].parent / "shared" / "models")
    if not (path / "dctnet").is_dir():
        pytest.skip(f"no model store at {path} (set TOONSTREAM_MODELS)")
    return path.resolve()


@pytest.fixture(scope="session")
def media_dir(models_dir) -> Path:
    """Real photos and clips of the shared test data (beside the model store)."""
    path = models_dir.parent / "media"
    if not path.is_dir():
        pytest.skip(f"no test media at {path}")
    return path


@pytest.fixture(scope="session")
def golden_dir(models_dir) -> Path:
    """Reference outputs of the shared test data (beside the model store)."""
    path = models_dir.parent / "golden"
    if not path.is_dir():
        pytest.skip(f"no golden outputs at {path}")
    return path
