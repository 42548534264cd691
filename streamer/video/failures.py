"""How run_video reports the files it could not convert, the same with and without Ray: one
`failed:` line per file of a folder (or of several inputs), named as the folder names it,
and the closing `error:` line that counts them, the last line of the run.

A file's own error usually starts with the file's name (sources and sinks name the file
they fail on); the `failed:` line names the file once, by its path inside the folder.
"""
from __future__ import annotations

from pathlib import Path

from streamer.errors import UserError
from streamer.pipeline.core import PipelineError
from streamer.report import one_line
from streamer.sinks.video_file import OutputError
from streamer.sources.video_file import MediaError


def own_failure(exc: BaseException) -> UserError | None:
    """The file's own error behind `exc` (a bad input, an output that cannot be written, or
    a pipeline stage that failed on one of those), or None: a problem common to every file
    (the model, the device), which stops a folder at once."""
    cause = exc.error if isinstance(exc, PipelineError) else exc
    return cause if isinstance(cause, (MediaError, OutputError)) else None


def own_message(src: Path, error: BaseException | str) -> str:
    """`error` in one line, without a leading `NAME: ` that names `src` (its path or its
    name): what the `failed:` line says after the file's label."""
    message = one_line(error)
    for name in (str(src), src.name):
        if name and message.startswith(f"{name}: "):
            return message[len(name) + 2:]
    return message


def failed_line(label: str, message: str) -> str:
    """`failed: LABEL: MESSAGE` (`label`: the file's path inside its folder, or as given)."""
    return f"failed: {label}: {message}"


def incomplete(failed: int, total: int) -> str:
    """The closing error (after `error: `) of a folder or several inputs, some of which
    failed."""
    return (f"{failed} of {total} files could not be converted (each is listed above as "
            f"'failed:')")
