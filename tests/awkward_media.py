"""Awkward inputs made on the fly, as users' cameras, editors and broken copies write them:
PNGs with a colour profile, JPEGs with EXIF, Motion-JPEG AVI, display matrices, remuxed AVI,
files that end early or are damaged in the middle, odd audio tracks and RGBA cutouts. No
shared file is needed; every picture is small so CI stays fast on two cores."""
from __future__ import annotations

import struct
import zlib
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np


def picture(i: int, h: int = 48, w: int = 64) -> np.ndarray:
    """A lopsided moving picture: a gradient, a white block top-left, a moving bar."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = (x * 255 // max(w - 1, 1)).astype(np.uint8)
    img[..., 1] = (y * 255 // max(h - 1, 1)).astype(np.uint8)
    img[..., 2] = (i * 37) % 256
    img[: h // 3, : w // 3] = 255
    img[:, (i * 3) % w: (i * 3) % w + 2] = 0
    return img


def rgba_picture(h: int = 48, w: int = 64) -> np.ndarray:
    """`picture(0)` with an alpha channel that fades left to right and has a hole."""
    img = np.dstack([picture(0, h, w), np.zeros((h, w), np.uint8)])
    img[..., 3] = np.tile(np.linspace(0, 255, w).astype(np.uint8), (h, 1))  # a fade
    img[h // 4: h // 2, w // 4: w // 2, 3] = 0  # a hole
    return img


def png_with_icc(img: np.ndarray) -> bytes:
    """A PNG with an iCCP chunk (an embedded colour profile), as cameras and editors write."""
    ok, buf = cv2.imencode(".png", img)
    png = buf.tobytes()
    ihdr_end = 8 + 4 + 4 + 13 + 4  # signature, then the IHDR chunk
    profile = bytes(128) + b"acsp" + bytes(200)
    data = b"icc\x00\x00" + zlib.compress(profile)
    chunk = (struct.pack(">I", len(data)) + b"iCCP" + data
             + struct.pack(">I", zlib.crc32(b"iCCP" + data) & 0xFFFFFFFF))
    return png[:ihdr_end] + chunk + png[ihdr_end:]


def jpeg_with_exif(img: np.ndarray, orientation: int = 1) -> bytes:
    """A JPEG with an APP1 Exif segment holding one Orientation tag."""
    ifd = (struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)
           + struct.pack("<I", 0))
    payload = b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    ok, buf = cv2.imencode(".jpg", img)
    return buf.tobytes()[:2] + app1 + buf.tobytes()[2:]


def mjpeg_avi(path: Path, n: int = 5, exif: bool = True) -> Path:
    """Motion-JPEG in AVI, each frame a JPEG (with EXIF, as some cameras write them)."""
    with av.open(str(path), "w") as c:
        v = c.add_stream("mjpeg", rate=24)
        v.width, v.height, v.pix_fmt = 64, 48, "yuvj420p"
        v.time_base = Fraction(1, 24)
        for i in range(n):
            img = picture(i)
            data = jpeg_with_exif(img) if exif else cv2.imencode(".jpg", img)[1].tobytes()
            p = av.Packet(data)
            p.pts = p.dts = i
            p.time_base, p.stream, p.is_keyframe = Fraction(1, 24), v, True
            c.mux(p)
    return path


def clip(path: Path, n: int = 8, *, codec: str = "libx264", options: dict | None = None,
         rotation: int | None = None, hflip: bool = False, vflip: bool = False,
         time_base: Fraction = Fraction(1, 24), size: tuple[int, int] = (64, 48)) -> Path:
    """A small clip through PyAV's encoder, optionally with a display matrix."""
    w, h = size
    with av.open(str(path), "w") as c:
        v = c.add_stream(codec, rate=24, options=options or {})
        v.width, v.height = w, h
        v.pix_fmt = "yuv420p"
        v.time_base = time_base
        if rotation is not None or hflip or vflip:
            v.set_display_rotation(rotation or 0, hflip=hflip, vflip=vflip)
        step = int(round(1 / (24 * time_base)))
        for i in range(n):
            f = av.VideoFrame.from_ndarray(picture(i, h, w), "bgr24")
            f.pts, f.time_base = i * step, time_base
            c.mux(v.encode(f))
        c.mux(v.encode())
    return path


def decoded(path: Path) -> list[np.ndarray]:
    """Every video frame of `path`, as BGR arrays."""
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]


def remux_to_avi(src: Path, dst: Path) -> Path:
    """`ffmpeg -i src -c copy dst.avi` in PyAV: the packets as they are (Annex B for H.264),
    the stream's time base as the muxer takes it from the template."""
    from av.bitstream import BitStreamFilterContext

    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        iv = i.streams.video[0]
        ov = o.add_stream_from_template(iv)
        bsf = BitStreamFilterContext("h264_mp4toannexb", iv, ov)
        for p in i.demux(iv):
            for q in bsf.filter(p if p.dts is not None else None):
                q.stream = ov
                o.mux(q)
    return dst


def damaged(tmp_path: Path, suffix: str, how: str) -> Path:
    """A 91-frame clip cut at 60% (`how="truncated"`) or with 3000 bytes overwritten a
    third of the way in (any other `how`), named `{how}{suffix}` in `tmp_path`."""
    src = clip(tmp_path / f"whole{suffix}", n=91, size=(160, 120))
    data = bytearray(src.read_bytes())
    n = len(data)
    if how == "truncated":
        data = data[: n * 6 // 10]
    else:  # bytes overwritten in the middle, as a bad sector or a broken copy does
        data[n // 3: n // 3 + 3000] = b"\x5a" * 3000
    out = tmp_path / f"{how}{suffix}"
    out.write_bytes(bytes(data))
    src.unlink()
    return out


def with_audio(path: Path, codec: str, n: int = 6) -> Path:
    """A clip with one audio track of `codec` (Opus, AAC ...)."""
    rate = 48000
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=24)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a = c.add_stream(codec, rate=rate)
        a.layout = "mono"
        for i in range(n):
            f = av.VideoFrame.from_ndarray(picture(i), "bgr24")
            f.pts, f.time_base = i, Fraction(1, 24)
            c.mux(v.encode(f))
        c.mux(v.encode())
        total = rate * n // 24
        fmt = "flt" if codec != "libopus" else "s16"
        frame_size = a.codec_context.frame_size or 960
        for start in range(0, total, frame_size):
            k = min(frame_size, total - start)
            data = np.zeros((1, k), np.float32 if fmt == "flt" else np.int16)
            af = av.AudioFrame.from_ndarray(data, format=fmt, layout="mono")
            af.sample_rate, af.pts, af.time_base = rate, start, Fraction(1, rate)
            c.mux(a.encode(af))
        c.mux(a.encode())
    return path
