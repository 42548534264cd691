"""run_video's progress: a bar on a terminal, and the same numbers for a callback (the web
page's progress); for a Ray job, one bar of frames across its workers."""
from __future__ import annotations

import sys
from typing import Callable, TextIO

from streamer.pipeline.core import PipelineStats


#: on_update(fraction 0..1 or None when unknown, frames written, frames expected or 0)
ProgressCallback = Callable[[float | None, int, int], None]


class Progress:
    """A tqdm bar on stderr: by frames when the container gives a count, else by stream
    time (MKV, WebM), with fps and ETA either way."""

    def __init__(self, total_frames: int, duration: float | None, start: float | None,
                 label: str, enabled: bool, file: TextIO | None = None,
                 on_update: ProgressCallback | None = None):
        """`enabled`: show a bar (the caller decides; run_video shows one when stderr is a
        terminal). `on_update` gets the same progress at every tick."""
        self.bar = None
        self.on_update = on_update
        self.total_frames = total_frames
        self.duration = duration
        self.by_time = total_frames <= 0
        self.start = start or 0.0
        if not enabled:
            return
        from tqdm import tqdm
        out = file or sys.stderr
        if self.by_time:
            fmt = ("{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total_fmt} s "
                   "[{elapsed}<{remaining}{postfix}]")
            self.bar = tqdm(total=round(duration, 1) if duration else None, desc=label,
                            unit="s", bar_format=fmt if duration else None, file=out,
                            leave=False, dynamic_ncols=True)
        else:
            self.bar = tqdm(total=total_frames, desc=label, unit="frame", file=out,
                            leave=False, dynamic_ncols=True)

    def __call__(self, st: PipelineStats) -> None:
        if self.on_update is not None:
            self.on_update(self.fraction(st), st.frames_out, max(0, self.total_frames))
        bar = self.bar
        if bar is None:
            return
        if self.by_time:
            if st.last_time is not None:
                pos = max(0.0, st.last_time - self.start)
                if bar.total:
                    pos = min(pos, bar.total)
                bar.update(pos - bar.n)
                bar.set_postfix_str(f"{st.fps:.1f} fps", refresh=False)
        else:
            bar.update(st.frames_out - bar.n)

    def fraction(self, st: PipelineStats) -> float | None:
        """How much is done, 0..1, or None when the input does not say how long it is."""
        if self.by_time:
            if not self.duration or st.last_time is None:
                return None
            return min(1.0, max(0.0, (st.last_time - self.start) / self.duration))
        if not self.total_frames:
            return None
        return min(1.0, st.frames_out / self.total_frames)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class FramesBar:
    """One bar of frames done for a whole job (run_video --ray: every worker's frames
    together); shown only when `enabled` (the caller's choice: a terminal)."""

    def __init__(self, total: int, done: int, enabled: bool, file: TextIO | None = None):
        self.bar = None
        if enabled:
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=done, desc="cluster", unit="frame",
                            file=file or sys.stderr, leave=False, dynamic_ncols=True)

    def show(self, frames: int) -> None:
        """Frames done so far (finished and running tasks together)."""
        if self.bar is not None:
            self.bar.update(frames - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
