"""The pixel size an image file declares in its header, read without decoding the picture.

A decoder allocates the whole picture before it can say anything about it, and OpenCV
refuses one over its own limit (CV_IO_MAX_IMAGE_PIXELS, about a gigapixel) with an
assertion text. Reading the header first lets a caller refuse a picture that is too large
in one line of its own, before any memory is spent. The formats are the ones OpenCV reads
for us: PNG, JPEG, WebP, BMP and TIFF; anything else (or a header cut short) is None, and the
decoder then judges the file.
"""
from __future__ import annotations

import struct
from typing import BinaryIO

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (the ones that carry the size): C0-CF but DHT, JPG and DAC
_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# TIFF tags and the field types that can hold them
_WIDTH, _LENGTH = 256, 257
_SHORT, _LONG = 3, 4


def declared_size(f: BinaryIO) -> tuple[int, int] | None:
    """(width, height) from the header of the image file open in `f` (binary, seekable,
    read from its start), or None when it is not a PNG, JPEG, WebP, BMP or TIFF header."""
    head = f.read(32)
    f.seek(0)
    if head.startswith(_PNG_SIGNATURE):
        return _png(head)
    if head.startswith(b"\xff\xd8"):
        return _jpeg(f)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _webp(head)
    if head[:2] == b"BM":
        return _bmp(head)
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff(f, "<" if head[:2] == b"II" else ">")
    return None


def _png(head: bytes) -> tuple[int, int] | None:
    if len(head) < 24 or head[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", head[16:24])


def _jpeg(f: BinaryIO) -> tuple[int, int] | None:
    f.seek(2)
    while True:
        byte = f.read(1)
        if not byte:
            return None
        if byte != b"\xff":
            continue  # entropy-coded data or padding between segments
        marker = f.read(1)
        while marker == b"\xff":  # fill bytes
            marker = f.read(1)
        if not marker:
            return None
        m = marker[0]
        if m in (0x01, 0x00) or 0xD0 <= m <= 0xD8:
            continue  # no length: TEM, a stuffed 0xFF, restart markers, SOI
        if m == 0xD9:
            return None  # end of image before any frame header
        length = f.read(2)
        if len(length) < 2:
            return None
        size = struct.unpack(">H", length)[0]
        if m in _SOF:
            body = f.read(5)
            if len(body) < 5:
                return None
            height, width = struct.unpack(">HH", body[1:5])
            return width, height
        f.seek(size - 2, 1)


def _webp(head: bytes) -> tuple[int, int] | None:
    kind = head[12:16]
    if kind == b"VP8X" and len(head) >= 30:
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
        return width, height
    if kind == b"VP8L" and len(head) >= 25 and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8 " and len(head) >= 30 and head[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    return None


def _bmp(head: bytes) -> tuple[int, int] | None:
    if len(head) < 26:
        return None
    if struct.unpack("<I", head[14:18])[0] == 12:  # the OS/2 core header: 16-bit sides
        return struct.unpack("<HH", head[18:22])
    width, height = struct.unpack("<ii", head[18:26])
    return abs(width), abs(height)  # a negative height stores the rows top-down


def _tiff(f: BinaryIO, order: str) -> tuple[int, int] | None:
    f.seek(4)
    raw = f.read(4)
    if len(raw) < 4:
        return None
    f.seek(struct.unpack(order + "I", raw)[0])
    count_bytes = f.read(2)
    if len(count_bytes) < 2:
        return None
    found: dict[int, int] = {}
    for _ in range(struct.unpack(order + "H", count_bytes)[0]):
        entry = f.read(12)
        if len(entry) < 12:
            return None
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag in (_WIDTH, _LENGTH) and kind in (_SHORT, _LONG):
            fmt = order + ("H" if kind == _SHORT else "I")
            found[tag] = struct.unpack(fmt, entry[8:10] if kind == _SHORT else entry[8:12])[0]
    if _WIDTH in found and _LENGTH in found:
        return found[_WIDTH], found[_LENGTH]
    return None
