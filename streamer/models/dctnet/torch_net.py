"""The DCT-Net network as a PyTorch module, built from the weights the store reads.

The same network as `onnx_graph.build_onnx` (docs/ARCHITECTURE.md section 8), with no
TensorFlow and no ONNX in between: uint8 BGR `[N, H, W, 3]` in (H, W multiples of 4), uint8
BGR out. The three parity details are kept by hand: stride-2 'SAME' convolutions pad only
bottom/right, the x2 upsample is TF1's legacy bilinear (source = destination / 2, no
half-pixel offset, edge clamped), and the guided filter's box means count only the pixels
inside the image.

Importing this module imports torch: only the torch engine does, so `import streamer`
stays light.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .weights import GENERATOR_CONVS, GUIDED_FILTER_EPS, LEAKY_ALPHA, DctNetWeights

_SPECS = {s.name: s for s in GENERATOR_CONVS}


class _Conv(nn.Module):
    """A TF 'SAME' convolution: symmetric padding at stride 1, bottom/right only at stride 2
    (TF pads (k - stride) in total there and puts the odd pixel at the end)."""

    def __init__(self, name: str, weights: DctNetWeights):
        super().__init__()
        spec = _SPECS[name]
        self.stride = spec.stride
        kernel = torch.from_numpy(weights.kernels[name].transpose(3, 2, 0, 1).copy())  # HWIO -> OIHW
        self.weight = nn.Parameter(kernel, requires_grad=False)
        self.bias = nn.Parameter(torch.from_numpy(weights.biases[name].copy()), requires_grad=False)
        total = spec.kernel - spec.stride
        self.pad = (total // 2, total - total // 2) * 2  # (left, right, top, bottom)
        self.symmetric = total // 2 == total - total // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x, self.weight)

    def conv(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """This layer's convolution and bias with `weight` in place of its own (the int8
        simulation in bench/int8_sim.py passes its rounded weights)."""
        if self.symmetric:
            return F.conv2d(x, weight, self.bias, self.stride, self.pad[0])
        return F.conv2d(F.pad(x, self.pad), weight, self.bias, self.stride)


def _up2_legacy(x: torch.Tensor) -> torch.Tensor:
    """TF1 ResizeBilinear x2 with align_corners=False, half_pixel_centers=False.

    Output pixel 2i is input i; 2i+1 sits half-way to i+1 (the last one clamps to the edge),
    computed as TF does, `a + (b - a) * 0.5`, columns first and then rows. A channels-last
    tensor is upsampled in that layout, so the convolutions around it keep theirs.
    """
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return _up2_nhwc(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    n, c, h, w = x.shape
    right = torch.cat((x[..., 1:], x[..., -1:]), dim=3)
    x = torch.stack((x, x + (right - x) * 0.5), dim=4).reshape(n, c, h, 2 * w)
    below = torch.cat((x[:, :, 1:], x[:, :, -1:]), dim=2)
    return torch.stack((x, x + (below - x) * 0.5), dim=3).reshape(n, c, 2 * h, 2 * w)


def _up2_nhwc(t: torch.Tensor) -> torch.Tensor:
    """`_up2_legacy` on a contiguous `[N, H, W, C]` tensor."""
    n, h, w, c = t.shape
    right = torch.cat((t[:, :, 1:], t[:, :, -1:]), dim=2)
    t = torch.stack((t, t + (right - t) * 0.5), dim=3).reshape(n, h, 2 * w, c)
    below = torch.cat((t[:, 1:], t[:, -1:]), dim=1)
    return torch.stack((t, t + (below - t) * 0.5), dim=2).reshape(n, 2 * h, 2 * w, c)


class Generator(nn.Module):
    """The U-Net generator: 18 convolutions, LeakyReLU 0.2, two legacy x2 upsamples."""

    def __init__(self, weights: DctNetWeights):
        super().__init__()
        self.convs = nn.ModuleDict({s.name.replace("/", "_"): _Conv(s.name, weights)
                                    for s in GENERATOR_CONVS})

    def _c(self, name: str, x: torch.Tensor, act: bool = True) -> torch.Tensor:
        y = self.convs[name.replace("/", "_")](x)
        return F.leaky_relu(y, LEAKY_ALPHA) if act else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = self._c("Conv", x)
        h = self._c("Conv_1", x0)
        x1 = self._c("Conv_2", h)
        h = self._c("Conv_3", x1)
        h = self._c("Conv_4", h)
        for i in range(4):
            r = self._c(f"block_{i}/conv1", h)
            h = self._c(f"block_{i}/conv2", r, act=False) + h
        h = self._c("Conv_5", h)
        h = _up2_legacy(h) + x1
        h = self._c("Conv_6", h)
        h = self._c("Conv_7", h)
        h = _up2_legacy(h) + x0
        h = self._c("Conv_8", h)
        return self._c("Conv_9", h, act=False)


def _box_mean(t: torch.Tensor) -> torch.Tensor:
    # 3x3 means over the pixels inside the image only: the official graph divides its box
    # sums by a box-filtered map of ones, which is exactly this.
    return F.avg_pool2d(t, 3, stride=1, padding=1, count_include_pad=False)


def guided_filter(guide: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """Fast guided filter, radius 1, eps 1e-2, as in the official graph (run it in fp32)."""
    mean_x = _box_mean(guide)
    mean_y = _box_mean(src)
    cov_xy = _box_mean(guide * src) - mean_x * mean_y
    var_x = _box_mean(guide * guide) - mean_x * mean_x
    a = cov_xy / (var_x + GUIDED_FILTER_EPS)
    b = mean_y - a * mean_x
    return _box_mean(a) * guide + _box_mean(b)


class DctNet(nn.Module):
    """uint8 BGR `[N, H, W, 3]` -> uint8 BGR `[N, H, W, 3]`, the whole official graph.

    `generator_dtype` float16/bfloat16 runs only the generator in that precision (the fast
    mode); normalisation, the guided filter (whose variance is a difference of near-equal
    terms) and the final scaling stay in fp32, as in the ONNX fp16 graph.
    """

    def __init__(self, weights: DctNetWeights, generator_dtype: torch.dtype = torch.float32):
        super().__init__()
        self.generator = Generator(weights).to(generator_dtype)
        self.generator_dtype = generator_dtype
        # A tensor divisor, not a Python scalar: CUDA turns `x / scalar` into a multiply by
        # the reciprocal, which is one ulp off the official division for some inputs.
        self.register_buffer("c127_5", torch.tensor([127.5], dtype=torch.float32), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float()
        x = x / self.c127_5 - 1.0
        g = x.to(self.generator_dtype)
        if self.generator_dtype != torch.float32:
            g = g.contiguous(memory_format=torch.channels_last)
        y = self.generator(g).float()
        y = guided_filter(x, y)
        y = torch.clamp(y, -0.999999, 0.999999)
        # TF's Cast truncates; floor first so the cast cannot round.
        y = torch.floor((y + 1.0) * 127.5)
        # channels-last all the way, so this is already contiguous NHWC (no copy)
        return y.permute(0, 2, 3, 1).to(torch.uint8).contiguous()
