"""The "f trained directly" ablation (paper Table II, first row): no hypernetwork, one shared θ.

A single verifier cannot tell people apart by itself (it has one output and no notion of who is
enrolled), so the shared-θ f is used the way an embedding network is: φ(x) = the pre-activation of
f's last hidden layer (fc1, 24 values), and the pair score is s·cos(φ(x_j), φ(x_k)) + b with a learned
scale s and offset b. The paper trained this model with AdaFace's margin loss; here it gets the very
same batches, loss (eq. 6, 8, 9), schedules and evaluation as the hypernetwork, so the comparison
isolates "generate θ per person" from everything else. L_norm is the squared norm of the one θ.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pvcore.spec import F_SPEC, ArchSpec, AvgPool, Conv, Dense, L2Norm
from training.verifier.batched import CL, _conv, effective_weights_batched
from training.verifier.functional import L2NORM_EPS, random_theta


class DirectF(nn.Module):
    def __init__(self, spec: ArchSpec = F_SPEC, seed: int = 0, init_scale: float = 10.0) -> None:
        super().__init__()
        if not isinstance(spec.layers[-1], Dense) or not isinstance(spec.layers[-2], Dense):
            raise ValueError(f"{spec.name}: the direct-f ablation needs f to end in two dense layers")
        self.spec = spec
        self.theta = nn.Parameter(random_theta(seed, spec))
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))
        self.offset = nn.Parameter(torch.tensor(0.0))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """φ(x): (M, C, H, W) → (M, d) L2-normalised pre-activations of the layer before the head."""
        eff = {k: v[0] for k, v in effective_weights_batched(self.theta[None], self.spec).items()}
        h = x.contiguous(memory_format=CL)
        layers = self.spec.layers[:-1]
        for i, layer in enumerate(layers):
            last = i == len(layers) - 1
            if isinstance(layer, Conv):
                h = _conv(h, eff[f"{layer.name}.weight"], eff[f"{layer.name}.bias"], layer, layer.groups)
            elif isinstance(layer, AvgPool):
                h = h.mean(dim=(2, 3))
            elif isinstance(layer, L2Norm):
                h = torch.nn.functional.normalize(h.flatten(1), dim=1, eps=L2NORM_EPS)
            else:
                h = torch.nn.functional.linear(h, eff[f"{layer.name}.weight"], eff[f"{layer.name}.bias"])
                if layer.relu and not last:
                    h = h.relu()
        return torch.nn.functional.normalize(h, dim=1)

    def score(self, fa: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
        return self.log_scale.exp() * (fa * fb).sum(-1) + self.offset

    def forward(self, x: torch.Tensor, columns: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Pair logits of a batch (rows and columns are the batch's images) and θ as a (1, θ_size) stack."""
        phi = self.features(x)
        if columns is None:
            logits = self.log_scale.exp() * phi @ phi.t() + self.offset
        else:
            logits = self.score(phi[:, None, :], phi[columns])
        return logits, self.theta[None]
