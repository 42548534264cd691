"""Cut a long video into keyframe-aligned chunks that separate workers can convert.

The plan comes from the packets alone (PyAV demux, no decoding): every video packet's pts
and keyframe flag. A chunk starts at a keyframe, so a worker can seek to it and decode from
there; it holds every frame whose pts lies in [start, end) (the next chunk's start), so the
chunks together hold each frame exactly once, whatever the decoder's reordering.

Warm-up: a chunk's worker starts decoding at the last keyframe at or before
`start - warmup_seconds` and runs the frames of those last `warmup_seconds` (`warm_from`
onward) through the style flow without writing them, so face tracks and smoothing have
settled when the first written frame comes (a single-machine run reaches that frame with a
history too). Frames between the keyframe and `warm_from` are only decoded: a sparse
keyframe interval costs decoding, not model time. The first chunk needs none; a flow
without state between frames (faces and the temporal step off) needs none either
(warmup_seconds 0).

A file whose video packets lack timestamps, repeat one, or whose keyframes are too sparse
gets a one-chunk plan: it is converted whole, as without Ray.
"""
from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av

from streamer.sources.video_file import MediaError, ffmpeg_reason

DEFAULT_CHUNK_SECONDS = 60.0  # long enough that a chunk's warm-up and join cost ~2-3 %
DEFAULT_WARMUP_SECONDS = 1.0  # face tracker: 5 detections at detect-every 5 and 30 fps


@dataclass(frozen=True)
class Chunk:
    """One piece of a video: frames with `start <= pts < end` (end None: to the last frame),
    decoded from the keyframe at `decode_from` (None: the file's beginning, no seek); frames
    from `warm_from` to `start` are stylised and not written, earlier ones only decoded."""

    index: int
    start: int
    end: int | None
    decode_from: int | None
    frames: int  # frames written
    warmup: int  # frames stylised before `start`, not written
    warm_from: int | None = None  # None: from decode_from (or the start of the file)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Chunk:
        return cls(**d)


@dataclass(frozen=True)
class Plan:
    """The chunks of one video and what they were cut from."""

    path: str
    time_base: Fraction
    frames: int
    duration_s: float
    chunks: tuple[Chunk, ...]
    note: str | None = None  # why a long file was not cut, for the log

    @property
    def chunked(self) -> bool:
        return len(self.chunks) > 1


def read_packets(path: Path) -> tuple[Fraction, list[int | None], list[int]]:
    """(time base, every video packet's pts in file order, keyframe pts) of the first
    video stream that is not cover art."""
    try:
        c = av.open(str(path), "r")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise MediaError(f"{path.name}: not a video file FFmpeg can read "
                         f"({ffmpeg_reason(exc)})") from None
    except OSError as exc:
        raise MediaError(f"{path}: cannot read ({exc.strerror})") from None
    with c:
        streams = [s for s in c.streams.video
                   if not s.disposition & av.stream.Disposition.attached_pic]
        if not streams:
            raise MediaError(f"{path.name}: no video stream")
        v = streams[0]
        tb = v.time_base or Fraction(1, 90000)
        pts: list[int | None] = []
        keys: list[int] = []
        try:
            for p in c.demux(v):
                if not p.size:
                    continue
                pts.append(p.pts)
                if p.is_keyframe and p.pts is not None:
                    keys.append(p.pts)
        except av.error.FFmpegError as exc:
            raise MediaError(f"{path.name}: the file is damaged or truncated "
                             f"({ffmpeg_reason(exc)})") from None
    return tb, pts, sorted(set(keys))


def plan_chunks(path: Path, chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
                warmup_seconds: float = DEFAULT_WARMUP_SECONDS) -> Plan:
    """Keyframe-aligned chunks of about `chunk_seconds` each (see the module docstring)."""
    path = Path(path)
    tb, raw, keys = read_packets(path)
    if not raw:
        raise MediaError(f"{path.name}: the video stream has no frames")

    def whole(note: str | None = None, frames: int = len(raw), dur: float = 0.0) -> Plan:
        first = min((p for p in raw if p is not None), default=0)
        return Plan(str(path), tb, frames, dur,
                    (Chunk(0, first, None, None, frames, 0),), note)

    if any(p is None for p in raw):
        return whole("some video packets have no timestamp, so it is converted whole")
    pts = sorted(raw)
    if len(set(pts)) != len(pts):
        return whole("repeated video timestamps, so it is converted whole")
    duration = float((pts[-1] - pts[0]) * tb)
    step = chunk_seconds / float(tb)  # chunk length in time-base units
    cuts = [pts[0]]
    for k in keys:
        # the first keyframe at least one chunk length after the previous cut
        if k > cuts[-1] and k - cuts[-1] >= step:
            cuts.append(k)
    # a last piece shorter than half a chunk joins the one before it
    if len(cuts) > 1 and pts[-1] - cuts[-1] < step / 2:
        cuts.pop()
    if len(cuts) == 1:
        note = None
        if duration > 1.5 * chunk_seconds:
            note = (f"{len(keys)} keyframe(s) in {duration:.0f} s: too few to cut at "
                    f"--chunk-seconds {chunk_seconds:g}, so it is converted whole")
        return whole(note, len(pts), duration)
    warm = warmup_seconds / float(tb)
    chunks = []
    for i, start in enumerate(cuts):
        end = cuts[i + 1] if i + 1 < len(cuts) else None
        lo = bisect.bisect_left(pts, start)
        hi = bisect.bisect_left(pts, end) if end is not None else len(pts)
        if i == 0:
            decode_from, warmup, warm_from = None, 0, None
        else:
            # the last keyframe at or before start - warm-up (the chunk's own if none)
            j = bisect.bisect_right(keys, start - warm) - 1
            if warm <= 0:
                decode_from = start
            elif j >= 0:
                decode_from = keys[j]
            else:
                decode_from = None  # the warm-up reaches back past the first keyframe
            warm_from = max(pts[0], start - int(warm))
            warmup = lo - bisect.bisect_left(pts, warm_from)
        chunks.append(Chunk(i, start, end, decode_from, hi - lo, warmup, warm_from))
    return Plan(str(path), tb, len(pts), duration, tuple(chunks))
