"""The output's audio: each of the input's audio streams copied packet for packet, re-encoded,
or left out, as `--audio` says, decided (and every encoder opened) before any work.

- `auto` (the default): copy a stream when the container holds its codec and players read
  it back; re-encode the others into the container's usual codec (audio_encode.py), with
  one note line. So `clip.mp4 -o clip.webm` keeps the phone's AAC audio, as Opus.
- `copy`: copy every stream or refuse, in one line that names the containers which hold
  the codec (and, with --background transparent, also carry alpha) and `--audio encode`.
- `encode`: re-encode every stream (a smaller file, or a codec every player reads).
- `none`: no audio.

Every stream is kept (each language track, commentary, ...), with its metadata and
disposition. "Holds" is tested, not looked up: the stream is added to an in-memory output of
the same container and its header written, which is where muxers refuse (AAC in WebM, Opus
in MOV, Vorbis in MP4 without experimental mode); containers whose muxers write more than
players read (FLV, AVI, MPEG-TS) also go by the list of codecs that play from them.
"""
from __future__ import annotations

import io
from fractions import Fraction

import av

from .audio_encode import (MAX_GAP, SLACK, AudioTranscoder, add_encoded_stream, codec_name,
                           describe_encoder, encoder_for)
from .outputs import ALPHA_ENCODERS, FORMATS, ContainerCannotHold, OutputError, keep_key
from .video_packets import SinkStats

AUDIO_MODES = ("auto", "copy", "encode", "none")

#: audio codecs that play back from containers whose muxer accepts more than players read
#: (FFmpeg's FLV muxer writes Opus and FLAC as "enhanced FLV", which ffprobe 7 and players
#: do not read, and aborts the process on PCM; AVI takes anything as an opaque tag; MPEG-TS
#: has no mapping for most PCM). Containers not listed: what the muxer accepts plays. No
#: trial is made of a codec that is not listed (the muxer may abort).
_AUDIO_THAT_PLAYS = {
    "flv": frozenset({"aac", "mp3", "adpcm_swf", "nellymoser", "speex"}),
    "avi": frozenset({"mp3", "mp2", "aac", "ac3", "pcm_s16le", "pcm_u8", "pcm_s24le",
                      "pcm_f32le", "pcm_alaw", "pcm_mulaw", "adpcm_ms", "adpcm_ima_wav"}),
    "mpegts": frozenset({"aac", "aac_latm", "mp3", "mp2", "mp1", "ac3", "eac3", "dts",
                         "truehd", "opus", "s302m"}),
}
#: containers that place audio by its position, not a timestamp: audio that does not start
#: at 0 is re-encoded there (with silence before it), or it would play early
_POSITIONAL = frozenset({"avi"})
#: the containers a refusal may suggest, in the order it names them
_SUGGESTIONS = (".mkv", ".mp4", ".mov", ".webm")


def audio_codec(s) -> str:
    """The codec's own name ("mp3", not the decoder's "mp3float")."""
    cc = s.codec_context
    if cc is None:
        return "unknown"
    return cc.codec.canonical_name or cc.name


def _muxer_takes(fmt: str, s) -> bool:
    """Whether the muxer of `fmt` writes input audio stream `s` as it is (an in-memory
    trial: the stream added and the header written)."""
    trial = av.open(io.BytesIO(), "w", format=fmt)
    try:
        trial.add_stream_from_template(s)
        trial.start_encoding()
    except (ValueError, av.error.FFmpegError):
        return False
    finally:
        try:
            trial.close()
        except Exception:  # noqa: BLE001 - an in-memory trial that never started
            pass
    return True


def _plays(fmt: str, s) -> bool:
    playable = _AUDIO_THAT_PLAYS.get(fmt)
    return playable is None or audio_codec(s) in playable


def _unordered(s) -> bool:
    """The stream gives a channel count but no layout (PCM from Matroska, WAV, AVI)."""
    cc = s.codec_context
    return cc is not None and cc.layout is not None and cc.layout.name.endswith("channels")


