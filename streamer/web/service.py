"""What the web page does, without the page: photos, videos and webcam frames through the
project's own conversion paths, one model run at a time, with limits and temporary files.

- Photo and video go through run_video's own conversion (`streamer.video.convert`), with a
  `VideoSettings` built the way the command line builds it; a photo on the page is therefore
  the same pixels as `python run_video.py photo.png -o out.png --style S`.
- Webcam frames go through the live path's toon callable (`streamer.live.toon.LiveToon`):
  a smaller working size (`live_size` short side, default 360, as run_stream's) and, with
  faces on, the tracking face-aware flow, which keeps its tracks per browser session.
- Every flow comes from one `StyleFlows` (streamer.toon.styles), so engines are started once
  per style and shared by photos, videos, webcam sessions and faces on or off.
- `lock` is the device: every model run (previews, photos, videos, webcam frames) holds it,
  so two browser tabs never run the model at the same time even outside Gradio's queue.
- Files: every request works in its own folder under one temporary folder of the service;
  folders older than `keep_s` are swept at each new request and everything goes at `close()`.
"""
from __future__ import annotations

import collections
import dataclasses
import re
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import cv2
import numpy as np

from streamer.config import VideoSettings, build_settings
from streamer.errors import UserError
from streamer.report import Log, one_line
from streamer.sinks.video_file import ContainerCannotHold
from streamer.sources.video_file import MediaError, VideoFileSource, is_still_container
from streamer.toon.flow import FullFrameFlow
from streamer.toon.styles import StyleFlows, flows_variant
from streamer.video.convert import Job, convert_still, convert_video
from streamer.video.progress import ProgressCallback

from .previews import test_pattern

#: the working short side of webcam frames (the official 720 is too slow for live on a CPU)
LIVE_SHORT_SIDE = 360
#: webcam frames larger than this (long side) are reduced first: the page shows them small
LIVE_MAX_SIDE = 960


class WebError(UserError, ValueError):
    """Something the user can fix (a limit, a bad file); the message is shown as is."""


@dataclass(frozen=True)
class Limits:
    """What one request may ask for. The upload size limit itself is Gradio's
    (`max_file_size`, checked in the browser and on the server)."""

    max_file_size: str = "200mb"
    max_video_seconds: float = 120.0
    max_video_pixels: int = 3840 * 2160
    max_photo_pixels: int = 50_000_000

    def __post_init__(self) -> None:
        if self.max_video_seconds <= 0:
            raise ValueError("the video duration limit must be positive")


def _safe_stem(name: str, fallback: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem).strip("._")
    return stem[:60] or fallback


def _megapixels(n: int) -> str:
    return f"{n / 1e6:.0f} MP" if n >= 1e6 else f"{n} pixels"


