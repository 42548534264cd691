"""Writing a store file so that readers never see it half-written."""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write` on a temporary file beside `path`, then rename it into place: other
    processes building or using the same store or cache see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # The process and thread in the name keep concurrent writers off each other's file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