def why_not(fmt: str, s) -> str | None:
    """None when container `fmt` holds input audio stream `s` as it is and players read it
    back; else why not, in words for a refusal."""
    codec, where = audio_codec(s), f"(stream #{s.index})"
    if not _plays(fmt, s):
        return f"{codec} audio {where} in {fmt} is written but does not play"
    # MP4 writes PCM's channel layout at the end, and fails there without one
    if not _muxer_takes(fmt, s) or (fmt == "mp4" and codec.startswith("pcm_")
                                    and _unordered(s)):
        return f"the {fmt} container cannot hold the input's {codec} audio {where}"
    return None


def holds(fmt: str, s) -> bool:
    """Whether container `fmt` holds input audio stream `s` as it is, and players read it."""
    return why_not(fmt, s) is None


def _holds_video(fmt: str, codec: str) -> bool:
    trial = av.open(io.BytesIO(), "w", format=fmt)
    try:
        trial.add_stream(codec)
        return True
    except (ValueError, av.error.FFmpegError):
        return False
    finally:
        trial.close()


def containers_that_hold(s, *, alpha: bool = False, video_codec: str | None = None) -> list[str]:
    """The common suffixes (.mkv, .mp4, .mov, .webm) whose container holds audio stream `s`
    as it is and, with `alpha`, carries an alpha channel, and holds `video_codec` if given."""
    out = []
    for suffix in _SUGGESTIONS:
        fmt = FORMATS[suffix]
        if alpha and fmt not in ALPHA_ENCODERS:
            continue
        if video_codec and not _holds_video(fmt, video_codec):
            continue
        if holds(fmt, s):
            out.append(suffix)
    return out


