"""A real camera through OpenCV's VideoCapture, by index or device path.

Opening asks for MJPG at the requested width, height and fps (MJPG is what lets USB 2
webcams deliver 720p30; uncompressed YUYV usually tops out at 10 fps there), asks the
driver for a one-frame buffer where the backend allows it (V4L2, DirectShow, MSMF do) so a
read never returns a stale frame, reads one frame to prove the mode works, and reports what
the camera actually delivers (`mode`). Cameras pick their nearest mode silently; with
`exact=True` a different size or a much lower frame rate is an error that says what the
camera gave.

A camera that stops delivering mid-stream (unplugged, taken by another program) is reopened
for `reconnect_s` seconds; if it does not come back the stream ends cleanly with
`ended_reason` saying so, and the caller reports it.
"""
from __future__ import annotations

import platform
import sys
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import cv2

from streamer.errors import UserError
from streamer.frame import Frame, StreamInfo
from streamer.stages import Source


class CameraError(UserError):
    """A camera problem, in one line for the user."""


# Seam for tests (and for the probe): how a capture is opened.
def open_capture(device: int | str, api: int) -> cv2.VideoCapture:
    return cv2.VideoCapture(device, api)


def _quiet_opencv() -> None:
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:  # very old builds
        pass


def default_api() -> int:
    """The capture backend that supports MJPG and buffer-size requests on this system."""
    system = platform.system()
    if system == "Linux":
        return cv2.CAP_V4L2
    if system == "Windows":
        return cv2.CAP_DSHOW  # opens fast and honours MJPG; MSMF takes seconds per open
    if system == "Darwin":
        return cv2.CAP_AVFOUNDATION
    return cv2.CAP_ANY


def _fourcc_str(value: float) -> str:
    code = int(value)
    if code <= 0:
        return "?"
    text = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4))
    return text if text.isprintable() else "?"


def parse_device(value: str | int) -> int | str:
    """'2' -> 2; '/dev/video2' and other names stay strings."""
    if isinstance(value, int):
        return value
    text = str(value).strip()
    return int(text) if text.isdigit() else text


def probe_cameras(limit: int = 10, api: int | None = None,
                  opener: Callable[[int | str, int], cv2.VideoCapture] | None = None
                  ) -> list[int]:
    """Indices 0..limit-1 that open and deliver a frame. On Linux only indices with a
    /dev/videoN node are tried, so the probe takes milliseconds when there is no camera."""
    _quiet_opencv()
    api = default_api() if api is None else api
    opener = opener or open_capture
    indices = list(range(limit))
    if platform.system() == "Linux" and opener is open_capture:
        indices = [i for i in indices if Path(f"/dev/video{i}").exists()]
    found = []
    for i in indices:
        cap = opener(i, api)
        try:
            if cap.isOpened() and cap.read()[0]:
                found.append(i)
        finally:
            cap.release()
    return found


@dataclass
class CameraMode:
    width: int
    height: int
    fps: float
    fourcc: str

    def __str__(self) -> str:
        return f"{self.width}x{self.height} @ {self.fps:g} fps {self.fourcc}"


