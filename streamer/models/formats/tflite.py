"""A TFLite model's graph as plain Python: operators with their tensor indices and options,
and constant tensors as numpy arrays (fp32, or fp16 widened to fp32). Only what a weight
importer needs; the FlatBuffer itself is read by flatbuf.py.

Field numbers follow tensorflow/lite/schema/schema.fbs: Model (1 operator_codes,
2 subgraphs, 4 buffers), SubGraph (0 tensors, 3 operators), Tensor (0 shape, 1 type,
2 buffer), Operator (0 opcode_index, 1 inputs, 2 outputs, 4 builtin_options).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .flatbuf import FlatBufferError, Table, root_table

# Builtin operator codes and tensor types used by the importers.
CONV_2D, DEQUANTIZE, LEAKY_RELU = 3, 6, 98
CUSTOM = 32
FLOAT32, FLOAT16, INT32 = 0, 1, 2
_DTYPES = {FLOAT32: np.float32, FLOAT16: np.float16}


class TfliteError(ValueError):
    """Not a TFLite model this reader understands, in one line."""


@dataclass(frozen=True)
class Operator:
    code: int  # builtin operator code
    inputs: list[int]  # tensor indices; -1 for an optional input left out
    outputs: list[int]
    options: Table | None  # the builtin options table, read by the importer that knows it
    custom: str = ""  # custom op name (code CUSTOM), e.g. MediaPipe's Convolution2DTransposeBias
    custom_options: bytes = b""  # the custom op's raw options


def _custom_code(code: Table) -> str:
    return code.string(1)  # OperatorCode.custom_code


def _opcode(code: Table) -> int:
    # Newer files keep codes above 127 in builtin_code (field 3); deprecated_builtin_code
    # (field 0) is a byte.
    return max(int(code.scalar(0, "b", 0)), int(code.scalar(3, "i", 0)))


class TfliteModel:
    """The single subgraph of a TFLite file."""

    def __init__(self, data: bytes):
        try:
            model = root_table(data)
            code_tables = model.tables(1)
            codes = [_opcode(c) for c in code_tables]
            customs = [_custom_code(c) for c in code_tables]
            self._buffers = model.tables(4)
            subgraphs = model.tables(2)
            if len(subgraphs) != 1:
                raise TfliteError(f"{len(subgraphs)} subgraphs; one was expected")
            graph = subgraphs[0]
            self._tensors = graph.tables(0)
            self.inputs = list(graph.scalars(1, "i"))
            self.outputs = list(graph.scalars(2, "i"))
            self.operators = [Operator(codes[int(op.scalar(0, "I"))], list(op.scalars(1, "i")),
                                       list(op.scalars(2, "i")), op.table(4),
                                       customs[int(op.scalar(0, "I"))], bytes(op.bytes_view(5)))
                              for op in graph.tables(3)]
        except FlatBufferError as exc:
            raise TfliteError(f"truncated or corrupt TFLite file ({exc})") from None

    def shape(self, index: int) -> tuple[int, ...]:
        """Tensor `index`'s static shape as the file declares it."""
        try:
            return tuple(int(v) for v in self._tensors[index].scalars(0, "i"))
        except (FlatBufferError, IndexError) as exc:
            raise TfliteError(f"truncated or corrupt TFLite file ({exc})") from None

    def int_constant(self, index: int) -> np.ndarray | None:
        """Tensor `index` as int32 when it holds constant int32 data (shapes, axes), else None."""
        try:
            t = self._tensors[index]
            raw = self._buffers[int(t.scalar(2, "I"))].bytes_view(0)
            if not len(raw) or int(t.scalar(1, "b")) != INT32:
                return None
            shape = t.scalars(0, "i")
        except (FlatBufferError, IndexError) as exc:
            raise TfliteError(f"truncated or corrupt TFLite file ({exc})") from None
        arr = np.frombuffer(raw, np.int32)
        if arr.size != int(np.prod(shape)):
            raise TfliteError("truncated or corrupt: a constant buffer has the wrong size")
        return arr.reshape(shape).copy()

    def constant(self, index: int) -> np.ndarray | None:
        """Tensor `index` as float32 when it holds constant data, else None."""
        try:
            t = self._tensors[index]
            raw = self._buffers[int(t.scalar(2, "I"))].bytes_view(0)
            if not len(raw):
                return None
            dtype = _DTYPES.get(int(t.scalar(1, "b")))
            if dtype is None:
                raise TfliteError("a constant is neither fp32 nor fp16")
            shape = t.scalars(0, "i")
        except FlatBufferError as exc:
            raise TfliteError(f"truncated or corrupt TFLite file ({exc})") from None
        arr = np.frombuffer(raw, dtype)
        if arr.size != int(np.prod(shape)):
            raise TfliteError("truncated or corrupt: a constant buffer has the wrong size")
        return arr.astype(np.float32).reshape(shape)

    def dequantized_sources(self) -> dict[int, int]:
        """output tensor -> input tensor of every DEQUANTIZE (fp16 weights are stored that
        way: the constant sits behind the op)."""
        return {op.outputs[0]: op.inputs[0] for op in self.operators if op.code == DEQUANTIZE}
