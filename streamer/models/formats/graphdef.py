"""Read a TensorFlow 1.x frozen GraphDef (.pb) without TensorFlow.

Only what the DCT-Net importer needs is decoded: node names, ops, inputs and attributes,
with tensor constants as numpy arrays.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .protowire import FIXED32, LENGTH, VARINT, WireError, iter_fields, packed_varints

# tensorflow/core/framework/types.proto
_TF_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 9: np.int64,
              10: np.bool_, 19: np.float16}


@dataclass
class NodeDef:
    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)


class GraphDefError(ValueError):
    """The file is not a TensorFlow GraphDef."""


def _shape(buf: memoryview) -> list[int]:
    dims = []
    for f, _, v in iter_fields(buf):
        if f == 2:  # dim
            size = 0
            for df, _, dv in iter_fields(v):
                if df == 1:
                    size = dv - (1 << 64) if dv >= 1 << 63 else dv
            dims.append(size)
    return dims


def _tensor(buf: memoryview) -> np.ndarray:
    dtype_code, shape, content = 1, [], None
    floats: list[float] = []
    ints: list[int] = []
    halfs: list[int] = []
    for f, w, v in iter_fields(buf):
        if f == 1:
            dtype_code = v
        elif f == 2:
            shape = _shape(v)
        elif f == 4:
            content = bytes(v)
        elif f == 5:  # float_val
            if w == LENGTH:
                floats.extend(np.frombuffer(bytes(v), "<f4").tolist())
            else:
                floats.append(float(np.array([v], np.uint32).view(np.float32)[0]))
        elif f in (7, 10):  # int_val / int64_val
            ints.extend(packed_varints(v) if w == LENGTH else [v])
        elif f == 13:  # half_val
            halfs.extend(packed_varints(v) if w == LENGTH else [v])
    dtype = _TF_DTYPES.get(dtype_code)
    if dtype is None:
        raise GraphDefError(f"unsupported tensor dtype {dtype_code}")
    count = int(np.prod(shape)) if shape else 1
    if content is not None:
        arr = np.frombuffer(content, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)
    elif floats:
        arr = np.array(floats, dtype)
    elif ints:
        arr = np.array([i - (1 << 64) if i >= 1 << 63 else i for i in ints], dtype)
    elif halfs:
        arr = np.array(halfs, np.uint16).view(np.float16).astype(dtype)
    else:
        arr = np.zeros(1, dtype)
    if arr.size == 1 and count != 1:
        arr = np.full(count, arr[0], dtype)  # TF stores splats as one value
    if arr.size != count:
        raise GraphDefError(f"tensor holds {arr.size} values for shape {shape}")
    return arr.reshape(shape)


def _attr_value(buf: memoryview) -> Any:
    for f, w, v in iter_fields(buf):
        if f == 2:
            return bytes(v).decode("utf-8", "replace")  # s
        if f == 3:
            return v - (1 << 64) if v >= 1 << 63 else v  # i
        if f == 4:
            return float(np.array([v], np.uint32).view(np.float32)[0])  # f
        if f == 5:
            return bool(v)  # b
        if f == 6:
            return ("dtype", v)  # type
        if f == 7:
            return ("shape", _shape(v))
        if f == 8:
            return _tensor(v)
        if f == 1:  # list
            items: list[Any] = []
            for lf, lw, lv in iter_fields(v):
                if lf == 3:
                    items.extend(packed_varints(lv) if lw == LENGTH else [lv])
                elif lf == 2:
                    items.append(bytes(lv).decode("utf-8", "replace"))
            return items
    return None


def _node(buf: memoryview) -> NodeDef:
    node = NodeDef(name="", op="")
    for f, _, v in iter_fields(buf):
        if f == 1:
            node.name = bytes(v).decode()
        elif f == 2:
            node.op = bytes(v).decode()
        elif f == 3:
            node.inputs.append(bytes(v).decode())
        elif f == 5:
            key, value = "", None
            for ef, _, ev in iter_fields(v):
                if ef == 1:
                    key = bytes(ev).decode()
                elif ef == 2:
                    value = _attr_value(ev)
            node.attrs[key] = value
    return node


def read_graphdef(data: bytes) -> dict[str, NodeDef]:
    """Parse a serialized GraphDef; nodes by name, in file order."""
    nodes: dict[str, NodeDef] = {}
    try:
        for f, w, v in iter_fields(memoryview(data)):
            if f == 1 and w == LENGTH:
                node = _node(v)
                if not node.name or not node.op:
                    raise GraphDefError("a node without a name or op")
                nodes[node.name] = node
            elif f not in (2, 3, 4):  # versions, version, library
                raise GraphDefError(f"unexpected top-level field {f}")
    except (WireError, UnicodeDecodeError) as exc:
        raise GraphDefError(f"not a TensorFlow GraphDef ({exc})") from None
    if not nodes:
        raise GraphDefError("not a TensorFlow GraphDef (no nodes)")
    return nodes
