"""Read dlib's face recognition ResNet (`dlib_face_recognition_resnet_model_v1.dat`) with
numpy alone: no dlib, no torch.

The file is dlib's `serialize` of the network type `anet_type` from dlib's
`examples/dnn_face_recognition_ex.cpp` (also `tools/python/src/face_recognition.cpp`):

    loss_metric<fc_no_bias<128, avg_pool_everything<alevel0<alevel1<alevel2<alevel3<alevel4<
      max_pool<3,3,2,2, relu<affine<con<32,7,7,2,2, input_rgb_image_sized<150>>>>>>>>>>>>>

with `ares<N>` and `ares_down<N>` residual blocks (`_anet_spec` spells the layer list out).
The format, from dlib's `serialize.h`, `float_details.h`, `cuda/tensor.h`, `dnn/core.h`,
`dnn/layers.h`, `dnn/input.h` and `dnn/loss.h`:

- integers: one control byte (low nibble: byte count 1..8, 0x80: negative), then the
  magnitude little-endian; bools: the characters '1' / '0'; strings: an integer length, then
  the bytes; floats: two integers, a 64-bit mantissa and a 16-bit exponent (value =
  mantissa * 2**exponent; exponents 32000..32002 mean inf, -inf, nan).
- tensors: version 2, four integers (samples, k, nr, nc), then little-endian float32 data;
  alias tensors (the shapes of views into a layer's params): version 1 and four integers.
- layers nest outside-in: every wrapper writes its version integer and then its whole
  subnetwork before its own fields, so the file holds all the version integers from the
  loss down to the first convolution, then the input layer, then each layer's own fields
  in execution order (tag and skip layers write nothing after their subnetwork).
- a convolution's params are its filters `[num_filters, k, nr, nc]` then its biases; an
  affine layer's are gamma then beta (per channel: a batch-norm with its running statistics
  folded in, gamma / sqrt(var + eps) and beta - gamma * mean, done by dlib when the model
  was saved; a `bn_con2` record is folded here the same way); fc_no_bias's are its weights
  `[num_inputs, num_outputs]`.

`read_dlib_net` checks every version string, size, stride and channel count against that
network and returns `DlibNet`, the layers in execution order as numpy arrays; a truncated or
foreign file raises `DlibNetError`, one line.
"""
from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np

from streamer.errors import UserError

MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"


class DlibNetError(UserError, ValueError):
    """The dlib network file is missing, truncated or not dlib's face recognition ResNet;
    str(exc) is one line."""


# ----------------------------------------------------------------------------- layers

@dataclass(frozen=True, eq=False)
class Conv:
    """dlib `con`: cross-correlation with zero padding (top-left anchored output)."""

    weight: np.ndarray  # float32 [filters, in_channels, nr, nc]
    bias: np.ndarray    # float32 [filters] (zeros when the layer has none)
    stride: tuple[int, int]
    padding: tuple[int, int]
    relu: bool = False  # con_6 can carry a fused ReLU


@dataclass(frozen=True, eq=False)
class Affine:
    """dlib `affine` in conv mode: x * gamma[c] + beta[c] (a folded batch-norm)."""

    gamma: np.ndarray  # float32 [channels]
    beta: np.ndarray   # float32 [channels]


@dataclass(frozen=True)
class Relu:
    enabled: bool = True


@dataclass(frozen=True)
class MaxPool:
    """Max over windows clipped to the image (dlib pads by leaving positions out)."""

    size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True)
class AvgPool:
    """Mean over windows clipped to the image; size (0, 0) is avg_pool_everything."""

    size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True)
class Tag:
    """Remember the current output under `id` (dlib tag1, tag2, ...)."""

    id: int


@dataclass(frozen=True)
class Skip:
    """Continue from the output remembered under `id`."""

    id: int


@dataclass(frozen=True)
class AddPrev:
    """Current output + the output tagged `id`; shapes may differ: the sum has the larger of
    each dimension and each operand counts as zero outside its own extent (dlib tt::add)."""

    id: int


