"""The parts of a live run, built from LiveSettings: the source (camera, clip, stream,
synthetic pattern) and the sinks (virtual camera, preview, network stream, recording).

Everything a user can get wrong is checked here before anything slow starts: an unknown
source or sink is a LiveError naming what is accepted.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from streamer.config import LiveSettings, parse_size
from streamer.errors import UsageError, UserError
from streamer.frame import StreamInfo
from streamer.stages import Sink, Source


class LiveError(UserError):
    """A live-setup problem, in one line for the user."""


class SinkSpecError(LiveError, UsageError):
    """A --sink that names no sink (unknown, a malformed URL, given twice): the command is
    wrong as written, exit 2."""


def open_source(s: LiveSettings) -> Source:
    w, h = parse_size(s.camera_size, "camera-size")
    src = str(s.source).strip()
    if src == "synthetic":
        from streamer.sources.synthetic import SyntheticSource
        return SyntheticSource(w, h, s.camera_fps)
    from streamer.sources.playback import PlaybackSource, is_url
    if src.isdigit() or src.startswith("/dev/") or src.startswith("video="):
        from streamer.sources.camera import CameraSource
        return CameraSource(src, w, h, s.camera_fps, fourcc=s.camera_fourcc,
                            exact=s.camera_exact, reconnect_s=s.reconnect)
    if is_url(src) or Path(src).is_file():
        return PlaybackSource(src, loop=s.loop)
    raise LiveError(f"source {src!r} is not a camera index, a device path, 'synthetic', an "
                    f"existing video file or a URL")


def sink_kind(spec: str) -> str:
    """vcam | preview | null | stream | record | ndi; LiveError for anything else."""
    from streamer.sinks.network import is_stream_url
    from streamer.sinks.video_file import FORMATS
    key = spec.strip()
    if key in ("vcam", "virtualcam"):
        return "vcam"
    if key.lower().startswith("ndi:"):
        return "ndi"
    if key in ("preview", "null"):
        return key
    if is_stream_url(key):
        from streamer.sinks.network import StreamError, check_stream_url
        try:
            check_stream_url(key)
        except StreamError as exc:
            raise SinkSpecError(f"sink {exc}") from None
        return "stream"
    if Path(key).suffix.lower() in FORMATS:
        return "record"
    raise SinkSpecError(f"unknown sink {spec!r}: use vcam, preview, null, ndi:NAME, "
                        f"udp://HOST:PORT, rtmp://HOST/APP/KEY, or a file name ending in "
                        f"{', '.join(sorted(FORMATS))}")


def sink_specs(s: LiveSettings) -> list[str]:
    specs = [spec.strip() for spec in s.sinks]
    if s.preview and "preview" not in specs:
        specs.append("preview")
    seen: dict[str, str] = {}
    for spec in specs:
        kind = sink_kind(spec)
        # The same file or address twice would be two writers on one target: the session
        # would run to the end and then fail (or interleave packets). Refuse it now.
        key = _target(spec, kind)
        if kind in ("record", "stream", "ndi") and key in seen:
            raise SinkSpecError(f"sink {spec!r} is given twice (as {seen[key]!r} too); give each "
                            f"file, address or NDI name once")
        seen[key] = spec
    return specs


def _target(spec: str, kind: str) -> str:
    """What a sink writes to, as sameness goes: a file's resolved path, an NDI name as NDI
    compares names (two sinks on one NDI name: the second cannot start), else the spec."""
    if kind == "record":
        return str(Path(spec).expanduser().resolve())
    if kind == "ndi":
        from streamer.sinks.ndi import NdiError, check_ndi_name, ndi_key, ndi_name
        name = ndi_name(spec) or ""
        try:
            check_ndi_name(name)  # before anything slow starts
        except NdiError as exc:
            raise SinkSpecError(f"sink {spec!r}: {exc}") from None
        return "ndi:" + ndi_key(name)
    return spec


def alpha_recording(path: str) -> bool:
    """A recording that keeps the alpha channel (.webm / .mkv VP9, .mov ProRes 4444)."""
    from streamer.sinks.video_file import carries_alpha
    return carries_alpha(Path(path))


def open_recording(path: str, info: StreamInfo, overwrite: bool, alpha: bool = False) -> Sink:
    """A live recording: the offline file sink (temporary name, renamed when the stream
    ends cleanly, removed otherwise) with the live encoder settings, so it keeps up (x264
    veryfast; VP9, alpha or not, in libvpx's real-time mode: choose_encoder)."""
    from streamer.sinks.video_file import VideoFileSink, check_output_folder
    final = Path(path)
    check_output_folder(final)
    if final.exists() and not overwrite:
        raise LiveError(f"{final} exists; add -y to overwrite it")
    return VideoFileSink(final, info, None, overwrite=overwrite, alpha=alpha, live=True)


def open_sink(spec: str, s: LiveSettings, info: StreamInfo,
              overlay_text: Callable[[], str]) -> Sink:
    """One sink; with a transparent background, a sink that carries no alpha gets the
    person over the key colour (FlattenSink) and says so in its description."""
    sink = _open_sink(spec, s, info, overlay_text)
    if s.background_spec().alpha and not _carries_alpha(spec):
        from streamer.sinks.flatten import FlattenSink
        return FlattenSink(sink, s.key_bgr())
    return sink


def _carries_alpha(spec: str) -> bool:
    kind = sink_kind(spec)
    # The preview draws a checkerboard itself; null drops everything.
    return kind in ("ndi", "preview", "null") or (kind == "record" and alpha_recording(spec))


def _open_sink(spec: str, s: LiveSettings, info: StreamInfo,
               overlay_text: Callable[[], str]) -> Sink:
    kind = sink_kind(spec)
    if kind == "ndi":
        from streamer.sinks.ndi import NdiSink, ndi_name
        return NdiSink(ndi_name(spec) or "", info.width, info.height, info.fps)
    if kind == "vcam":
        from streamer.sinks.virtualcam import VirtualCamSink
        return VirtualCamSink(info.width, info.height, info.fps, device=s.vcam_device,
                              backend=s.vcam_backend)
    if kind == "preview":
        from streamer.sinks.preview import PreviewSink
        return PreviewSink(overlay=s.overlay, overlay_text=overlay_text)
    if kind == "null":
        from streamer.sinks.null import NullSink
        return NullSink()
    if kind == "stream":
        from streamer.sinks.network import NetworkSink
        return NetworkSink(spec, info.width, info.height, info.fps, bitrate_kbps=s.bitrate,
                           gop_s=s.gop)
    return open_recording(spec, info, s.overwrite,
                          alpha=s.background_spec().alpha and alpha_recording(spec))


def open_sinks(s: LiveSettings, info: StreamInfo, overlay_text: Callable[[], str]
               ) -> list[Sink]:
    """The sinks in the order given, all at the output size and rate of `info`; the ones
    already open are closed again when a later one fails."""
    sinks: list[Sink] = []
    try:
        for spec in sink_specs(s):
            sinks.append(open_sink(spec, s, info, overlay_text))
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    return sinks
