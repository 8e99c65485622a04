"""Scheduled hyperparameters are pure functions of the step with the documented values."""

import math

import pytest

from training.schedules import alpha_norm_at, batch_identities_at, lr_at


def test_batch_doubles_three_times_to_eight_b0():
    T = 3000
    assert [batch_identities_at(s, 4, 3, T) for s in (0, 999, 1000, 1999, 2000, 2999, 3000, 10**6)] == \
        [4, 4, 8, 8, 16, 16, 32, 32]
    assert batch_identities_at(0, 4, 0, T) == 4
    assert batch_identities_at(5, 6, 2, 0) == 24  # no warm-up: final size at once


def test_alpha_norm_ramps():
    assert alpha_norm_at(0, 1e-4, 0.0, 100) == 0.0
    assert alpha_norm_at(50, 1e-4, 0.0, 100) == pytest.approx(5e-5)
    assert alpha_norm_at(100, 1e-4, 0.0, 100) == 1e-4
    assert alpha_norm_at(10**6, 1e-4, 1e-6, 100) == 1e-4
    assert alpha_norm_at(50, 1.0, 0.0, 100, "cosine") == pytest.approx(0.5)
    assert alpha_norm_at(25, 1.0, 0.0, 100, "cosine") == pytest.approx(0.5 * (1 - math.cos(math.pi / 4)))
    with pytest.raises(ValueError):
        alpha_norm_at(5, 1.0, 0.0, 10, "square")


def test_lr_warmup_then_cosine():
    base, total, warm = 1e-3, 1000, 100
    assert lr_at(0, base, total, warm) == pytest.approx(1e-5)
    assert lr_at(49, base, total, warm) == pytest.approx(5e-4)
    assert lr_at(99, base, total, warm) == pytest.approx(1e-3)
    assert lr_at(100, base, total, warm) == pytest.approx(1e-3)
    assert lr_at(550, base, total, warm) == pytest.approx(5e-4)  # half way through the cosine
    assert lr_at(1000, base, total, warm) == pytest.approx(0.0)
    assert lr_at(1000, base, total, warm, final_factor=0.1) == pytest.approx(1e-4)
