"""Encode stylised frames to a video file, with the input's audio (audio_out.py).

The file is written under a temporary name in the output folder (`.NAME.partial-XXXXXX`,
its container format forced, so it never looks like a finished video) and renamed at the
end; `close()` without `finish()` removes it. What is kept from the input:

- every frame, with its pts in the input's time base (constant and variable frame rate);
  packet durations are set from the next frame's pts, so the stream ends when the input's
  last frame ends (for MP4/MOV the last sample is stretched by the encoder's reorder offset,
  which the container otherwise counts from the decode timestamps and would cut short);
- the average frame rate, sample aspect ratio and colour tags (matrix, range, primaries,
  transfer); pixels are converted with the input's matrix and range;
- every audio stream, with its metadata and disposition: copied packet for packet where
  the container holds it, else re-encoded in step with its timestamps (`audio` mode, see
  audio_out.py);
- container and video-stream metadata (minus what the muxer itself writes).

Odd sizes: 4:2:0 needs even width and height, and H.264 / HEVC cannot signal a one-pixel
crop in 4:2:0, so an odd width or height is padded by one pixel on the right / bottom that
repeats the edge (the output is at most one pixel larger; a note says so).
"""
from __future__ import annotations

import errno
import os
import secrets
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from streamer.frame import AudioTrack, Frame, StreamInfo
from streamer.signals import deferred
from streamer.stages import Sink

from .audio_out import AudioOut, copy_audio_stream  # noqa: F401 - the Ray join's import
from .outputs import (ALPHA_ENCODERS, FORMATS, ContainerCannotHold, OutputError,  # noqa: F401
                      container_format, keep_key)
from .video_packets import SinkStats, VideoPackets

MOV_FAMILY = {"mp4", "mov"}
VIDEO_SUFFIXES = tuple(FORMATS)

CODECS = ("libx264", "libx265", "h264_nvenc", "hevc_nvenc", "libvpx-vp9", "prores_ks")
# Encoders that carry an alpha channel, with the pixel format that holds it, and the
# containers they go in. VP9 alpha decodes only with the libvpx-vp9 decoder (FFmpeg's own
# vp9 decoder drops it): see read_alpha_frames in the tests.
ALPHA_PIX_FMTS = {"libvpx-vp9": "yuva420p", "prores_ks": "yuva444p10le"}
ALPHA_OUTPUTS = (".webm or .mkv (VP9), .mov (ProRes 4444), or a PNG sequence "
                 "(-o FOLDER/%05d.png, no audio)")
DEFAULT_CODEC = "libx264"
# Quality defaults per encoder: visually transparent for cartoon output at moderate size.
_DEFAULT_QUALITY = {"libx264": 18, "libx265": 20, "h264_nvenc": 19, "hevc_nvenc": 21,
                    "libvpx-vp9": 24}
# VP9's default is libvpx's real-time mode: deadline good at cpu-used 3 (`--preset good`, the
# default until issue 24) encoded a 720p transparent WebM at about 7 fps on 2 cores, the
# real-time mode at cpu-used 8 5x that, at the same colour PSNR in a file about a third
# larger (python -m bench.encode, README "VP9 and ProRes speed").
_DEFAULT_PRESET = {"libx264": "medium", "libx265": "medium", "h264_nvenc": "p5",
                   "hevc_nvenc": "p5", "libvpx-vp9": "realtime", "prores_ks": "4444"}
# Preset names -> libvpx (deadline, cpu-used); libvpx has no presets of its own, so the
# x264 names stand in, beside libvpx's own deadline names. Deadline good stops at cpu-used 5
# (libvpx encodes 6-8 exactly as 5), so the fastest x264 names take the real-time deadline.
_VPX_SPEED = {"realtime": ("realtime", 8), "ultrafast": ("realtime", 8),
              "superfast": ("realtime", 7), "veryfast": ("realtime", 6), "faster": ("good", 5),
              "fast": ("good", 4), "medium": ("good", 3), "good": ("good", 3),
              "slow": ("good", 2), "slower": ("good", 1), "veryslow": ("good", 0)}
