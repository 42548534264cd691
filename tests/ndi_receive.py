"""A stand-in for OBS's NDI source in the tests: find an NDI source on this machine, connect,
and save the first complete BGRA frame it sends.

    NDI_CONFIG_DIR=DIR python tests/ndi_receive.py NAME TIMEOUT_S OUT.npy

NDI finds sources by mDNS, which test sandboxes often lack; `ndi_config(dir)` writes an NDI
config whose unicast discovery list is 127.0.0.1, so a sender and a receiver on one machine
find each other without it (the config is read when the NDI runtime starts, hence the
environment variable and a fresh process).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np


def ndi_config(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ndi-config.v1.json").write_text(json.dumps(
        {"ndi": {"networks": {"ips": "127.0.0.1", "discovery": ""},
                 "multicast": {"send": {"enable": False}}}}))
    return folder


def receive(name: str, timeout: float, want_alpha: bool = True) -> np.ndarray | None:
    from cyndilib.finder import Finder
    from cyndilib.receiver import Receiver
    from cyndilib.video_frame import VideoFrameSync
    from cyndilib.wrapper.ndi_recv import RecvBandwidth, RecvColorFormat

    deadline = time.monotonic() + timeout
    finder = Finder()
    finder.open()
    try:
        source = None
        while source is None and time.monotonic() < deadline:
            finder.wait_for_sources(0.5)
            hits = [n for n in finder.get_source_names() if n.endswith(f"({name})")]
            if hits:
                source = finder.get_source(hits[0])
        if source is None:
            return None
        recv = Receiver(color_format=RecvColorFormat.BGRX_BGRA, bandwidth=RecvBandwidth.highest)
        frame = VideoFrameSync()
        recv.frame_sync.set_video_frame(frame)
        recv.set_source(source)
        while time.monotonic() < deadline:
            recv.frame_sync.capture_video()
            w, h = frame.xres, frame.yres
            data = frame.get_array()
            if w and h and data.size >= w * h * 4:
                img = np.array(data[: w * h * 4]).reshape(h, w, 4)
                if not want_alpha or img[..., 3].max() > 0:
                    return img
            time.sleep(0.05)
        return None
    finally:
        finder.close()


if __name__ == "__main__":
    got = receive(sys.argv[1], float(sys.argv[2]))
    if got is None:
        print("no frame")
        sys.exit(1)
    np.save(sys.argv[3], got)
    print(f"received {got.shape[1]}x{got.shape[0]}")
