"""The fixed-point primitives of the golden model against hand-computed values and edge cases (the C kernels' are
held to these by tests/codegen/test_c_kernel.py)."""

from __future__ import annotations

import numpy as np
import pytest

from codegen.golden import (
    inv_sqrt_quantized_multiplier_exp,
    multiply_by_quantized_multiplier,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
    saturating_rounding_multiply_by_pot,
    wrap_int32,
)
from pvcore.qtheta import INT32_MAX, INT32_MIN

srdhm = saturating_rounding_doubling_high_mul


def ref_srdhm(a: int, b: int) -> int:
    """gemmlowp's definition with Python integers (C truncating division)."""
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    s = ab + nudge
    return s // (1 << 31) if s >= 0 else -((-s) // (1 << 31))


def ref_rdbpot(x: int, e: int) -> int:
    """Round-to-nearest of x / 2^e, ties away from zero."""
    if e == 0:
        return x
    q, r = divmod(abs(x), 1 << e)
    q += 1 if 2 * r >= (1 << e) else 0
    return q if x >= 0 else -q


def test_srdhm_saturates_only_int32_min_squared() -> None:
    assert int(srdhm(INT32_MIN, INT32_MIN)) == INT32_MAX
    assert int(srdhm(INT32_MIN, INT32_MAX)) == -INT32_MAX  # no saturation: (-2^31)(2^31-1)/2^31
    assert int(srdhm(INT32_MAX, INT32_MAX)) == INT32_MAX - 1


@pytest.mark.parametrize(
    ("a", "b", "want"),
    [
        (1 << 30, 1 << 30, 1 << 29),  # 0.5 * 0.5 in Q31 = 0.25
        (1, 1 << 30, 1),  # 0.5 rounds away from zero: (2^30 + 2^30) >> 31 = 1
        (-1, 1 << 30, 0),  # negative tie rounds toward zero here (the nudge 1 - 2^30): -0.5 + ... → 0
        (-3, 1 << 30, -1),  # -1.5 → -1 (truncation after nudge)
        (100, INT32_MAX, 100),
        (-100, INT32_MAX, -100),
        (0, INT32_MIN, 0),
    ],
)
def test_srdhm_hand_values(a: int, b: int, want: int) -> None:
    assert int(srdhm(a, b)) == want == ref_srdhm(a, b)


def test_srdhm_random_against_reference() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(INT32_MIN, INT32_MAX, 5000, endpoint=True)
    b = rng.integers(0, INT32_MAX, 5000, endpoint=True)
    got = srdhm(a, b)
    assert all(int(g) == ref_srdhm(int(x), int(y)) for g, x, y in zip(got, a, b))


@pytest.mark.parametrize(
    ("x", "e", "want"),
    [
        (5, 1, 3),
        (-5, 1, -3),  # 2.5 → 3, -2.5 → -3 (ties away from zero)
        (7, 2, 2),
        (-7, 2, -2),  # 1.75 → 2
        (6, 2, 2),
        (-6, 2, -2),  # 1.5 → 2, -1.5 → -2
        (5, 2, 1),
        (-5, 2, -1),  # 1.25 → 1
        (-1, 1, -1),
        (-1, 2, 0),  # -0.5 → -1, -0.25 → 0
        (INT32_MIN, 31, -1),
        (INT32_MAX, 31, 1),
        (INT32_MIN, 0, INT32_MIN),
        (12345, 0, 12345),
    ],
)
def test_rdbpot_hand_values(x: int, e: int, want: int) -> None:
    assert int(rounding_divide_by_pot(x, e)) == want == ref_rdbpot(x, e)


def test_rdbpot_random_against_reference() -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(INT32_MIN, INT32_MAX, 5000, endpoint=True)
    e = rng.integers(0, 32, 5000)
    got = rounding_divide_by_pot(x, e)
    assert all(int(g) == ref_rdbpot(int(a), int(b)) for g, a, b in zip(got, x, e))


def test_rdbpot_rejects_bad_exponent() -> None:
    with pytest.raises(ValueError):
        rounding_divide_by_pot(1, 32)
    with pytest.raises(ValueError):
        rounding_divide_by_pot(1, -1)


