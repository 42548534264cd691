"""The names the commands go by: `run_video.py` in a checkout, `toonstream-video` installed."""
from __future__ import annotations

import os
import sys

# script in the checkout -> console script of the installed package (pyproject.toml)
CONSOLE_SCRIPTS = {"run_video.py": "toonstream-video", "run_stream.py": "toonstream-stream",
                   "run_web.py": "toonstream-web",
                   "python -m streamer.models": "toonstream-models"}


def prog(script: str) -> str:
    """The name for usage lines and help: the console script's when that is what runs,
    else the checkout's script name (tests and `python run_video.py`)."""
    invoked = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    installed = CONSOLE_SCRIPTS.get(script)
    if installed and invoked.removesuffix(".exe") == installed:
        return installed
    return script
