"""Shared pytest fixtures."""
from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The read-only model store the tests run against: $TOONSTREAM_MODELS, else the shared
    test data beside the project (what .ci/run points at). Skips when neither exists."""
    path = Path(os.environ.get("TOONSTREAM_MODELS")
                or Path(__file__).resolve().parents[1].parent / "shared" / "models")
    if not (path / "dctnet").is_dir():
        pytest.skip(f"no model store at {path} (set TOONSTREAM_MODELS)")
    return path.resolve()
