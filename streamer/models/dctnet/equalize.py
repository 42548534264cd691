"""Channel equalisation of the DCT-Net generator before int8 quantization.

int8 activations have one scale per tensor, so a channel whose values stay ten times smaller
than its neighbours' gets a tenth of the levels. LeakyReLU is positively homogeneous
(f(s x) = s f(x) for s > 0), and so are the bilinear upsample and the skip additions, so a
channel can be divided by s where it is produced and multiplied by s where it is read,
leaving the float network's output unchanged. The scale per channel is SmoothQuant's
balance between the activation range and the reading weights' range
(s = r_act^alpha / r_w^(1 - alpha)): alpha 0.7 leans on the activations because the weights
are rounded by GPTQ (`gptq.py`), which absorbs most of the larger weight range.
Measured on handdrawn with every convolution int8 and GPTQ rounding: mean |diff| against
TensorFlow 2.7-3.1 without equalisation, 2.3-2.9 with alpha 0.5, 2.0-2.6 with 0.8, 2.4-3.1 with
1.0. With the shipped float sets, alpha 0.7 did best of 0.6, 0.7 and 0.8 over the seven styles
(anime at most 0.82 against 0.85 and 0.98; 0.6 was better by more than 0.05 only on artstyle's
luciano, 1.79 against 1.87).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

ALPHA = 0.7

# (producers, readers) that share one set of channels: a channel set crosses the skip
# connections (x0 = Conv's output is added to the upsampled Conv_7 before Conv_8; x1 =
# Conv_2's to the upsampled Conv_5 before Conv_6; the residual stream runs from Conv_4
# through every block to Conv_5), so every tensor added into it is scaled alike.
GROUPS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("Conv", "Conv_7"), ("Conv_1", "Conv_8")),
    (("Conv_1",), ("Conv_2",)),
    (("Conv_2", "Conv_5"), ("Conv_3", "Conv_6")),
    (("Conv_3",), ("Conv_4",)),
    (("Conv_4",) + tuple(f"block_{i}/conv2" for i in range(4)),
     tuple(f"block_{i}/conv1" for i in range(4)) + ("Conv_5",)),
    *(((f"block_{i}/conv1",), (f"block_{i}/conv2",)) for i in range(4)),
    (("Conv_6",), ("Conv_7",)),
    (("Conv_8",), ("Conv_9",)),
)


def channel_scales(input_ranges: Mapping[str, np.ndarray], weights: Mapping[str, np.ndarray],
                   alpha: float = ALPHA) -> dict[int, np.ndarray]:
    """Per group (index into GROUPS) the factor each channel is divided by where produced.
    `input_ranges[conv]` is the per-channel max |value| of conv's input on calibration
    frames; `weights[conv]` its OIHW kernel."""
    scales = {}
    for g, (_, readers) in enumerate(GROUPS):
        act = np.max([input_ranges[r] for r in readers], axis=0)
        wt = np.max([np.abs(weights[r]).max(axis=(0, 2, 3)) for r in readers], axis=0)
        s = np.maximum(act, 1e-8) ** alpha / np.maximum(wt, 1e-8) ** (1 - alpha)
        s = s / np.exp(np.mean(np.log(s)))  # geometric mean 1: the layer's overall scale stays
        scales[g] = np.clip(s, 1e-2, 1e2)
    return scales


def equalized(weights: Mapping[str, np.ndarray], biases: Mapping[str, np.ndarray],
              scales: Mapping[int, np.ndarray]) -> tuple[dict, dict]:
    """New (weights, biases) with each group's channels divided by its scales where they
    are produced and multiplied where they are read (the float result is unchanged)."""
    w = {k: v.copy() for k, v in weights.items()}
    b = {k: v.copy() for k, v in biases.items()}
    for g, (producers, readers) in enumerate(GROUPS):
        s = scales[g]
        for p in producers:
            w[p] /= s[:, None, None, None]
            b[p] /= s
        for r in readers:
            w[r] *= s[None, :, None, None]
    return w, b
