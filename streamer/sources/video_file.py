"""Decode a video file (anything PyAV opens) into Frames, passing audio packets through.

Opening probes the file and decodes its first frame, so a file that is not a video, has no
video stream, uses a codec this FFmpeg cannot decode, or is damaged at the start fails
before any model is loaded, with a one-line MediaError.

Rotation: a display matrix (phones write one) is applied to the pixels, the way players
show the video, so faces reach the model upright; `info.width/height` are the upright size
and a sink writes the result without a display matrix. Flips in the matrix are applied too.

Timestamps: frames keep the stream's pts and time base. A frame without a pts gets the
previous one plus one frame interval; a pts that does not increase is moved just past the
previous one (`fixed_pts` counts both), because encoders and muxers reject them.

`info` is the StreamInfo every sink understands; `probe` (VideoInfo) is what only a file
has (container, codec, rotation, bit depth, streams left out) and says what the output
will not keep (`probe.notes`).

Audio: the packets of every audio stream are read in the same pass and queued, untouched,
on the `audio` side stream for the sink to remux (no decoding, no re-encoding).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np

from streamer.errors import UserError
from streamer.frame import AudioTrack, ColorTags, Frame, StreamInfo
from streamer.sources.display_matrix import read_display_matrix
from streamer.stages import Source


class MediaError(UserError):
    """A problem with an input file, in one line for the user."""


#: demuxers whose stream frame count is the number of video packets in the file
_INDEXED = frozenset({"mov,mp4,m4a,3gp,3g2,mj2"})

#: read errors in a row after which a damaged file is taken as ended
_MAX_READ_ERRORS = 32

#: FFmpeg decoders that draw text or text-mode art: what any unknown file decodes as.
TEXT_ART_CODECS = frozenset({"ansi", "bintext", "xbin", "idf"})


def is_still_container(container: str) -> bool:
    """Whether FFmpeg opened the file as a single picture (PNG, JPEG, WebP ... read through
    an image demuxer) rather than as a video."""
    return container.endswith("_pipe") or container in ("image2", "webp")


def ffmpeg_reason(exc: BaseException) -> str:
    """FFmpeg's own words without the errno and file name PyAV adds."""
    if isinstance(exc, av.error.FFmpegError):
        text = exc.strerror or str(exc)
    else:
        text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass
class VideoInfo:
    path: Path
    container: str  # FFmpeg demuxer name
    codec: str
    coded_width: int  # as stored, before rotation
    coded_height: int
    width: int  # upright, as frames are delivered
    height: int
    rotation: int  # clockwise degrees applied to the pixels (0, 90, 180, 270)
    flip: str  # "", "h", "v", or a transpose name: what else the display matrix asked for
    time_base: Fraction
    average_rate: Fraction | None
    start_time: float | None  # seconds
    duration: float | None  # seconds, of the video stream (or the container)
    frames: int  # 0 when the container does not say (MKV, WebM)
    pix_fmt: str
    bit_depth: int
    chroma: str  # "4:2:0", "4:2:2", "4:4:4"
    colorspace: int
    color_range: int
    color_primaries: int
    color_trc: int
    sample_aspect_ratio: Fraction | None
    audio_streams: list = field(default_factory=list)  # av.AudioStream
    skipped_streams: list[str] = field(default_factory=list)  # "subtitle #2 (subrip)"
    metadata: dict = field(default_factory=dict)  # container metadata
    stream_metadata: dict = field(default_factory=dict)  # the video stream's metadata

    def stream_info(self) -> StreamInfo:
        """The description sinks read: upright size, and a sample aspect ratio turned with
        the pixels."""
        sar = self.sample_aspect_ratio
        if sar and (self.rotation in (90, 270) or self.flip in ("transpose", "antitranspose")):
            sar = 1 / sar
        return StreamInfo(
            width=self.width, height=self.height, time_base=self.time_base,
            rate=self.average_rate,
            colors=ColorTags(self.colorspace, self.color_range, self.color_primaries,
                             self.color_trc),
            sample_aspect_ratio=sar, start_time=self.start_time, duration=self.duration,
            frames=self.frames, metadata=self.metadata, stream_metadata=self.stream_metadata)

    @property
    def notes(self) -> list[str]:
        """What the output will not keep as it was, one line each."""
        out = []
        if self.bit_depth > 8 or self.chroma != "4:2:0":
            out.append(f"input is {self.bit_depth}-bit {self.chroma} ({self.pix_fmt}); "
                       f"the output is 8-bit 4:2:0")
        if self.rotation or self.flip:
            turn = f"rotated {self.rotation} degrees clockwise" if self.rotation else ""
            flip = {"h": "mirrored", "v": "flipped vertically"}.get(self.flip, self.flip)
            what = " and ".join(x for x in (turn, flip) if x)
            out.append(f"input has a display matrix: frames are {what} to play upright and "
                       f"written without one")
        for s in self.skipped_streams:
            out.append(f"{s} is not copied (only video and audio are)")
        return out


