"""The light generator's layers, in numpy terms: one list of layer specs that the ONNX
builder (graph.py) and the PyTorch module (streamer/train/mobile_net.py) both walk, so the
two cannot disagree about shapes, order or names.

The shape was chosen by measurement (bench/mobile.py): the official generator spends
124,608 multiply-adds per pixel, most of them in full 3x3 convolutions at 64 and 128
channels. This one keeps DCT-Net's U-Net outline (full size, two stride-2 stages down,
residual blocks at a quarter, two x2 upsamples each added to the matching encoder map),
but with depthwise-separable convolutions after the stem, a third to a half of the
channels, nearest-neighbour upsampling after a 1x1 reduction (so the upsample moves the
narrow map), and a domain-calibration modulation after every residual block and decoder
stage: `x * (1 + gamma(s)) + beta(s)`, gamma = sigmoid(W_g s + b_g), beta = tanh(W_b s +
b_b), where s is the style code (one weight per style the student holds: one-hot for a
style, a mix for a blend). The code is an input of the graph, so switching or blending
styles never rebuilds an engine.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LEAKY_ALPHA = 0.2


@dataclass(frozen=True)
class Arch:
    """The student's size: channels at full, half and quarter resolution, residual blocks."""

    widths: tuple[int, int, int] = (16, 32, 64)
    blocks: int = 3

    def __post_init__(self) -> None:
        if len(self.widths) != 3 or min(self.widths) < 4 or not 1 <= self.blocks <= 8:
            raise ValueError(f"bad mobile architecture {self}")

    def tag(self) -> str:
        """A short text form kept in the student file: `16-32-64x3`."""
        return "-".join(map(str, self.widths)) + f"x{self.blocks}"

    @classmethod
    def parse(cls, tag: str) -> Arch:
        try:
            w, b = tag.split("x")
            c0, c1, c2 = (int(v) for v in w.split("-"))
            return cls((c0, c1, c2), int(b))
        except (ValueError, TypeError):
            raise ValueError(f"not a mobile architecture tag: {tag!r}") from None


@dataclass(frozen=True)
class Layer:
    """One step of the forward pass. kind: conv (k x k, cin -> cout, groups), mod (the
    style modulation of `cout` channels), up (nearest x2), add (the skip saved as `skip`),
    save (keep the current map as `skip`)."""

    kind: str
    name: str = ""
    cin: int = 0
    cout: int = 0
    k: int = 1
    stride: int = 1
    groups: int = 1
    act: bool = False
    skip: str = ""


def layers(arch: Arch) -> list[Layer]:
    c0, c1, c2 = arch.widths
    L: list[Layer] = [
        Layer("conv", "stem", 3, c0, 3, act=True),
        Layer("save", skip="s0"),
        Layer("conv", "down1", c0, c1, 3, 2, act=True),
        Layer("save", skip="s1"),
        Layer("conv", "down2.dw", c1, c1, 3, 2, groups=c1),
        Layer("conv", "down2.pw", c1, c2, 1, act=True),
    ]
    for i in range(arch.blocks):
        n = f"block{i}"
        L += [Layer("save", skip="r"),
              Layer("conv", f"{n}.dw1", c2, c2, 3, groups=c2),
              Layer("conv", f"{n}.pw1", c2, c2, 1, act=True),
              Layer("conv", f"{n}.dw2", c2, c2, 3, groups=c2),
              Layer("conv", f"{n}.pw2", c2, c2, 1),
              Layer("add", skip="r"),
              Layer("mod", f"{n}.mod", cout=c2)]
    for stage, (cin, cout, skip) in enumerate(((c2, c1, "s1"), (c1, c0, "s0")), 1):
        n = f"up{stage}"
        L += [Layer("conv", f"{n}.reduce", cin, cout, 1, act=True),
              Layer("up"),
              Layer("add", skip=skip),
              Layer("conv", f"{n}.dw", cout, cout, 3, groups=cout),
              Layer("conv", f"{n}.pw", cout, cout, 1, act=True),
              Layer("mod", f"{n}.mod", cout=cout)]
    L.append(Layer("conv", "out", c0, 3, 3))
    return L


