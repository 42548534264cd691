"""The training losses, each switchable (weight 0) and weighted from the command line.

Defaults follow the DCT-Net reference: adversarial 1, cycle 10, perceptual 5, domain
calibration 1; the identity loss (proposed by the project's reference for personal styles)
defaults to 1 on heads. The feature network phi of the perceptual and calibration losses
is the frozen encoder of the base style's own generator (see README "Personal styles": the
reference's VGG ships in no package reachable offline; this encoder is pretrained, ships
with every install, and was trained to see exactly the content a cartoonizer must keep).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F

#: per-layer weights lambda_l of the perceptual loss (full, half, quarter size maps)
PERCEPTUAL_LAYERS = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class LossWeights:
    adv: float = 1.0
    cycle: float = 10.0
    perceptual: float = 5.0
    calibration: float = 1.0
    identity: float = 1.0
    l1: float = 0.0  # distillation: |student - teacher|_1

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not (v >= 0.0 and v < float("inf")):
                raise ValueError(f"the {f.name} loss weight must be a finite number >= 0, got {v}")

    def on(self, name: str) -> bool:
        return getattr(self, name) > 0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def describe(self) -> str:
        return ", ".join(f"{k} {v:g}" for k, v in asdict(self).items() if v > 0) or "none"


def adversarial_d(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """-(E[log D(y)] + E[log(1 - D(G(x)))]), over the discriminator's scales."""
    loss = real[0].new_zeros(())
    for r, f in zip(real, fake):
        loss = loss + F.binary_cross_entropy_with_logits(r, torch.ones_like(r)) \
            + F.binary_cross_entropy_with_logits(f, torch.zeros_like(f))
    return loss / len(real)


def adversarial_g(fake: list[torch.Tensor]) -> torch.Tensor:
    """The generator's side, in the non-saturating form: -E[log D(G(x))]."""
    loss = fake[0].new_zeros(())
    for f in fake:
        loss = loss + F.binary_cross_entropy_with_logits(f, torch.ones_like(f))
    return loss / len(fake)


def perceptual(out: list[torch.Tensor], ref: list[torch.Tensor],
               layers: tuple[float, ...] = PERCEPTUAL_LAYERS) -> torch.Tensor:
    """sum_l lambda_l |phi_l(a) - phi_l(b)|^2 (mean over the map)."""
    return sum(w * F.mse_loss(a, b) for w, a, b in zip(layers, out, ref))


def _stats(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = t.transpose(0, 1).reshape(t.shape[1], -1)
    return flat.mean(dim=1), flat.std(dim=1)


def calibration(out: list[torch.Tensor], domain: list[torch.Tensor]) -> torch.Tensor:
    """Domain calibration: the channel means and spreads of the output's feature maps
    aligned with the cartoon exemplars' (the statistics of a domain, not of one image)."""
    loss = out[0].new_zeros(())
    for a, b in zip(out, domain):
        ma, sa = _stats(a)
        mb, sb = _stats(b)
        loss = loss + F.mse_loss(ma, mb) + F.mse_loss(sa, sb)
    return loss


def cycle(back_x: torch.Tensor, x: torch.Tensor, again_y: torch.Tensor, y: torch.Tensor
          ) -> torch.Tensor:
    """|F(G(x)) - x|_1 + |G(F(y)) - y|_1."""
    return F.l1_loss(back_x, x) + F.l1_loss(again_y, y)


def identity(e_in: torch.Tensor, e_out: torch.Tensor) -> torch.Tensor:
    """1 - cos(E(x), E(G(x))), averaged over the faces."""
    return (1.0 - F.cosine_similarity(e_in, e_out, dim=1)).mean()