def _chroma(fmt) -> str:
    if fmt.is_rgb or len(fmt.components) < 3:
        return "4:4:4"
    w, h = fmt.chroma_width(64), fmt.chroma_height(64)
    if w == 32 and h == 32:
        return "4:2:0"
    if w == 32:
        return "4:2:2"
    if w == 64 and h == 64:
        return "4:4:4"
    return f"{64 // max(w, 1)}:{64 // max(h, 1)} subsampled"


def _orientation(frame: av.VideoFrame) -> tuple[int, str]:
    """(clockwise rotation, extra flip) from the frame's display matrix, the way FFmpeg's
    own autorotate reads it. Never through `frame.side_data`: see display_matrix.py (an ICC
    profile there crashes the process, an EXIF block raises)."""
    known, m = read_display_matrix(frame)
    theta = (-frame.rotation) % 360  # frame.rotation is counter-clockwise; read safely in C
    if not known:  # no safe way to the matrix here: the rotation, without flips
        if theta % 90:
            raise MediaError(f"display matrix rotates by {theta} degrees; only multiples of "
                             f"90 are supported")
        return theta, ""
    if m is None:
        return 0, ""
    if theta == 90:
        return (90, "") if m[3] <= 0 else (0, "transpose")
    if theta == 270:
        return (270, "") if m[3] >= 0 else (0, "antitranspose")
    if theta == 180:
        hflip, vflip = m[0] < 0, m[4] < 0
        if hflip and vflip:
            return 180, ""
        return 0, "h" if hflip else ("v" if vflip else "")
    if theta == 0:
        return 0, "v" if m[4] < 0 else ""
    raise MediaError(f"display matrix rotates by {theta} degrees; only multiples of 90 are supported")


def _upright(img: np.ndarray, rotation: int, flip: str) -> np.ndarray:
    if rotation == 90:
        img = cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE)
    elif rotation == 180:
        img = cv2.rotate(img, cv2.ROTATE_180)
    elif rotation == 270:
        img = cv2.rotate(img, cv2.ROTATE_90_COUNTERCLOCKWISE)
    if flip == "h":
        img = cv2.flip(img, 1)
    elif flip == "v":
        img = cv2.flip(img, 0)
    elif flip == "transpose":
        img = cv2.transpose(img)
    elif flip == "antitranspose":
        img = cv2.flip(cv2.transpose(img), -1)
    return img


