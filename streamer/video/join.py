"""Join the encoded pieces of a chunked video into the final file, without re-encoding the
video, and write the source's audio once.

What a single-machine run writes (VideoFileSink) the join writes too: the container of the
output's suffix, the source's container and stream metadata, its audio streams with their
metadata and dispositions, an alpha channel (VP9's alpha plane rides in each packet's side
data and the track is flagged as the sink's is; ProRes 4444 keeps its sample entry, which
names the profile), video packets with the input's pts in the input's time base, each
packet lasting until the next frame and the last until the video's end (for MP4/MOV the
last sample stretched by the reorder offset, as the sink does). Video and audio packets are
muxed in time order, so the interleaving stays tight however long the file.

The audio is what the sink writes for the same --audio setting (AudioOut): each stream
copied where the container holds it, else re-encoded in step with its timestamps, or left
out; plan_audio decides it before any work, as the sink does when it opens.

The pieces must agree: same codec, size and global header (SPS/PPS for H.264), and decode
timestamps that keep increasing from one piece to the next. A piece that does not is a
bug, and the join stops with a one-line error instead of writing a file players stumble on.
The output is written under a temporary name and renamed only when complete.
"""
from __future__ import annotations

import heapq
import io
from pathlib import Path
from typing import Iterator

import av

from streamer.sinks.audio_out import AudioOut
from streamer.sinks.video_file import (MOV_FAMILY, OutputError, commit, container_format,
                                       keep_key, temp_path_for)
from streamer.sinks.video_packets import SinkStats
from streamer.sources.video_file import MediaError


class JoinError(OutputError):
    """Pieces that cannot be joined as they are."""


def _piece_times(pieces: list[Path]) -> tuple[list[list[int]], object]:
    """Every piece's video pts, sorted, and the first piece's stream (for checks)."""
    out = []
    ref = None
    for i, p in enumerate(pieces):
        with av.open(str(p)) as c:
            v = c.streams.video[0]
            cc = v.codec_context
            key = (cc.name, cc.width, cc.height, bytes(cc.extradata or b""), v.time_base)
            if ref is None:
                ref = key
            elif key != ref:
                raise JoinError(f"piece {i} ({p.name}) was encoded differently from piece 0 "
                                f"(codec, size, time base or global header); it cannot be "
                                f"joined without re-encoding")
            out.append(sorted(pk.pts for pk in c.demux(v) if pk.size and pk.pts is not None))
    return out, ref


def _video_packets(pieces: list[Path], durations: dict[int, int]) -> Iterator:
    last_dts = None
    for i, path in enumerate(pieces):
        with av.open(str(path)) as c:
            v = c.streams.video[0]
            for pk in c.demux(v):
                if not pk.size:
                    continue
                if last_dts is not None and pk.dts is not None and pk.dts <= last_dts:
                    raise JoinError(f"piece {i} ({path.name}) starts at decode time {pk.dts}, "
                                    f"not after the previous piece's {last_dts}")
                last_dts = pk.dts if pk.dts is not None else last_dts
                pk.duration = durations.get(pk.pts, pk.duration)
                yield pk


