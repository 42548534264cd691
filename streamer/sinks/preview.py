"""A preview window (cv2.imshow) with an optional overlay of fps, latency and style.

GUI toolkits want one thread (macOS: the main one), so `write()` (the pipeline's sink
thread) only copies the frame into a slot, and `pump()`, called from the main thread a
few dozen times a second, shows the newest frame and returns the key pressed, if any.
The copy is needed because stylised images live in a ring the toon stage reuses.

Needs an OpenCV build with a GUI (the `opencv-python` wheel; `opencv-python-headless` has
none) and, on Linux, a display.
"""
from __future__ import annotations

import os
import platform
import threading
from typing import Callable

import cv2
import numpy as np

from streamer.errors import UserError
from streamer.frame import Frame
from streamer.stages import Sink


class PreviewError(UserError):
    """The preview window cannot open, in one line with what to do."""


def gui_available() -> str | None:
    """None when a window can open here, else why not."""
    if platform.system() == "Linux" and not (os.environ.get("DISPLAY")
                                             or os.environ.get("WAYLAND_DISPLAY")):
        return "no display (DISPLAY is not set); run it in a desktop session, or use --sink udp://..."
    info = cv2.getBuildInformation()
    gui = ""
    for line in info.splitlines():
        if line.strip().startswith("GUI:"):
            gui = line.split(":", 1)[1].strip()
            break
    if gui.upper() in ("NONE", ""):
        return ("this OpenCV has no GUI support (opencv-python-headless): "
                "pip uninstall -y opencv-python-headless && pip install opencv-python")
    return None


class PreviewSink(Sink):
    name = "preview"

    def __init__(self, title: str = "Toonstream", *, overlay: bool = True,
                 overlay_text: Callable[[], str] | None = None, check: bool = True):
        if check:
            why = gui_available()
            if why is not None:
                raise PreviewError(f"cannot open the preview window: {why}")
        self.title = title
        self.overlay = overlay
        self.overlay_text = overlay_text
        self._lock = threading.Lock()
        self._slot: np.ndarray | None = None
        self._fresh = False
        self._window = False
        self.shown = 0
        self.closed_by_user = False

    def describe(self) -> str:
        return "preview window"

    def write(self, frame: Frame) -> None:
        img = frame.image
        if img.ndim == 3 and img.shape[2] == 4:
            # A transparent background shows as the usual grey checkerboard.
            from streamer.toon.background import checkerboard
            img = checkerboard(img)
        with self._lock:
            if self._slot is None or self._slot.shape != img.shape:
                self._slot = np.empty_like(img)
            np.copyto(self._slot, img)
            self._fresh = True

    def pump(self, wait_ms: int = 1) -> int | None:
        """Show the newest frame (main thread); the key pressed (as a code) or None."""
        show = None
        with self._lock:
            if self._fresh:
                show = self._slot.copy()
                self._fresh = False
        if show is not None:
            if self.overlay and self.overlay_text is not None:
                self._draw_overlay(show, self.overlay_text())
            if not self._window:
                cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
                cv2.resizeWindow(self.title, show.shape[1], show.shape[0])
                self._window = True
            cv2.imshow(self.title, show)
            self.shown += 1
        if not self._window:
            return None
        key = cv2.waitKey(wait_ms)
        try:
            if cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
                self.closed_by_user = True
                return ord("q")
        except cv2.error:
            pass
        return None if key < 0 else key & 0xFF

    @staticmethod
    def _draw_overlay(img: np.ndarray, text: str) -> None:
        scale = max(0.45, img.shape[0] / 1100)
        thick = max(1, int(scale * 2))
        y = int(28 * scale) + 4
        for line in text.splitlines():
            (w, h), _ = cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
            cv2.rectangle(img, (4, y - h - 6), (12 + w, y + 6), (0, 0, 0), -1)
            cv2.putText(img, line, (8, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                        thick, cv2.LINE_AA)
            y += h + 14

    def finish(self) -> None:
        pass

    def _release(self) -> None:
        if self._window:
            try:
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)
            except cv2.error:
                pass
            self._window = False