def _check_readable(path: Path) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise MediaError(f"{path}: no such file") from None
    except OSError as exc:
        raise MediaError(f"{path}: cannot read ({exc.strerror})") from None
    if path.is_dir():
        raise MediaError(f"{path}: is a folder")
    if st.st_size == 0:
        raise MediaError(f"{path}: empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise MediaError(f"{path}: cannot read (permission denied)")


def _video_info(path: Path, c, v, first: av.VideoFrame, audio: list, skipped: list[str]
                ) -> VideoInfo:
    """What the stream header and the first decoded frame say (the real pixel format,
    colour tags and display matrix are only known from a frame)."""
    rotation, flip = _orientation(first)
    fmt = first.format
    w, h = first.width, first.height
    turned = rotation in (90, 270) or flip in ("transpose", "antitranspose")
    tb = v.time_base or Fraction(1, 90000)
    duration = None
    if v.duration is not None:
        duration = float(v.duration * tb)
    elif c.duration is not None:
        duration = c.duration / av.time_base
    start = float(v.start_time * tb) if v.start_time is not None else None
    rate = v.average_rate or v.guessed_rate
    return VideoInfo(
        path=path, container=c.format.name, codec=v.codec_context.name,
        coded_width=w, coded_height=h, width=h if turned else w,
        height=w if turned else h, rotation=rotation, flip=flip, time_base=tb,
        average_rate=rate if rate else None, start_time=start, duration=duration,
        frames=int(v.frames or 0), pix_fmt=fmt.name,
        bit_depth=max(comp.bits for comp in fmt.components), chroma=_chroma(fmt),
        colorspace=int(first.colorspace), color_range=int(first.color_range),
        color_primaries=int(first.color_primaries), color_trc=int(first.color_trc),
        sample_aspect_ratio=v.sample_aspect_ratio or None,
        audio_streams=audio, skipped_streams=skipped,
        metadata=dict(c.metadata), stream_metadata=dict(v.metadata))


def _expected_end(c, v, audio_streams: list) -> float | None:
    """When the video stream should end, in seconds, from what the file says: the
    stream's duration, Matroska's per-track DURATION tag, or, for a file with no other
    stream that could be longer, the container's duration. None when it does not say."""
    start = float(v.start_time * v.time_base) if v.start_time is not None else 0.0
    if v.duration is not None:
        return start + float(v.duration * v.time_base)
    tag = v.metadata.get("DURATION") or v.metadata.get("duration")
    if tag:
        try:
            h, m, sec = tag.split(":")
            return start + int(h) * 3600 + int(m) * 60 + float(sec)
        except ValueError:
            pass
    if c.duration is not None and not audio_streams and len(c.streams) == 1:
        first = c.start_time / av.time_base if c.start_time is not None else start
        return first + c.duration / av.time_base
    return None


class VideoFileSource(Source):
    """Frames of a video file's first video stream, decoded to uint8 BGR, upright."""

    name = "video file"

    def __init__(self, path: str | os.PathLike[str], *, copy_audio: bool = True,
                 threads: int = 0):
        """`threads`: decoder threads, 0 for FFmpeg's choice (one per CPU)."""
        self.path = Path(path)
        self._threads = threads
        _check_readable(self.path)
        try:
            self._container = av.open(str(self.path), "r")
        except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
            raise MediaError(f"{self.path.name}: not a video file FFmpeg can read "
                             f"({ffmpeg_reason(exc)})") from None
        except OSError as exc:
            raise MediaError(f"{self.path}: cannot read ({exc.strerror})") from None
        self.decoded = 0
        self.fixed_pts = 0  # frames whose missing or non-increasing pts was replaced
        try:
            self._probe(copy_audio)
        except BaseException:
            self.close()
            raise

    def _probe(self, copy_audio: bool) -> None:
        c = self._container
        v = self._video_stream()
        self._stream = v
        cc = v.codec_context
        cc.thread_type = "AUTO"
        cc.thread_count = self._threads
        audio, skipped = [], []
        for s in c.streams:
            if s is v:
                continue
            if s.type == "audio" and copy_audio:
                audio.append(s)
            else:
                name = s.codec_context.name if s.codec_context is not None else "data"
                skipped.append(f"{s.type} stream #{s.index} ({name})")
        self._audio_streams = audio
        self.audio = AudioTrack(audio) if audio else None
        # MP4/MOV index every sample, so their count is the number of packets to expect.
        # Other containers' counts are not packet counts (AVI's header counts ticks of its
        # time base, empty ones included) or are absent: 0, the container does not say.
        self._expected_packets = int(v.frames or 0) if c.format.name in _INDEXED else 0
        self._video_packets = 0
        self._last_corrupt = False
        self.skipped_packets = 0  # video packets the decoder rejected (damage)
        self.read_errors = 0  # read errors the demuxer resynced after
        self._read_errors = 0  # in a row
        self._skip_reason = ""
        self._ended_by = ""  # why reading stopped early, when it did
        self.warnings: list[str] = []  # what the user must be told after decoding
        self._demux = c.demux(v, *audio)
        self._pending: list[av.VideoFrame] = []
        # The first frame says what the stream header may not: the real pixel format,
        # colour tags and the display matrix.
        first = self._next_decoded()
        if first is None:
            raise MediaError(f"{self.path.name}: the video stream has no frames")
        self._pending.append(first)
        self.probe = _video_info(self.path, c, v, first, audio, skipped)
        self.info = self.probe.stream_info()

    def _video_stream(self) -> av.video.stream.VideoStream:
        """The first real video stream (cover art is a one-picture "video" stream)."""
        c = self._container
        if not c.streams.video:
            kinds = ", ".join(sorted({s.type for s in c.streams})) or "no streams"
            raise MediaError(f"{self.path.name}: no video stream (it has {kinds})")
        pictures = [s for s in c.streams.video
                    if not s.disposition & av.stream.Disposition.attached_pic]
        if not pictures:
            raise MediaError(f"{self.path.name}: no video stream (only a cover picture)")
        v = pictures[0]
        if v.codec_context is None:
            raise MediaError(f"{self.path.name}: the video codec is unknown to this FFmpeg "
                             f"build, so it cannot be decoded")
        if v.codec_context.name in TEXT_ART_CODECS:
            # FFmpeg's text-art demuxers take any file they do not recognise (random bytes
            # read as "bin", text as "tty") and draw it as characters: not a video.
            raise MediaError(f"{self.path.name}: not a video file (FFmpeg only reads it as "
                             f"text, {v.codec_context.name})")
        return v

    def _next_decoded(self) -> av.VideoFrame | None:
        """The next decoded video frame; audio packets met on the way are queued.

        Damage is decoded past the way the ffmpeg tool does it: a packet the decoder rejects
        is skipped (counted in `skipped_packets`), and after a read error the demuxer is
        asked again from where it stopped (it resyncs on the next cluster or chunk it can
        parse), up to _MAX_READ_ERRORS times in a row; `warnings` says what was lost."""
        v = self._stream
        while True:
            if self._pending:
                return self._pending.pop(0)
            try:
                packet = next(self._demux)
                self._read_errors = 0
            except StopIteration:
                self._check_complete()
                return None
            except av.error.FFmpegError as exc:
                self._read_errors += 1
                reason = ffmpeg_reason(exc)
                if self._read_errors > _MAX_READ_ERRORS:
                    self._ended_by = reason
                    self._check_complete()
                    return None
                self.read_errors += 1
                self._demux = self._container.demux(self._stream, *self._audio_streams)
                continue
            if packet.stream is not v:
                if packet.size and packet.dts is not None and self.audio is not None:
                    self.audio.packets.append(packet)
                continue
            if packet.size:
                self._video_packets += 1
                self._last_corrupt = packet.is_corrupt
            try:
                frames = v.decode(packet)
            except av.error.FFmpegError as exc:
                self.skipped_packets += 1
                self._skip_reason = self._skip_reason or ffmpeg_reason(exc)
                continue
            self._pending.extend(frames)

    def _check_complete(self) -> None:
        """The demuxer ended: refuse a stream that stopped short of what the container
        promised, or whose last packet was cut (a truncated download or copy). A decoder
        running on several threads may conceal such damage instead of reporting it."""
        expected, got = self._expected_packets, self._video_packets
        if (expected and got < expected) or self._last_corrupt:
            promised = f" of {expected}" if expected else ""
            raise MediaError(f"{self.path.name}: the file is damaged or truncated: it ends after "
                             f"{got}{promised} video packets")

    def _end_warnings(self, frames: int, end_s: float | None, interval_s: float) -> list[str]:
        out = []
        if self.skipped_packets or self.read_errors:
            what = []
            if self.skipped_packets:
                what.append(f"{self.skipped_packets} damaged video packet(s) could not be "
                            f"decoded ({self._skip_reason})")
            if self.read_errors:
                what.append(f"{self.read_errors} unreadable stretch(es) were skipped")
            out.append(f"{self.path.name} is damaged: {'; '.join(what)}; {frames} frames "
                       f"written")
        expected = _expected_end(self._container, self._stream, self._audio_streams)
        if expected is not None and end_s is not None:
            short = expected - end_s
            if short > max(2.5 * interval_s, 0.25):
                why = f" ({self._ended_by})" if self._ended_by else ""
                out.append(f"{self.path.name} ends early{why}: {frames} frames written, up to "
                           f"{end_s:.2f} s of the {expected:.2f} s the file says it lasts; it is "
                           f"probably truncated")
        elif self._ended_by:
            out.append(f"{self.path.name}: reading stopped at damage ({self._ended_by}); "
                       f"{frames} frames written")
        return out

    def frames(self) -> Iterator[Frame]:
        """Decode the whole stream (call once). Runs in the pipeline's source thread."""
        probe = self.probe
        tb = probe.time_base
        step = 1
        if probe.average_rate:
            step = max(1, round(1 / (probe.average_rate * tb)))
        rotation, flip = probe.rotation, probe.flip
        last_pts: int | None = None
        last_duration = step
        gap_ticks = max(10 * step, round(1.0 / tb))
        gaps: list[tuple[int, float]] = []  # (frame index after the gap, seconds)
        index = 0
        try:
            while not self.stop_requested:
                vf = self._next_decoded()
                if vf is None:
                    end = None if last_pts is None else float((last_pts + last_duration) * tb)
                    self.warnings = self._end_warnings(index, end, float(step * tb))
                    if gaps:
                        worst = max(gaps, key=lambda g: g[1])
                        self.warnings.append(
                            f"{self.path.name} has {len(gaps)} gap(s) with no frames (the "
                            f"longest {worst[1]:.2f} s, before frame {worst[0]}): damaged data "
                            f"was probably skipped; {index} frames written")
                    break
                pts = vf.pts
                if pts is None:
                    pts = 0 if last_pts is None else last_pts + step
                    self.fixed_pts += 1
                elif last_pts is not None and pts <= last_pts:
                    pts = last_pts + 1
                    self.fixed_pts += 1
                if last_pts is not None and pts - last_pts > gap_ticks:
                    # frames missing in the middle: a damaged stretch the demuxer resynced
                    # past without an error (Matroska does); real pauses this long are rare
                    gaps.append((index, float((pts - last_pts) * tb)))
                last_pts = pts
                last_duration = vf.duration or step
                img = vf.to_ndarray(format="bgr24", src_color_range=vf.color_range)
                if rotation or flip:
                    img = _upright(img, rotation, flip)
                self.decoded = index + 1
                yield Frame(index=index, pts=pts, time_base=tb, capture_time=time.monotonic(),
                            image=img, duration=vf.duration or None)
                index += 1
        finally:
            self.close()

    def describe(self) -> str:
        p = self.probe
        return f"{self.path.name} ({p.codec} {p.width}x{p.height} in {p.container})"

    def _release(self) -> None:
        c, self._container = self._container, None
        if c is not None:
            c.close()
