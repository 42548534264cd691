"""Re-encode one audio stream for a container that cannot hold it as it is, in step with its
timestamps.

The encoder is the container's usual audio codec (Opus for WebM and Matroska, AAC for MP4,
MOV, FLV and MPEG-TS, MP3 for AVI), at the input's channel layout and sample rate where the
encoder takes them, with a bit rate per channel that is transparent for speech and music.

Timing: decoded frames are converted to the encoder's sample format, layout and rate and
stamped from a running sample count that starts at the input stream's first timestamp, so
the audio starts where the input's did, relative to the video (whose timestamps the video
sink keeps), and lasts as long. The encoder's own priming is the muxer's to signal (Opus
pre-skip, MP4 edit lists). Where the input's timestamps say a stretch is missing (damage, a
pause in a recording) silence fills it, and where they overlap the overlap is dropped, so
the output never drifts from them by more than SLACK. A packet the decoder rejects is
skipped and counted (`skipped`); the silence rule covers the hole it leaves. AVI has no
audio timestamps (a sample's time is its position) and no way to skip an encoder's
priming, so there the count starts at 0, silence fills the time before the input's first
sample, and as many samples as the encoder primes with are left out of that lead-in.
"""
from __future__ import annotations

from fractions import Fraction

import av

from .outputs import OutputError

#: timestamp disagreement (seconds) tolerated before silence is added or audio dropped:
#: under a video frame, and far above the rounding of millisecond time bases
SLACK = Fraction(1, 25)
#: a jump forward longer than this is a broken timestamp, not a pause: nothing is filled
MAX_GAP = Fraction(600)

#: the re-encode per container, the first this FFmpeg build has
ENCODERS = {"webm": ("libopus", "libvorbis", "opus", "vorbis"),
            "matroska": ("libopus", "aac"), "nut": ("libopus", "aac"),
            "mp4": ("aac",), "mov": ("aac",), "flv": ("aac", "libmp3lame"),
            "mpegts": ("aac", "mp2"), "avi": ("libmp3lame", "ac3", "mp2")}
_EXPERIMENTAL = {"opus", "vorbis"}  # FFmpeg's own encoders of these need strict=-2
# kbit/s per channel, by codec: transparent for speech and music at these rates
_KBPS = {"opus": 64, "vorbis": 80, "aac": 96, "mp3": 96, "ac3": 96, "mp2": 96}
_MAX_KBPS = {"mp3": 320, "mp2": 384, "ac3": 640}
CODEC_NAMES = {"opus": "Opus", "vorbis": "Vorbis", "aac": "AAC", "mp3": "MP3", "ac3": "AC-3",
               "mp2": "MP2"}


def encoder_for(fmt: str) -> str | None:
    """The audio encoder a re-encode into container `fmt` uses (None: none in this build)."""
    for name in ENCODERS.get(fmt, ()):
        try:
            av.codec.Codec(name, "w")
        except Exception:  # UnknownCodecError: not in this build
            continue
        return name
    return None


def codec_name(encoder: str) -> str:
    """What `encoder` writes, as people call it: "Opus" for libopus."""
    codec = av.codec.Codec(encoder, "w").canonical_name
    return CODEC_NAMES.get(codec, codec)


def describe_encoder(encoder: str) -> str:
    """'Opus at 64 kbit/s a channel': what a re-encode with `encoder` writes."""
    codec = av.codec.Codec(encoder, "w").canonical_name
    return f"{codec_name(encoder)} at {_bit_rate(codec, 1) // 1000} kbit/s a channel"


def _bit_rate(codec: str, channels: int) -> int:
    kbps = _KBPS.get(codec, 96) * max(1, channels)
    return 1000 * min(kbps, _MAX_KBPS.get(codec, kbps))


def _rate(rates, wanted: int) -> int:
    """The input's rate where the encoder takes it, else the nearest rate above it (Opus
    only runs at 48 kHz and its divisors), else the highest it has."""
    if not rates or wanted in rates:
        return wanted or 48000
    above = [r for r in rates if r >= wanted]
    return min(above) if above else max(rates)


