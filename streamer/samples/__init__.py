"""What ships with Toonstream: the sample portrait (CC0) and a generic light network
(see README.md here)."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

# Package data, so `make run` in a checkout and an installed wheel find the same file.
SAMPLE: Path = Path(str(resources.files(__name__) / "luciano.png"))
# A Mobile-DCTNet student of anime and 3d distilled from the official models on the shared
# clips; installed with `python -m streamer.models import` (README.md here says how it was made).
GENERIC_STUDENT: Path = Path(str(resources.files(__name__) / "generic.safetensors"))
