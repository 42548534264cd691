"""The Mobile-DCTNet student as a PyTorch module, for distillation and the torch engine.

It walks the same layer list as the ONNX builder (streamer/models/mobile/net.py), with
parameters named as the student file names them, so `weights()` is what the store writes
and `from_weights()` what it reads. `render()` is the graph without its final rounding
(normalise, generator, guided filter, clip) in [-1, 1], differentiable, as the official
LoraGenerator.render is for personal styles; `forward()` takes and returns uint8 BGR
`[N, H, W, 3]` like the engines.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from streamer.models.dctnet.torch_net import guided_filter
from streamer.models.mobile.net import LEAKY_ALPHA, Arch, init_weights, layers


def _key(name: str) -> str:
    return name.replace(".", "__")


class MobileNet(nn.Module):
    """The light generator with its style modulation; `styles` codes."""

    def __init__(self, arch: Arch, styles: int, weights: dict[str, np.ndarray] | None = None,
                 seed: int = 0):
        super().__init__()
        self.arch, self.styles = arch, styles
        self.layers = layers(arch)
        w = weights if weights is not None else init_weights(arch, styles, seed)
        self.p = nn.ParameterDict({_key(k): nn.Parameter(torch.from_numpy(np.array(v, np.float32)))
                                   for k, v in w.items()})
        self.register_buffer("c127_5", torch.tensor([127.5]), persistent=False)

    def weights(self) -> dict[str, np.ndarray]:
        """The tensors by the student file's names (numpy float32, contiguous)."""
        return {k.replace("__", "."): v.detach().float().cpu().numpy().copy()
                for k, v in self.p.items()}

    def generator(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """`x` normalised `[N, 3, H, W]`, `code` `[S]` or per image `[N, S]`."""
        code = code.reshape(-1, self.styles).to(x.dtype)
        skips: dict[str, torch.Tensor] = {}
        for ly in self.layers:
            if ly.kind == "conv":
                x = F.conv2d(x, self.p[_key(ly.name + ".weight")].to(x.dtype),
                             self.p[_key(ly.name + ".bias")].to(x.dtype), ly.stride, ly.k // 2,
                             1, ly.groups)
                if ly.act:
                    x = F.leaky_relu(x, LEAKY_ALPHA)
            elif ly.kind == "save":
                skips[ly.skip] = x
            elif ly.kind == "add":
                x = x + skips[ly.skip]
            elif ly.kind == "up":
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            elif ly.kind == "mod":
                p = lambda s: self.p[_key(f"{ly.name}.{s}")].to(x.dtype)  # noqa: E731
                gamma = torch.sigmoid(F.linear(code, p("gamma.weight"), p("gamma.bias")))
                beta = torch.tanh(F.linear(code, p("beta.weight"), p("beta.bias")))
                x = x * (1 + gamma)[:, :, None, None] + beta[:, :, None, None]
        return x

    def render(self, images: torch.Tensor, code: torch.Tensor, clip: bool = True
               ) -> torch.Tensor:
        """Float BGR `[N, 3, H, W]` in [-1, 1] -> the stylised images in [-1, 1]; with
        `clip=False` the values before the graph's clip, for the training losses: the clip
        has no gradient outside [-1, 1], so a pixel the student pushed past it on the wrong
        side would never be pulled back."""
        y = guided_filter(images, self.generator(images, code).float())
        return torch.clamp(y, -0.999999, 0.999999) if clip else y

    def forward(self, images: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """uint8 BGR `[N, H, W, 3]` -> uint8 BGR, the whole graph (as graph.py)."""
        x = images.permute(0, 3, 1, 2).float()
        x = x / self.c127_5 - 1.0
        y = self.render(x, code)
        y = torch.floor((y + 1.0) * 127.5)
        return y.permute(0, 2, 3, 1).to(torch.uint8).contiguous()
