"""Small media made by the tests themselves (no shared file needed)."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def make_clip(path: Path, *, seconds: float = 1.0, fps: int = 10, size: tuple[int, int] = (160, 128),
              audio: bool = True) -> int:
    """Write an H.264 clip (a moving bright square on a gradient) with an AAC tone when
    `audio`; returns the number of video frames written."""
    w, h = size
    frames = int(round(seconds * fps))
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 255 // max(1, w - 1)), (yy * 255 // max(1, h - 1)),
                     np.full_like(xx, 128)], axis=-1).astype(np.uint8)
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        a = None
        if audio:
            a = out.add_stream("aac", rate=44100)
            a.layout = "mono"
        for i in range(frames):
            img = base.copy()
            x = (i * 7) % max(1, w - 32)
            img[40:72, x:x + 32] = (250, 240, 200)
            vf = av.VideoFrame.from_ndarray(img, format="rgb24")
            vf.pts = i
            vf.time_base = Fraction(1, fps)
            for pkt in v.encode(vf):
                out.mux(pkt)
        for pkt in v.encode():
            out.mux(pkt)
        if a is not None:
            rate, n = 44100, int(44100 * seconds)
            t = np.arange(n) / rate
            tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for start in range(0, n, 1024):
                chunk = tone[start:start + 1024]
                af = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
                af.sample_rate = rate
                af.pts = start
                af.time_base = Fraction(1, rate)
                for pkt in a.encode(af):
                    out.mux(pkt)
            for pkt in a.encode():
                out.mux(pkt)
    return frames


def probe(path: Path) -> tuple[int, int, int, int]:
    """(video frames decoded, width, height, audio streams) of a file."""
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        n = sum(1 for _ in c.decode(vs))
        return n, vs.codec_context.width, vs.codec_context.height, len(c.streams.audio)
