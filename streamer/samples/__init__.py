"""The sample portrait that ships with Toonstream (CC0; see README.md here)."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

# Package data, so `make run` in a checkout and an installed wheel find the same file.
SAMPLE: Path = Path(str(resources.files(__name__) / "luciano.png"))
