"""h_gen: backbone embedding e → θ of the personal verifier f.

Four linear layers with LayerNorm and GELU, as in the paper. The paper's generator is tens of millions
of parameters (its last layer maps a wide hidden vector onto all of θ). Ours must stay ≤ 5M, so the
last layer is low-rank: the MLP produces a ``rank``-dimensional code z and θ = U z + θ₀, where U
(θ_size × rank) and θ₀ are learned. With rank 192 that is ≈ 4.7M parameters in all.

Scales: f standardizes every weight tensor, so the scale of the generated weights does not matter but
the biases do. The bias slots of U are initialised small so that every generated f starts near zero
logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pvcore.spec import F_SPEC, ArchSpec
from training.verifier.batched import split_spec


@dataclass(frozen=True)
class HGenConfig:
    embedding_dim: int = 128
    hidden: int = 512
    rank: int = 192
    bias_init_scale: float = 0.1
    # "" = every layer of f is generated per person (the paper). A layer name = partial personalization:
    # the layers before it get ONE learned θ shared by everybody (still part of every θ h emits), the
    # layers from it on are generated from e. Training then runs the shared prefix once per image
    # instead of once per (verifier, image) pair (training.verifier.batched.pairwise_logits_split).
    personal_from: str = ""


class HGen(nn.Module):
    def __init__(self, cfg: HGenConfig = HGenConfig(), spec: ArchSpec = F_SPEC) -> None:
        super().__init__()
        self.cfg, self.spec = cfg, spec
        self.n_shared = split_spec(spec, cfg.personal_from)[2] if cfg.personal_from else 0
        self.mlp = nn.Sequential(
            nn.Linear(cfg.embedding_dim, cfg.hidden), nn.LayerNorm(cfg.hidden), nn.GELU(),
            nn.Linear(cfg.hidden, cfg.hidden), nn.LayerNorm(cfg.hidden), nn.GELU(),
            nn.Linear(cfg.hidden, cfg.rank), nn.LayerNorm(cfg.rank), nn.GELU(),
        )
        # the 4th, low-rank linear layer: θ_personal = U z + θ₀
        self.head = nn.Linear(cfg.rank, spec.theta_size - self.n_shared)
        theta0 = torch.randn(spec.theta_size)  # He-like weights (WS makes the scale irrelevant); 0 biases, gains
        scale = torch.full((spec.theta_size,), 1.0 / cfg.rank ** 0.5)
        for slot in spec.layout:
            if slot.tensor in ("bias", "gain"):  # gains start at 1 + 0
                sl = slice(slot.offset, slot.offset + slot.size)
                theta0[sl] = 0.0
                scale[sl] *= cfg.bias_init_scale
        with torch.no_grad():
            self.head.weight.normal_().mul_(scale[self.n_shared:, None])
            self.head.bias.copy_(theta0[self.n_shared:])
        self.shared = nn.Parameter(theta0[:self.n_shared].clone()) if self.n_shared else None

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        """(N, embedding_dim) → (N, θ_size)."""
        personal = self.head(self.mlp(e))
        if self.shared is None:
            return personal
        return torch.cat([self.shared.expand(personal.shape[0], -1), personal], dim=1)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
