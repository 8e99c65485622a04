"""The int8 golden model of f: TensorFlow Lite Micro's reference arithmetic in NumPy, over a batch.

Every int8 implementation (the C kernel, the .tflite in the TFLM interpreter, the firmware on the board)
must agree with :func:`run_int8` bit for bit. What it implements, op by op (TFLM reference kernels):

- **CONV_2D per channel** (reference_integer_ops::ConvPerChannel): int32 ``acc = Σ w · (x − in_zp)``
  over the taps inside the image (the spec's TF-style 'same' padding: a pad tap is the input zero
  point, i.e. contributes 0), ``+ bias[c]``, then ``MultiplyByQuantizedMultiplier(acc, M[c], shift[c])``
  = ``RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(acc · 2^left, M), right)`` (TFLM's default
  double rounding), ``+ out_zp``, clamp to [act_min, act_max]. Groups as TFLM: group = c / (O/G).
- **The global pool** is deployed as a CONV_2D with one group per channel and all weights 1
  (AVERAGE_POOL_2D could not change the scale): ``acc = Σ (x − in_zp)``, requantized with its one
  multiplier and shift to its own output params — or, an exact-sum pool (``q.exact_sum``, blob format 4),
  passed on as the int32 sums themselves: the FULLY_CONNECTED after it is then TFLM's CONV_2D k×k VALID
  with its weights at every tap (:func:`dense_int8`).
- **L2_NORMALIZATION int8** (reference_integer_ops::L2Normalization; spec v5's "pool"): per row,
  ``acc = Σ (x − in_zp)²``, gemmlowp's Newton–Raphson ``GetInvSqrtQuantizedMultiplierExp(acc)`` → (M, s),
  then each ``MultiplyByQuantizedMultiplier(x − in_zp, M, s + 7)`` clamped to int8: the unit vector at the
  fixed output scale 1/128, zero point 0. In a 16x8 model it is wrapped in TFLM's two QUANTIZE ops
  (reference_ops::Requantize): int16 → int8 with the layer's one multiplier (to the intermediate scale
  ``w_scales[0]``, zero point 0), then int8 → int16 at the same scale 1/128 (multiplier 1: exact).
- **FULLY_CONNECTED int8 per channel** (reference_integer_ops::FullyConnectedPerChannel): as conv, one
  multiplier and shift per output feature.

**16x8** (``qf.activations == "int16"``, TFLM's int16-activation kernels with int32 biases): the same
ops and the same int32 accumulator and double-rounding requantization (the ``AccumScalar = int32_t``
instantiations of the same reference kernels), on int16 activations with zero point 0, clamped to int16.
Every accumulator stays below 2^31: |acc| ≤ depth · 127 · 32767 < 2^29 for depths ≤ 96, plus |bias| ≤ 2^30.

Speed: the sums are done as float32 (or float64) matrix products, which are *exact*: every product is
an integer of magnitude ≤ 255·127 and every partial sum ≤ K·255·127 < 2^24 for the depths K here, so
no rounding can occur whatever order BLAS sums in (float64, exact below 2^53, is used if a layer's K or
int16 activations would break that).
1000 images take a few seconds on 2 cores.
"""

from __future__ import annotations

import numpy as np

from pvcore.qtheta import INT32_MAX, INT32_MIN, QuantizedF, QuantLayer
from pvcore.spec import F_SPEC, ArchSpec, AvgPool, Conv, L2Norm, same_pads
from training.backbones.base import mirrored


# --------------------------------------------------------------------------------------------------
# Fixed-point primitives (gemmlowp / TFLM), vectorised over int64 arrays that hold int32 values
# --------------------------------------------------------------------------------------------------
def wrap_int32(x: np.ndarray) -> np.ndarray:
    """Two's-complement wrap of int64 values to int32 range (kept as int64)."""
    x = np.asarray(x, np.int64)
    if x.size and -(2**31) <= x.min() and x.max() < 2**31:
        return x  # the usual case: nothing to wrap
    return ((x + 2**31) & 0xFFFFFFFF) - 2**31


def _trunc_div_pow2(x: np.ndarray, bits: int) -> np.ndarray:
    """C's ``x / 2^bits`` for int64 x: rounds toward zero (negative x: add 2^bits − 1, then shift)."""
    return (x + ((x >> 63) & ((1 << bits) - 1))) >> bits


