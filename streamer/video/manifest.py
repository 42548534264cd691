"""What a distributed job has finished, kept beside its output so a rerun resumes.

The job's work folder (`.OUTPUT.toonstream-ray/` next to the output file or folder) holds
`manifest.json` and the encoded chunk pieces. The manifest names the job (every setting
that changes the output, and the chunk settings) and, per input file (by path, with its
size and modification time), the finished output or the finished chunks with their
sha256. A rerun of the same job keeps an entry only when its input is unchanged and its
file still hashes to the recorded sum; anything else is done again. The manifest is
rewritten atomically (temporary file, then rename) after every finished task, by the one
process that schedules the job, so an interrupt at any moment leaves a valid one.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from streamer.models.download import sha256_file

MANIFEST = "manifest.json"
VERSION = 1
# Settings that change what is written; the rest (progress, threads, queue, the cluster's
# shape) do not, so changing them keeps the finished work.
_NOT_OUTPUT = {"overwrite", "stats_json", "progress", "threads", "queue", "ray", "workers",
               "worker_cpus", "models", "device"}


def work_dir_for(output: Path) -> Path:
    """The job's work folder, a hidden sibling of the output file or folder."""
    return output.parent / f".{output.name}.toonstream-ray"


def job_key(settings: Any) -> dict[str, Any]:
    return {k: v for k, v in sorted(asdict(settings).items()) if k not in _NOT_OUTPUT}


def input_fingerprint(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


class Manifest:
    """Finished files and chunks of one job (see the module docstring)."""

    def __init__(self, folder: Path, key: dict[str, Any]):
        self.folder = folder
        self.path = folder / MANIFEST
        self.key = json.loads(json.dumps(key, default=str))
        self.files: dict[str, dict] = {}
        self.stale = False  # an old manifest of another job (or unreadable) was found
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError):
            self.stale = True
            return
        if data.get("version") != VERSION or data.get("job") != self.key:
            self.stale = True
            return
        self.files = data.get("files", {})

    # --- what is done --------------------------------------------------------------------

    def _entry(self, src: str, fingerprint: list[int]) -> dict:
        e = self.files.get(src)
        if e is None or e.get("input") != fingerprint:
            e = self.files[src] = {"input": fingerprint, "chunks": {}}
        return e

    def output_done(self, src: str, fingerprint: list[int], output: Path) -> bool:
        """True when `output` is the finished output recorded for this input."""
        e = self.files.get(src)
        if not e or e.get("input") != fingerprint or "output" not in e:
            return False
        rec = e["output"]
        try:
            return (rec["path"] == str(output) and output.stat().st_size == rec["size"]
                    and sha256_file(output) == rec["sha256"])
        except OSError:
            return False

    def chunk_done(self, src: str, fingerprint: list[int], index: int,
                   chunk: dict) -> dict | None:
        """The recorded result of a finished chunk whose piece is intact, else None."""
        e = self.files.get(src)
        if not e or e.get("input") != fingerprint:
            return None
        rec = e.get("chunks", {}).get(str(index))
        if not rec or rec.get("chunk") != chunk:
            return None
        piece = Path(rec["result"]["path"])
        try:
            if piece.stat().st_size != rec["result"]["size"]:
                return None
            if sha256_file(piece) != rec["result"]["sha256"]:
                return None
        except OSError:
            return None
        return rec["result"]

    # --- recording -----------------------------------------------------------------------

    def record_output(self, src: str, fingerprint: list[int], output: Path) -> None:
        e = self._entry(src, fingerprint)
        e["output"] = {"path": str(output), "size": output.stat().st_size,
                       "sha256": sha256_file(output)}
        e["chunks"] = {}  # the pieces are no longer needed
        self.save()

    def record_chunk(self, src: str, fingerprint: list[int], chunk: dict, result: dict) -> None:
        e = self._entry(src, fingerprint)
        e["chunks"][str(chunk["index"])] = {"chunk": chunk, "result": result}
        self.save()

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{MANIFEST}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps({"version": VERSION, "job": self.key, "files": self.files},
                                  indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)