class CameraSource(Source):
    """Frames from a camera; open in the constructor (errors before any model loads)."""

    name = "camera"

    def __init__(self, device: int | str = 0, width: int = 1280, height: int = 720,
                 fps: float = 30.0, *, fourcc: str = "MJPG", exact: bool = False,
                 reconnect_s: float = 5.0, api: int | None = None,
                 opener: Callable[[int | str, int], cv2.VideoCapture] | None = None):
        _quiet_opencv()
        self.device = parse_device(device)
        self.requested = CameraMode(int(width), int(height), float(fps), fourcc)
        self.exact = exact
        self.reconnect_s = reconnect_s
        self.api = default_api() if api is None else api
        self._opener = opener or open_capture
        self._stop = threading.Event()
        self.reconnects = 0
        self.skipped = 0
        self.ended_reason: str | None = None
        self.buffer_size_set = False
        self.time_base = Fraction(1, 1_000_000)  # pts: microseconds since the first frame
        self._cap = None
        self._first = None
        self._open(first=True)

    # --- opening ---------------------------------------------------------------------

    def _label(self) -> str:
        return f"camera {self.device}"

    def _configure(self, cap: cv2.VideoCapture) -> None:
        req = self.requested
        # V4L2 applies the pixel format first; size and rate are then chosen within it.
        if req.fourcc:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*req.fourcc))
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, req.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, req.height)
        cap.set(cv2.CAP_PROP_FPS, req.fps)
        self.buffer_size_set = bool(cap.set(cv2.CAP_PROP_BUFFERSIZE, 1))

    def _open(self, first: bool = False) -> bool:
        cap = self._opener(self.device, self.api)
        if not cap.isOpened():
            cap.release()
            if first:
                raise CameraError(self._not_found())
            return False
        self._configure(cap)
        ok, img = cap.read()
        if not ok or img is None:
            got = self._mode_of(cap)
            cap.release()
            if first:
                raise CameraError(
                    f"{self._label()} opened but delivered no frame in the requested mode "
                    f"{self.requested} (it reports {got}); try --camera-size "
                    f"{got.width}x{got.height} --camera-fps {got.fps:g}, or close other "
                    f"programs using it")
            return False
        mode = self._mode_of(cap, img)
        if first:
            self.mode = mode
            if self.exact and self._refused(mode):
                cap.release()
                raise CameraError(
                    f"{self._label()} refused {self.requested}: it gives {mode}; use "
                    f"--camera-size {mode.width}x{mode.height} --camera-fps {mode.fps:g}, "
                    f"or drop --camera-exact to accept what it gives")
        elif (img.shape[1], img.shape[0]) != (self.mode.width, self.mode.height):
            # Came back in another mode: frames of another size would break the sinks.
            cap.release()
            return False
        self._cap = cap
        self._first = img
        return True

    def _refused(self, mode: CameraMode) -> bool:
        req = self.requested
        return ((mode.width, mode.height) != (req.width, req.height)
                or (mode.fps > 0 and mode.fps < 0.9 * req.fps))

    def _mode_of(self, cap: cv2.VideoCapture, img=None) -> CameraMode:
        w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if img is not None:
            h, w = img.shape[:2]
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        return CameraMode(w, h, round(fps, 3), _fourcc_str(cap.get(cv2.CAP_PROP_FOURCC)))

    def _not_found(self) -> str:
        found = probe_cameras(api=self.api, opener=self._opener)
        listing = ", ".join(str(i) for i in found) if found else "none"
        what = (f"no camera at index {self.device}" if isinstance(self.device, int)
                else f"cannot open camera {self.device}")
        hint = ("" if found else
                "; check that it is plugged in and not used by another program"
                + (" (and that you are in the 'video' group)" if sys.platform.startswith("linux")
                   else ""))
        return f"{what}: cameras found (probing 0..9): {listing}{hint}"

    # --- reading ---------------------------------------------------------------------

    @property
    def fps(self) -> float:
        return self.mode.fps if self.mode.fps > 0 else self.requested.fps

    @property
    def width(self) -> int:
        return self.mode.width

    @property
    def height(self) -> int:
        return self.mode.height

    @property
    def info(self) -> StreamInfo:
        return StreamInfo(self.width, self.height, self.time_base,
                          Fraction(self.fps).limit_denominator(1001))

    def describe(self) -> str:
        note = "" if not self._refused(self.mode) else f" (asked {self.requested})"
        buf = ", 1-frame buffer" if self.buffer_size_set else ""
        return f"{self._label()}: {self.mode}{note}{buf}"

    def stop(self) -> None:
        self._stop.set()

    def _reconnect(self) -> bool:
        """Reopen every half second for `reconnect_s`; True when frames flow again."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        deadline = time.monotonic() + self.reconnect_s
        while time.monotonic() < deadline:
            if self._stop.wait(0.5):
                return False
            if self._open():
                self.reconnects += 1
                return True
        return False

    def frames(self) -> Iterator[Frame]:
        tb = self.time_base
        t0 = last = None
        index = 0
        try:
            while not self._stop.is_set():
                if self._first is not None:
                    img, self._first = self._first, None
                    ok = True
                else:
                    ok, img = self._cap.read() if self._cap is not None else (False, None)
                now = time.monotonic()
                if not ok or img is None:
                    if self._stop.is_set():
                        break
                    print(f"{self._label()} stopped delivering frames; reconnecting for "
                          f"{self.reconnect_s:g} s", file=sys.stderr, flush=True)
                    if self._reconnect():
                        print(f"{self._label()} is back", file=sys.stderr, flush=True)
                        last = None
                        continue
                    if not self._stop.is_set():
                        self.ended_reason = (
                            f"{self._label()} stopped delivering frames (unplugged or taken by "
                            f"another program) and did not come back within "
                            f"{self.reconnect_s:g} s; stopped after {index} frames")
                    break
                if t0 is None:
                    t0 = now
                elif last is not None and now - last > 1.5 / self.fps:
                    # frames the driver delivered while we were not reading (an estimate)
                    self.skipped += max(0, round((now - last) * self.fps) - 1)
                last = now
                yield Frame(index=index, pts=round((now - t0) * 1_000_000), time_base=tb,
                            capture_time=now, image=img)
                index += 1
        finally:
            self.close()

    def _release(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()

