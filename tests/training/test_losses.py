"""The objective, eqs. (6)–(9), against hand computations."""

import math

import pytest
import torch

from training.losses import bce_lambda, identity_targets, theta_norm_loss, total_loss, weighted_bce


def _sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def test_lambda_is_one_minus_beta_over_b():
    assert bce_lambda(8, 2.0) == pytest.approx(0.75)
    assert bce_lambda(16) == pytest.approx(1 - 2 / 16)
    assert bce_lambda(10, 1.0) == pytest.approx(0.9)
    with pytest.raises(ValueError, match="B > β"):
        bce_lambda(2, 2.0)


def test_weighted_bce_matches_a_hand_computation():
    # 2 rows × 3 columns; λ = 0.75
    y_hat = [[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]]
    y = [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]
    lam = 0.75
    rows = []
    for r in range(2):
        s = 0.0
        for c in range(3):
            p = _sig(y_hat[r][c])
            s += -(lam * y[r][c] * math.log(p) + (1 - lam) * (1 - y[r][c]) * math.log(1 - p))
        rows.append(s)
    expected = sum(rows) / 2  # sum over columns, mean over rows (eq. 6)
    got = weighted_bce(torch.tensor(y_hat), torch.tensor(y), lam)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_weighting_of_positives_and_negatives():
    logits = torch.zeros(1, 2)
    lam = 0.8
    pos = weighted_bce(logits, torch.tensor([[1.0, 1.0]]), lam).item()
    neg = weighted_bce(logits, torch.tensor([[0.0, 0.0]]), lam).item()
    assert pos == pytest.approx(2 * lam * math.log(2))
    assert neg == pytest.approx(2 * (1 - lam) * math.log(2))


def test_soft_targets_and_stability():
    logits = torch.tensor([[200.0, -200.0, 0.0]])
    y = torch.tensor([[1.0, 0.0, 0.3]])
    v = weighted_bce(logits, y, 0.5)
    assert torch.isfinite(v)
    # the first two entries are (nearly) free; the third is 0.5·(0.3 + 0.7)·log 2
    assert v.item() == pytest.approx(0.5 * math.log(2), rel=1e-5)
    # wrong and confident: linear in the logit, not inf
    assert weighted_bce(torch.tensor([[-200.0]]), torch.tensor([[1.0]]), 1.0).item() == pytest.approx(200.0)


def test_entry_weights_for_subsampled_matrices():
    logits = torch.randn(3, 4)
    y = (torch.rand(3, 4) > 0.5).float()
    w = torch.full((3, 4), 2.5)
    assert weighted_bce(logits, y, 0.7, w).item() == pytest.approx(2.5 * weighted_bce(logits, y, 0.7).item(), rel=1e-6)


def test_lnorm_is_mean_squared_norm_and_total():
    th = torch.tensor([[1.0, 2.0, 2.0], [0.0, 3.0, 4.0]])
    assert theta_norm_loss(th).item() == pytest.approx((9 + 25) / 2)
    logits, y = torch.zeros(2, 2), torch.eye(2)
    total, bce, ln = total_loss(logits, y, th, 0.5, alpha_norm=0.01)
    assert total.item() == pytest.approx(bce.item() + 0.01 * 17)
    assert ln.item() == pytest.approx(17)


def test_identity_targets_full_and_subsampled():
    labels = torch.tensor([0, 0, 1, 1])
    full = identity_targets(labels)
    assert full.tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]]
    cols = torch.tensor([[0, 2], [3, 1], [2, 0], [1, 3]])
    assert identity_targets(labels, columns=cols).tolist() == [[1, 0], [0, 1], [1, 0], [0, 1]]
