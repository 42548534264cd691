"""A live network stream: H.264 in MPEG-TS over UDP (or SRT), or in FLV over RTMP, via PyAV.

    udp://127.0.0.1:5000            MPEG-TS, 1316-byte datagrams (7 TS packets); ffplay,
                                    VLC and OBS (Media Source) read it as is
    srt://host:port                 MPEG-TS over SRT, where the FFmpeg build has it
    rtmp://host/app/key (rtmps://)  FLV, for nginx-rtmp, OBS, Twitch, YouTube ...

x264 runs with the low-latency settings: preset ultrafast, tune zerolatency (no B-frames,
no lookahead, sliced threads, so a frame leaves the encoder as soon as it went in), a key
frame every `gop_s` seconds (1 by default, so a viewer who joins late waits at most that
long), and a bitrate cap with a one-second buffer (what RTMP services expect).
With MPEG-TS the SPS/PPS are repeated before every key frame (libavcodec turns x264's
repeat-headers on when the container has no global header); FLV gets them once, in its
header.

Timestamps follow the capture clock (pts = capture time since the first frame, in ms), so
dropped frames leave gaps instead of speeding the video up, and audio from another source
could be synchronised against the same clock.
"""
from __future__ import annotations

import re
from fractions import Fraction

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from streamer.errors import UserError
from streamer.frame import Frame
from streamer.stages import Sink

_FORMATS = {"udp": "mpegts", "srt": "mpegts", "rtp": "rtp_mpegts", "tcp": "mpegts",
            "rtmp": "flv", "rtmps": "flv"}
#: what each kind of URL looks like, for the hints: RTMP names a server application and a
#: stream key, its port defaults to 1935
_FORMS = {s: f"{s}://HOST:PORT" for s in ("udp", "srt", "rtp", "tcp")} | {
    s: f"{s}://HOST[:PORT]/APP/KEY" for s in ("rtmp", "rtmps")}


class StreamError(UserError):
    """A network stream problem, in one line for the user."""


def scheme_of(url: str) -> str | None:
    m = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://", url)
    return m.group(1).lower() if m else None


def is_stream_url(url: str) -> bool:
    return scheme_of(url) in _FORMATS


def check_stream_url(url: str) -> None:
    """Refuse a stream URL that cannot work, before anything starts (FFmpeg would only say
    so once the camera and the model are up, or take port 99999 as port 34463): a host, for
    udp/srt/tcp/rtp a port in 1..65535, for rtmp an application and a stream key."""
    from urllib.parse import urlsplit

    scheme = scheme_of(url)
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError when not a number or out of 0..65535
    except ValueError:
        raise StreamError(f"{url}: the port must be a number in 1..65535") from None
    if not parts.hostname:
        raise StreamError(f"{url}: no host given (use {_FORMS[scheme]})")
    rtmp = scheme in ("rtmp", "rtmps")
    if port is None and not rtmp:
        raise StreamError(f"{url}: no port given (use {scheme}://{parts.hostname}:PORT)")
    if port is not None and not 1 <= port <= 65535:
        raise StreamError(f"{url}: the port must be a number in 1..65535")
    if rtmp and len([p for p in parts.path.split("/") if p]) < 2:
        # FFmpeg connects, then the server drops a publish without a key
        raise StreamError(f"{url}: an RTMP URL names the server's application and the "
                          f"stream key (use {scheme}://{parts.netloc}/APP/KEY, e.g. "
                          f"{scheme}://{parts.netloc}/live/KEY)")


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split())


