"""A PNG sequence in a folder: every frame as its own lossless PNG, with alpha when the frames
have it (BGRA), the format every compositor and editor reads.

Named ffmpeg-style, `FOLDER/%05d.png`: the folder is written under a temporary name beside it
(`.FOLDER.partial-XXXXXX`) and renamed when the stream ends, so a folder with the final name
is always complete; `close()` without `finish()` removes it. Frame numbers start at 1, as
ffmpeg's image2 muxer counts. Audio cannot ride in a PNG folder: a note says so.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import cv2

from streamer.frame import AudioTrack, Frame
from streamer.stages import Sink

from .video_file import OutputError, temp_path_for
from .video_packets import SinkStats

_PATTERN = re.compile(r"%0?(\d*)d")


def is_sequence_pattern(path: Path | str) -> bool:
    """`FOLDER/%05d.png` (a printf frame number in a .png name)."""
    p = Path(path)
    return p.suffix.lower() == ".png" and bool(_PATTERN.search(p.name))


class PngSequenceSink(Sink):
    name = "png sequence"

    def __init__(self, pattern: str | os.PathLike[str], *, overwrite: bool = False,
                 compression: int = 1, audio: AudioTrack | None = None):
        """`compression`: zlib level 0-9; 1 is fast and still about half the raw size of a
        cartoon frame (flat colours compress well). `audio`: the source's audio side
        stream, drained and dropped as frames arrive so it does not pile up in memory."""
        self.audio = audio
        self.stats = SinkStats()
        self.pattern = Path(pattern)
        if not is_sequence_pattern(self.pattern):
            raise OutputError(f"{self.pattern}: a PNG sequence is named FOLDER/%05d.png")
        self.folder = self.pattern.parent
        if self.folder.exists() and not overwrite:
            raise OutputError(f"{self.folder} exists; add -y to replace it")
        parent = self.folder.parent
        if not parent.is_dir():
            raise OutputError(f"output folder {parent} does not exist")
        self.temp = temp_path_for(self.folder)
        try:
            self.temp.mkdir()
        except OSError as exc:
            raise OutputError(f"cannot write in {parent} ({exc.strerror or exc})") from None
        self.overwrite = overwrite
        self._params = [cv2.IMWRITE_PNG_COMPRESSION, int(compression)]
        self.frames = 0
        self._done = False

    def name_of(self, number: int) -> str:
        m = _PATTERN.search(self.pattern.name)
        width = int(m.group(1) or 0)
        return self.pattern.name[:m.start()] + f"{number:0{width}d}" + self.pattern.name[m.end():]

    def write(self, frame: Frame) -> None:
        self.frames += 1
        self.stats.frames += 1
        if self.audio is not None:
            self.audio.packets.clear()
        ok, data = cv2.imencode(".png", frame.image, self._params)
        if not ok:
            raise OutputError(f"cannot encode frame {frame.index} as PNG")
        try:
            (self.temp / self.name_of(self.frames)).write_bytes(data.tobytes())
        except OSError as exc:
            raise OutputError(f"cannot write in {self.temp} ({exc.strerror or exc})") from None

    def finish(self) -> None:
        if self.folder.exists():
            if not self.overwrite:
                raise OutputError(f"{self.folder} appeared while converting; rerun with -y")
            old = temp_path_for(self.folder)
            os.replace(self.folder, old)  # out of the way first, then removed
            shutil.rmtree(old, ignore_errors=True)
        os.replace(self.temp, self.folder)
        self._done = True

    def describe(self) -> str:
        return f"{self.pattern} (PNG sequence)"

    def interrupt_note(self) -> str:
        if self._done:
            return f"{self.folder} was already complete and is kept"
        return f"the unfinished output {self.folder} was removed"

    def _release(self) -> None:
        if not self._done:
            shutil.rmtree(self.temp, ignore_errors=True)