def shapes(arch: Arch, styles: int) -> dict[str, tuple[int, ...]]:
    """Every tensor the student file holds, by name, with its shape (torch's OIHW)."""
    out: dict[str, tuple[int, ...]] = {}
    for ly in layers(arch):
        if ly.kind == "conv":
            out[f"{ly.name}.weight"] = (ly.cout, ly.cin // ly.groups, ly.k, ly.k)
            out[f"{ly.name}.bias"] = (ly.cout,)
        elif ly.kind == "mod":
            for g in ("gamma", "beta"):
                out[f"{ly.name}.{g}.weight"] = (ly.cout, styles)
                out[f"{ly.name}.{g}.bias"] = (ly.cout,)
    return out


def macs_per_pixel(arch: Arch) -> float:
    """Multiply-adds of the generator per input pixel (the official one: 124,608)."""
    total, scale = 0.0, 1.0
    for ly in layers(arch):
        if ly.kind == "conv":
            scale /= ly.stride * ly.stride
            total += scale * ly.cout * (ly.cin // ly.groups) * ly.k * ly.k
        elif ly.kind == "up":
            scale *= 4
    return total


def init_weights(arch: Arch, styles: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Fresh weights that start the whole network near unit gain: He-uniform convolutions
    (the LeakyReLU gain where one follows, gain 1 where none does), zero biases, zero
    modulation (every style starts as the same network, gamma 0.5 and beta 0), each
    residual block's last convolution zero, and the output convolution shrunk by the
    modulations' combined scale."""
    rng = np.random.default_rng(seed)
    convs = {ly.name: ly for ly in layers(arch) if ly.kind == "conv"}
    mods = sum(ly.kind == "mod" for ly in layers(arch))
    out: dict[str, np.ndarray] = {}
    for name, shape in shapes(arch, styles).items():
        if name.endswith(".bias") or ".gamma." in name or ".beta." in name:
            out[name] = np.zeros(shape, np.float32)
            continue
        ly = convs[name.rsplit(".", 1)[0]]
        fan_in = int(np.prod(shape[1:]))
        # A gain of 2 on the linear depthwise layers, the residual branches adding to their
        # input and the x1.5 of every zero-code modulation compounded to an output spread
        # of ~300 in a [-1, 1] range: every pixel sat on the final clip, whose gradient is
        # zero, so distillation could not move the student (issue 26).
        gain = 2.0 / (1.0 + LEAKY_ALPHA ** 2) if ly.act else 1.0
        bound = np.sqrt(3.0 * gain / fan_in)
        w = rng.uniform(-bound, bound, shape).astype(np.float32)
        if ly.name.endswith(".pw2"):
            w[...] = 0.0  # the block starts as the identity (its branch adds nothing)
        elif ly.name == "out":
            w *= np.float32(1.5 ** -mods)  # undo (1 + sigmoid(0)) per modulation
        out[name] = w
    return out


def check_weights(weights: dict[str, np.ndarray], arch: Arch, styles: int) -> str | None:
    """Why `weights` are not this architecture's (a missing, extra, misshapen or non-finite
    tensor), or None when they are."""
    want = shapes(arch, styles)
    missing = sorted(set(want) - set(weights))
    extra = sorted(set(weights) - set(want))
    if missing or extra:
        return f"tensors missing {missing[:3]} / unexpected {extra[:3]}"
    for name, shape in want.items():
        t = weights[name]
        if tuple(t.shape) != shape:
            return f"{name} has shape {tuple(t.shape)}, expected {shape}"
        if not np.isfinite(t).all():
            return f"{name} holds NaN or infinite values"
    return None
