"""The web page's bridge to the offline conversion that `run_video.py` runs.

Nothing here converts anything itself: a photo goes through `convert_still` and a video
through `convert_video` from `streamer.video.app`, the very functions behind
`python run_video.py IN -o OUT`, with the same settings object (`VideoSettings`) and the same
engine holder (`Engines`). So a photo converted on the page is byte-for-byte what the
command line writes for the same file and settings.

What the page needs on top is a progress callback for videos: `convert_video`'s
`progress_factory` builds the command line's `Progress` (its tqdm bar stays off: the page's
settings say `progress=False`) extended to report the fraction done to the callback.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from streamer.video import app as offline
from streamer.video.app import Engines, Log, Result

#: on_progress(fraction 0..1 or None when unknown, frames written, frames expected or 0)
ProgressCallback = Callable[[float | None, int, int], None]


def convert_still(src: Path, dst: Path, engines: Engines, log: Log) -> Result:
    """`run_video.py src -o dst` for a still image, with the settings `engines` holds."""
    return offline.convert_still(src, dst, engines.settings, engines, log)


def _fraction(progress: offline.Progress, stats) -> float | None:
    if progress.by_time:
        duration = progress.duration
        if not duration or stats.last_time is None:
            return None
        return min(1.0, max(0.0, (stats.last_time - progress.start) / duration))
    return min(1.0, stats.frames_out / progress.total_frames) if progress.total_frames else None


def _reporting_progress(callback: ProgressCallback) -> type:
    base = offline.Progress

    class Reporting(base):  # type: ignore[misc, valid-type]
        def __init__(self, total_frames, duration, start, *args, **kwargs):
            super().__init__(total_frames, duration, start, *args, **kwargs)
            self.total_frames = total_frames
            self.duration = duration

        def __call__(self, stats) -> None:
            super().__call__(stats)
            callback(_fraction(self, stats), stats.frames_out, max(0, self.total_frames))

    return Reporting


def convert_video(src: Path, dst: Path, engines: Engines, log: Log,
                  on_progress: ProgressCallback | None = None) -> Result:
    """`run_video.py src -o dst` for a video, reporting progress to `on_progress`."""
    settings = engines.settings
    if on_progress is None:
        return offline.convert_video(src, dst, settings, engines, log)
    return offline.convert_video(src, dst, settings, engines, log,
                                 progress_factory=_reporting_progress(on_progress))
