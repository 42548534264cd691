"""Minimal FlatBuffers table reader, enough to walk a TFLite model without TensorFlow."""
from __future__ import annotations

import struct


class FlatBufferError(ValueError):
    """The bytes are not a well-formed FlatBuffer."""


class Table:
    """One FlatBuffers table: fields are read lazily by their schema index."""

    __slots__ = ("buf", "pos", "_vt", "_vt_len")

    def __init__(self, buf: bytes, pos: int):
        self.buf = buf
        self.pos = pos
        _check(buf, pos, 4)
        vt = pos - struct.unpack_from("<i", buf, pos)[0]
        _check(buf, vt, 4)
        self._vt = vt
        self._vt_len = struct.unpack_from("<H", buf, vt)[0]

    def _field(self, index: int) -> int:
        slot = 4 + 2 * index
        if slot + 2 > self._vt_len:
            return 0
        return struct.unpack_from("<H", self.buf, self._vt + slot)[0]

    def has(self, index: int) -> bool:
        return self._field(index) != 0

    def scalar(self, index: int, fmt: str, default: int | float = 0) -> int | float:
        off = self._field(index)
        if not off:
            return default
        _check(self.buf, self.pos + off, struct.calcsize(fmt))
        return struct.unpack_from("<" + fmt, self.buf, self.pos + off)[0]

    def _indirect(self, index: int) -> int | None:
        off = self._field(index)
        if not off:
            return None
        p = self.pos + off
        _check(self.buf, p, 4)
        return p + struct.unpack_from("<I", self.buf, p)[0]

    def table(self, index: int) -> "Table | None":
        p = self._indirect(index)
        return None if p is None else Table(self.buf, p)

    def vector_span(self, index: int, item_size: int) -> tuple[int, int]:
        """(start, count) of a vector of scalars or structs."""
        p = self._indirect(index)
        if p is None:
            return 0, 0
        _check(self.buf, p, 4)
        n = struct.unpack_from("<I", self.buf, p)[0]
        _check(self.buf, p + 4, n * item_size)
        return p + 4, n

    def scalars(self, index: int, fmt: str) -> list:
        start, n = self.vector_span(index, struct.calcsize(fmt))
        return list(struct.unpack_from(f"<{n}{fmt}", self.buf, start)) if n else []

    def tables(self, index: int) -> list["Table"]:
        start, n = self.vector_span(index, 4)
        out = []
        for i in range(n):
            p = start + 4 * i
            out.append(Table(self.buf, p + struct.unpack_from("<I", self.buf, p)[0]))
        return out

    def string(self, index: int) -> str:
        start, n = self.vector_span(index, 1)
        return self.buf[start:start + n].decode("utf-8", "replace") if n else ""

    def bytes_view(self, index: int) -> memoryview:
        start, n = self.vector_span(index, 1)
        return memoryview(self.buf)[start:start + n]


def _check(buf: bytes, pos: int, size: int) -> None:
    if pos < 0 or pos + size > len(buf):
        raise FlatBufferError("offset out of range (truncated file?)")


def root_table(buf: bytes) -> Table:
    _check(buf, 0, 4)
    return Table(buf, struct.unpack_from("<I", buf, 0)[0])
