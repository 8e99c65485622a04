"""f's pooled features centred: the mean μ of the shared prefix's output, folded into gdc's bias.

Spec v5 normalizes f's pooled features (the layer "pool" is an L2 normalization, pvcore/spec.py); what it
should normalize is s − μ, the features about their mean over many faces, not s itself: the post-ReLU
maps make every face's s share one large common direction, and s/‖s‖ would keep mostly that (research log,
section 14). μ is a constant of the prefix every user shares, and gdc is linear, so subtracting it is
subtracting μ from gdc's bias — θ keeps its size and the deployed graph its ops.

Who centres: ``training.train`` once, when the pair stage begins (the prefix is final from then on:
``freeze_shared_in_pairs``), on training faces; ``training.export_model --center`` for a model trained
before spec v5, on the refinement half of its impostor cohort (people outside its training and evaluation
folds).
"""

from __future__ import annotations

import numpy as np
import torch

from pvcore.spec import F_SPEC, ArchSpec

# spec v4's arch hash: the same θ layout as v5, the features not normalized. A v4 model file becomes a v5
# one by centring (training.export_model --center); nothing else reads a v4 file.
V4_ARCH_HASH = "b2c40837d8bd5da1"


def center_slot(spec: ArchSpec = F_SPEC) -> slice:
    """Where in θ the bias of the layer before the pool (gdc) lives: the one μ is folded into."""
    name = spec.layers[spec.pool_index - 1].name
    s = next(s for s in spec.layout if s.layer == name and s.tensor == "bias")
    return slice(s.offset, s.offset + s.size)


def unnormalized_features(theta: np.ndarray | torch.Tensor, crops_u8: np.ndarray, spec: ArchSpec = F_SPEC
                          ) -> np.ndarray:
    """The output (N, C) of the layer before the pool (gdc: the features before their normalization), float64;
    ``theta`` may be the shared prefix only."""
    from training.refine import pooled_features

    return pooled_features(theta, crops_u8, spec=spec, at=spec.pool_index - 1).astype(np.float64)


def centered(theta_prefix: torch.Tensor, crops_u8: np.ndarray, spec: ArchSpec = F_SPEC
             ) -> tuple[torch.Tensor, dict]:
    """``theta_prefix`` (the shared θ values, at least up to gdc) with μ over ``crops_u8`` subtracted from gdc's
    bias, and what was measured: the faces, ‖μ‖, and the features' length about μ (mean, 5th and 95th
    percentile) — the typical length pvcore.spec.FEATURE_LENGTH stands for."""
    feats = unnormalized_features(theta_prefix.detach(), crops_u8, spec=spec)
    mu = feats.mean(axis=0)
    length = np.linalg.norm(feats - mu, axis=1)
    out = theta_prefix.detach().clone()
    sl = center_slot(spec)
    out[sl] = (out[sl].double() - torch.from_numpy(mu)).to(out.dtype)
    info = {"faces": int(len(crops_u8)), "mu_norm": float(np.linalg.norm(mu)),
            "length_mean": float(length.mean()), "length_p5": float(np.percentile(length, 5)),
            "length_p95": float(np.percentile(length, 95))}
    return out, info