@dataclass(frozen=True, eq=False)
class Fc:
    """dlib `fc`: the input flattened per sample (k, nr, nc order) times `weight`."""

    weight: np.ndarray       # float32 [num_inputs, num_outputs]
    bias: np.ndarray | None  # float32 [num_outputs], None for fc_no_bias


Layer = Union[Conv, Affine, Relu, MaxPool, AvgPool, Tag, Skip, AddPrev, Fc]


@dataclass(frozen=True, eq=False)
class DlibNet:
    """dlib's face recognition ResNet as read from its file."""

    input_size: int                           # chips are input_size x input_size RGB
    input_mean: tuple[float, float, float]    # per-channel mean (R, G, B) subtracted first
    input_scale: float                        # then multiplied by this (dlib: 1/256)
    layers: tuple[Layer, ...]                 # execution order, input side first
    margin: float                             # loss_metric's training margin
    distance_threshold: float                 # same person below this Euclidean distance

    @property
    def descriptor_size(self) -> int:
        last = self.layers[-1]
        assert isinstance(last, Fc)
        return int(last.weight.shape[1])

    def parameter_count(self) -> int:
        total = 0
        for layer in self.layers:
            for name in ("weight", "bias", "gamma", "beta"):
                value = getattr(layer, name, None)
                if value is not None:
                    total += value.size
        return total


# ------------------------------------------------------------- the network dlib saved

def _anet_spec() -> list[tuple]:
    """anet_type's layers in execution order, input side first: (kind, *template args).
    con: (filters, kernel, stride); pools: (window, stride), window 0 = everything."""
    def block(n: int, stride: int) -> list[tuple]:
        # block<N,BN,stride> = BN<con<N,3,3,1,1,relu<BN<con<N,3,3,stride,stride>>>>>
        return [("con", n, 3, stride), ("affine",), ("relu",), ("con", n, 3, 1), ("affine",)]

    def ares(n: int) -> list[tuple]:
        # relu<add_prev1<block<N,affine,1,tag1<SUBNET>>>>
        return [("tag", 1), *block(n, 1), ("add_prev", 1), ("relu",)]

    def ares_down(n: int) -> list[tuple]:
        # relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,affine,2,tag1<SUBNET>>>>>>>
        return [("tag", 1), *block(n, 2), ("tag", 2), ("skip", 1), ("avg_pool", 2, 2),
                ("add_prev", 2), ("relu",)]

    spec: list[tuple] = [("con", 32, 7, 2), ("affine",), ("relu",), ("max_pool", 3, 2)]
    spec += ares(32) * 3                                    # alevel4
    spec += ares_down(64) + ares(64) * 3                    # alevel3
    spec += ares_down(128) + ares(128) * 2                  # alevel2
    spec += ares_down(256) + ares(256) * 2                  # alevel1
    spec += ares_down(256)                                  # alevel0
    spec += [("avg_pool", 0, 1), ("fc", 128)]
    return spec


def _default_padding(window: int, stride: int) -> int:
    # dlib's template default for con_, max_pool_ and avg_pool_: no padding when strided.
    return 0 if stride != 1 else window // 2


# ------------------------------------------------------------------------- the reader

class _Truncated(Exception):
    pass


class _Foreign(Exception):
    pass


