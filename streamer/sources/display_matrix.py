"""Read a decoded frame's display matrix without PyAV's side-data objects.

Why not `frame.side_data`: building PyAV's side-data container wraps every side-data entry
of the frame, and two of those wraps are fatal (PyAV 18 with FFmpeg 8):

- an entry whose type PyAV's enum does not know (FFmpeg 8's EXIF block, type 31, which the
  MJPEG decoder attaches) raises `ValueError: 31 is not a valid Type`;
- an entry with metadata (the ICC profile of a PNG or JPEG) gets its AVDictionary freed
  twice when the frame is garbage-collected: a segfault that kills whatever process read it
  (the web server included).

So the matrix is looked up the way FFmpeg's own tools do, with `av_frame_get_side_data()` from
the libavutil that PyAV loaded, on the frame's AVFrame pointer. Every step is checked before
memory is read (the library must be the one PyAV loaded, the pointer must be readable and
must be the frame's own, seen through its first plane); when a check fails, the rotation comes
from `frame.rotation` (PyAV reads it in C, safely) and flips, which only the full matrix
carries, are not known.
"""
from __future__ import annotations

import ctypes
import glob
import os
import sys
from functools import lru_cache
from pathlib import Path

import av
import numpy as np

# AV_FRAME_DATA_DISPLAYMATRIX: part of FFmpeg's stable ABI since 2014.
_DISPLAYMATRIX = 6


class _AVFrameSideData(ctypes.Structure):
    # libavutil/frame.h; the first three fields have not moved since FFmpeg 2.x
    _fields_ = [("type", ctypes.c_int), ("data", ctypes.c_void_p), ("size", ctypes.c_size_t)]


def _pyav_avutil_path() -> str | None:
    """The libavutil PyAV runs on. Other packages bring their own copy (OpenCV's wheel
    does), so the one to use is the copy bundled in PyAV's wheel when there is one, else the
    only libavutil mapped into this process (a PyAV built against the system FFmpeg)."""
    root = Path(av.__file__).resolve().parent
    bundled: list[str] = []
    for pattern in ("../av.libs/*avutil*", ".dylibs/libavutil*", "../av.libs/avutil*.dll"):
        bundled += sorted(glob.glob(str(root / pattern)))
    if len(bundled) == 1:
        return str(Path(bundled[0]).resolve())
    if bundled:
        return None  # two builds side by side: do not guess
    maps = Path("/proc/self/maps")
    if not maps.exists():
        return None
    try:
        mapped = {line.split()[-1] for line in maps.read_text().splitlines()
                  if "libavutil" in line.rsplit("/", 1)[-1]}
    except OSError:
        return None
    return mapped.pop() if len(mapped) == 1 else None


@lru_cache(maxsize=1)
def _avutil() -> ctypes.CDLL | None:
    path = _pyav_avutil_path()
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(path)
        fn = lib.av_frame_get_side_data
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.POINTER(_AVFrameSideData)
    fn.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return lib


@lru_cache(maxsize=1)
def _readable_probe():
    """A function telling whether `n` bytes at an address can be read, without reading them
    in Python: write(2) into a pipe fails with EFAULT instead of crashing. POSIX only."""
    if sys.platform == "win32":
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        write = libc.write
    except (OSError, AttributeError):
        return None
    write.restype = ctypes.c_ssize_t
    write.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
    r, w = os.pipe()

    def readable(address: int, n: int) -> bool:
        if not address:
            return False
        ok = write(w, address, n) == n
        if ok:
            os.read(r, n)  # keep the pipe empty
        return ok

    return readable


def _avframe_pointer(frame: av.VideoFrame) -> int | None:
    """The AVFrame* of a PyAV frame: the first field after the object header and Cython's
    method table pointer, accepted only when its data[0] is the frame's first plane."""
    readable = _readable_probe()
    if readable is None or not frame.planes:
        return None
    ptr_size = ctypes.sizeof(ctypes.c_void_p)
    slot = id(frame) + object.__basicsize__ + ptr_size
    if type(frame).__basicsize__ < slot - id(frame) + ptr_size:
        return None
    ptr = ctypes.c_void_p.from_address(slot).value
    if not ptr or not readable(ptr, ptr_size):
        return None
    if ctypes.c_void_p.from_address(ptr).value != frame.planes[0].buffer_ptr:
        return None
    return ptr


def read_display_matrix(frame: av.VideoFrame) -> tuple[bool, np.ndarray | None]:
    """(known, matrix): the frame's 3x3 display matrix as 9 int32 in FFmpeg's layout, None
    when the frame has none; `known` is False when it could not be read safely (see the
    module docstring), and then the caller has only `frame.rotation`."""
    lib = _avutil()
    ptr = _avframe_pointer(frame) if lib is not None else None
    if ptr is None:
        return False, None
    sd = lib.av_frame_get_side_data(ptr, _DISPLAYMATRIX)
    if not sd:
        return True, None
    entry = sd.contents
    if entry.size < 36 or not _readable_probe()(entry.data, 36):
        return False, None
    return True, np.frombuffer(ctypes.string_at(entry.data, 36), np.int32).copy()