def test_mbqm_left_shift_wraps_like_int32() -> None:
    # shift > 0: x * 2^shift in int32 first (TFLM), wrapping on overflow
    assert int(multiply_by_quantized_multiplier(3, 1 << 30, 1)) == 3  # 3*2 * 0.5
    big = 1 << 30
    wrapped = int(wrap_int32(np.int64(big) << 2))  # 2^32 wraps to 0
    assert wrapped == 0
    assert int(multiply_by_quantized_multiplier(big, 1 << 30, 2)) == 0
    # negative values: srdhm(-3, 2^30) = -1 (-1.5 rounds up), then the divide by 2 rounds -0.5 away → -1
    assert int(multiply_by_quantized_multiplier(-3, 1 << 30, 0)) == ref_srdhm(-3, 1 << 30)
    assert int(multiply_by_quantized_multiplier(-3, 1 << 30, -1)) == ref_rdbpot(ref_srdhm(-3, 1 << 30), 1)


def test_mbqm_random_against_reference() -> None:
    rng = np.random.default_rng(2)
    x = rng.integers(-(1 << 24), 1 << 24, 3000)
    m = rng.integers(1 << 30, INT32_MAX, 3000, endpoint=True)
    s = rng.integers(-31, 8, 3000)
    got = multiply_by_quantized_multiplier(x, m, s)
    for g, xi, mi, si in zip(got, x, m, s):
        xi, mi, si = int(xi), int(mi), int(si)
        xs = int(wrap_int32(np.int64(xi) << max(si, 0)))
        assert int(g) == ref_rdbpot(ref_srdhm(xs, mi), max(-si, 0))


def test_srdhm_floor_identity_used_by_the_c_kernel() -> None:
    """pv_kernel.c computes SRDHM as floor((a·b + 2^30) / 2^31): equal to gemmlowp's nudge-and-truncate."""
    rng = np.random.default_rng(3)
    a = rng.integers(INT32_MIN, INT32_MAX, 20000, endpoint=True)
    b = rng.integers(INT32_MIN, INT32_MAX, 20000, endpoint=True)
    edge = np.array([INT32_MIN, INT32_MIN + 1, -1, 0, 1, 1 << 30, INT32_MAX], np.int64)
    a = np.concatenate([a, np.repeat(edge, len(edge))])
    b = np.concatenate([b, np.tile(edge, len(edge))])
    floor_form = (a.astype(object) * b.astype(object) + (1 << 30)) // (1 << 31)
    want = [ref_srdhm(int(x), int(y)) for x, y in zip(a, b)]
    for x, y, f, w in zip(a, b, floor_form, want):
        if x == y == INT32_MIN:
            continue  # the saturating case, handled separately in C
        assert f == w


def test_inv_sqrt_multiplier_is_an_int32_and_one_over_sqrt() -> None:
    """GetInvSqrtQuantizedMultiplierExp (golden): for every acc >= 2 the multiplier, shifted left where the
    shift came out negative (acc < 32), stays an int32 — the C port (kernels/pv_l2norm_s8.c) shifts its bits
    unsigned and relies on it — its shift is a right shift (<= 0), and multiplier · 2^shift / 2^31 is
    1/sqrt(acc) within 2e-6; acc 0 and 1 give (2^31 − 1, 0)."""
    acc = np.concatenate([np.arange(2, 1 << 20), np.random.default_rng(4).integers(2, INT32_MAX, 20000, endpoint=True)])
    mult, shift = inv_sqrt_quantized_multiplier_exp(acc)
    assert mult.max() <= INT32_MAX and mult.min() > 0 and shift.max() <= 0
    ratio = mult.astype(np.float64) * 2.0 ** shift.astype(np.float64) / 2**31 * np.sqrt(acc.astype(np.float64))
    assert np.abs(ratio - 1).max() < 2e-6
    m01, s01 = inv_sqrt_quantized_multiplier_exp(np.array([0, 1]))
    assert m01.tolist() == [INT32_MAX, INT32_MAX] and s01.tolist() == [0, 0]


@pytest.mark.parametrize(("x", "e", "want"), [
    (1 << 24, 6, 1 << 30), (-(1 << 24), 6, -(1 << 30)),  # inside the threshold 2^25 − 1: a plain shift
    ((1 << 25) - 1, 6, ((1 << 25) - 1) << 6), (1 << 25, 6, INT32_MAX), (-(1 << 25), 6, INT32_MIN),  # saturated
    (-5, 3, -40), (3, -1, 2), (-3, -1, -2),  # exponent <= 0: RoundingDivideByPOT, ties away from zero
])
def test_saturating_rounding_multiply_by_pot(x: int, e: int, want: int) -> None:
    assert int(saturating_rounding_multiply_by_pot(np.int64(x), e)) == want
