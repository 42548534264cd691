"""Settings as dataclasses, filled from one place: defaults <- YAML preset <- command line.

A preset is a flat YAML mapping of setting names (dashes or underscores) to values, found by
path or by name among the presets shipped in the package (`--config video-hq` reads
streamer/configs/video-hq.yaml; the repository's top-level configs/ links there). Options
given on the command line override the preset; options not given leave it alone, which is
why the parsers declare no defaults of their own (argparse.SUPPRESS) and the defaults live
here. Nothing is global: every call returns a new settings object.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

import yaml

from streamer.options import (ConfigError, Range, arg_type, check_numbers, coerce_number,
                              is_number_field, setting)
from streamer.sinks.audio_out import AUDIO_MODES
from streamer.sinks.image import ALPHA_IMAGE_SUFFIXES
from streamer.sinks.outputs import ALPHA_ENCODERS, FORMATS
from streamer.sources.image import IMAGE_SUFFIXES
from streamer.toon.background import (CHOICES as BACKGROUND_CHOICES, DEFAULT_KEY_COLOR,
                                      Background, BackgroundError, parse_background, parse_color)
from streamer.toon.engine import DEVICES, PRECISIONS
from streamer.toon.faces.detect import OFFICIAL_MAX_FACES, OFFICIAL_MIN_FACE
from streamer.toon.faces.track import TrackerSettings
from streamer.toon.flow import OFFICIAL_SHORT_SIDE
from streamer.toon.segment import SEG_MODELS
from streamer.toon.temporal import TemporalSettings

# The presets are package data, so an installed wheel finds them as well as a checkout.
# Wheels install as plain folders, so the resource is a real path (find_preset globs it).
CONFIG_DIR = Path(str(resources.files("streamer") / "configs"))


# Candidate working short sides for `--work auto` (16:9 widths 256 .. 1280); 144 is the
# smallest that still carries a recognisable scene at 720p output.
AUTO_SIZES = (144, 192, 240, 288, 360, 432, 540, 720)

# Engine threads (run_video, run_stream, run_web): more than any machine has cores is a typo.
THREADS = Range(1, 1024, integer=True)
# Working short sides and WIDTHxHEIGHT sizes: 16 px is the smallest the model's strides
# take; 8192 is above 8K video's short side (and a frame is never enlarged to it).
MIN_SIDE, MAX_SIDE = 16, 8192
# Frame rates asked of a camera or given to the outputs (frames per second).
FPS = Range(1, 1000)
SHORT_SIDE = Range(MIN_SIDE, MAX_SIDE, integer=True)


FACE_MODES = ("auto", "on", "off")

# --net: the official DCT-Net generator, or the light student distilled from it (issue 26,
# streamer/models/mobile), which holds several styles and blends them (`anime+3d:0.3`).
NETS = ("official", "mobile")


@dataclass(frozen=True)
class FaceSettings:
    """The face-aware flow's settings, shared by run_video and run_stream.

    `faces`: auto (on when the face detector and head mask are installed), on (missing
    files are an error that names the fetch command) or off (the official full-frame flow
    only). `tracking` off gives the official per-frame behaviour: detect every frame, no
    smoothing or fades."""

    faces: str = "auto"
    max_faces: int = setting(OFFICIAL_MAX_FACES, Range(1, 100, integer=True))  # largest first
    # px (at the official 720 working size); 0: all faces
    min_face: int = setting(OFFICIAL_MIN_FACE, Range(0, 4096, integer=True))
    tracking: bool = True
    # frames between detections while tracking
    detect_every: int = setting(5, Range(1, 1000, integer=True))
    # One-Euro minimum cutoff (Hz): lower is steadier
    smooth_cutoff: float = setting(0.3, Range(0, 1000, above=True))
    # One-Euro speed gain: higher follows fast motion closer
    smooth_beta: float = setting(0.5, Range(0, 1000))
    fade: float = setting(0.2, Range(0, 60))  # seconds a face takes to fade in or out

    def _check_faces(self) -> None:
        # the numbers are checked by check_numbers (their ranges are on the fields)
        if self.faces not in FACE_MODES:
            raise ConfigError(f"faces must be auto, on or off, got {self.faces!r}")

    def tracker_settings(self) -> TrackerSettings:
        if not self.tracking:
            return TrackerSettings.official(max_faces=self.max_faces, min_face=self.min_face)
        return TrackerSettings(detect_every=self.detect_every, min_cutoff=self.smooth_cutoff,
                               beta=self.smooth_beta, fade_s=self.fade,
                               max_faces=self.max_faces, min_face=self.min_face)


TEMPORAL_MODES = ("on", "off")


@dataclass(frozen=True)
class BackgroundSettings:
    """The background treatment, shared by run_video, run_stream and the web page.

    `background`: keep | transparent | blur | color:#RRGGBB | image:PATH (toon/background.py);
    the person mask is computed on the input and applied to the cartoon. `key_color`: what a
    sink without alpha (virtual camera, network stream, H.264 file) shows behind the person
    when the background is transparent. `seg_model`: the segmentation model, auto picks the
    landscape one for frames wider than 4:3."""

    background: str = "keep"
    key_color: str = DEFAULT_KEY_COLOR
    seg_model: str = "auto"

    def _check_background(self) -> None:
        try:
            parse_background(self.background)
            parse_color(self.key_color, "key-color")
        except BackgroundError as exc:
            raise ConfigError(str(exc)) from None
        if self.seg_model not in SEG_MODELS:
            raise ConfigError(f"seg-model must be {', '.join(SEG_MODELS)}, got {self.seg_model!r}")

    def background_spec(self) -> Background:
        return parse_background(self.background, check_image=False)

    def key_bgr(self) -> tuple[int, int, int]:
        return parse_color(self.key_color, "key-color")


@dataclass(frozen=True)
class TemporalOptions:
    """The temporal step's settings (streamer.toon.temporal), shared by run_video,
    run_stream and run_web: `temporal` on blends the previous output, carried along the
    image motion, into the current one where that motion is reliable (no flicker);
    `temporal_strength` is its weight there (0..1)."""

    temporal: str = "on"
    temporal_strength: float = setting(TemporalSettings.strength, Range(0, 1))

    def _check_temporal(self) -> None:
        if self.temporal not in TEMPORAL_MODES:
            raise ConfigError(f"temporal must be on or off, got {self.temporal!r}")

    def temporal_settings(self) -> TemporalSettings | None:
        """None when the temporal step is off."""
        if self.temporal == "off" or self.temporal_strength <= 0:
            return None
        return TemporalSettings(strength=self.temporal_strength)


@dataclass(frozen=True)
class VideoSettings(FaceSettings, BackgroundSettings, TemporalOptions):
    """Everything run_video needs besides the input and output paths."""

    style: str = "anime"
    models: str | None = None  # model store root; None: $TOONSTREAM_MODELS, else user cache
    # working short side (frames are never enlarged)
    size: int = setting(OFFICIAL_SHORT_SIDE, SHORT_SIDE)
    # frames per engine call; 0: the engine's choice (engine_batch)
    batch: int = setting(0, Range(0, 64, integer=True, note="0: the engine's choice"))
    device: str = "auto"
    precision: str = "exact"  # exact: fp32, golden parity; fast: bf16/fp16 where available
    net: str = "official"  # official | mobile: the light network (NETS)
    threads: int | None = setting(None, THREADS)  # engine threads; None: the runtime's choice
    codec: str | None = None  # None: libx264 (libvpx-vp9 for .webm)
    # None: the codec's default in streamer.sinks.video_file
    crf: int | None = setting(None, Range(0, 63, integer=True))
    preset: str | None = None
    audio: str = "auto"  # auto | copy | encode | none: see streamer/sinks/audio_out.py
    # The type of the outputs run_video names itself (a folder's files, several inputs',
    # the default output): a video container (".webm") and a still format (".png").
    # None: each input's own (with --background transparent, one that carries alpha).
    format: str | None = None
    image_format: str | None = None
    queue: int = setting(4, Range(1, 64, integer=True))  # frames each pipeline queue holds
    overwrite: bool = False
    stats_json: str | None = None
    progress: bool = True
    # --ray: None runs here; "local" starts a Ray on this machine; "auto" or
    # "ray://host:port" joins a running cluster (streamer/video/cluster.py)
    ray: str | None = None
    # --ray: long videos are cut at keyframes about this far apart
    chunk_seconds: float = setting(60.0, Range(0, 86400, above=True))
    # --ray: frames stylised, not written, before each chunk
    warmup_seconds: float = setting(1.0, Range(0, 600))
    # --ray: worker actors; None: one per GPU, or per worker_cpus
    workers: int | None = setting(None, Range(1, 1024, integer=True))
    # --ray: CPUs per CPU worker; None: 4 (or CPUs / workers)
    worker_cpus: int | None = setting(None, Range(1, 1024, integer=True))

    def __post_init__(self) -> None:
        check_numbers(self)  # every number against the range on its field
        if self.ray is not None:
            # YAML reads `ray: true` / `ray: off` as booleans, which _coerce turns to on/off
            ray = str(self.ray).strip()
            object.__setattr__(self, "ray", None if ray in ("off", "false", "no") else
                               "local" if ray in ("", "on", "true", "yes") else ray)
        _check_engine_options(self.device, self.precision)
        _check_net(self.net)
        self._check_faces()
        self._check_background()
        self._check_temporal()
        self._check_outputs()

    def _check_outputs(self) -> None:
        """--audio, --format and --image-format: known values, normalised to ".ext", and
        with --background transparent, types that carry alpha (refused before any work)."""
        if self.audio not in AUDIO_MODES:
            raise ConfigError(f"audio must be {', '.join(AUDIO_MODES[:-1])} or "
                              f"{AUDIO_MODES[-1]}, got {self.audio!r}")
        alpha = self.background_spec().alpha
        video = sorted({s.lstrip(".") for s in FORMATS})
        for name, known, carry in (
                ("format", FORMATS, [s for s, f in FORMATS.items() if f in ALPHA_ENCODERS]),
                ("image_format", IMAGE_SUFFIXES, ALPHA_IMAGE_SUFFIXES)):
            value = getattr(self, name)
            if value is None:
                continue
            ext = "." + str(value).strip().lower().lstrip(".")
            option = name.replace("_", "-")
            if ext not in known:
                kinds = ", ".join(video) if name == "format" else \
                    ", ".join(s.lstrip(".") for s in IMAGE_SUFFIXES)
                what = "video container" if name == "format" else "still format"
                raise ConfigError(f"{option} {value!r} is not a {what} run_video writes; "
                                  f"choose {kinds}")
            if alpha and ext not in carry:
                raise ConfigError(f"{option} {ext.lstrip('.')} cannot carry the alpha channel "
                                  f"that --background transparent makes; choose "
                                  f"{', '.join(s.lstrip('.') for s in carry)}")
            object.__setattr__(self, name, ext)


S = TypeVar("S")


def find_preset(name: str, config_dir: Path = CONFIG_DIR) -> Path:
    """A preset by path (`configs/cpu.yaml`, `~/my.yaml`) or by name (`cpu`)."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    by_name = config_dir / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    if by_name.is_file():
        return by_name
    known = sorted(p.stem for p in config_dir.glob("*.yaml")) if config_dir.is_dir() else []
    raise ConfigError(f"no preset {name!r} (looked for {path} and {by_name}); "
                      f"presets: {', '.join(known) or 'none'}")