# A live recording keeps up with the camera: x264 veryfast at crf 20 (visually transparent
# for cartoon output), VP9 in real-time mode at its own default quality.
_LIVE_PRESET = {"libx264": "veryfast", "libx265": "veryfast", "libvpx-vp9": "realtime"}
_LIVE_QUALITY = {"libx264": 20, "libx265": 20}
# VP9 levels allow at most 16 tile columns (level 6, 8K); a tile is at least 256 pixels wide.
_VPX_MAX_LOG2_TILES = 4
_NVENC_PRESETS = {"p1", "p2", "p3", "p4", "p5", "p6", "p7", "default", "slow", "medium", "fast",
                  "hp", "hq", "bd", "ll", "llhq", "llhp", "lossless", "losslesshp"}
_X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                 "slower", "veryslow", "placebo")
# AVColorSpace -> the swscale matrix that converts to it (same numbers for these).
_SWS_MATRIX = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}


def default_codec_for(path: Path, alpha: bool = False) -> str:
    """libx264, except for WebM, which only holds VP8/VP9/AV1; with `alpha`, the
    container's alpha encoder (VP9 for WebM/Matroska, ProRes 4444 for MOV)."""
    fmt = container_format(path)
    if alpha and fmt in ALPHA_ENCODERS:
        return ALPHA_ENCODERS[fmt]
    return "libvpx-vp9" if fmt == "webm" else DEFAULT_CODEC


def carries_alpha(path: Path) -> bool:
    """Whether the container at `path` has an encoder that keeps an alpha channel (.webm /
    .mkv with VP9, .mov with ProRes 4444); OutputError for an unknown container."""
    return container_format(path) in ALPHA_ENCODERS


def _alpha_encoder(path: Path, codec: str | None = None) -> str:
    """The encoder for a video with an alpha channel at `path`; OutputError, one line
    naming the outputs that can, when the container or `codec` cannot carry alpha."""
    fmt = container_format(path)
    chosen = codec or ALPHA_ENCODERS.get(fmt)
    pairs = {("webm", "libvpx-vp9"), ("matroska", "libvpx-vp9"), ("mov", "prores_ks"),
             ("matroska", "prores_ks")}
    if chosen not in ALPHA_PIX_FMTS or (fmt, chosen) not in pairs:
        if codec and fmt in ALPHA_ENCODERS:  # the container can: the codec is what cannot
            fit = sorted(c for f, c in pairs if f == fmt)
            raise OutputError(f"{path.name}: {path.suffix} with {codec} cannot carry the alpha "
                              f"channel that --background transparent makes; use --codec "
                              f"{' or '.join(fit)}, or leave --codec out")
        what = f"{path.suffix} with {chosen}" if codec else f"{path.suffix or path.name}"
        raise OutputError(f"{path.name}: {what} cannot carry the alpha channel that "
                          f"--background transparent makes; use {ALPHA_OUTPUTS}")
    return chosen


def output_encoder(path: Path, codec: str | None = None, *, alpha: bool = False) -> str:
    """The encoder a video output at `path` gets, checked against its container without a
    trial open (for a planner on another machine than the encoder, as Ray's driver):
    `codec` or the container's default; with `alpha`, one that keeps the alpha channel.
    OutputError, the one line choose_encoder says, when the container or codec cannot."""
    if alpha:
        return _alpha_encoder(path, codec)
    container_format(path)
    return codec or default_codec_for(path)


