"""The virtual camera (pyvirtualcam): what Zoom, Meet, Teams and OBS see.

Pixel format: frames are BGR, and BGR is offered to the backend first (the v4l2loopback,
OBS and Unity Capture backends convert it with libyuv, cheaper than anything here); a
backend that refuses it gets RGB, then I420, converted with OpenCV into a buffer allocated
once.

Pacing: the camera is opened at the output fps and frames are sent as they come, but never
faster than that rate on average (a frame that arrives more than half an interval before
its slot waits for it), so a faster source does not flood the consumer. Frames are never
repeated: when the toon stage is slower than the output rate the consumer simply sees
fewer frames, as from a camera in low light.

No backend at all (no v4l2loopback module, no OBS virtual camera) is a VirtualCameraError
that says how to install one for this operating system.

pyvirtualcam reports every backend failure as a RuntimeError whose text joins the backends'
own messages; `open_camera` reads that text once and turns it into a type (a refused pixel
format is PixelFormatRefused, anything else VirtualCameraUnavailable), so nothing else here
looks at an error's words.
"""
from __future__ import annotations

import platform
import time
from typing import Callable

import cv2
import numpy as np

from streamer.errors import UserError
from streamer.frame import Frame
from streamer.stages import Sink


class VirtualCameraError(UserError):
    """No usable virtual camera, in one line with what to do."""


class VirtualCameraUnavailable(VirtualCameraError):
    """A backend answered but would not open a camera (no device, a busy or wrong device);
    the message is the backend's reason, which VirtualCamSink completes with what to do."""


class PixelFormatRefused(VirtualCameraError):
    """The backend does not take frames in this pixel format; another format may work."""


def install_hint(system: str | None = None) -> str:
    system = system or platform.system()
    if system == "Linux":
        return ("load the v4l2loopback module: `sudo modprobe v4l2loopback exclusive_caps=1 "
                "card_label=Toonstream` (package v4l2loopback-dkms), then run again")
    if system in ("Windows", "Darwin"):
        return ("install OBS Studio 30 or later and start its virtual camera once "
                "(Start Virtual Camera in OBS, then stop it and close OBS), then run again")
    return f"pyvirtualcam has no virtual camera backend for {system}"


def _first_line(text: str) -> str:
    return " ".join(str(text).split())


def open_camera(width: int, height: int, fps: float, fmt: str, *, device: str | None = None,
                backend: str | None = None):
    """A pyvirtualcam.Camera taking frames in pixel format `fmt` (a PixelFormat name);
    PixelFormatRefused when the backend does not take that format, VirtualCameraUnavailable
    when it cannot open a camera for any other reason."""
    import pyvirtualcam
    try:
        return pyvirtualcam.Camera(width, height, fps, fmt=getattr(pyvirtualcam.PixelFormat, fmt),
                                   device=device, backend=backend)
    except RuntimeError as exc:
        # The text is all pyvirtualcam gives: the backends say "Unsupported image format."
        reason = _first_line(exc)
        if "format" in reason.lower():
            raise PixelFormatRefused(reason) from None
        raise VirtualCameraUnavailable(reason) from None


class VirtualCamSink(Sink):
    name = "vcam"

    FORMATS = ("BGR", "RGB", "I420")

    def __init__(self, width: int, height: int, fps: float, *, device: str | None = None,
                 backend: str | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        try:
            from pyvirtualcam.camera import BACKENDS
        except ImportError:
            raise VirtualCameraError("the virtual camera needs pyvirtualcam: "
                                     "pip install pyvirtualcam") from None
        if backend is not None and backend not in BACKENDS:
            known = ", ".join(sorted(BACKENDS)) or "none on this system"
            raise VirtualCameraError(f"no virtual camera backend {backend!r} (available: {known})")
        if not BACKENDS:
            raise VirtualCameraError(f"no virtual camera backend: {install_hint()}")
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        self.interval = 1.0 / self.fps
        self._clock, self._sleep = clock, sleep
        errors = []
        cam = None
        for name in self.FORMATS:
            try:
                cam = open_camera(self.width, self.height, self.fps, name, device=device,
                                  backend=backend)
            except PixelFormatRefused as exc:
                errors.append(str(exc))
                continue
            except VirtualCameraUnavailable as exc:
                errors.append(str(exc))
                break  # not about the pixel format: another format will not help
            self.pixel_format = name
            break
        if cam is None:
            what = errors[-1] if errors else "no backend answered"
            if device is not None:
                raise VirtualCameraUnavailable(f"cannot open virtual camera {device}: {what}; "
                                               f"check the device name, or {install_hint()}")
            raise VirtualCameraUnavailable(f"no virtual camera ({what}): {install_hint()}")
        self.camera = cam
        self.backend = cam.backend
        self.device = cam.device
        if self.pixel_format == "RGB":
            self._buf = np.empty((self.height, self.width, 3), np.uint8)
        elif self.pixel_format == "I420":
            self._buf = np.empty((self.height * 3 // 2, self.width), np.uint8)
        else:
            self._buf = None
        self._resized = None
        self._due: float | None = None
        self.frames = 0
        self.waited_s = 0.0

    def describe(self) -> str:
        return (f"virtual camera {self.device} ({self.backend}, {self.width}x{self.height} "
                f"@ {self.fps:g} fps, {self.pixel_format})")

    def _pace(self) -> None:
        now = self._clock()
        if self._due is None or now - self._due > self.interval:
            self._due = now  # first frame, or we fell behind: no catching up in a burst
        wait = self._due - now - 0.5 * self.interval
        if wait > 0:
            self._sleep(wait)
            self.waited_s += wait
        self._due += self.interval

    def write(self, frame: Frame) -> None:
        img = frame.image
        if img.shape[:2] != (self.height, self.width):
            if self._resized is None:
                self._resized = np.empty((self.height, self.width, 3), np.uint8)
            img = cv2.resize(img, (self.width, self.height), dst=self._resized,
                             interpolation=cv2.INTER_LINEAR)
        if self.pixel_format == "RGB":
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB, dst=self._buf)
        elif self.pixel_format == "I420":
            img = cv2.cvtColor(img, cv2.COLOR_BGR2YUV_I420, dst=self._buf)
        elif not img.flags.c_contiguous:
            img = np.ascontiguousarray(img)
        self._pace()
        self.camera.send(img)
        self.frames += 1

    def finish(self) -> None:
        self.close()

    def _release(self) -> None:
        cam, self.camera = getattr(self, "camera", None), None
        if cam is not None:
            cam.close()
