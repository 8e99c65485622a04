"""Research: TFLite Micro's int8 L2_NORMALIZATION in numpy, bit for bit — the arithmetic a normalization before f's
personal head would run on the board (research log, section 14). A port of
``reference_integer_ops::L2Normalization`` and ``GetInvSqrtQuantizedMultiplierExp`` (its gemmlowp Newton–Raphson
inverse square root) on ``codegen.golden``'s fixed-point helpers.
Usage: python docs/research/scripts/l2norm_int8.py IO.npz   (int8 inputs ``x`` (N, C), their zero point ``zp`` and a
TFLite interpreter's outputs ``y``: prints how many rows agree)"""
import sys

import numpy as np

from codegen.golden import multiply_by_quantized_multiplier, rounding_divide_by_pot, wrap_int32
from codegen.golden import saturating_rounding_doubling_high_mul as srdhm

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def _mul_pot(raw: int, exponent: int) -> int:
    """gemmlowp SaturatingRoundingMultiplyByPOT<exponent> on an int32 raw value."""
    if exponent <= 0:
        return int(rounding_divide_by_pot(raw, -exponent))
    threshold = (1 << (31 - exponent)) - 1
    if raw > threshold:
        return INT32_MAX
    if raw < -threshold:
        return INT32_MIN
    return raw << exponent


def inv_sqrt_multiplier_exp(acc: int) -> tuple[int, int]:
    """GetInvSqrtQuantizedMultiplierExp(acc, kReverseShift = −1): (multiplier, shift) with
    multiplier · 2^shift / 2^31 ≈ 1 / sqrt(acc)."""
    if acc <= 1:
        return INT32_MAX, 0
    shift = 11
    while acc >= (1 << 29):
        acc //= 4
        shift += 1
    max_left_shift_bits = (32 - int(acc).bit_length()) - 1  # CountLeadingZeros(uint32) − 1
    pairs = max_left_shift_bits // 2 - 1
    shift -= pairs
    acc <<= 2 * pairs
    x_in = acc >> 1  # F3 raw
    half_in = _mul_pot(x_in, -1)
    half_three = (1 << 28) + (1 << 27)
    x = 1 << 28  # F3 one
    for _ in range(5):
        x3 = _mul_pot(int(srdhm(int(srdhm(x, x)), x)), 6)  # F9 → F3
        t = int(wrap_int32(int(srdhm(half_three, x)) - int(srdhm(half_in, x3))))  # F6: a plain int32 difference
        x = _mul_pot(t, 3)  # F6 → F3
    x = int(srdhm(x, 1518500250))  # × sqrt(2)/2 in F0
    if shift < 0:
        x <<= -shift
        shift = 0
    return x, -shift


def l2norm_int8(q: np.ndarray, zp: int) -> np.ndarray:
    """int8 rows (N, C) → their L2-normalized int8 rows (scale 1/128, zero point 0), as TFLM computes them."""
    d = np.asarray(q, np.int64) - zp
    out = np.empty(d.shape, np.int8)
    for r, row in enumerate(d):
        mult, shift = inv_sqrt_multiplier_exp(int((row * row).sum()))
        out[r] = np.clip(multiply_by_quantized_multiplier(row, mult, shift + 7), -128, 127)
    return out


if __name__ == "__main__":
    z = np.load(sys.argv[1])
    got = l2norm_int8(z["x"], int(z["zp"]))
    same = (got == z["y"]).all(axis=1)
    print(f"{same.sum()} of {len(same)} rows bit-exact; largest difference {np.abs(got.astype(int) - z['y']).max()}")
