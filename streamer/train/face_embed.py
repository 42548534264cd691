"""The identity term of a personal style's training: dlib's 128-d face descriptor as a
differentiable PyTorch module, and the aligned face chips it reads.

DCT-Net's identity loss is 1 - cos(E(x), E(G(x))) for a face embedder E. Here E is dlib's
face recognition ResNet (the weights `face_recognition_models` ships, read by
`streamer.models.dlibnet` without dlib) run in the order and with the conventions of dlib's
CPU code: input scaled as `input_rgb_image_sized` does ((v - channel mean) / 256, RGB),
convolutions and pools unpadded when strided (dlib's template defaults; 3x3 stride-1
convolutions pad 1), pool windows clipped at the border, the strided residual branch summed
with the 2x2 average-pooled shortcut where a smaller or narrower operand counts as zero
beyond its extent (dlib's tt::add: at 8x8 -> 3x3 vs 4x4, channels 128 vs 256), then the
global average and fc_no_bias. tests/test_face_embed.py checks it against dlib's own
descriptor on the shared photos.

The chips are 150x150 RGB aligned by a similarity transform from the detector's five points
(`face_chip`, `chip_matrix`; `warp_to_chip` is the differentiable version for generated
images, `crop_chipper` the one for the trainer's aligned head crops).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from streamer.models.dlibnet import (Affine, AddPrev, AvgPool, Conv, DlibNet, DlibNetError, Fc,
                                     MaxPool, Relu, Skip, Tag, dlib_model_path, read_dlib_net)

CHIP_SIZE = 150
CHIP_PADDING = 0.25

# The five points in dlib's normalised face frame (x, y in 0..1 of the face box that its
# 68-point mean shape spans), in YuNet's order: image-left eye, image-right eye, nose tip,
# image-left and image-right mouth corner. They are dlib's own mean face
# (`get_face_chip_details` in dlib/image_transforms/interpolation.h): the eye centres are the
# means of its points 36-41 and 42-47, the nose tip is point 30, the mouth corners points 48
# and 54. dlib's 5-point template (eye corners 36, 39, 42, 45 and nose base 33) comes from
# the same mean face, so a chip made here puts the face where dlib.get_face_chip does.
FACE_TEMPLATE = np.array([[0.2254918, 0.2159903],
                          [0.7547613, 0.2159903],
                          [0.4901270, 0.5156250],
                          [0.2541490, 0.7802330],
                          [0.7261040, 0.7802330]], np.float64)


# -------------------------------------------------------------------------- the network

class FaceEmbedder(nn.Module):
    """dlib's face descriptor, differentiable: `forward(chips)` takes float RGB chips
    `[N, 3, 150, 150]` with values 0..255 (as dlib.get_face_chip makes them) and returns the
    descriptors `[N, 128]` (not normalised, as dlib returns them). The weights are frozen
    buffers: gradients reach the chips, never the network."""

    def __init__(self, weights: DlibNet | str | Path | None = None,
                 device: str | torch.device = "cpu"):
        super().__init__()
        net = weights if isinstance(weights, DlibNet) else read_dlib_net(
            weights if weights is not None else dlib_model_path())
        self.input_size = net.input_size
        self.distance_threshold = net.distance_threshold
        self.register_buffer("mean", torch.tensor(net.input_mean, dtype=torch.float32)
                             .view(1, 3, 1, 1))
        self.input_scale = float(net.input_scale)
        self._plan: list[tuple] = []
        for i, layer in enumerate(net.layers):
            self._plan.append(self._add(i, layer))
        self.to(device)

    def _buffer(self, name: str, value: np.ndarray) -> str:
        self.register_buffer(name, torch.from_numpy(np.ascontiguousarray(value, np.float32)))
        return name

    def _add(self, i: int, layer) -> tuple:
        if isinstance(layer, Conv):
            return ("conv", self._buffer(f"w{i}", layer.weight), self._buffer(f"b{i}", layer.bias),
                    layer.stride, layer.padding, layer.relu)
        if isinstance(layer, Affine):
            return ("affine", self._buffer(f"g{i}", layer.gamma.reshape(1, -1, 1, 1)),
                    self._buffer(f"b{i}", layer.beta.reshape(1, -1, 1, 1)))
        if isinstance(layer, Relu):
            return ("relu", layer.enabled)
        if isinstance(layer, MaxPool):
            return ("max_pool", layer.size, layer.stride, layer.padding)
        if isinstance(layer, AvgPool):
            return ("avg_pool", layer.size, layer.stride, layer.padding)
        if isinstance(layer, Tag):
            return ("tag", layer.id)
        if isinstance(layer, Skip):
            return ("skip", layer.id)
        if isinstance(layer, AddPrev):
            return ("add_prev", layer.id)
        if isinstance(layer, Fc):
            bias = None if layer.bias is None else self._buffer(f"b{i}", layer.bias)
            return ("fc", self._buffer(f"w{i}", layer.weight), bias)
        raise TypeError(f"no PyTorch form for {type(layer).__name__}")

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        size = self.input_size
        if chips.dim() != 4 or tuple(chips.shape[1:]) != (3, size, size):
            raise ValueError(f"chips must be [N, 3, {size}, {size}] RGB, got "
                             f"{list(chips.shape)}")
        x = (chips.to(self.mean.dtype) - self.mean) * self.input_scale
        tagged: dict[int, torch.Tensor] = {}
        for op in self._plan:
            kind = op[0]
            if kind == "conv":
                _, w, b, stride, padding, relu = op
                x = F.conv2d(x, getattr(self, w), getattr(self, b), stride, padding)
                if relu:
                    x = F.relu(x)
            elif kind == "affine":
                x = x * getattr(self, op[1]) + getattr(self, op[2])
            elif kind == "relu":
                if op[1]:
                    x = F.relu(x)
            elif kind == "max_pool":
                # Torch's implicit -inf padding equals dlib's window clipping.
                x = F.max_pool2d(x, op[1], op[2], op[3])
            elif kind == "avg_pool":
                if op[1] == (0, 0):
                    x = x.mean((2, 3), keepdim=True)
                else:
                    # dlib averages only the part of a window inside the image.
                    x = F.avg_pool2d(x, op[1], op[2], op[3], count_include_pad=False)
            elif kind == "tag":
                tagged[op[1]] = x
            elif kind == "skip":
                x = tagged[op[1]]
            elif kind == "add_prev":
                x = _add_zero_extended(x, tagged[op[1]])
            else:  # fc
                x = x.flatten(1) @ getattr(self, op[1])
                if op[2] is not None:
                    x = x + getattr(self, op[2])
        return x


def _add_zero_extended(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a + b over the larger of each dimension, each zero outside its own extent (dlib's
    tt::add for operands of different shapes: F.pad extends at the end, as dlib indexes)."""
    if a.shape == b.shape:
        return a + b
    shape = [max(p, q) for p, q in zip(a.shape[1:], b.shape[1:])]

    def extend(t: torch.Tensor) -> torch.Tensor:
        c, h, w = t.shape[1:]
        return F.pad(t, (0, shape[2] - w, 0, shape[1] - h, 0, shape[0] - c))
    return extend(a) + extend(b)


