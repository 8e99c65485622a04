"""The three scheduled hyperparameters of the paper (§IV-C, "Scheduling") and the learning rate.

Every schedule is a pure function of the step, so a resumed run needs nothing but the step number.

* batch size: B0 identities at step 0, doubled ``doublings`` times at evenly spaced steps, reaching
  B0·2^doublings at ``warmup`` (paper: 8× the initial batch, i.e. 3 doublings: B0, 2B0 at T/3,
  4B0 at 2T/3, 8B0 at T);
* α_norm: from ``start`` to ``final`` over ``ramp`` steps, linear or half-cosine, constant after;
* learning rate: linear warm-up from 0 to ``base`` over ``warmup`` steps, then a cosine decay to
  ``final_factor``·base at ``total``.
"""

from __future__ import annotations

import math
from typing import Literal


def batch_identities_at(step: int, b0: int, doublings: int = 3, warmup: int = 3000) -> int:
    """Identities per batch at ``step``: b0·2^min(doublings, ⌊step·doublings/warmup⌋)."""
    if b0 < 1 or doublings < 0 or warmup < 0:
        raise ValueError(f"batch schedule needs b0 >= 1, doublings >= 0, warmup >= 0 (got {b0}, {doublings}, {warmup})")
    if doublings == 0 or warmup == 0:
        return b0 * 2 ** doublings
    k = min(doublings, (max(step, 0) * doublings) // warmup)
    return b0 * 2 ** k


def alpha_norm_at(step: int, final: float, start: float = 0.0, ramp: int = 3000,
                  shape: Literal["linear", "cosine"] = "linear") -> float:
    """α_norm rising from ``start`` to ``final`` over ``ramp`` steps."""
    if ramp <= 0 or step >= ramp:
        return final
    t = max(step, 0) / ramp
    if shape == "linear":
        f = t
    elif shape == "cosine":
        f = 0.5 * (1.0 - math.cos(math.pi * t))
    else:
        raise ValueError(f"α_norm ramp shape must be 'linear' or 'cosine', got {shape!r}")
    return start + (final - start) * f


def lr_at(step: int, base: float, total: int, warmup: int = 3000, final_factor: float = 0.0) -> float:
    """Linear warm-up to ``base`` (reached at step ``warmup``), then cosine to ``final_factor``·base at ``total``."""
    if warmup > 0 and step < warmup:
        return base * (step + 1) / warmup  # step 0 already moves: a zero first step would be wasted
    if total <= warmup:
        return base
    t = min(1.0, (step - warmup) / (total - warmup))
    return base * (final_factor + (1.0 - final_factor) * 0.5 * (1.0 + math.cos(math.pi * t)))