def load_preset(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The preset's settings with underscore keys."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read preset {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"preset {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"preset {path} must be a mapping of setting: value")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _coerce(cls_field: dataclasses.Field, value: Any, where: str) -> Any:
    """Check a preset value against the field's type (YAML already parsed numbers)."""
    if is_number_field(cls_field):  # None too: a number setting without a None default
        return coerce_number(cls_field, value, where)
    if value is None:
        return None
    kind = str(cls_field.type)
    name = cls_field.name
    if kind.startswith("bool"):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {name} must be true or false, got {value!r}")
        return value
    if kind.startswith("str"):
        if isinstance(value, bool):
            # YAML 1.1 reads on/off/yes/no as booleans; the text settings that take
            # on/off (faces) mean the words
            return "on" if value else "off"
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: {name} must be text, got {value!r}")
        return str(value)
    return value


def build_settings(cls: type[S], preset: str | None = None,
                   overrides: Mapping[str, Any] | None = None,
                   config_dir: Path = CONFIG_DIR) -> S:
    """`cls` defaults, then the preset (if any), then the explicit `overrides`."""
    names = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    if preset:
        path = find_preset(preset, config_dir)
        data = load_preset(path)
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(f"preset {path.name}: unknown setting(s) "
                              f"{', '.join(n.replace('_', '-') for n in unknown)}; "
                              f"known: {', '.join(n.replace('_', '-') for n in names)}")
        values.update({k: _coerce(names[k], v, f"preset {path.name}") for k, v in data.items()})
    for k, v in (overrides or {}).items():
        if k not in names:
            raise ConfigError(f"unknown setting {k!r}")
        values[k] = v
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(str(exc)) from None


# --- live (run_stream.py) ----------------------------------------------------------------

_SIZE = re.compile(r"([0-9]{1,5})x([0-9]{1,5})")


def parse_size(text: str, what: str) -> tuple[int, int]:
    """'1280x720' -> (1280, 720); each side MIN_SIDE..MAX_SIDE."""
    m = _SIZE.fullmatch(str(text).lower().replace(" ", ""))
    if m is None or not all(MIN_SIDE <= int(p) <= MAX_SIDE for p in m.groups()):
        raise ConfigError(f"{what} must be WIDTHxHEIGHT, each side from {MIN_SIDE} to "
                          f"{MAX_SIDE} (e.g. 1280x720), got {text!r}")
    return int(m[1]), int(m[2])


@dataclass(frozen=True)
class WorkSize:
    """The `work` setting, parsed: the working size the toon stage starts at (a short side,
    or (width, height)) and whether the face-first scheduler picks it (`auto`)."""

    start: int | tuple[int, int]
    auto: bool = False


def parse_work(text: str) -> WorkSize:
    """'360' -> a short side, '256x144' -> (width, height), 'auto' -> the smallest of
    AUTO_SIZES, where the scheduler starts before it has measured anything."""
    text = str(text).strip().lower()
    if text == "auto":
        return WorkSize(min(AUTO_SIZES), auto=True)
    if re.fullmatch(r"[0-9]+", text):
        side = SHORT_SIDE.value(text)
        if side is None:
            raise ConfigError(f"work must be a short side from {MIN_SIDE} to {MAX_SIDE}, "
                              f"WIDTHxHEIGHT or auto, got {text!r}")
        return WorkSize(side)
    return WorkSize(parse_size(text, "work"))


@dataclass(frozen=True)
class LiveSettings(FaceSettings, BackgroundSettings, TemporalOptions):
    """Everything run_stream needs; presets in configs/live-*.yaml."""

    source: str = "0"  # camera index or device path, "synthetic", a video file, or a URL
    camera_size: str = "1280x720"  # the mode asked of the camera (or the synthetic size)
    camera_fps: float = setting(30.0, FPS)
    camera_fourcc: str = "MJPG"
    camera_exact: bool = False  # a camera that gives another mode is an error, not a note
    # seconds to wait for a camera that stopped delivering
    reconnect: float = setting(5.0, Range(0, 3600))
    loop: bool = False  # replay a video file source
    style: str = "anime"
    models: str | None = None
    device: str = "auto"
    precision: str = "fast"
    net: str = "official"  # official | mobile: the light network (NETS)
    threads: int | None = setting(None, THREADS)
    work: str = "360"  # working size: a short side ("144"), WIDTHxHEIGHT ("256x144") or auto
    schedule: str = "face-first"  # face-first: the background yields size, then rate; off
    output_size: str | None = None  # WIDTHxHEIGHT of every sink; None: the source's size
    fps: float | None = setting(None, FPS)  # output rate (vcam); None: the source's rate
    sinks: tuple = ("vcam",)  # vcam, preview, null, udp://..., rtmp://..., FILE.mp4/.mkv/.ts
    preview: bool = False  # also show the preview window
    overlay: bool = True  # fps, latency and style drawn on the preview
    vcam_device: str | None = None
    vcam_backend: str | None = None
    # kbit/s for network streams (recordings are quality-based: video_file.py _LIVE_PRESET)
    bitrate: int = setting(2500, Range(100, 100_000, integer=True))
    gop: float = setting(1.0, Range(0, 60, above=True))  # seconds between key frames (streams)
    # frames each live queue holds (1-2: the toon stage takes the newest)
    queue: int = setting(1, Range(1, 2, integer=True))
    # seconds between status lines; 0: none
    status_every: float = setting(5.0, Range(0, 86400, note="0: none"))
    stats_json: str | None = None
    # stop after this long; None: until q or Ctrl+C
    seconds: float | None = setting(None, Range(0, None, above=True))
    commands: bool = True  # read style commands from standard input
    overwrite: bool = False  # recordings may replace an existing file

    def __post_init__(self) -> None:
        check_numbers(self)  # every number against the range on its field
        if isinstance(self.sinks, str):
            object.__setattr__(self, "sinks", (self.sinks,))
        elif isinstance(self.sinks, (list, tuple)):
            object.__setattr__(self, "sinks", tuple(str(s) for s in self.sinks))
        else:
            raise ConfigError(f"sinks must be a list of sinks, got {self.sinks!r}")
        if not self.sinks and not self.preview:
            raise ConfigError("no sink: give at least one --sink (vcam, preview, null, "
                              "udp://..., rtmp://..., FILE) or --preview")
        parse_size(self.camera_size, "camera-size")
        # OpenCV takes exactly four characters (a TypeError from cv2 otherwise); empty: the
        # camera's own format
        if self.camera_fourcc and not re.fullmatch(r"[ -~]{4}", str(self.camera_fourcc)):
            raise ConfigError(f"camera-fourcc must be four characters such as MJPG or YUYV, "
                              f"got {self.camera_fourcc!r}")
        if self.output_size is not None:
            w, h = parse_size(self.output_size, "output-size")
            if w % 2 or h % 2:
                raise ConfigError(f"output-size must be even (4:2:0 video), got {w}x{h}")
        # Parsed once, here: work_size, work_auto and work_spec() read this.
        object.__setattr__(self, "_work", parse_work(self.work))
        if self.schedule not in ("face-first", "off"):
            raise ConfigError(f"schedule must be face-first or off, got {self.schedule!r}")
        _check_engine_options(self.device, self.precision, live=True)
        _check_net(self.net)
        self._check_faces()
        self._check_background()
        self._check_temporal()

    @property
    def work_size(self) -> WorkSize:
        """The `work` setting, as parsed when these settings were made."""
        return self._work

    @property
    def work_auto(self) -> bool:
        """`work: auto`: the face-first scheduler picks the working size from model times
        measured at start and adjusts it to the load (streamer/live/schedule.py)."""
        return self._work.auto

    def work_spec(self) -> int | tuple[int, int]:
        """The working size: a short side, or (width, height); with `auto`, the smallest
        size the scheduler starts from before it has measured anything."""
        return self._work.start


LIVE_PRECISIONS = (*PRECISIONS, "auto")  # auto: chosen by measurement (live/precision.py)


def _check_engine_options(device: str, precision: str, live: bool = False) -> None:
    """The engine settings both the offline and the live path take from the user (threads
    is a number: its range is on the field)."""
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if live and precision == "auto":
        return
    if precision == "auto":
        raise ConfigError("precision auto is for live streams (run_stream, the web page's "
                          "webcam); offline conversion takes exact, fast or int8")
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose exact, fast or int8"
                          + (" or auto" if live else ""))


