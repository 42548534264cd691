"""What every file output shares: the errors a user can fix, the container each suffix
writes, which containers carry an alpha channel (and with which encoder), and which input
metadata is carried over. The video sink, the audio writer and the Ray join all read these."""
from __future__ import annotations

from pathlib import Path

from streamer.errors import UserError


class OutputError(UserError):
    """A problem with the output (path, container, encoder), in one line for the user."""


class ContainerCannotHold(OutputError):
    """The output's container cannot hold a stream as it is (the input's audio codec, or
    the chosen video codec); another container may, so a caller can retry with one."""


# Container format forced for the temporary file, by the final name's suffix.
FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm",
           ".avi": "avi", ".ts": "mpegts", ".m2ts": "mpegts", ".mts": "mpegts", ".flv": "flv",
           ".nut": "nut"}

#: containers with an encoder that keeps an alpha channel, and that encoder
ALPHA_ENCODERS = {"webm": "libvpx-vp9", "matroska": "libvpx-vp9", "mov": "prores_ks"}

# Metadata the muxer writes itself, or that describes the old encoding.
_DROP_KEYS = {"major_brand", "minor_version", "compatible_brands", "encoder", "rotate",
              "duration", "bps", "number_of_frames", "number_of_bytes", "vendor_id"}


def container_format(path: Path) -> str:
    """The FFmpeg muxer for `path`'s suffix; OutputError naming the suffixes otherwise."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise OutputError(f"{path.name}: unknown video container {path.suffix or '(no suffix)'!r}; "
                          f"use one of {', '.join(FORMATS)}")
    return fmt


def keep_key(key: str) -> bool:
    """Whether an input metadata key is carried over to the output."""
    k = key.lower()
    return k not in _DROP_KEYS and not k.startswith("_statistics")