def identity_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """DCT-Net's identity term per pair of descriptors `[N, 128]`: 1 - cos(a, b), shape [N]."""
    return 1.0 - F.cosine_similarity(a, b, dim=-1)


def descriptor_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's own comparison per pair: the Euclidean distance, shape [N]; the same person
    is below `FaceEmbedder.distance_threshold` (0.6, stored in the model file)."""
    return torch.linalg.vector_norm(a - b, dim=-1)


def chip_tensor(chip_rgb: np.ndarray) -> torch.Tensor:
    """A uint8 RGB chip `[150, 150, 3]` (or a stack `[N, 150, 150, 3]`) as the float
    `[N, 3, 150, 150]` batch FaceEmbedder takes."""
    t = torch.from_numpy(np.ascontiguousarray(chip_rgb)).float()
    if t.dim() == 3:
        t = t[None]
    return t.permute(0, 3, 1, 2).contiguous()


# ----------------------------------------------------------------------------- the chips

def chip_matrix(five_points: np.ndarray, size: int = CHIP_SIZE,
                padding: float = CHIP_PADDING) -> np.ndarray:
    """The 2x3 image -> chip similarity (no reflection) for a face's five points (YuNet's
    order), fitted as dlib fits its chips: least squares from the template in chip pixels
    (`FACE_TEMPLATE`, padded as dlib pads: (padding + p) / (1 + 2 padding) * size) to the
    image points, then inverted."""
    src = np.asarray(five_points, np.float64).reshape(5, 2)
    dst = (padding + FACE_TEMPLATE) / (1 + 2 * padding) * size
    # chip -> image: [u, v] = [[a, -b], [b, a]] @ [x, y] + [tx, ty]
    x, y = dst[:, 0], dst[:, 1]
    one, zero = np.ones(5), np.zeros(5)
    a_mat = np.concatenate([np.stack([x, -y, one, zero], 1), np.stack([y, x, zero, one], 1)])
    a, b, tx, ty = np.linalg.lstsq(a_mat, np.concatenate([src[:, 0], src[:, 1]]),
                                   rcond=None)[0]
    chip_to_image = np.array([[a, -b, tx], [b, a, ty], [0, 0, 1]])
    return np.linalg.inv(chip_to_image)[:2]


def _pyramid_steps(m: np.ndarray) -> int:
    # dlib's extract_image_chips halves the image (pyramid_down<2>) until the chip's
    # footprint holds no more pixels than the chip, so bilinear never skips pixels.
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))  # chip px per image px
    steps = 0
    while scale < 1.0:
        scale *= 2
        steps += 1
    return steps


def _halve_matrix(m: np.ndarray) -> np.ndarray:
    # Pixel j of a 2x2-averaged level covers source pixels 2j, 2j+1: source x = 2 x' + 0.5.
    out = m.copy()
    out[:, 2] = m[:, 2] + m[:, :2] @ np.array([0.5, 0.5])
    out[:, :2] = m[:, :2] * 2
    return out


def face_chip(image_bgr: np.ndarray, five_points: np.ndarray, size: int = CHIP_SIZE,
              padding: float = CHIP_PADDING) -> np.ndarray:
    """The `size` x `size` uint8 RGB face chip of a BGR image for five points in YuNet's
    order (image-left eye, image-right eye, nose tip, image-left and image-right mouth
    corner): the face placed as dlib.get_face_chip places it (see FACE_TEMPLATE), a large
    face first halved by 2x2 averaging as dlib's pyramid does, then bilinear, black outside
    the image."""
    m = chip_matrix(five_points, size, padding)
    img = np.asarray(image_bgr, np.float32)
    for _ in range(_pyramid_steps(m)):
        h, w = img.shape[0] // 2, img.shape[1] // 2
        if h == 0 or w == 0:
            break
        img = img[:2 * h, :2 * w].reshape(h, 2, w, 2, -1).mean((1, 3))
        m = _halve_matrix(m)
    chip = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    chip = chip.reshape(size, size, -1)[..., 2::-1]
    return np.clip(np.rint(chip), 0, 255).astype(np.uint8)


def warp_to_chip(images: torch.Tensor, matrices: np.ndarray | torch.Tensor,
                 size: int = CHIP_SIZE) -> torch.Tensor:
    """`face_chip` for a batch of float images `[N, C, H, W]` (any range, any channel
    order, kept), differentiable in the images: warped by one image -> chip matrix `[2, 3]`
    for all or one per image `[N, 2, 3]` (chip_matrix), with the same 2x2-average halving and
    bilinear sampling (zero outside). Returns `[N, C, size, size]`."""
    mats = torch.as_tensor(matrices, dtype=torch.float64).cpu().numpy()
    if mats.shape == (2, 3):
        return _warp(images, mats, size)
    mats = mats.reshape(-1, 2, 3)
    if len(mats) != len(images):
        raise ValueError(f"{len(mats)} matrices for {len(images)} images")
    return torch.cat([_warp(image[None], m, size) for image, m in zip(images, mats)])


def _warp(images: torch.Tensor, m: np.ndarray, size: int) -> torch.Tensor:
    for _ in range(_pyramid_steps(m)):
        if min(images.shape[-2:]) < 2:
            break
        images = F.avg_pool2d(images, 2)
        m = _halve_matrix(m)
    inv = np.linalg.inv(np.vstack([m, [0.0, 0.0, 1.0]]))[:2]
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    src_x = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]  # source pixel coordinates
    src_y = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    h, w = images.shape[-2:]
    # align_corners=True: -1 and 1 are the centres of the first and last pixel.
    grid = np.stack([src_x * 2 / max(w - 1, 1) - 1, src_y * 2 / max(h - 1, 1) - 1], -1)
    grid_t = torch.from_numpy(grid).to(images.device, images.dtype)
    return F.grid_sample(images, grid_t[None].expand(len(images), -1, -1, -1),
                         mode="bilinear", padding_mode="zeros", align_corners=True)


def crop_chipper(size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """For the identity loss in training: a differentiable map from batches of the official
    aligned head crops (streamer.toon.faces.align, scaled from 288 to `size` px), as the
    trainer holds them (BGR `[N, 3, size, size]` in -1..1), to FaceEmbedder's chips (RGB
    0..255, 150 px). The crop's reference points stand in for detected ones, so a crop that
    was zoomed or shifted a little gives a chip that is off by as much."""
    from streamer.toon.faces.align import CROP_SIZE, REFERENCE_POINTS

    m = chip_matrix(REFERENCE_POINTS * (size / CROP_SIZE))

    def chip(crops: torch.Tensor) -> torch.Tensor:
        rgb_255 = (crops.flip(1) + 1.0) * 127.5
        return warp_to_chip(rgb_255, m)
    return chip


def default_model_path() -> Path | None:
    """dlib's network file from face_recognition_models, or None where it is not
    installed."""
    try:
        return dlib_model_path()
    except DlibNetError:
        return None