class ToonService:
    """The model side of the page; see the module docstring."""

    def __init__(self, *, models: str | None = None, device: str = "auto",
                 precision: str = "exact", webcam_precision: str = "auto",
                 threads: int | None = None, net: str = "official",
                 live_size: int = LIVE_SHORT_SIDE, limits: Limits = Limits(),
                 log: Log | None = None, keep_s: float = 900.0,
                 face_options: Mapping[str, Any] | None = None, background: str = "keep"):
        """`face_options`: FaceSettings fields (max_faces, detect_every, smooth_cutoff ...)
        as run_video takes them; photos, videos and the webcam all follow them.
        `webcam_precision`: the webcam's own (auto: chosen by measurement at its first
        frame, live/precision.py); photos and videos keep `precision`."""
        self.log = log or Log()
        self.limits = limits
        self.live_size = live_size
        self.keep_s = keep_s
        # The command line's settings object, checked the way the command line checks it.
        self.base = build_settings(VideoSettings, None, {
            **(face_options or {}), "background": background,
            "models": models, "device": device,
            "precision": precision, "threads": threads, "net": net, "overwrite": True,
            "progress": False})
        self.flows = StyleFlows.from_settings(self.base, self.log)
        if webcam_precision not in ("auto", "exact", "fast", "int8"):
            raise WebError(f"unknown webcam precision {webcam_precision!r}; choose auto, "
                           f"exact, fast or int8")
        self.webcam_precision = webcam_precision
        self._webcam_flows = (self.flows if webcam_precision in ("auto", precision)
                              else flows_variant(self.flows, precision=webcam_precision))
        self._chooser = None  # precision auto's, made at the first webcam frame
        self.store = self.flows.store
        self.styles = self.flows.installed_styles()
        if not self.styles and net == "mobile":
            from streamer.models.layout import store_command
            from streamer.models.mobile.store import (StudentMissing, distill_command,
                                                      shipped_student)
            shipped = shipped_student([])
            raise StudentMissing(
                f"--net mobile: no light network is installed in the model store "
                f"{self.store.root}: make one with `{distill_command('anime')}`" + (
                    f", or install the generic one that ships with Toonstream with "
                    f"`{store_command(self.store.root, f'import {shipped}')}`" if shipped else ""))
        if not self.styles:
            from streamer.models import ModelNotInstalled
            raise ModelNotInstalled(
                f"no style is installed in the model store {self.store.root}: run "
                f"`python -m streamer.models fetch anime` (or pass --models DIR)")
        self.default_style = "anime" if "anime" in self.styles else self.styles[0]
        #: the page's faces switch starts on when the detector and head mask are installed
        self.faces_available = self.flows.face_files() is not None
        #: the page's steady (temporal step) switch starts as run_video's --temporal
        self.temporal_default = self.base.temporal == "on"
        self.lock = threading.Lock()
        self.workdir = Path(tempfile.mkdtemp(prefix="toonstream-web-"))
        self._live: collections.OrderedDict[str, tuple[tuple, object]] = collections.OrderedDict()
        self._previews: list[tuple[str, np.ndarray]] | None = None
        self._closed = False

    # --- settings and engines ----------------------------------------------------------

    def check_style(self, style: str) -> str:
        if style not in self.styles:
            raise WebError(f"style {style!r} is not installed here; installed: "
                           f"{', '.join(self.styles)}")
        return style

    def settings(self, style: str, faces: bool, background: str | None = None,
                 temporal: bool | None = None) -> VideoSettings:
        """What `run_video.py --style STYLE --faces on|off --background B [--temporal on|off]`
        would run with (a bad background is the command line's one-line ConfigError;
        `background`, `temporal` None: the command line's setting)."""
        s = dataclasses.replace(self.base, style=self.check_style(style),
                                faces="on" if faces else "off",
                                background=self.base.background if background is None
                                else background)
        if temporal is not None:
            s = dataclasses.replace(s, temporal="on" if temporal else "off")
        return s

    @property
    def default_background(self) -> str:
        return self.base.background

    def job(self, style: str, faces: bool = False, background: str | None = None,
            temporal: bool | None = None) -> Job:
        """run_video's job for one request, on the page's shared style flows."""
        return Job(self.settings(style, faces, background, temporal), self.log,
                   flows=self.flows)

    def describe(self) -> str:
        """The engine that runs (started for the default style if none is yet)."""
        with self.lock:
            return self.flows.engine(self.default_style).describe()

    # --- files ---------------------------------------------------------------------------

    def job_dir(self) -> Path:
        """A fresh folder for one request; sweeps the folders of old requests."""
        if self._closed:
            raise WebError("the server is shutting down")
        now = time.time()
        for old in self.workdir.iterdir():
            try:
                if now - old.stat().st_mtime > self.keep_s:
                    shutil.rmtree(old, ignore_errors=True)
            except OSError:
                pass
        d = self.workdir / uuid.uuid4().hex
        d.mkdir()
        return d

    def close(self) -> None:
        self._closed = True
        self._live.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # --- previews --------------------------------------------------------------------------

    def previews(self) -> list[tuple[str, np.ndarray]]:
        """(style, RGB thumbnail) for every installed style, made once."""
        if self._previews is None:
            pattern = test_pattern()
            out = []
            with self.lock:
                for style in self.styles:
                    flow = FullFrameFlow(self.flows.engine(style), ring=1)
                    out.append((style, np.ascontiguousarray(flow([pattern])[0][..., ::-1])))
            self._previews = out
        return self._previews

    # --- photo ---------------------------------------------------------------------------

    def _check_photo(self, path: Path) -> None:
        try:
            from PIL import Image
            with Image.open(path) as im:
                w, h = im.size
        except Exception:  # noqa: BLE001 - not PIL's format: OpenCV may still read it
            return
        if w * h > self.limits.max_photo_pixels:
            raise WebError(f"the photo is {w}x{h} ({_megapixels(w * h)}); this server takes "
                           f"photos up to {_megapixels(self.limits.max_photo_pixels)}")

    def photo(self, src: str | Path, style: str, faces: bool = False,
              background: str | None = None) -> Path:
        """Cartoonize one photo the way `run_video.py src -o out.png` does; returns the PNG
        (with alpha when the background is transparent)."""
        if not src:
            raise WebError("upload a photo first")
        src = Path(src)
        self._check_photo(src)
        job = self.job(style, faces, background)
        dst = self.job_dir() / f"{_safe_stem(src.name, 'photo')}_{style}.png"
        with self.lock:
            convert_still(src, dst, job)
        return dst

    # --- video ---------------------------------------------------------------------------

    def _check_video(self, src: Path) -> None:
        source = VideoFileSource(src)
        try:
            info = source.info
        finally:
            source.close()
        lim = self.limits
        if is_still_container(source.probe.container):
            raise WebError(f"{src.name} is a still image ({source.probe.codec}), not a video: "
                           f"use the Photo tab")
        if info.duration is not None and info.duration > lim.max_video_seconds + 0.05:
            raise WebError(f"the video is {info.duration:.1f} s long; this server converts "
                           f"videos up to {lim.max_video_seconds:g} s")
        if info.duration is None and info.frames == 0:
            raise WebError("the video does not say how long it is; this server converts "
                           f"videos of known length up to {lim.max_video_seconds:g} s")
        if info.width * info.height > lim.max_video_pixels:
            raise WebError(f"the video is {info.width}x{info.height}; this server converts "
                           f"videos up to {_megapixels(lim.max_video_pixels)} a frame")

    def video(self, src: str | Path, style: str, faces: bool = False,
              on_progress: ProgressCallback | None = None, background: str | None = None,
              on_warning: Callable[[str], None] | None = None,
              temporal: bool | None = None) -> Path:
        """Convert one video the way `run_video.py src -o out.mp4` does (audio kept);
        returns the output file (.mp4, or .webm for a WebM input, .mkv when the input's
        audio cannot go into MP4 untouched). `on_warning` gets each warning run_video
        prints (a damaged or truncated input, converted as far as it decodes)."""
        if not src:
            raise WebError("upload a video first")
        src = Path(src)
        self.check_style(style)
        self._check_video(src)
        job = self.job_dir()
        stem = _safe_stem(src.name, "video")
        work = self.job(style, faces, background, temporal)
        # A transparent background needs alpha: WebM VP9 (browsers play it with alpha).
        suffix = ".webm" if src.suffix.lower() == ".webm" or work.alpha else ".mp4"
        with self.lock:
            dst = job / f"{stem}_{style}{suffix}"
            try:
                result = convert_video(src, dst, work, on_progress)
            except ContainerCannotHold:
                if suffix == ".mkv":
                    raise
                dst = job / f"{stem}_{style}.mkv"  # Matroska takes any audio as it is
                result = convert_video(src, dst, work, on_progress)
        if on_warning is not None:
            for warning in result.warnings:
                on_warning(warning)
        return dst

    # --- webcam ----------------------------------------------------------------------------

    def _live_toon(self, session: str, style: str, faces: bool, w: int, h: int,
                   background: str = "keep", temporal: bool | None = None):
        from streamer.live.toon import LiveToon, style_factory, working_size

        key = (style, bool(faces), w, h, background, temporal)
        held = self._live.get(session)
        if held is not None and held[0] == key:
            self._live.move_to_end(session)
            return held[1]
        spec = self.settings(style, faces, background).background_spec()
        work_wh = working_size(w, h, self.live_size)
        # FaceAwareFlow with faces on, whose heads LiveToon pastes at the frame's own size;
        # the background treatment is LiveToon's own last step.
        factory = style_factory(self._webcam_choice(style, faces, work_wh), work_wh,
                                faces=faces, temporal=temporal)
        toon = LiveToon(factory, style, work_wh, (w, h), ring=2, cache_size=1,
                        initial=factory(style), background=spec,
                        segmenter=self.flows.segmenter() if spec.needs_mask else None)
        self._live[session] = (key, toon)
        while len(self._live) > 8:  # browser sessions that went away
            self._live.popitem(last=False)
        return toon

    def _webcam_choice(self, style: str, faces: bool, work_wh: tuple[int, int]):
        """What the webcam's styles are built with: the chooser of `--webcam-precision
        auto` (measured once, at the first webcam frame, at the webcam's working size),
        else the flows of the precision given."""
        if self.webcam_precision != "auto" or self.net == "mobile":
            return self._webcam_flows
        if self._chooser is None:
            from streamer.live.precision import PrecisionChooser, int8_unavailable

            w, h = work_wh
            self._chooser = PrecisionChooser(
                flows_variant(self.flows, precision="fast"), style,
                lambda: {min(w, h): (1, h, w, 3)},
                int8_unavailable(self.base.device), self.log, faces=faces)
        return self._chooser

    @property
    def net(self) -> str:
        return self.flows.net

    def webcam(self, rgb: np.ndarray | None, style: str, faces: bool = False,
               session: str = "", background: str | None = None,
               temporal: bool | None = None) -> np.ndarray | None:
        """Stylise one webcam frame (RGB in, RGB out) through the live path's toon callable
        (LiveToon: working size `live_size`, rounded to multiples of 16, result enlarged back
        to the frame's size). One per browser session, rebuilt when the style, the faces
        switch, the steady switch (`temporal`, None: the command line's setting) or the
        frame size changes."""
        if rgb is None:
            return None
        self.check_style(style)
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[..., None], 3, axis=2)
        bgr = np.ascontiguousarray(rgb[..., 2::-1], dtype=np.uint8)  # drops an alpha channel
        h, w = bgr.shape[:2]
        if max(h, w) > LIVE_MAX_SIDE:  # a camera that ignored the 640x480 request
            k = LIVE_MAX_SIDE / max(h, w)
            w, h = max(16, round(w * k)), max(16, round(h * k))
            bgr = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA)
        background = self.default_background if background is None else background
        with self.lock:
            toon = self._live_toon(session, style, faces, w, h, background, temporal)
            # the tracker smooths over real time: webcam frames come when the browser sends
            out = toon([bgr], [time.monotonic()])[0]
            if out.shape[2] == 4:  # transparent: RGBA, a copy (the ring is reused)
                return np.ascontiguousarray(out[..., [2, 1, 0, 3]])
            return np.ascontiguousarray(out[..., ::-1])  # a copy: the ring is reused


def message(exc: BaseException) -> str:
    """One line for the page."""
    return one_line(exc)


__all__ = ["Limits", "LIVE_SHORT_SIDE", "MediaError", "ToonService", "UserError", "WebError",
           "message"]
