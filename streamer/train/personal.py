"""The personal-style task: low-rank adapters on an official style, learned from a few
cartoon exemplars and the user's own photos with DCT-Net's losses (streamer/train/losses.py).

One `PartTask` per model part: "bg" (whole frames, random crops) and "h" (aligned head
crops). Each has the base style's generator with its adapter (G), the frozen base generator
whose encoder is the feature network phi, and, when their losses are on, a multi-scale
patch discriminator D and a reverse generator F. Steps alternate between the parts. The
discriminator learns on the exemplars against G's current outputs, then G (its adapter
only) and F learn on the weighted sum of the losses that are on.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from streamer.models.dctnet.lora import Adapter
from streamer.models.dctnet.weights import DctNetWeights

from . import losses as L
from .data import Crops
from .lora_net import ALL_CONVS, LoraConvs, LoraGenerator, to_adapter, to_images, to_tensor
from .nets import MultiScaleDiscriminator, ReverseGenerator
from .precision import autocast, choose
from .sheets import preview_sheet


@dataclass(frozen=True)
class PersonalSettings:
    rank: int = 8
    alpha: float = 8.0
    size: int = 160
    batch: int = 2
    lr: float = 2e-3       # the adapters
    lr_nets: float = 2e-4  # D and F, trained from scratch
    losses: L.LossWeights = field(default_factory=L.LossWeights)
    seed: int = 0
    device: str = "torch-cpu"
    autocast: str = "auto"  # auto (measured), on, off

    def __post_init__(self) -> None:
        if self.rank < 1 or self.rank > 64:
            raise ValueError("--rank must be 1..64")
        if self.size < 32 or self.size > 512 or self.size % 4:
            raise ValueError("--size must be a multiple of 4 in 32..512")
        if self.batch < 1:
            raise ValueError("--batch must be at least 1")


class PartTask:
    """One part's networks, data and optimisers."""

    def __init__(self, part: str, weights: DctNetWeights, photos: Crops, exemplars: Crops,
                 held: list[np.ndarray], s: PersonalSettings, embedder=None, chip=None):
        self.part, self.s = part, s
        self.dev = torch.device("cuda" if s.device == "torch-cuda" else "cpu")
        self.lora = LoraConvs(ALL_CONVS, s.rank, s.alpha, seed=s.seed + (part == "h"))
        self.g = LoraGenerator(weights, self.lora).to(self.dev)
        self.phi = LoraGenerator(weights, None).to(self.dev).eval()  # frozen: base style
        self.photos, self.exemplars = photos, exemplars
        self.held = to_tensor(np.stack(held)).to(self.dev) if held else None
        w = s.losses
        # Scales while the coarsest still sees at least 16 px (a smaller map has no patches).
        scales = max(1, min(3, int(math.log2(s.size // 16))))
        self.d = MultiScaleDiscriminator(scales).to(self.dev) if w.on("adv") else None
        self.f = ReverseGenerator().to(self.dev) if w.on("cycle") else None
        self.embedder = embedder if (w.on("identity") and part == "h") else None
        self.chip = chip  # crop -> 150 px face chip (differentiable), for the identity loss
        g_params = [{"params": list(self.lora.parameters()), "lr": s.lr}]
        if self.f is not None:
            g_params.append({"params": list(self.f.parameters()), "lr": s.lr_nets})
        self.opt_g = torch.optim.Adam(g_params, betas=(0.5, 0.999))
        self.opt_d = (torch.optim.Adam(self.d.parameters(), lr=s.lr_nets, betas=(0.5, 0.999))
                      if self.d is not None else None)
        self.bf16 = False
        self.start_previews = self._render_held() if self.held is not None else None

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        x = to_tensor(self.photos.batch(self.s.batch)).to(self.dev)
        y = to_tensor(self.exemplars.batch(self.s.batch)).to(self.dev)
        return x, y

    def _g_terms(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        w = self.s.losses
        gx = self.g.render(x)
        terms: dict[str, torch.Tensor] = {}
        if self.d is not None:
            terms["adv"] = L.adversarial_g(self.d(gx))
        if self.f is not None:
            terms["cycle"] = L.cycle(self.f(gx), x, self.g.render(self.f(y)), y)
        if w.on("perceptual") or w.on("calibration"):
            fg = self.phi.features(gx)
            with torch.no_grad():
                if w.on("perceptual"):
                    fx = self.phi.features(x)
                if w.on("calibration"):
                    fy = self.phi.features(y)
            if w.on("perceptual"):
                terms["perceptual"] = L.perceptual(fg, fx)
            if w.on("calibration"):
                terms["calibration"] = L.calibration(fg, fy)
        if self.embedder is not None:
            with torch.no_grad():
                e_in = self.embedder(self.chip(x))
            terms["identity"] = L.identity(e_in, self.embedder(self.chip(gx)))
        return terms

    def _total(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        w = self.s.losses
        return sum(getattr(w, k) * v.float() for k, v in terms.items())

    def timing_step(self, bf16: bool) -> None:
        """One forward and backward of the generator's losses, nothing updated."""
        x, y = self._batch()
        with autocast(self.s.device, bf16):
            loss = self._total(self._g_terms(x, y))
        loss.backward()
        self.opt_g.zero_grad(set_to_none=True)

    def step(self) -> dict[str, float]:
        x, y = self._batch()
        out: dict[str, float] = {}
        with autocast(self.s.device, self.bf16):
            if self.d is not None:
                with torch.no_grad():
                    gx = self.g.render(x)
                d_loss = L.adversarial_d(self.d(y), self.d(gx))
                self.opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                self.opt_d.step()
                out["d"] = float(d_loss.detach())
            terms = self._g_terms(x, y)
            loss = self._total(terms)
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        out.update({k: float(v.detach()) for k, v in terms.items()})
        out["total"] = float(loss.detach())
        return out

    @torch.no_grad()
    def _render_held(self) -> np.ndarray:
        return to_images(self.g.render(self.held))

    def preview_rows(self) -> list[list[np.ndarray]]:
        if self.held is None:
            return []
        now = self._render_held()
        inputs = to_images(self.held)
        return [[inputs[i], self.start_previews[i], now[i]] for i in range(len(now))]

    def state_dict(self) -> dict:
        state = {"lora": self.lora.state_dict(), "opt_g": self.opt_g.state_dict()}
        if self.d is not None:
            state.update(d=self.d.state_dict(), opt_d=self.opt_d.state_dict())
        if self.f is not None:
            state["f"] = self.f.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.lora.load_state_dict(state["lora"])
        self.opt_g.load_state_dict(state["opt_g"])
        if self.d is not None:
            self.d.load_state_dict(state["d"])
            self.opt_d.load_state_dict(state["opt_d"])
        if self.f is not None:
            self.f.load_state_dict(state["f"])


class PersonalStyleTask:
    """The trainer's task (streamer/train/trainer.py) for one personal style."""

    def __init__(self, name: str, base: str, parts: dict[str, PartTask],
                 settings: PersonalSettings, exemplar_count: int, photo_count: int):
        if not parts:
            raise ValueError("no part to train")
        self.name, self.base, self.parts, self.s = name, base, parts, settings
        self.exemplar_count, self.photo_count = exemplar_count, photo_count
        self._order = list(parts)
        torch.manual_seed(settings.seed)

    def choose_precision(self) -> str:
        """Measure fp32 against bf16 autocast on one part and use the faster for all."""
        first = self.parts[self._order[0]]
        on, times = choose(first.timing_step, self.s.device, self.s.autocast)
        for p in self.parts.values():
            p.bf16 = on
        if not times:
            return f"autocast {'bf16' if on else 'off'} (as asked)"
        return (f"{'bf16 autocast' if on else 'fp32'} (measured per step: fp32 "
                f"{times['fp32'] * 1e3:.0f} ms, bf16 {times['bf16'] * 1e3:.0f} ms)")

    def step(self, step: int) -> dict[str, float]:
        part = self._order[step % len(self._order)]
        out = self.parts[part].step()
        return out if len(self._order) == 1 else {f"{part}.{k}": v for k, v in out.items()}

    def state_dict(self) -> dict:
        return {p: t.state_dict() for p, t in self.parts.items()}

    def load_state_dict(self, state: dict) -> None:
        for p, t in self.parts.items():
            t.load_state_dict(state[p])

    def signature(self) -> dict:
        s = self.s
        return {"name": self.name, "base": self.base, "parts": sorted(self.parts),
                "rank": s.rank, "alpha": s.alpha, "size": s.size, "batch": s.batch,
                "losses": s.losses.as_dict(), "seed": s.seed}

    def preview(self) -> np.ndarray:
        rows = [r for p in self._order for r in self.parts[p].preview_rows()]
        return preview_sheet(rows, ["input", f"start ({self.base})", f"now ({self.name})"])

    def adapter(self, steps: int) -> Adapter:
        meta = {"losses": json.dumps(self.s.losses.as_dict(), sort_keys=True),
                "steps": str(steps), "exemplars": str(self.exemplar_count),
                "photos": str(self.photo_count), "size": str(self.s.size),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        return to_adapter(self.name, self.base,
                          {p: t.lora for p, t in self.parts.items()}, meta)