def join_pieces(src: Path, pieces: list[Path], dst: Path, *, end_pts: int | None,
                overwrite: bool = False, audio: str = "auto", alpha: bool = False,
                video_codec: str | None = None) -> dict:
    """Write `dst` from the video `pieces` (in order) and `src`'s audio; returns counts and
    the audio's `warnings`. `end_pts`: when the last frame ends (the last piece's end), in
    the pieces' time base. `audio`, `alpha`, `video_codec`: as for VideoFileSink (--audio,
    --background transparent, --codec), so the audio is what a single machine writes."""
    if not pieces:
        raise JoinError("nothing to join")
    fmt = container_format(dst)
    times, ref = _piece_times(pieces)
    flat = [t for ts in times for t in ts]
    if any(b <= a for a, b in zip(flat, flat[1:])):
        raise JoinError("the pieces' frames overlap or are out of order")
    try:
        source = av.open(str(src))
    except (av.error.FFmpegError, OSError) as exc:
        raise MediaError(f"{src}: cannot read it to copy the audio ({exc})") from None
    src_v = [s for s in source.streams.video
             if not s.disposition & av.stream.Disposition.attached_pic]
    # The output keeps the input's time base, as a single-machine run does; a piece's
    # container may count in a finer one (the muxer rescales, exactly).
    tb = src_v[0].time_base if src_v and src_v[0].time_base else ref[4]
    if end_pts is not None:
        end_pts = round(end_pts * tb / ref[4])  # into the pieces' time base
    # every frame lasts until the next one; the last until the video's end
    durations = {a: b - a for a, b in zip(flat, flat[1:])}
    if end_pts is not None and flat and end_pts > flat[-1]:
        durations[flat[-1]] = end_pts - flat[-1]
    temp = temp_path_for(dst)
    container_options = {}
    if fmt in MOV_FAMILY and 0 < tb.denominator < 2**31:
        container_options["movie_timescale"] = str(tb.denominator)  # as VideoFileSink
    counts = {"video_packets": 0, "bytes": 0}
    stats = SinkStats()  # the audio's
    done = False
    try:
        with source, av.open(str(temp), "w", format=fmt,
                             container_options=container_options) as out:
            out.metadata.update({k: v for k, v in source.metadata.items() if keep_key(k)})
            first_piece = av.open(str(pieces[0]))
            with first_piece:
                vt = first_piece.streams.video[0]
                v_out = out.add_stream_from_template(vt)
                v_out.time_base = tb
                if src_v:
                    v_out.metadata.update({k: x for k, x in src_v[0].metadata.items()
                                           if keep_key(k)})
                if vt.metadata.get("alpha_mode"):
                    # VP9 alpha: the plane rides in each packet's side data, which the
                    # copy keeps; the muxer flags the track for players (AlphaMode) from
                    # the pixel format, as it does for the sink's encoder
                    v_out.codec_context.pix_fmt = "yuva420p"
                if vt.codec_context.name == "prores":
                    # the profile (4444 with alpha, or 422) is the sample entry's tag; the
                    # copy would let the muxer choose one, and it chooses 422 HQ
                    v_out.codec_context.codec_tag = vt.codec_context.codec_tag
            audio_out = AudioOut(out, list(source.streams.audio), fmt, dst.name, audio,
                                 stats=stats, alpha=alpha, video_codec=video_codec)

            def audio_packets() -> Iterator:
                if not source.streams.audio or audio == "none":
                    return
                for pk in source.demux(*source.streams.audio):
                    if pk.size and pk.dts is not None:
                        yield pk

            def at(pk) -> float:
                t = pk.dts if pk.dts is not None else pk.pts
                return float(t * pk.time_base) if t is not None else 0.0

            mov = fmt in MOV_FAMILY
            first_pts = flat[0]
            first_dts = None
            held = None  # the last video packet, muxed one late (its duration may grow)
            for pk in heapq.merge(_video_packets(pieces, durations), audio_packets(), key=at):
                if pk.stream.type == "audio":
                    audio_out.write(pk)  # copied, or through its stream's encoder
                    continue
                if first_dts is None:
                    first_dts = pk.dts
                pk.stream = v_out
                if held is not None:
                    out.mux(held)
                held = pk
                counts["video_packets"] += 1
                counts["bytes"] += pk.size
            if held is not None:
                if mov and end_pts is not None and held.dts is not None and first_dts is not None:
                    need = (end_pts - first_pts) - (held.dts - first_dts)
                    if need > (held.duration or 0):
                        held.duration = need
                out.mux(held)
            audio_out.finish()
        commit(temp, dst, overwrite)
        done = True
    finally:
        if not done:
            temp.unlink(missing_ok=True)
    return {**counts, "audio_packets": stats.audio_packets,
            "bytes": counts["bytes"] + stats.bytes, "warnings": audio_out.warnings}


def plan_audio(src: Path, dst: Path, audio: str = "auto", *, alpha: bool = False,
               video_codec: str | None = None) -> list[str]:
    """Before any work: what the join will do with `src`'s audio in `dst`, decided as the
    single-machine sink decides it (AudioOut, on an in-memory output of the same container):
    its note lines (a stream re-encoded, and why); OutputError, the sink's one line, for
    what it refuses (--audio copy of a codec the container cannot hold)."""
    fmt = container_format(dst)
    try:
        source = av.open(str(src))
    except (av.error.FFmpegError, OSError) as exc:
        raise MediaError(f"{src}: cannot read it to copy the audio ({exc})") from None
    with source, av.open(io.BytesIO(), "w", format=fmt) as out:
        return list(AudioOut(out, list(source.streams.audio), fmt, dst.name, audio,
                             alpha=alpha, video_codec=video_codec).notes)