class NetworkSink(Sink):
    name = "network"

    def __init__(self, url: str, width: int, height: int, fps: float, *,
                 bitrate_kbps: int = 2500, gop_s: float = 1.0, codec: str = "libx264"):
        scheme = scheme_of(url)
        if scheme not in _FORMATS:
            raise StreamError(f"unsupported stream URL {url!r}: use {_FORMS['udp']}, "
                              f"{_FORMS['srt']} or {_FORMS['rtmp']}")
        check_stream_url(url)
        if width % 2 or height % 2:
            raise StreamError(f"H.264 4:2:0 needs an even size, got {width}x{height}")
        self.url, self.scheme = url, scheme
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        fmt = _FORMATS[scheme]
        target = url
        if scheme == "udp" and "pkt_size" not in url:
            target += ("&" if "?" in url else "?") + "pkt_size=1316"
        container_options = {"flush_packets": "1"}
        if fmt == "flv":
            container_options["flvflags"] = "no_duration_filesize"
        if fmt == "mpegts":
            container_options.update({"muxdelay": "0", "muxpreload": "0"})
        try:
            self._out = av.open(target, "w", format=fmt, container_options=container_options,
                                timeout=10.0)
        except (av.error.FFmpegError, OSError) as exc:
            hint = "; is the server running and the stream key right?" if fmt == "flv" else ""
            raise StreamError(f"cannot open {url}: {_reason(exc)}{hint}") from None
        try:
            self._setup(codec, bitrate_kbps, gop_s)
        except BaseException:
            self.close()
            raise
        self.frames = 0
        self.bytes = 0
        self._t0: float | None = None
        self._last_pts = -1

    def _setup(self, codec: str, bitrate_kbps: int, gop_s: float) -> None:
        rate = Fraction(self.fps).limit_denominator(1001)
        gop = max(1, round(self.fps * gop_s))
        options = {"g": str(gop), "keyint_min": str(gop), "bf": "0"}
        if codec == "libx264":
            options.update({"preset": "ultrafast", "tune": "zerolatency",
                            "sc_threshold": "0"})
        kbps = int(bitrate_kbps)
        options.update({"maxrate": f"{kbps}k", "bufsize": f"{kbps}k"})
        try:
            v = self._out.add_stream(codec, rate=rate, options=options)
        except (ValueError, av.error.FFmpegError) as exc:
            raise StreamError(f"cannot encode {codec} for {self.url}: {_reason(exc)}") from None
        v.width, v.height, v.pix_fmt = self.width, self.height, "yuv420p"
        self.time_base = Fraction(1, 1000)
        v.time_base = self.time_base
        cc = v.codec_context
        cc.time_base = self.time_base
        cc.framerate = rate
        cc.bit_rate = kbps * 1000
        try:
            cc.open()
        except av.error.FFmpegError as exc:
            raise StreamError(f"encoder {codec} rejected {self.width}x{self.height}: "
                              f"{_reason(exc)}") from None
        self._video = v
        self._reformatter = VideoReformatter()
        try:
            # Connect and write the header now, so a server that is not there is an error
            # before the model loads rather than at the first frame.
            self._out.start_encoding()
        except (av.error.FFmpegError, OSError) as exc:
            hint = ("; is the server running and the stream key right?"
                    if self.scheme.startswith("rtmp") else "")
            raise StreamError(f"cannot open {self.url}: {_reason(exc)}{hint}") from None

    def describe(self) -> str:
        return f"stream {self.url} ({self._video.codec_context.name}, {self.width}x{self.height})"

    def write(self, frame: Frame) -> None:
        img = frame.image
        if img.shape[:2] != (self.height, self.width):
            raise StreamError(f"frame is {img.shape[1]}x{img.shape[0]}, the stream "
                              f"{self.width}x{self.height}")
        if img.flags.c_contiguous:
            vf = av.VideoFrame.from_numpy_buffer(img, "bgr24")
        else:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), "bgr24")
        vf = self._reformatter.reformat(vf, format="yuv420p")
        if self._t0 is None:
            self._t0 = frame.capture_time
        pts = round((frame.capture_time - self._t0) * 1000)
        if pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        vf.pts = pts
        vf.time_base = self.time_base
        self._mux(self._video.encode(vf))
        self.frames += 1

    def _mux(self, packets) -> None:
        try:
            for p in packets:
                self.bytes += p.size
                self._out.mux(p)
        except (av.error.FFmpegError, OSError) as exc:
            raise StreamError(f"the stream to {self.url} broke: {_reason(exc)}") from None

    def finish(self) -> None:
        if self._out is None:
            return
        self._mux(self._video.encode(None))
        self.close()

    def _release(self) -> None:
        out, self._out = getattr(self, "_out", None), None
        if out is not None:
            try:
                out.close()
            except (av.error.FFmpegError, OSError):
                pass