def vpx_tile_columns(width: int) -> int:
    """log2 of the tile columns libvpx-vp9 gets at `width`: as many 256-pixel columns as fit
    (each column is a share of the work row-mt can give a thread), capped at VP9's 16."""
    if width <= 0:
        raise ValueError(f"width must be positive, not {width}")
    return max(0, min(_VPX_MAX_LOG2_TILES, (width // 256).bit_length() - 1))


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def _encoder_options(codec: str, crf: int | None, preset: str | None, *, width: int = 0,
                     live: bool = False) -> dict[str, str]:
    """FFmpeg encoder options for `codec` from `crf` and `preset` (None: the codec's
    defaults, a live recording's with `live`); `width` sets VP9's tile columns."""
    if crf is None:
        crf = _LIVE_QUALITY.get(codec) if live else None
    if preset is None and live:
        preset = _LIVE_PRESET.get(codec)
    q = _DEFAULT_QUALITY.get(codec, 20) if crf is None else int(crf)
    p = _DEFAULT_PRESET.get(codec, "medium") if preset is None else preset
    if codec in ("libx264", "libx265"):
        if p not in _X264_PRESETS:
            raise OutputError(f"unknown preset {p!r} for {codec}; choose {', '.join(_X264_PRESETS)}")
        opts = {"crf": str(q), "preset": p}
        if codec == "libx265":
            opts["x265-params"] = "log-level=error"  # x265 prints to stderr on its own
        return opts
    if codec.endswith("_nvenc"):
        if p not in _NVENC_PRESETS:
            raise OutputError(f"unknown preset {p!r} for {codec}; choose p1 (fastest) .. p7")
        return {"rc": "vbr", "cq": str(q), "preset": p, "b": "0"}
    if codec == "prores_ks":
        # ProRes has fixed profiles and no CRF (--crf does not apply): 4444 is the profile
        # with alpha, at its own visually lossless rate; 16-bit alpha planes.
        return {"profile": "4444", "vendor": "apl0", "alpha_bits": "16"}
    if codec == "libvpx-vp9":
        if p not in _VPX_SPEED:
            raise OutputError(f"unknown preset {p!r} for {codec}; choose {', '.join(_VPX_SPEED)}")
        deadline, speed = _VPX_SPEED[p]
        opts = {"crf": str(q), "b": "0", "deadline": deadline, "cpu-used": str(speed),
                "row-mt": "1"}
        if deadline == "realtime":
            # The real-time mode looks at no later frames (libvpx ignores a lag there: the
            # output is the same byte for byte); a lag of 0 says so and holds no frames back.
            opts["lag-in-frames"] = "0"
            if width > 0:
                # Tile columns are what libvpx's threads share a frame by, beside row-mt's
                # rows; libvpx's own default (6, cut to the width) agrees at 16:9 sizes.
                opts["tile-columns"] = str(vpx_tile_columns(width))
        return opts
    return {}


def _encoder_hint(codec: str) -> str:
    if codec.endswith("_nvenc"):
        return "it needs an NVIDIA GPU with its driver; use --codec libx264 or libx265"
    return "use --codec libx264"


def _check_encoder_starts(codec: str, pix_fmt: str) -> None:
    """Raise OutputError unless `codec` is a video encoder that can start here (a trial
    open: hardware encoders are in the build even where no GPU is)."""
    try:
        c = av.codec.Codec(codec, "w")
    except Exception:  # UnknownCodecError, ValueError
        raise OutputError(f"encoder {codec!r} is not in this FFmpeg build; {_encoder_hint(codec)}"
                          ) from None
    if c.type != "video":
        raise OutputError(f"{codec!r} is not a video encoder")
    ctx = av.codec.CodecContext.create(c)
    ctx.width, ctx.height, ctx.pix_fmt = 256, 256, pix_fmt
    ctx.time_base = Fraction(1, 25)
    ctx.framerate = Fraction(25)
    if codec == "libx265":
        ctx.options = {"x265-params": "log-level=error"}
    try:
        ctx.open()
    except Exception as exc:
        reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
        raise OutputError(f"encoder {codec!r} cannot start here ({reason}); {_encoder_hint(codec)}"
                          ) from None
    finally:
        del ctx


@dataclass(frozen=True)
class EncoderChoice:
    """How a video output is written: its container (FFmpeg muxer) and encoder."""

    format: str
    codec: str
    pix_fmt: str
    options: dict[str, str]
    threads: int = 0  # encoder threads; 0: the encoder's choice


def choose_encoder(path: Path, codec: str | None = None, *, alpha: bool = False,
                   crf: int | None = None, preset: str | None = None, width: int = 0,
                   live: bool = False) -> EncoderChoice:
    """Every check a video output's container and encoder need, in one place: the
    container from `path`'s suffix, `codec` or the container's default (with `alpha`, one
    that keeps the alpha channel), the encoder options from `crf` and `preset` (with
    `live`, a live recording's defaults: VP9 in libvpx's real-time mode on every CPU; the
    frame `width` sets VP9's tile columns), and a trial open of the encoder on this
    machine. OutputError, one line, for whatever fails."""
    fmt = container_format(path)
    if alpha:
        chosen = _alpha_encoder(path, codec)
        pix_fmt = ALPHA_PIX_FMTS[chosen]
    else:
        chosen = codec or default_codec_for(path)
        pix_fmt = "yuv420p"
    options = _encoder_options(chosen, crf, preset, width=width, live=live)
    _check_encoder_starts(chosen, pix_fmt)
    # libvpx's rows and tiles go to its threads; a live recording asks for every CPU
    # rather than leave the count to the FFmpeg build.
    threads = usable_cpus() if live and chosen == "libvpx-vp9" else 0
    return EncoderChoice(fmt, chosen, pix_fmt, options, threads)


def temp_path_for(final: Path) -> Path:
    return final.parent / f".{final.name}.partial-{secrets.token_hex(3)}"


def check_output_folder(final: Path) -> None:
    """Fail early, in one line, when nothing can be written next to `final`."""
    folder = final.parent
    if not folder.exists():
        raise OutputError(f"output folder {folder} does not exist")
    if not folder.is_dir():
        raise OutputError(f"output folder {folder} is not a folder")
    probe = final.parent / f".{final.name}.probe-{secrets.token_hex(3)}"
    try:
        with open(probe, "xb"):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write in the output folder {folder} "
                          f"({exc.strerror or exc})") from None
    probe.unlink(missing_ok=True)


def commit(temp: Path, final: Path, overwrite: bool) -> None:
    """Give the finished temporary file its final name (atomic; never clobbers without
    `overwrite`, even if the name appeared while we were working)."""
    if overwrite:
        os.replace(temp, final)
        return
    try:
        os.link(temp, final)
    except FileExistsError:
        raise OutputError(f"{final} appeared while converting; rerun with -y to overwrite") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        if final.exists():  # a filesystem without hard links: check, then rename
            raise OutputError(f"{final} appeared while converting; rerun with -y") from None
        os.replace(temp, final)
        return
    temp.unlink()


class VideoFileSink(Sink):
    """Write frames of one size to `final` (see the module docstring)."""

    name = "video file"

    def __init__(self, final: str | os.PathLike[str], info: StreamInfo,
                 audio: AudioTrack | None = None, *, codec: str | None = None,
                 crf: int | None = None, preset: str | None = None, overwrite: bool = False,
                 threads: int = 0, open_in_writer: bool = False, alpha: bool = False,
                 audio_mode: str = "auto", live: bool = False):
        """`threads`: encoder threads, 0 for the encoder's choice (a live VP9 recording's:
        every CPU). `open_in_writer`: open the encoder on the first write instead of here,
        so its worker threads are created by (and inherit the priority of) the thread that
        writes; the trial open (choose_encoder) still reports an encoder that cannot start
        before any work. `audio_mode`: auto, copy, encode or none (audio_out.py). `live`: a
        recording that must keep up with a camera (choose_encoder's live defaults where
        `crf` / `preset` are None)."""
        self.final = Path(final)
        self._open_in_writer = open_in_writer
        self.overwrite = overwrite
        encoder = choose_encoder(self.final, codec, alpha=alpha, crf=crf, preset=preset,
                                 width=info.width + (info.width & 1), live=live)
        self.threads = threads or encoder.threads  # 0: the encoder's choice
        self.options = encoder.options  # what the encoder was asked for, for the record
        fmt, options = encoder.format, encoder.options
        # alpha: frames are BGRA and the encoder keeps the A (VP9 yuva420p, ProRes 4444);
        # the opaque path below is untouched by it.
        self.alpha = alpha
        self.codec, self.pix_fmt = encoder.codec, encoder.pix_fmt
        self.info = info
        self.width = info.width + (info.width & 1)
        self.height = info.height + (info.height & 1)
        self.padded = (self.width, self.height) != (info.width, info.height)
        self.audio = audio
        self._audio_mode = audio_mode
        self._chosen_codec = codec
        self.stats = SinkStats()
        self.temp = temp_path_for(self.final)
        self._out = None
        self._done = False
        container_options = {}
        if fmt in MOV_FAMILY and 0 < info.time_base.denominator < 2**31:
            # Edit lists (a video that starts after its audio) count in the movie
            # timescale, 1/1000 s by default; the video's own keeps its start exact.
            container_options["movie_timescale"] = str(info.time_base.denominator)
        try:
            self._out = av.open(str(self.temp), "w", format=fmt,
                                container_options=container_options)
        except (av.error.FFmpegError, OSError) as exc:
            raise OutputError(f"cannot create {self.temp}: "
                              f"{getattr(exc, 'strerror', None) or exc}") from None
        try:
            self._setup(fmt, options)
        except BaseException:
            self.close()
            raise

    @property
    def notes(self) -> list[str]:
        """What the output keeps differently from the input, one line each."""
        out = list(self._audio_out.notes)
        if self.padded:
            out.append(f"odd size {self.info.width}x{self.info.height}: 4:2:0 needs even sides, "
                       f"so the output is {self.width}x{self.height} (the last column/row "
                       f"repeated)")
        return out

    @property
    def warnings(self) -> list[str]:
        """What the user must be told after the run (damaged audio re-encoded past)."""
        return self._audio_out.warnings

    def _setup(self, fmt: str, options: dict[str, str]) -> None:
        info, out = self.info, self._out
        out.metadata.update({k: v for k, v in info.metadata.items() if keep_key(k)})
        rate = info.rate or Fraction(25)
        try:
            v = out.add_stream(self.codec, rate=rate, options=options)
        except ValueError as exc:
            raise ContainerCannotHold(f"{self.final.name}: the {fmt} container cannot hold "
                                      f"{self.codec} video ({exc}); choose another --codec "
                                      f"or container") from None
        v.width, v.height, v.pix_fmt = self.width, self.height, self.pix_fmt
        # AVI has no timestamps: a frame's time is its position counted in the stream's
        # time base, and empty chunks fill every unused tick. With the input's fine time
        # base (1/600, 1/90000) that writes thousands of empty chunks that players and
        # ffprobe show as frames without pts; so AVI counts in frames at the average rate
        # and each frame goes to its nearest frame slot (see _out_pts).
        self._cfr = fmt == "avi"
        self.time_base = 1 / rate if self._cfr else info.time_base
        v.time_base = self.time_base
        cc = v.codec_context
        cc.time_base = self.time_base
        cc.framerate = rate
        cc.thread_count = self.threads
        sar = info.sample_aspect_ratio
        if sar and sar != 1:
            cc.sample_aspect_ratio = sar
        self._tag_colors(cc)
        v.metadata.update({k: v_ for k, v_ in info.stream_metadata.items() if keep_key(k)})
        self._video = v
        self._audio_out = AudioOut(out, self.audio.streams if self.audio is not None else [],
                                   fmt, self.final.name, self._audio_mode, stats=self.stats,
                                   alpha=self.alpha, video_codec=self._chosen_codec)
        if not self._open_in_writer:
            self._open_encoder()
        self._reformatter = VideoReformatter()
        self._pad_buf: np.ndarray | None = None
        self._packets = VideoPackets(out, self.stats, self.time_base, info.rate,
                                     mov=fmt in MOV_FAMILY, cfr=self._cfr)

    def _tag_colors(self, cc) -> None:
        """Keep the input's colour tags, and convert pixels with its matrix and range."""
        colors = self.info.colors
        self._matrix = _SWS_MATRIX.get(colors.space)
        self._range = colors.range if colors.range in (1, 2) else None
        if self._matrix is not None:
            cc.colorspace = colors.space
        if self._range is not None:
            cc.color_range = self._range
        if colors.primaries not in (0, 2):
            cc.color_primaries = colors.primaries
        if colors.transfer not in (0, 2):
            cc.color_trc = colors.transfer

    def _open_encoder(self) -> None:
        cc = self._video.codec_context
        if cc.is_open:
            return
        try:
            cc.open()
        except av.error.FFmpegError as exc:
            raise OutputError(f"encoder {self.codec!r} rejected the stream "
                              f"({self.width}x{self.height}): {exc.strerror}") from None

    # --- per frame ---------------------------------------------------------------------

    def _even(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        buf = self._pad_buf
        if buf is None:
            buf = self._pad_buf = np.empty((self.height, self.width, img.shape[2]), np.uint8)
        buf[:h, :w] = img
        if w < self.width:
            buf[:h, w] = img[:, w - 1]
        if h < self.height:
            buf[h] = buf[h - 1]
        return buf

    def write(self, frame: Frame) -> None:
        img = frame.image
        if img.shape[0] != self.info.height or img.shape[1] != self.info.width:
            raise OutputError(f"frame {frame.index} is {img.shape[1]}x{img.shape[0]}, the stream "
                              f"{self.info.width}x{self.info.height}; size changes mid-stream "
                              f"are not supported")
        if self.stats.frames == 0:
            self._open_encoder()
        if self.padded:
            img = self._even(img)
        if self.alpha:
            vf = self._alpha_frame(img)
        elif img.strides[1:] == (3, 1):
            vf = av.VideoFrame.from_numpy_buffer(img, "bgr24")  # no copy: encoded below
        else:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), "bgr24")
        vf = self._reformatter.reformat(vf, format=self.pix_fmt, dst_colorspace=self._matrix,
                                        dst_color_range=self._range)
        pts = self._out_pts(frame.pts)
        vf.pts = pts
        vf.time_base = self.time_base
        self._packets.frame(pts, frame.duration)
        self._packets.mux(self._video.encode(vf))
        self.stats.frames += 1
        self._mux_audio()

    def _out_pts(self, pts: int) -> int:
        """The frame's pts in the output time base: as it is, or for AVI the nearest frame
        slot after the previous frame's."""
        if not self._cfr:
            return pts
        slot = round(pts * self.info.time_base / self.time_base)
        last = self._packets.last_pts
        if last is not None and slot <= last:
            slot = last + 1
        return slot

    def _alpha_frame(self, img: np.ndarray) -> av.VideoFrame:
        if img.ndim != 3 or img.shape[2] != 4:
            raise OutputError(f"{self.final.name}: an alpha output needs BGRA frames "
                              f"(--background transparent)")
        if img.strides[1:] == (4, 1):
            return av.VideoFrame.from_numpy_buffer(img, "bgra")
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(img), "bgra")

    def _mux_audio(self) -> None:
        if self.audio is None:
            return
        q, audio_out = self.audio.packets, self._audio_out
        while q:
            audio_out.write(q.popleft())

    # --- the end -----------------------------------------------------------------------

    def final_duration(self) -> int:
        """How long the last frame shows (see VideoPackets.final_duration)."""
        return self._packets.final_duration()

    def finish(self) -> None:
        """Flush the encoder, write the rest of the audio, close, and rename."""
        self._packets.finish(self._video.encode(None))
        self._mux_audio()
        self._audio_out.finish()
        out, self._out = self._out, None
        out.close()
        with deferred():  # the rename and its record are one step for an interrupt
            commit(self.temp, self.final, self.overwrite)
            self._done = True

    def describe(self) -> str:
        return f"{self.final} ({self.codec})"

    def interrupt_note(self) -> str:
        if self._done:  # the interrupt came after the last-moment rename
            return f"{self.final} was already complete and is kept"
        return f"the unfinished output {self.final} was removed"

    def _release(self) -> None:
        """Stop writing and remove the temporary file unless finish() renamed it."""
        out, self._out = self._out, None
        if out is not None:
            try:
                out.close()
            except Exception:  # noqa: BLE001 - a half-written file; it is removed below
                pass
        if not self._done:
            try:
                self.temp.unlink()
            except FileNotFoundError:
                pass
