"""The training objective of the paper, eqs. (6)–(9).

    L_bce  = 1/nB Σ_j Σ_k −[ λ Y_jk log σ(ŷ_jk) + (1−λ)(1−Y_jk) log(1−σ(ŷ_jk)) ]     (6)
    λ      = 1 − β/B                                                                  (7)
    L_norm = 1/nB Σ_j ‖θ_j‖²                                                          (8)
    L      = L_bce + α_norm L_norm                                                    (9)

Row j is the verifier generated from image j, column k an image it is applied to; Y_jk = 1 when both
show the same identity (eq. 3). The sum over columns is a *sum*, not a mean (as eq. 6 is written), so
L_bce grows with the number of columns; λ is what balances the n positives of a row against its
(B−1)·n negatives. log σ is computed as ``logsigmoid`` (log(1−σ(y)) = logsigmoid(−y)), which is exact
for any logit where the naive form overflows.

The same functions take a *subsampled* (N, m) matrix (pair subsampling: each row keeps its positives
and k negatives): ``weights`` then re-weights the kept entries, e.g. negatives by (B−1)·n/k so that the
expected value equals eq. (6) over the full row (see :func:`training.samplers.select_columns`).
Soft targets Y ∈ [0, 1] (distillation from the backbone's similarity) are allowed: the formula is the
same cross-entropy, λ weighting the "same" part and 1−λ the "different" part.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bce_lambda(identities_per_batch: int, beta: float = 2.0) -> float:
    """λ = 1 − β/B (eq. 7). Needs B > β so that positives keep a positive weight."""
    if identities_per_batch <= beta:
        raise ValueError(f"λ = 1 − β/B needs B > β; got B={identities_per_batch}, β={beta}")
    return 1.0 - beta / identities_per_batch


def weighted_bce(logits: torch.Tensor, targets: torch.Tensor, lam: float,
                 weights: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. (6): mean over rows of the per-row sum of the λ-weighted binary cross-entropy.

    logits, targets: (N, m) (targets in [0, 1]); ``weights`` (N, m) optional per-entry factor.
    """
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ in shape")
    if logits.ndim != 2:
        raise ValueError(f"logits must be (rows, columns), got {tuple(logits.shape)}")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"λ must be in [0, 1], got {lam}")
    y = targets.to(logits.dtype)
    per = -(lam * y * F.logsigmoid(logits) + (1.0 - lam) * (1.0 - y) * F.logsigmoid(-logits))
    if weights is not None:
        per = per * weights
    return per.sum(dim=1).mean()


def theta_norm_loss(thetas: torch.Tensor) -> torch.Tensor:
    """Eq. (8): mean over the generated θ of their squared L2 norm. thetas: (N, θ_size).

    θ is the raw output of h_gen. f standardizes its filters, so for weights this term does not change
    f's function; it keeps the raw scale from growing, which would shrink the effective step size on
    these scale-invariant weights (the paper's reference [42]). On biases it is plain weight decay.
    """
    if thetas.ndim != 2:
        raise ValueError(f"thetas must be (N, θ_size), got {tuple(thetas.shape)}")
    return thetas.square().sum(dim=1).mean()


def total_loss(logits: torch.Tensor, targets: torch.Tensor, thetas: torch.Tensor, lam: float, alpha_norm: float,
               weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. (9) → (L, L_bce, L_norm)."""
    bce = weighted_bce(logits, targets, lam, weights)
    lnorm = theta_norm_loss(thetas)
    return bce + alpha_norm * lnorm, bce, lnorm


def identity_targets(row_labels: torch.Tensor, col_labels: torch.Tensor | None = None,
                     columns: torch.Tensor | None = None) -> torch.Tensor:
    """Y of eq. (3): (N, M) with Y_jk = [label_j == label_k], or (N, m) for subsampled ``columns``."""
    col_labels = row_labels if col_labels is None else col_labels
    if columns is None:
        return (row_labels[:, None] == col_labels[None, :]).float()
    return (row_labels[:, None] == col_labels[columns]).float()