def saturating_rounding_doubling_high_mul(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """gemmlowp SaturatingRoundingDoublingHighMul for int32 a, b: (a·b·2 + 2^31 rounding) >> 32, with the
    single overflow case INT32_MIN·INT32_MIN saturating to INT32_MAX."""
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    ab = a * b
    # nudge: 2^30 when ab >= 0, 1 − 2^30 when ab < 0
    nudge = np.int64(1 << 30) - (ab < 0) * np.int64((1 << 31) - 1)
    ab += nudge
    high = _trunc_div_pow2(ab, 31)
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    if overflow.any():
        high = np.where(overflow, np.int64(INT32_MAX), high)
    return high


def rounding_divide_by_pot(x: np.ndarray | int, exponent: np.ndarray | int) -> np.ndarray:
    """gemmlowp RoundingDivideByPOT: x / 2^exponent rounded to nearest, ties away from zero."""
    x = np.asarray(x, np.int64)
    exponent = np.asarray(exponent, np.int64)
    if ((exponent < 0) | (exponent > 31)).any():
        raise ValueError("RoundingDivideByPOT exponent must be in [0, 31]")
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def multiply_by_quantized_multiplier(
    x: np.ndarray | int, multiplier: np.ndarray | int, shift: np.ndarray | int
) -> np.ndarray:
    """TFLM MultiplyByQuantizedMultiplier (double rounding): shift > 0 is a left shift first."""
    x = np.asarray(x, np.int64)
    shift = np.asarray(shift, np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    return rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(wrap_int32(x << left), multiplier), right
    )


def saturating_rounding_multiply_by_pot(x: np.ndarray, exponent: int) -> np.ndarray:
    """gemmlowp SaturatingRoundingMultiplyByPOT<exponent> on int32 raw values: a rounding right shift for
    exponent ≤ 0, else a left shift saturated to int32."""
    x = np.asarray(x, np.int64)
    if exponent <= 0:
        return rounding_divide_by_pot(x, -exponent)
    threshold = (1 << (31 - exponent)) - 1
    return np.where(x > threshold, INT32_MAX, np.where(x < -threshold, INT32_MIN, x << exponent))


HALF_SQRT_2_Q31 = 1518500250  # sqrt(2)/2 in gemmlowp's F0


def inv_sqrt_quantized_multiplier_exp(acc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TFLM ``GetInvSqrtQuantizedMultiplierExp(acc, kReverseShift = −1)`` on int32 acc ≥ 0, vectorised:
    (multiplier, shift) with multiplier · 2^shift / 2^31 ≈ 1/sqrt(acc) — 5 Newton–Raphson steps in
    gemmlowp's F3 fixed point (tensorflow/lite/kernels/internal/common.h); acc ≤ 1 gives (2^31 − 1, 0)."""
    acc = np.asarray(acc, np.int64)
    small = acc <= 1
    a = np.where(small, 2, acc)
    shift = np.full(a.shape, 11, np.int64)
    while (big := a >= (1 << 29)).any():
        a = np.where(big, a // 4, a)
        shift += big
    bit_length = np.frexp(a.astype(np.float64))[1].astype(np.int64)  # exact below 2^53
    pairs = ((32 - bit_length) - 1) // 2 - 1  # CountLeadingZeros(uint32) − 1, in bit pairs, less one
    shift -= pairs
    a = a << (2 * pairs)
    half_in = saturating_rounding_multiply_by_pot(a >> 1, -1)
    half_three = np.int64((1 << 28) + (1 << 27))  # 1.5 in F3
    x = np.full(a.shape, 1 << 28, np.int64)  # 1 in F3
    for _ in range(5):
        x3 = saturating_rounding_multiply_by_pot(
            saturating_rounding_doubling_high_mul(saturating_rounding_doubling_high_mul(x, x), x), 6)  # F9 → F3
        t = wrap_int32(saturating_rounding_doubling_high_mul(half_three, x)
                       - saturating_rounding_doubling_high_mul(half_in, x3))  # F6
        x = saturating_rounding_multiply_by_pot(t, 3)  # F6 → F3
    x = saturating_rounding_doubling_high_mul(x, HALF_SQRT_2_Q31)
    neg = shift < 0
    x = np.where(neg, x << np.where(neg, -shift, 0), x)
    shift = np.where(neg, 0, shift)
    return np.where(small, INT32_MAX, x), np.where(small, 0, -shift)


def l2norm_rows_int8(d: np.ndarray) -> np.ndarray:
    """TFLM's int8 L2Normalization of rows d (N, C) = x − in_zp (int64): int8 (N, C) at scale 1/128, zp 0."""
    d = np.asarray(d, np.int64)
    mult, shift = inv_sqrt_quantized_multiplier_exp((d * d).sum(axis=1))
    out = multiply_by_quantized_multiplier(d, mult[:, None], shift[:, None] + 7)
    return np.clip(out, -128, 127).astype(np.int8)


def requantize(acc: np.ndarray, q: QuantLayer, dtype: type = np.int8) -> np.ndarray:
    """int32 accumulators (…, C) incl. bias → int8 (or, 16x8, int16) outputs of layer q."""
    assert q.multiplier is not None and q.shift is not None
    out = multiply_by_quantized_multiplier(acc, q.multiplier.astype(np.int64), q.shift.astype(np.int64))
    return np.clip(out + q.out_zp, q.act_min, q.act_max).astype(dtype)


# --------------------------------------------------------------------------------------------------
# Ops
# --------------------------------------------------------------------------------------------------
def _exact_dtype(depth: int, x: np.ndarray | None = None) -> type:
    """float32 when every partial sum of ``depth`` products of an int8 weight and an activation is below
    2^24 (exact), else float64 (exact below 2^53: int16 activations too)."""
    amax = 255 if x is None or x.dtype == np.int8 else 65535
    return np.float32 if depth * amax * 128 < 2**24 else np.float64


def conv_int8(x: np.ndarray, q: QuantLayer, layer: Conv) -> np.ndarray:
    """CONV_2D per channel, int8 (N, H, W, C) → int8 (N, Ho, Wo, O)."""
    assert q.weights is not None and q.bias is not None
    n, h, w, c = x.shape
    k, s, g = layer.kernel, layer.stride, layer.groups
    cin_g, o = c // g, layer.out_ch
    depth = k * k * cin_g
    dt = _exact_dtype(depth, x)
    xs = x.astype(dt) - dt(q.in_zp)  # pads are then 0 == the input zero point
    if layer.padding == "same":
        (pt, pb), (pl, pr) = same_pads(h, k, s), same_pads(w, k, s)
        xs = np.pad(xs, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    hp, wp = xs.shape[1:3]
    ho, wo = (hp - k) // s + 1, (wp - k) // s + 1
    m = n * ho * wo
    # patches laid out (G, N, Ho, Wo, k·k, cin_g): row = one output pixel, columns in OHWI weight order
    patches = np.empty((g, n, ho, wo, k * k, cin_g), dt)
    for t in range(k * k):
        ky, kx = divmod(t, k)
        tap = xs[:, ky : ky + s * (ho - 1) + 1 : s, kx : kx + s * (wo - 1) + 1 : s, :]
        patches[:, :, :, :, t, :] = tap.reshape(n, ho, wo, g, cin_g).transpose(3, 0, 1, 2, 4)
    wmat = q.weights.astype(dt).reshape(g, o // g, depth).transpose(0, 2, 1)  # (G, depth, O/G)
    acc_g = np.matmul(patches.reshape(g, m, depth), wmat)  # (G, M, O/G), exact
    acc = np.empty((m, g, o // g), np.int64)
    acc[...] = acc_g.transpose(1, 0, 2)
    acc = acc.reshape(n, ho, wo, o)
    acc += q.bias.astype(np.int64)
    return requantize(wrap_int32(acc), q, x.dtype.type)


def avgpool_int8(x: np.ndarray, q: QuantLayer, layer: AvgPool) -> np.ndarray:
    """The global pool as deployed: CONV_2D k×k VALID, one group per channel, weights 1, bias 0
    (:func:`codegen.quantize.pool_weights`) — ``acc = Σ (x − in_zp)``, requantized to its own output
    params. int8 (N, H, W, C) → int8 (N, 1, 1, C)."""
    n, h, w, c = x.shape
    if (h, w) != (layer.kernel, layer.kernel):
        raise ValueError(f"{layer.name}: global pool of {layer.kernel} over {h}×{w}")
    acc = (x.astype(np.int64) - q.in_zp).sum(axis=(1, 2))
    if q.exact_sum:  # no requantization: the sums themselves (|sum| <= k²·255), int32
        return acc.astype(np.int32).reshape(n, 1, 1, c)
    return requantize(acc, q, x.dtype.type).reshape(n, 1, 1, c)


def l2norm_int8(x: np.ndarray, q: QuantLayer) -> np.ndarray:
    """L2_NORMALIZATION of a 1×1 map over its channels: int8 (N, 1, 1, C) → int8 at scale 1/128, zp 0; in
    a 16x8 model int16 → QUANTIZE to int8 (multiplier ``q.multiplier[0]``, zp 0) → the int8 op → QUANTIZE
    back to int16 at the same scale (the values themselves)."""
    rows = x.reshape(x.shape[0], -1).astype(np.int64) - q.in_zp
    if x.dtype == np.int16:
        assert q.multiplier is not None and q.shift is not None
        rows = np.clip(multiply_by_quantized_multiplier(rows, int(q.multiplier[0]), int(q.shift[0])), -128, 127)
    return l2norm_rows_int8(rows).astype(x.dtype).reshape(x.shape)


def dense_int8(x: np.ndarray, q: QuantLayer, out_dtype: type | None = None) -> np.ndarray:
    """FULLY_CONNECTED int8: (N, …) flattened in HWC order → (N, out). After an exact-sum pool x is its
    int32 sums (in_zp 0) and the op is TFLM's CONV_2D k×k VALID with the weights repeated at every tap
    (what the .tflite holds): Σ_c w_c Σ_p (x_pc − zp) = Σ_p Σ_c w_c (x_pc − zp), exactly."""
    assert q.weights is not None and q.bias is not None
    xf = x.reshape(x.shape[0], -1)
    dt = _exact_dtype(xf.shape[1], xf)
    acc = (xf.astype(dt) - dt(q.in_zp)) @ q.weights.astype(dt).T
    out = out_dtype or x.dtype.type
    return requantize(wrap_int32(acc.astype(np.int64) + q.bias.astype(np.int64)), q, out)


# --------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------
def images_to_int8(images_u8: np.ndarray, dtype: type = np.int8) -> np.ndarray:
    """uint8 RGB (N, 112, 112, 3) → the int8 input q = u − 128 (scale 1/128, zp 0); ``dtype`` int16: the
    same values in the 16x8 model's int16 input."""
    if images_u8.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {images_u8.dtype}")
    return (images_u8.astype(np.int16) - 128).astype(dtype)


def run_int8_q(
    qf: QuantizedF, x_q: np.ndarray, spec: ArchSpec = F_SPEC, return_layers: bool = False
) -> np.ndarray | tuple[np.ndarray, dict[str, np.ndarray]]:
    """Run on int8 inputs (N, H, W, C) (already q = u − 128). Returns int8 logits (N,)."""
    x = x_q
    acts: dict[str, np.ndarray] = {}
    for layer, q in zip(spec.layers, qf.layers):
        if isinstance(layer, Conv):
            x = conv_int8(x, q, layer)
        elif isinstance(layer, AvgPool):
            x = avgpool_int8(x, q, layer)
        elif isinstance(layer, L2Norm):
            x = l2norm_int8(x, q)
        else:
            x = dense_int8(x, q, qf.act_dtype)
        if return_layers:
            acts[layer.name] = x
    logits = x.reshape(x.shape[0])
    return (logits, acts) if return_layers else logits


def run_int8(
    qf: QuantizedF,
    images_u8: np.ndarray,
    spec: ArchSpec = F_SPEC,
    return_layers: bool = False,
    batch: int = 128,
) -> np.ndarray | tuple[np.ndarray, dict[str, np.ndarray]]:
    """int8 logits (N,) of f for uint8 images (N, H, W, 3); with ``return_layers`` also a dict
    layer name → int8 activations (N, H, W, C) or (N, features) of every layer, for layer-by-layer
    debugging against another implementation."""
    qf.check(spec)
    images_u8 = np.asarray(images_u8)
    if images_u8.ndim == 3:
        images_u8 = images_u8[None]
    want = (*spec.input_hw, spec.input_ch)
    if images_u8.shape[1:] != want:
        raise ValueError(f"images must be (N, {want[0]}, {want[1]}, {want[2]}), got {images_u8.shape}")
    outs: list[np.ndarray] = []
    layer_outs: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(images_u8), batch):
        res = run_int8_q(qf, images_to_int8(images_u8[start : start + batch], qf.act_dtype), spec, return_layers)
        if return_layers:
            logits, acts = res
            for k, v in acts.items():
                layer_outs.setdefault(k, []).append(v)
        else:
            logits = res
        outs.append(logits)
    logits = np.concatenate(outs) if outs else np.zeros(0, qf.act_dtype)
    if return_layers:
        return logits, {k: np.concatenate(v) for k, v in layer_outs.items()}
    return logits


def run_int8_views(qf: QuantizedF, images_u8: np.ndarray, views: int = 2, spec: ArchSpec = F_SPEC) -> np.ndarray:
    """int8 logits (N, views) of f: column 0 on each image, column 1 (``views`` 2) on its mirror image
    (each row reversed pixel by pixel) — the two passes the firmware makes per probe with PV_VIEWS 2
    (firmware_templates/common/pv_protocol.h). Score and decide them with ``qf.dequantize_mean2`` /
    ``qf.decide_mean2``."""
    if views not in (1, 2):
        raise ValueError(f"views must be 1 or 2, got {views}")
    images_u8 = np.asarray(images_u8)
    if images_u8.ndim == 3:
        images_u8 = images_u8[None]
    cols = [run_int8(qf, images_u8, spec)]
    if views == 2:
        cols.append(run_int8(qf, mirrored(images_u8), spec))
    return np.stack(cols, axis=1)
