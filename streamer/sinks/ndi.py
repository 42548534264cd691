"""NDI output (`--sink ndi:NAME`): frames as an NDI source on the local network, with alpha.

OBS (with the DistroAV / obs-ndi plugin), vMix, Resolume and NDI Studio Monitor receive it as a
source named `HOST (NAME)`. Frames go out as BGRA (NDI's own 8-bit format with alpha), so with
`--background transparent` the receiver gets the cartoon person with transparent
surroundings, no chroma key; an opaque frame is sent with alpha 255.

Needs the optional extra `pip install 'toonstream[ndi]'` (cyndilib, which ships the NDI
runtime). Frames are sent without NDI's own clocking: the live pipeline already paces them.

Names: NDI keeps one source per name on a machine (whichever process made it), compares
names case-sensitively after replacing the characters `:<>\\/|?*"` with spaces, and refuses
a name that, with the machine's name around it ("HOST (NAME)"), is longer than 253 bytes.
A refused name is one `error:` line (`ndi_key` is the name as NDI compares it, for the
"given twice" check of the live sinks).
"""
from __future__ import annotations

import contextlib
import io
import socket
import unicodedata
from fractions import Fraction

import numpy as np

from streamer.errors import UserError
from streamer.frame import Frame
from streamer.stages import Sink

INSTALL = "pip install 'toonstream[ndi]' (cyndilib)"


class NdiError(UserError):
    """NDI cannot start here, in one line."""


#: characters NDI replaces with a space in a source name
_REPLACED = str.maketrans({c: " " for c in ':<>\\/|?*"'})
_FULL_NAME_MAX = 253  # bytes of "HOST (NAME)", measured with NDI 6 (cyndilib 0.1.3)


def ndi_name(spec: str) -> str | None:
    """'ndi:NAME' -> NAME (None for anything else)."""
    key = spec.strip()
    if not key.lower().startswith("ndi:"):
        return None
    return key[4:].strip()


def ndi_key(name: str) -> str:
    """The name as NDI tells sources apart: two names with the same key are one source."""
    return name.translate(_REPLACED)


def check_ndi_name(name: str) -> None:
    """NdiError, one line, for a name NDI cannot publish as given."""
    if not name.strip():
        raise NdiError("an NDI sink needs a name: --sink ndi:NAME")
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise NdiError(f"NDI name {name!r} holds a control character (a tab, a line break); "
                       f"use printable characters only")


def _refused(name: str) -> str:
    """Why NDI refused to create the source `name` (it only says that it did)."""
    host = socket.gethostname().split(".")[0].upper()
    size = len(f"{host} ({name})".encode())
    if size > _FULL_NAME_MAX:
        return (f"NDI refused the source name {name[:40]!r}...: with this machine's name it "
                f"is {size} bytes, and NDI takes at most {_FULL_NAME_MAX}; use a shorter "
                f"--sink ndi:NAME")
    return (f"NDI refused the source name {name!r}: a source of that name is already running "
            f"on this machine (another program, or another run); choose another --sink "
            f"ndi:NAME or stop the other one")


class NdiSink(Sink):
    name = "ndi"

    def __init__(self, source_name: str, width: int, height: int, fps: float):
        check_ndi_name(source_name)
        try:
            from cyndilib.audio_frame import AudioSendFrame
            from cyndilib.sender import Sender
            from cyndilib.video_frame import VideoSendFrame
            from cyndilib.wrapper.ndi_structs import FourCC
        except ImportError:
            raise NdiError(f"the NDI sink needs cyndilib: {INSTALL}") from None
        self.source_name = source_name
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        vf = VideoSendFrame()
        vf.set_resolution(self.width, self.height)
        vf.set_fourcc(FourCC.BGRA)
        vf.set_frame_rate(Fraction(self.fps).limit_denominator(1001))
        try:
            sender = Sender(source_name, clock_video=False)
            sender.set_video_frame(vf)
            # When NDI refuses a sender (a name in use, too long), cyndilib's open() tidies
            # up the audio frame without checking that there is one, and with none it
            # dereferences None: the process dies (exit 139). An audio frame that never
            # sends anything keeps that path safe. Its own line on stdout is kept off ours.
            sender.set_audio_frame(AudioSendFrame())
            with contextlib.redirect_stdout(io.StringIO()):
                sender.open()
        except MemoryError:  # NDIlib_send_create returned nothing: NDI refused the source
            raise NdiError(_refused(source_name)) from None
        except Exception as exc:  # cyndilib raises plain exceptions when NDI cannot start
            raise NdiError(f"NDI could not start ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                           f"{INSTALL}") from None
        self._sender = sender
        self._buf = np.empty((self.height, self.width, 4), np.uint8)
        self.frames = 0

    def describe(self) -> str:
        return f"NDI source {self.source_name!r} ({self.width}x{self.height} BGRA, alpha kept)"

    def to_bgra(self, img: np.ndarray) -> np.ndarray:
        """The frame as contiguous BGRA at the sink's size (alpha 255 for an opaque frame)."""
        if img.shape[:2] != (self.height, self.width):
            raise NdiError(f"frame is {img.shape[1]}x{img.shape[0]}, the NDI source "
                           f"{self.width}x{self.height}")
        buf = self._buf
        if img.shape[2] == 4:
            np.copyto(buf, img)
        else:
            buf[..., :3] = img
            buf[..., 3] = 255
        return buf

    def connections(self, timeout: float = 0.0) -> int:
        """Receivers connected now (NDI's own count)."""
        return int(self._sender.get_num_connections(timeout))

    def write(self, frame: Frame) -> None:
        buf = self.to_bgra(frame.image)
        self._sender.write_video(buf.ravel())
        self.frames += 1

    def _release(self) -> None:
        sender, self._sender = getattr(self, "_sender", None), None
        if sender is not None:
            sender.close()