def _check_net(net: str) -> None:
    if net not in NETS:
        raise ConfigError(f"unknown net {net!r}; choose official or mobile (the light "
                          f"network: python -m streamer.models distill STYLE --photos PATH)")


def add_net_option(parser, default: str | None = None) -> None:
    """--net for run_video, run_stream and run_web (`parser` may be a group); `default`
    for the web page's parser, which declares its defaults (the others take the settings')."""
    extra = {} if default is None else {"default": default}
    parser.add_argument("--net", choices=NETS, **extra,
                        help="official: the DCT-Net generator; mobile: the light network "
                             "distilled from it (python -m streamer.models distill STYLE "
                             "--photos PATH), which also blends styles: --style anime+3d:0.3 "
                             "(default official)")


def default_help(cls: type) -> Callable[[str], str]:
    """`d(name)` -> "(default VALUE)" from the settings dataclass itself, so a help text
    never repeats a default by hand (and never drifts from it)."""
    defaults = {f.name: f.default for f in fields(cls)}

    def d(name: str) -> str:
        value = defaults[name]
        if isinstance(value, bool):
            value = "on" if value else "off"
        return f"(default {value})"
    return d


def add_face_options(parser: argparse.ArgumentParser, *, mode: bool = True) -> None:
    """The face-aware flow's options, the same for run_video, run_stream and run_web (no
    defaults here: an option not given is left out of the namespace and keeps the preset's
    value; see build_settings). `mode`: offer --faces (the web page has a switch instead)."""
    d = default_help(FaceSettings)
    g = parser.add_argument_group(
        "faces", "Each face is aligned, stylised by the head model and pasted over the "
                 "whole-frame result, tracked over time so it does not wobble or pop.")
    g.argument_default = argparse.SUPPRESS
    if mode:
        g.add_argument("--faces", choices=FACE_MODES,
                       help=f"auto: on when the face detector is installed {d('faces')}")
    g.add_argument("--max-faces", type=arg_type(FaceSettings, "max_faces"), metavar="N",
                   help=f"faces per frame, largest first {d('max_faces')}")
    g.add_argument("--min-face", type=arg_type(FaceSettings, "min_face"), metavar="PX",
                   help=f"skip faces this small or smaller, in pixels of the 720 working "
                        f"size, as the official code; 0: all {d('min_face')}")
    g.add_argument("--no-tracking", dest="tracking", action="store_false",
                   help="detect every frame with no smoothing or fades (the official "
                        "behaviour; faces jitter)")
    g.add_argument("--detect-every", type=arg_type(FaceSettings, "detect_every"), metavar="N",
                   help=f"frames between detections while tracking {d('detect_every')}")
    g.add_argument("--smooth-cutoff", type=arg_type(FaceSettings, "smooth_cutoff"), metavar="HZ",
                   help=f"One-Euro minimum cutoff: lower is steadier, higher reacts sooner "
                        f"{d('smooth_cutoff')}")
    g.add_argument("--smooth-beta", type=arg_type(FaceSettings, "smooth_beta"), metavar="B",
                   help=f"One-Euro speed gain: higher follows fast motion more closely "
                        f"{d('smooth_beta')}")
    g.add_argument("--fade", type=arg_type(FaceSettings, "fade"), metavar="S",
                   help=f"seconds a face takes to fade in or out {d('fade')}")