class _Reader:
    """A cursor over the file's bytes with dlib's primitive decoders."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0
        self.what = "the start"

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise _Truncated(f"{n} byte(s) needed at byte {self.pos} reading {self.what}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def int_(self) -> int:
        start = self.pos
        control = self.take(1)[0]
        size = control & 0x0F
        # Bits 0x70 are always clear in dlib's integers (its float reader relies on that).
        if size == 0 or size > 8 or control & 0x70:
            raise _Foreign(f"byte {start}: {control:#04x} is no dlib integer ({self.what})")
        value = int.from_bytes(self.take(size), "little")
        return -value if control & 0x80 else value

    def version(self, allowed: tuple[int, ...]) -> int:
        start = self.pos
        value = self.int_()
        if value not in allowed:
            raise _Foreign(f"byte {start}: version {value} of {self.what}, expected "
                           + " or ".join(map(str, allowed)))
        return value

    def string(self) -> str:
        start = self.pos
        n = self.int_()
        if not 0 <= n <= 64:  # every version string dlib writes is short
            raise _Foreign(f"byte {start}: a {n}-byte string where {self.what} was expected")
        return self.take(n).decode("latin-1")

    def tag(self, allowed: tuple[str, ...]) -> str:
        start = self.pos
        found = self.string()
        if found not in allowed:
            raise _Foreign(f"byte {start}: {found!r} where {self.what} "
                           f"({' or '.join(map(repr, allowed))}) was expected")
        return found

    def bool_(self) -> bool:
        start = self.pos
        ch = self.take(1)
        if ch not in (b"0", b"1"):
            raise _Foreign(f"byte {start}: {ch!r} is no dlib bool ({self.what})")
        return ch == b"1"

    def float_(self) -> float:
        if self.pos < len(self.data) and self.data[self.pos] & 0x70:
            # dlib's pre-2012 text format for floats; nothing this old holds a ResNet.
            raise _Foreign(f"byte {self.pos}: a text float ({self.what})")
        mantissa = self.int_()
        exponent = self.int_()
        if exponent >= 32000:
            return {32000: math.inf, 32001: -math.inf}.get(exponent, math.nan)
        return math.ldexp(mantissa, exponent)

    def shape4(self) -> tuple[int, int, int, int]:
        start = self.pos
        dims = tuple(self.int_() for _ in range(4))
        if any(d < 0 for d in dims):
            raise _Foreign(f"byte {start}: negative tensor shape {dims} ({self.what})")
        return dims  # type: ignore[return-value]

    def tensor(self) -> np.ndarray:
        self.version((2,))
        shape = self.shape4()
        count = int(np.prod(shape, dtype=np.int64))
        if count * 4 > len(self.data) - self.pos:
            raise _Truncated(f"a tensor of {shape} ({count * 4} bytes) at byte {self.pos} "
                             f"reading {self.what}")
        raw = self.take(count * 4)
        return np.frombuffer(raw, "<f4").astype(np.float32).reshape(shape)

    def alias(self) -> tuple[int, int, int, int]:
        self.version((1,))
        return self.shape4()


def _size(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))


class _Parser:
    """Reads the layers of `_anet_spec`, checking each against the template it came from."""

    def __init__(self, reader: _Reader):
        self.r = reader
        self.channels = 3
        self.tagged: dict[int, int] = {}

    def layer(self, index: int, spec: tuple) -> Layer:
        kind = spec[0]
        r = self.r
        r.what = f"layer {index} ({kind})"
        if kind == "con":
            return self.con(*spec[1:])
        if kind == "affine":
            return self.affine()
        if kind == "relu":
            version = r.tag(("relu_", "relu_2"))
            return Relu(enabled=not r.bool_() if version == "relu_2" else True)
        if kind in ("max_pool", "avg_pool"):
            return self.pool(kind, *spec[1:])
        if kind == "add_prev":
            r.tag(("add_prev_",))
            self.channels = max(self.channels, self.tagged[spec[1]])
            return AddPrev(spec[1])
        if kind == "fc":
            return self.fc(spec[1])
        raise AssertionError(kind)

    def expect(self, ok: bool, message: str) -> None:
        if not ok:
            raise _Foreign(f"{self.r.what}: {message}")

    def con(self, filters: int, kernel: int, stride: int) -> Conv:
        r = self.r
        version = r.tag(("con_4", "con_5", "con_6"))
        params = r.tensor()
        num_filters, nr, nc = r.int_(), r.int_(), r.int_()
        stride_y, stride_x, pad_y, pad_x = r.int_(), r.int_(), r.int_(), r.int_()
        fshape, _ = r.alias(), r.alias()  # filters, biases
        for _ in range(4):  # learning-rate and weight-decay multipliers
            r.float_()
        use_bias = r.bool_() if version in ("con_5", "con_6") else True
        use_relu = r.bool_() if version == "con_6" else False
        pad = _default_padding(kernel, stride)
        self.expect((num_filters, nr, nc, stride_y, stride_x, pad_y, pad_x)
                    == (filters, kernel, kernel, stride, stride, pad, pad),
                    f"con<{num_filters},{nr},{nc},{stride_y},{stride_x}> padding "
                    f"({pad_y},{pad_x}), expected con<{filters},{kernel},{kernel},{stride},"
                    f"{stride}> padding ({pad},{pad})")
        self.expect(fshape == (filters, self.channels, kernel, kernel),
                    f"filters {fshape}, expected {(filters, self.channels, kernel, kernel)}")
        nw = _size(fshape)
        self.expect(params.size == nw + (filters if use_bias else 0),
                    f"{params.size} params for filters {fshape}")
        flat = params.reshape(-1)
        weight = flat[:nw].reshape(fshape).copy()
        bias = flat[nw:nw + filters].copy() if use_bias else np.zeros(filters, np.float32)
        self.channels = filters
        return Conv(weight, bias, (stride, stride), (pad, pad), use_relu)

    def affine(self) -> Affine:
        r = self.r
        version = r.tag(("affine_", "affine_2", "bn_con2"))
        params = r.tensor().reshape(-1)
        gshape, bshape = r.alias(), r.alias()
        c = self.channels
        self.expect(gshape == bshape and _size(gshape) == c,
                    f"gamma {gshape} / beta {bshape} for {c} channels")
        if version == "bn_con2":
            # A batch-norm layer saved as is: fold its running statistics as dlib's
            # affine_(const bn_&) does.
            r.tensor(), r.tensor()  # means, invstds of the last training batch
            running_mean = r.tensor().reshape(-1)
            running_var = r.tensor().reshape(-1)
            r.int_(), r.int_()      # num_updates, running_stats_window_size
            for _ in range(4):
                r.float_()
            eps = r.float_()
            self.expect(params.size == 2 * c and running_mean.size == c
                        and running_var.size == c, "batch-norm statistics of the wrong size")
            gamma = params[:c] / np.sqrt(running_var + np.float32(eps))
            beta = params[c:] - gamma * running_mean
            return Affine(gamma.astype(np.float32), beta.astype(np.float32))
        mode = r.int_()
        disabled = r.bool_() if version == "affine_2" else False
        if disabled:
            return Affine(np.ones(c, np.float32), np.zeros(c, np.float32))
        self.expect(mode == 0, f"affine in mode {mode}, expected conv mode (0)")
        self.expect(params.size == 2 * c, f"{params.size} params for {c} channels")
        return Affine(params[:c].copy(), params[c:].copy())

    def pool(self, kind: str, window: int, stride: int) -> MaxPool | AvgPool:
        r = self.r
        r.tag((kind + "_2",))
        nr, nc, stride_y, stride_x, pad_y, pad_x = (r.int_() for _ in range(6))
        pad = _default_padding(window, stride)
        self.expect((nr, nc, stride_y, stride_x, pad_y, pad_x)
                    == (window, window, stride, stride, pad, pad),
                    f"{kind}<{nr},{nc},{stride_y},{stride_x}> padding ({pad_y},{pad_x})")
        cls = MaxPool if kind == "max_pool" else AvgPool
        return cls((window, window), (stride, stride), (pad, pad))

    def fc(self, outputs: int) -> Fc:
        r = self.r
        version = r.tag(("fc_2", "fc_3"))
        num_outputs, num_inputs = r.int_(), r.int_()
        params = r.tensor().reshape(-1)
        wshape, _ = r.alias(), r.alias()
        bias_mode = r.int_()
        for _ in range(4):
            r.float_()
        if version == "fc_3":
            r.bool_()  # use_bias: meaningless for fc_no_bias
        # avg_pool_everything leaves one value per channel.
        self.expect((num_outputs, num_inputs, bias_mode) == (outputs, self.channels, 1),
                    f"fc {num_inputs}->{num_outputs} bias mode {bias_mode}, expected "
                    f"fc_no_bias {self.channels}->{outputs}")
        self.expect(_size(wshape) == num_inputs * num_outputs
                    and params.size == num_inputs * num_outputs,
                    f"{params.size} params for fc {num_inputs}->{num_outputs}")
        return Fc(params.reshape(num_inputs, num_outputs).copy(), None)


def _parse(data: bytes) -> DlibNet:
    r = _Reader(data)
    spec = _anet_spec()

    # The loss layer wraps everything: its version, then its own fields, then the rest.
    r.what = "the loss layer"
    r.version((1,))
    if r.tag(("loss_metric_", "loss_metric_2")) == "loss_metric_2":
        margin, threshold = r.float_(), r.float_()
    else:
        margin, threshold = 0.1, 0.75  # what dlib hard-coded for that version

    # Version integers of every wrapper, outermost (fc) first.
    versions: dict[int, int] = {}
    for index in range(len(spec) - 1, -1, -1):
        kind = spec[index][0]
        r.what = f"the header of layer {index} ({kind})"
        if kind in ("tag", "skip"):
            r.version((1,))
        else:
            # add_layer over the input layer has its own versions (2, 3).
            versions[index] = r.version((2, 3) if index == 0 else (1, 2))

    r.what = "the input layer"
    r.tag(("input_rgb_image_sized",))
    mean = (r.float_(), r.float_(), r.float_())
    nr, nc = r.int_(), r.int_()
    if (nr, nc) != (150, 150):
        raise _Foreign(f"input chips {nr}x{nc}, expected 150x150")

    parser = _Parser(r)
    layers: list[Layer] = []
    for index, item in enumerate(spec):
        kind = item[0]
        if kind == "tag":
            parser.tagged[item[1]] = parser.channels
            layers.append(Tag(item[1]))
            continue
        if kind == "skip":
            parser.channels = parser.tagged[item[1]]
            layers.append(Skip(item[1]))
            continue
        layers.append(parser.layer(index, item))
        # add_layer's own state after the details: setup flags, then cached tensors
        # (normally empty in a saved model, read and dropped either way).
        r.what = f"the state of layer {index} ({kind})"
        for _ in range(3):
            r.bool_()
        r.tensor(), r.tensor()  # x_grad, cached_output
        if index == 0:
            r.tensor()          # grad_final
            if versions[index] >= 3:
                r.int_()        # _sample_expansion_factor
        elif versions[index] >= 2:
            r.tensor()          # params_grad

    if r.pos != len(data):
        raise _Foreign(f"{len(data) - r.pos} bytes after the network's last layer")
    return DlibNet(input_size=nr, input_mean=mean, input_scale=1 / 256, layers=tuple(layers),
                   margin=margin, distance_threshold=threshold)


def read_dlib_net(path: str | Path) -> DlibNet:
    """Read dlib's face recognition ResNet from its `.dat` file (uncompressed, as
    face_recognition_models ships it). Raises DlibNetError (one line) for a missing,
    truncated or foreign file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DlibNetError(f"{path}: cannot read dlib's network file ({exc.strerror})") from exc
    if data[:2] == b"BZ":
        raise DlibNetError(f"{path}: still bzip2-compressed; decompress it first (bunzip2)")
    try:
        return _parse(data)
    except _Truncated as exc:
        raise DlibNetError(f"{path}: truncated dlib network file ({len(data)} bytes; {exc}); "
                           f"reinstall face-recognition-models") from None
    except _Foreign as exc:
        raise DlibNetError(f"{path}: not dlib's face recognition ResNet ({exc})") from None


def read_resnet(path: str | Path) -> DlibNet:
    """read_dlib_net under the name the trainer (streamer/train/run.py) uses."""
    return read_dlib_net(path)


def dlib_model_path() -> Path:
    """The network file inside the installed face_recognition_models package (found without
    importing it: its __init__ needs pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise DlibNetError("face_recognition_models is not installed: "
                           "pip install face-recognition-models")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / MODEL_FILE
    if not path.is_file():
        raise DlibNetError(f"{path}: missing from face_recognition_models; reinstall it")
    return path