def _listed(items: list[str], word: str = "or") -> str:
    """"a, b or c" (`word`: "or", "and")."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {word} {items[-1]}"


def cannot_hold(s, fmt: str, name: str, *, alpha: bool = False,
                video_codec: str | None = None, encode_hint: str = "") -> ContainerCannotHold:
    """The one-line refusal for audio stream `s` that container `fmt` cannot hold as it is,
    naming only containers that carry everything asked for (`encode_hint`: how a re-encode
    would go, when the caller can offer one)."""
    where = containers_that_hold(s, alpha=alpha, video_codec=video_codec)
    ways = [f"use {_listed(where)}"] if where else []
    if encode_hint:
        ways.append(encode_hint)
    what = why_not(fmt, s) or f"the {fmt} container cannot hold stream #{s.index}"
    if "does not play" not in what:
        what += " without re-encoding"
    return ContainerCannotHold(f"{name}: {what}" + (f"; {', or '.join(ways)}" if ways else ""))


def _start(s) -> Fraction:
    """When input stream `s` starts, in seconds (0 when the file does not say)."""
    if s.start_time is None or s.time_base is None:
        return Fraction(0)
    return s.start_time * s.time_base


def _keep_tags(a, s) -> None:
    a.metadata.update({k: v for k, v in s.metadata.items() if keep_key(k)})
    a.disposition = s.disposition


def copy_audio_stream(out, s, fmt: str, name: str, *, alpha: bool = False):
    """An output stream in container `out` (format `fmt`, file `name`) that copies input
    audio stream `s` packet for packet, with its kept metadata and disposition;
    ContainerCannotHold, naming the containers that hold it (and carry alpha, with
    `alpha`), when the container cannot hold that codec or players cannot read it back."""
    if not holds(fmt, s):
        raise cannot_hold(s, fmt, name, alpha=alpha)
    a = out.add_stream_from_template(s)
    _keep_tags(a, s)
    return a


class AudioOut:
    """The audio streams of one output file (see the module docstring). Built when the
    output opens, before any work; `write()` and `finish()` run in the sink's thread."""

    def __init__(self, out, streams: list, fmt: str, name: str, mode: str = "auto", *,
                 stats: SinkStats | None = None, alpha: bool = False,
                 video_codec: str | None = None):
        """`out`: the output container (format `fmt`, file `name`); `streams`: the input's
        audio streams; `video_codec`: the encoder the user chose, for refusals' advice."""
        if mode not in AUDIO_MODES:
            raise OutputError(f"--audio must be {_listed(list(AUDIO_MODES))}, got {mode!r}")
        self.stats = stats if stats is not None else SinkStats()
        self._out = out
        self._copy: dict[int, object] = {}  # input stream index -> output stream
        self._encode: dict[int, AudioTranscoder] = {}
        self.notes: list[str] = []
        streams = [] if mode == "none" else list(streams)
        encoder = encoder_for(fmt)
        hint = f"--audio encode (re-encodes it to {codec_name(encoder)})" if encoder else ""
        re_encoded: dict[str, list] = {}  # why -> the streams re-encoded for that reason
        for s in streams:
            why = "asked" if mode == "encode" else None
            refusal = why_not(fmt, s) if mode != "encode" else None
            if mode == "auto" and refusal:
                why = "play" if "does not play" in refusal else "hold"
            elif mode == "auto" and fmt in _POSITIONAL and abs(_start(s)) > SLACK:
                why = "start"
            if why:
                if encoder is None:
                    raise OutputError(f"{name}: this FFmpeg build has no audio encoder for "
                                      f"{fmt}; use --audio none to leave the audio out")
                a = add_encoded_stream(out, s, encoder, name)
                _keep_tags(a, s)
                self._encode[s.index] = AudioTranscoder(s.codec_context, a,
                                                        from_zero=fmt in _POSITIONAL)
                re_encoded.setdefault(why, []).append(s)
            elif mode == "copy" and refusal:
                raise cannot_hold(s, fmt, name, alpha=alpha, video_codec=video_codec,
                                  encode_hint=hint)
            else:
                a = out.add_stream_from_template(s)
                _keep_tags(a, s)
                self._copy[s.index] = a
        for why, group in re_encoded.items():
            self.notes.append(self._encode_note(why, group, fmt, encoder))

    @staticmethod
    def _encode_note(why: str, streams: list, fmt: str, encoder: str) -> str:
        what = _listed([f"{audio_codec(s)} audio (stream #{s.index})" for s in streams], "and")
        how = describe_encoder(encoder)
        if why == "asked":
            return f"the input's {what} re-encoded to {how} (--audio encode)"
        if why == "start":
            return (f"{fmt} places audio by position, not time: the input's {what}, which "
                    f"does not start at 0, re-encoded to {how} with silence before it, so it "
                    f"stays in sync")
        if why == "play":
            return (f"players do not read the input's {what} from {fmt}: re-encoded to {how} "
                    f"(--audio copy refuses instead)")
        return (f"the {fmt} container cannot hold the input's {what} as it is: re-encoded "
                f"to {how} (--audio copy refuses instead)")

    @property
    def warnings(self) -> list[str]:
        """What the user must be told after the run (damaged audio decoded past)."""
        out = []
        for index, t in self._encode.items():
            if t.skipped:
                out.append(f"audio stream #{index}: {t.skipped} damaged packet(s) could not "
                           f"be decoded; silence fills their place")
            if t.jumps:
                out.append(f"audio stream #{index}: {t.jumps} timestamp jump(s) of more than "
                           f"{int(MAX_GAP)} s were taken as broken and not filled with silence")
        return out

    def write(self, packet) -> None:
        """Mux one input audio packet: as it is, or through its stream's encoder."""
        index = packet.stream_index
        a = self._copy.get(index)
        if a is not None:
            packet.stream = a
            self._mux([packet])
            return
        t = self._encode.get(index)
        if t is not None:
            self._mux(t.encode(packet))

    def finish(self) -> None:
        """Flush every encoder (call once, after the last write)."""
        for t in self._encode.values():
            self._mux(t.flush())

    def _mux(self, packets: list) -> None:
        for p in packets:
            self.stats.audio_packets += 1
            self.stats.bytes += p.size
            self._out.mux(p)