def _settings(encoder: str, dec) -> list[dict]:
    """Candidate encoder settings for decoder context `dec`: its layout first, then the
    channel count's default layout, then stereo (MP3 and MP2 take at most two channels)."""
    codec = av.codec.Codec(encoder, "w")
    formats = [f.name for f in codec.audio_formats or ()]
    sample_fmt = dec.format.name if dec.format is not None and dec.format.name in formats \
        else (formats[0] if formats else None)
    rate = _rate(codec.audio_rates, dec.sample_rate or 48000)
    channels = dec.layout.nb_channels if dec.layout is not None else 2
    own = dec.layout.name if dec.layout is not None else None
    if own and own.endswith("channels"):  # a count without an order: the count's default
        own = None
    layouts = []
    for layout in (own, av.AudioLayout(f"{channels}c").name if channels else None, "stereo"):
        if layout and layout not in layouts:
            layouts.append(layout)
    options = {"strict": "experimental"} if encoder in _EXPERIMENTAL else {}
    return [{"rate": rate, "format": sample_fmt, "layout": layout, "options": options,
             "bit_rate": _bit_rate(codec.canonical_name, av.AudioLayout(layout).nb_channels)}
            for layout in layouts]


def _configure(ctx, s: dict) -> None:
    ctx.sample_rate = s["rate"]
    ctx.layout = s["layout"]
    if s["format"]:
        ctx.format = s["format"]
    ctx.bit_rate = s["bit_rate"]
    ctx.time_base = Fraction(1, s["rate"])
    ctx.options = dict(s["options"])


def add_encoded_stream(out, s, encoder: str, name: str):
    """An output stream in container `out` that `encoder` feeds with input audio stream
    `s` re-encoded, its encoder open (so a failure is one line before any work), with the
    input's metadata and disposition set by the caller. OutputError when it cannot be."""
    dec = s.codec_context
    what = f"audio stream #{s.index}"
    if dec is None:
        raise OutputError(f"{name}: {what} is in a codec this FFmpeg cannot decode, so it "
                          f"cannot be re-encoded; use --audio copy with a container that "
                          f"holds it (.mkv), or --audio none")
    try:
        dec.open(strict=False)
    except av.error.FFmpegError as exc:
        raise OutputError(f"{name}: cannot decode {what} ({dec.name}) to re-encode it "
                          f"({exc.strerror}); use --audio none to leave it out") from None
    chosen, reason = None, ""
    for settings in _settings(encoder, dec):
        trial = av.CodecContext.create(encoder, "w")
        _configure(trial, settings)
        try:
            trial.open()
        except av.error.FFmpegError as exc:
            reason = reason or exc.strerror or str(exc)
            continue
        finally:
            del trial
        chosen = settings
        break
    if chosen is None:
        raise OutputError(f"{name}: the {encoder} encoder cannot take {what} ({dec.name}, "
                          f"{dec.layout.name if dec.layout else '?'} at {dec.sample_rate} Hz: "
                          f"{reason}); use --audio none to leave it out")
    try:
        a = out.add_stream(encoder, rate=chosen["rate"])
    except ValueError:
        raise OutputError(f"{name}: the {out.format.name} container cannot hold {encoder} "
                          f"audio; use --audio none to leave it out") from None
    _configure(a.codec_context, chosen)
    a.time_base = Fraction(1, chosen["rate"])
    try:
        a.codec_context.open()
    except av.error.FFmpegError as exc:  # the trial above opened: not expected
        raise OutputError(f"{name}: the {encoder} encoder cannot start for {what} "
                          f"({exc.strerror}); use --audio none to leave it out") from None
    return a


def priming(encoder: str, sample_fmt: str, layout: str, rate: int) -> int:
    """How many samples `encoder` puts before the first input sample (its initial padding,
    which players skip only where the container says so): a trial on a few silent frames."""
    ctx = av.CodecContext.create(encoder, "w")
    _configure(ctx, {"rate": rate, "format": sample_fmt, "layout": layout, "bit_rate": 0,
                     "options": {"strict": "experimental"} if encoder in _EXPERIMENTAL else {}})
    ctx.open()
    n = ctx.frame_size or 1024
    for i in range(16):
        f = av.AudioFrame(format=sample_fmt, layout=layout, samples=n)
        for plane in f.planes:
            plane.update(bytes(plane.buffer_size))
        f.sample_rate, f.pts, f.time_base = rate, i * n, Fraction(1, rate)
        packets = ctx.encode(f)
        if packets:
            return max(0, -(packets[0].pts or 0))
    return 0


