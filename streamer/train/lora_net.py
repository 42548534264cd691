"""The DCT-Net generator in float, trainable through low-rank adapters on its convolutions.

The official weights stay frozen; each adapted convolution adds `(alpha / rank) * B @ A`
to its kernel (streamer/models/dctnet/lora.py holds the same layout in numpy, and merges it
for the engines). `B` starts at zero, so an untrained adapter is exactly the base style.

`render()` is the official graph without its final rounding: normalise, generator, guided
filter, clip, all differentiable, in [-1, 1]; `features()` taps the encoder's maps for the
losses that compare features (perceptual, domain calibration).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from streamer.models.dctnet.lora import SPECS, Adapter, LoraPair
from streamer.models.dctnet.torch_net import Generator, guided_filter
from streamer.models.dctnet.weights import GENERATOR_CONVS, DctNetWeights

#: every convolution of the generator, by the names the weights use
ALL_CONVS = tuple(s.name for s in GENERATOR_CONVS)


class LoraConvs(nn.Module):
    """The trainable factors of one part: per convolution, A [rank, k*k*cin] and B
    [cout, rank]."""

    def __init__(self, convs: tuple[str, ...], rank: int, alpha: float, seed: int = 0):
        super().__init__()
        if rank < 1:
            raise ValueError("the adapter's rank must be at least 1")
        self.rank, self.alpha = rank, float(alpha)
        g = torch.Generator().manual_seed(seed)
        self.a = nn.ParameterDict()
        self.b = nn.ParameterDict()
        for name in convs:
            s = SPECS[name]
            fan_in = s.kernel * s.kernel * s.cin
            # Kaiming-uniform A and zero B (the usual LoRA start): the adapter adds nothing
            # until B moves, and A's scale keeps the first steps' updates well sized.
            bound = 1.0 / math.sqrt(fan_in)
            key = _key(name)
            self.a[key] = nn.Parameter((torch.rand(rank, fan_in, generator=g) * 2 - 1) * bound)
            self.b[key] = nn.Parameter(torch.zeros(s.cout, rank))

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def delta(self, name: str) -> torch.Tensor | None:
        """The kernel change for `name` in OIHW (torch's layout), or None when not adapted."""
        key = _key(name)
        if key not in self.a:
            return None
        s = SPECS[name]
        flat = (self.b[key] @ self.a[key]) * self.scale  # [cout, kh * kw * cin], HWI order
        return flat.reshape(s.cout, s.kernel, s.kernel, s.cin).permute(0, 3, 1, 2)

    def pairs(self) -> dict[str, LoraPair]:
        return {name: LoraPair(self.a[_key(name)].detach().cpu().numpy().copy(),
                               self.b[_key(name)].detach().cpu().numpy().copy())
                for name in ALL_CONVS if _key(name) in self.a}

    def load_pairs(self, pairs: dict[str, LoraPair]) -> None:
        with torch.no_grad():
            for name, pair in pairs.items():
                self.a[_key(name)].copy_(torch.from_numpy(pair.a))
                self.b[_key(name)].copy_(torch.from_numpy(pair.b))


def _key(name: str) -> str:
    return name.replace("/", "_")


class LoraGenerator(nn.Module):
    """The frozen official generator with a part's adapter added to its kernels."""

    def __init__(self, weights: DctNetWeights, lora: LoraConvs | None):
        super().__init__()
        self.base = Generator(weights)
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.lora = lora
        self._taps: list[torch.Tensor] | None = None
        if lora is not None:
            for name in ALL_CONVS:
                conv = self.base.convs[_key(name)]
                conv.forward = self._adapted(name, conv)  # type: ignore[method-assign]

    def _adapted(self, name: str, conv):
        def forward(x: torch.Tensor) -> torch.Tensor:
            d = self.lora.delta(name) if self.lora is not None else None
            return conv.conv(x, conv.weight if d is None else conv.weight + d)
        return forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x)

    def render(self, images: torch.Tensor) -> torch.Tensor:
        """Float BGR images `[N, 3, H, W]` in [-1, 1] (H, W multiples of 4) -> the
        stylised images in [-1, 1], as the official graph computes them before rounding."""
        y = guided_filter(images, self.base(images))
        return torch.clamp(y, -0.999999, 0.999999)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's maps at three depths (full, half and quarter size) for `images` in
        [-1, 1]: what the feature losses compare."""
        b = self.base
        x0 = b._c("Conv", images)
        h = b._c("Conv_1", x0)
        x1 = b._c("Conv_2", h)
        h = b._c("Conv_3", x1)
        h = b._c("Conv_4", h)
        return [x0, x1, h]


def to_adapter(name: str, base: str, parts: dict[str, LoraConvs], meta: dict[str, str]
               ) -> Adapter:
    """The trained factors as the store's Adapter (numpy)."""
    first = next(iter(parts.values()))
    return Adapter(name, base, first.rank, first.alpha,
                   {part: lora.pairs() for part, lora in parts.items()}, meta)


def to_tensor(images_bgr: np.ndarray) -> torch.Tensor:
    """uint8 BGR `[N, H, W, 3]` -> float `[N, 3, H, W]` in [-1, 1] (the graph's x/127.5-1)."""
    t = torch.from_numpy(np.ascontiguousarray(images_bgr)).permute(0, 3, 1, 2).float()
    return t / 127.5 - 1.0


def to_images(t: torch.Tensor) -> np.ndarray:
    """[-1, 1] float `[N, 3, H, W]` -> uint8 BGR `[N, H, W, 3]` (the graph's truncation)."""
    y = torch.floor((t.detach().float().clamp(-0.999999, 0.999999) + 1.0) * 127.5)
    return y.permute(0, 2, 3, 1).to(torch.uint8).cpu().numpy()


def resize(t: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=True)
