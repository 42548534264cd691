"""The networks trained beside the adapters: a multi-scale patch discriminator and the
reverse generator F (cartoon -> photo) of the cycle loss.

Both are small on purpose: they exist only while training, on a 2-core CPU, against a
generator that is already a good cartoonizer and only moves through its low-rank adapters.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _block(cin: int, cout: int, stride: int, norm: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, stride, 1)]
    if norm:
        layers.append(nn.InstanceNorm2d(cout, affine=True))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return layers


class PatchDiscriminator(nn.Module):
    """A PatchGAN: one real/fake logit per patch (about 34 px receptive field)."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(*_block(3, width, 2, norm=False), *_block(width, width * 2, 2),
                                 *_block(width * 2, width * 4, 1), nn.Conv2d(width * 4, 1, 4, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MultiScaleDiscriminator(nn.Module):
    """Patch discriminators on the image at full, half and quarter size: fine texture
    (lines, hatching) and coarse shading are judged apart."""

    def __init__(self, scales: int = 3, width: int = 32):
        super().__init__()
        self.scales = nn.ModuleList(PatchDiscriminator(width) for _ in range(scales))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i, d in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            outs.append(d(x))
        return outs


class ReverseGenerator(nn.Module):
    """F: cartoon -> photo, a small residual encoder-decoder in [-1, 1]."""

    def __init__(self, width: int = 32, blocks: int = 3):
        super().__init__()
        w = width
        self.down = nn.Sequential(nn.Conv2d(3, w, 7, 1, 3), nn.LeakyReLU(0.2, True),
                                  nn.Conv2d(w, 2 * w, 3, 2, 1), nn.LeakyReLU(0.2, True))
        self.res = nn.ModuleList(nn.Sequential(nn.Conv2d(2 * w, 2 * w, 3, 1, 1),
                                               nn.LeakyReLU(0.2, True),
                                               nn.Conv2d(2 * w, 2 * w, 3, 1, 1))
                                 for _ in range(blocks))
        self.up = nn.Sequential(nn.Conv2d(2 * w, w, 3, 1, 1), nn.LeakyReLU(0.2, True),
                                nn.Conv2d(w, 3, 7, 1, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.down(x)
        for r in self.res:
            h = h + r(h)
        h = F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False)
        # A residual on the input: F starts near the identity, which is what a cartoon of a
        # photo is closest to.
        return torch.clamp(x + self.up(h), -1.0, 1.0)
