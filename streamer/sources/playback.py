"""A video file or a stream URL played at its own frame rate, as if it were a camera.

Files are decoded by the offline file source (rotation, damage and codec errors are
handled there); URLs (rtsp://, http(s)://, udp://, srt://, rtmp://, ...) are opened with
PyAV with low-delay options. Frames are released on a monotonic clock at their presentation
times (frame at pts p is due at t0 + (p - p0) * time_base), so a clip streams at its real
rate; a frame that is already more than two frame intervals late when decoded is skipped
and counted in `skipped` (the decoder cannot keep up), so latency stays bounded.

`capture_time` is the moment a frame is released; `pts` keeps increasing across `loop`
repeats.
"""
from __future__ import annotations

import re
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av

from streamer.frame import Frame, StreamInfo
from streamer.stages import Source
from streamer.sources.video_file import MediaError, VideoFileSource

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def is_url(text: str) -> bool:
    return bool(_URL.match(str(text))) and not str(text).startswith("file://")


class _UrlDecoder:
    """Decoded BGR frames of a network stream's first video stream."""

    def __init__(self, url: str, timeout_s: float = 10.0):
        self.url = url
        try:
            self._c = av.open(url, "r", timeout=timeout_s,
                              options={"fflags": "nobuffer", "flags": "low_delay",
                                       "rtsp_transport": "tcp"} if url.startswith("rtsp")
                              else {"fflags": "nobuffer", "flags": "low_delay"})
        except (av.error.FFmpegError, OSError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise MediaError(f"cannot open {url}: {reason}") from None
        if not self._c.streams.video:
            self._c.close()
            raise MediaError(f"{url}: no video stream")
        v = self._c.streams.video[0]
        v.codec_context.thread_type = "AUTO"
        self.stream = v
        self.time_base = v.time_base or Fraction(1, 90000)
        self.rate = v.average_rate or v.guessed_rate
        self.width, self.height = v.codec_context.width, v.codec_context.height

    def frames(self) -> Iterator[tuple[int | None, object]]:
        try:
            for vf in self._c.decode(self.stream):
                yield vf.pts, vf.to_ndarray(format="bgr24")
        except av.error.FFmpegError as exc:
            raise MediaError(f"{self.url}: the stream broke ({exc.strerror or exc})") from None

    def close(self) -> None:
        self._c.close()


class PlaybackSource(Source):
    """Play `target` (a file path or URL) in real time."""

    name = "playback"

    def __init__(self, target: str, *, loop: bool = False, late_skip: float = 2.0):
        self.target = str(target)
        self.loop = loop
        self.late_skip = late_skip
        self.skipped = 0
        self.produced = 0
        self.ended_reason: str | None = None
        self._stop = threading.Event()
        self.url = is_url(self.target)
        if self.url and loop:
            raise MediaError("--loop plays files only, not stream URLs")
        self._open()

    def _open(self) -> None:
        if self.url:
            d = _UrlDecoder(self.target)
            self._file = None
            self._url = d
            self.width, self.height = d.width, d.height
            self.time_base = d.time_base
            rate = d.rate
        else:
            self._file = VideoFileSource(Path(self.target), copy_audio=False)
            self._url = None
            info = self._file.info
            self.width, self.height = info.width, info.height
            self.time_base = info.time_base
            rate = info.rate
        self.fps = float(rate) if rate else 30.0

    @property
    def info(self) -> StreamInfo:
        return StreamInfo(self.width, self.height, self.time_base,
                          Fraction(self.fps).limit_denominator(1001))

    def describe(self) -> str:
        kind = "stream" if self.url else "file"
        return (f"{kind} {self.target}: {self.width}x{self.height} @ {self.fps:g} fps"
                + (", looped" if self.loop else ""))

    def stop(self) -> None:
        self._stop.set()

    def _decoded(self) -> Iterator[tuple[int | None, object]]:
        if self._url is not None:
            yield from self._url.frames()
        else:
            for f in self._file.frames():
                yield f.pts, f.image

    def frames(self) -> Iterator[Frame]:
        tb = self.time_base
        interval = 1.0 / self.fps
        step = max(1, round(interval / float(tb)))
        index = 0
        base: int | None = None  # output pts of the first frame of this pass
        t0: float | None = None
        p0 = 0
        try:
            while True:
                raw_first = prev_raw = last_out = None
                for raw, img in self._decoded():
                    if self._stop.is_set():
                        break
                    if raw is None:
                        raw = 0 if prev_raw is None else prev_raw + step
                    prev_raw = raw
                    if raw_first is None:
                        raw_first = raw
                        if base is None:
                            base = raw
                    pts = base + raw - raw_first
                    last_out = pts
                    if t0 is None:
                        t0, p0 = time.monotonic(), pts
                    due = t0 + float((pts - p0) * tb)
                    now = time.monotonic()
                    if now < due:
                        if self._stop.wait(due - now):
                            break
                    elif now - due > self.late_skip * interval:
                        if not self.url:
                            self.skipped += 1  # decoding is slower than real time
                            continue
                        t0, p0 = now, pts  # a live stream arrived in a burst: resync
                    self.produced += 1
                    yield Frame(index=index, pts=pts, time_base=tb,
                                capture_time=time.monotonic(), image=img, duration=step)
                    index += 1
                if self._stop.is_set() or not self.loop or last_out is None:
                    break
                base = last_out + step
                self._close()
                self._open()
        finally:
            self._close()
        self.ended_reason = "stopped" if self._stop.is_set() else "end"

    def _release(self) -> None:
        self._stop.set()
        self._close()

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._url is not None:
            self._url.close()