class AudioTranscoder:
    """Decode packets of one input audio stream and encode them into one output stream
    (see the module docstring for the timing). Runs in the sink's thread only."""

    def __init__(self, decoder, stream, *, from_zero: bool = False):
        """`decoder`: the input stream's codec context; `stream`: the output stream from
        add_encoded_stream (its encoder open); `from_zero`: the container places audio by
        position (AVI), so the output starts at 0 and silence leads up to the input's start."""
        self._dec = decoder
        self._from_zero = from_zero
        self._stream = stream
        cc = stream.codec_context
        self._format, self._layout, self._rate = cc.format.name, cc.layout.name, cc.sample_rate
        self._tb = Fraction(1, self._rate)
        self._lead_out = Fraction(priming(cc.codec.name, self._format, self._layout,
                                          self._rate), self._rate) if from_zero else None
        self._resampler = None
        self._template = None  # (format, layout, rate) the resampler was made for
        self._next: int | None = None  # the next output sample's pts, in 1/rate
        self._in_end: Fraction | None = None  # where the input's last frame ended, seconds
        self._trim = Fraction(0)  # seconds still to drop from the input (overlap, priming)
        self.skipped = 0  # packets the decoder rejected
        self.jumps = 0  # timestamp jumps too long to be pauses

    def encode(self, packet) -> list:
        """The output packets that `packet` (of the input stream) completes."""
        try:
            frames = self._dec.decode(packet)
        except av.error.FFmpegError:
            self.skipped += 1  # damage: the next frame's timestamp says how much is missing
            return []
        out: list = []
        for f in frames:
            out += self._frame(f)
        return out

    def flush(self) -> list:
        """The rest: the decoder's, the resampler's and the encoder's buffered audio."""
        out: list = []
        try:
            for f in self._dec.decode(None):
                out += self._frame(f)
        except av.error.FFmpegError:
            self.skipped += 1
        if self._resampler is not None:
            out += self._encode(self._resampler.resample(None))
        out += self._stream.encode(None)
        return out

    # --- timing ----------------------------------------------------------------------------

    def _frame(self, f) -> list:
        t = f.pts * f.time_base if f.pts is not None and f.time_base is not None else None
        duration = Fraction(f.samples, f.sample_rate)
        out: list = []
        if self._next is None and self._lead_out is not None:
            # by position (AVI): from 0, exactly, less the encoder's priming
            self._next = 0
            lead = (t or 0) - self._lead_out
            if 0 < lead <= MAX_GAP:
                out += self._silence(f, lead)
            elif lead < 0:
                self._trim = -lead
        elif self._next is None:
            self._next = round(t * self._rate) if t is not None else 0
        elif t is not None and self._in_end is not None:
            gap = t - self._in_end
            if SLACK < gap <= MAX_GAP:
                out += self._silence(f, gap)
            elif gap > MAX_GAP:
                self.jumps += 1
            elif gap < -SLACK:
                self._trim = -gap
        if t is not None:
            self._in_end = t + duration
        elif self._in_end is not None:
            self._in_end += duration
        if self._trim > 0:  # what overlaps (or primes) may span several frames
            cut = min(self._trim, duration)
            self._trim -= cut
            f = _trimmed(f, cut)
        if f is not None:
            out += self._convert(f)
        return out

    def _silence(self, like, seconds: Fraction) -> list:
        """`seconds` of silence in the format of frame `like`, a second at a time."""
        out: list = []
        left = round(seconds * like.sample_rate)
        fill = b"\x80" if like.format.name.startswith("u8") else b"\x00"
        while left > 0:
            n = min(left, like.sample_rate)
            z = av.AudioFrame(format=like.format.name, layout=like.layout.name, samples=n)
            for plane in z.planes:
                plane.update(fill * plane.buffer_size)
            z.sample_rate = like.sample_rate
            out += self._convert(z)
            left -= n
        return out

    def _convert(self, f) -> list:
        """Into the encoder's format, layout and rate; a decoder that changes its output
        mid-stream (a new channel layout) gets a new resampler after the old one drains."""
        key = (f.format.name, f.layout.name, f.sample_rate)
        out: list = []
        if key != self._template:
            if self._resampler is not None:
                out += self._encode(self._resampler.resample(None))
            self._resampler = av.AudioResampler(format=self._format, layout=self._layout,
                                                rate=self._rate)
            self._template = key
        f.pts = None  # the running count stamps the output; see _encode
        return out + self._encode(self._resampler.resample(f))

    def _encode(self, frames) -> list:
        out: list = []
        for g in frames:
            if g is None or not g.samples:
                continue
            g.pts, g.time_base = self._next, self._tb
            self._next += g.samples
            out += self._stream.encode(g)
        return out


def _trimmed(f, seconds: Fraction):
    """Frame `f` without its first `seconds` (None when nothing is left)."""
    n = round(seconds * f.sample_rate)
    if n >= f.samples:
        return None
    arr = f.to_ndarray()
    arr = arr[:, n:] if f.format.is_planar else arr[:, n * f.layout.nb_channels:]
    g = av.AudioFrame.from_ndarray(arr.copy(), format=f.format.name, layout=f.layout.name)
    g.sample_rate = f.sample_rate
    return g