def add_background_options(parser: argparse.ArgumentParser, *, key_color: bool = True) -> None:
    """--background and its companions, the same for run_video, run_stream and run_web (no
    defaults here, as for the face options)."""
    d = default_help(BackgroundSettings)
    g = parser.add_argument_group(
        "background", "The person is found on the input frame (MediaPipe selfie segmentation) "
                      "and the cartoon's background is kept, made transparent, blurred or "
                      "replaced.")
    g.argument_default = argparse.SUPPRESS
    g.add_argument("--background", metavar="MODE",
                   help=f"{BACKGROUND_CHOICES}; transparent needs an output with alpha "
                        f"(PNG, WebP, .webm, .mov, a PNG folder, NDI) {d('background')}")
    if key_color:
        g.add_argument("--key-color", metavar="#RRGGBB",
                       help=f"with a transparent background, what outputs without alpha "
                            f"(virtual camera, streams) show behind the person: green for a "
                            f"chroma key {d('key_color')}")
    g.add_argument("--seg-model", choices=SEG_MODELS,
                   help=f"segmentation model: general (256x256), landscape (144x256, "
                        f"cheaper), auto: landscape for frames wider than 4:3 {d('seg_model')}")


def add_temporal_options(parser: argparse.ArgumentParser) -> None:
    """The temporal step's options, the same for run_video, run_stream and run_web (no
    defaults here, as add_face_options)."""
    d = default_help(TemporalOptions)
    g = parser.add_argument_group(
        "temporal", "Steady texture over time: the previous output, carried along the image "
                    "motion, is blended into the current one where the motion is reliable, "
                    "so the model's redrawn details do not flicker.")
    g.argument_default = argparse.SUPPRESS
    g.add_argument("--temporal", choices=TEMPORAL_MODES,
                   help=f"off: every frame stylised on its own, as the official code "
                        f"{d('temporal')}")
    g.add_argument("--temporal-strength",
                   type=arg_type(TemporalOptions, "temporal_strength"), metavar="S",
                   help=f"0..1, the weight of the previous output where the motion is "
                        f"reliable: higher is steadier {d('temporal_strength')}")
