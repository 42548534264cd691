"""Run a piece of a test with the file permissions of a plain user, also as root (CI runs as
root, and root reads and writes files whatever their mode).

As root the piece runs in a thread that has dropped the two capabilities that let root past
a file's mode (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH). On Linux capabilities belong to each
thread, so the rest of the test process keeps them; the thread ends with the piece. The
code under test then meets a mode-0 file or a read-only folder as anyone else would: the
same open() that fails, the same os.access() that says no.
"""
from __future__ import annotations

import ctypes
import os
import threading
from typing import Callable, TypeVar

import pytest

T = TypeVar("T")

_CAP_VERSION_3 = 0x20080522  # _LINUX_CAPABILITY_VERSION_3: two 32-bit words per set
_FILE_CAPS = (1 << 1) | (1 << 2)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _drop_file_capabilities() -> None:
    """Drop this thread's file capabilities for good (permitted too: os.access() checks a
    root caller against its permitted set)."""
    libc = ctypes.CDLL(None, use_errno=True)
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    keep = ~_FILE_CAPS & 0xFFFFFFFF
    data[0].effective &= keep
    data[0].permitted &= keep
    data[0].inheritable &= keep
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def as_plain_user(fn: Callable[[], T]) -> T:
    """`fn()`, run where file modes apply to it (see the module docstring)."""
    if os.geteuid() != 0:
        return fn()
    if not hasattr(ctypes.CDLL(None), "capset"):
        pytest.skip("root without Linux capabilities to drop")
    outcome: dict[str, object] = {}

    def body() -> None:
        try:
            _drop_file_capabilities()
            outcome["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            outcome["error"] = exc

    t = threading.Thread(target=body, name="plain-user")
    t.start()
    t.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]
