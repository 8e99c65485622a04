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

from training.verifier.spec import F_SPEC, ArchSpec


@dataclass(frozen=True)
class HGenConfig:
    embedding_dim: int = 128
    hidden: int = 512
    rank: int = 192
    bias_init_scale: float = 0.1


class HGen(nn.Module):
    def __init__(self, cfg: HGenConfig = HGenConfig(), spec: ArchSpec = F_SPEC) -> None:
        super().__init__()
        self.cfg, self.spec = cfg, spec
        self.mlp = nn.Sequential(
            nn.Linear(cfg.embedding_dim, cfg.hidden), nn.LayerNorm(cfg.hidden), nn.GELU(),
            nn.Linear(cfg.hidden, cfg.hidden), nn.LayerNorm(cfg.hidden), nn.GELU(),
            nn.Linear(cfg.hidden, cfg.rank), nn.LayerNorm(cfg.rank), nn.GELU(),
        )
        self.head = nn.Linear(cfg.rank, spec.theta_size)  # the 4th, low-rank linear layer: θ = U z + θ₀
        with torch.no_grad():
            nn.init.normal_(self.head.weight, std=1.0 / cfg.rank ** 0.5)
            self.head.bias.normal_(std=1.0)
            for slot in spec.layout:
                if slot.tensor in ("bias", "gain"):  # gains start at 1 + 0
                    sl = slice(slot.offset, slot.offset + slot.size)
                    self.head.weight[sl] *= cfg.bias_init_scale
                    self.head.bias[sl] = 0.0

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        """(N, embedding_dim) → (N, θ_size)."""
        return self.head(self.mlp(e))

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
