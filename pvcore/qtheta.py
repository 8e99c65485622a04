"""θ in integers: the quantized f as a record (every layer's int8 weights, int32 biases, scales, zero
points, multipliers and shifts) and TFLite Micro's parameter-side arithmetic that produces and checks them.

This is the contract between the quantizer (``codegen.quantize``, which needs PyTorch), the θ blob
(``pvcore.blob``), the NumPy golden model, the .tflite writer and the C kernels. Only NumPy: the serial
tools read and check blobs without PyTorch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pvcore.spec import F_SPEC, INPUT_SCALE, ArchSpec, AvgPool, Conv, Dense

INT8_MIN, INT8_MAX = -128, 127
INT16_MIN, INT16_MAX = -(2**15), 2**15 - 1
ACTIVATIONS = ("int8", "int16")  # activation types: full int8, or TFLM's 16x8 (int16 activations, int8 weights)
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
BIAS_LIMIT = 2**30  # |bias| bound that keeps the int32 accumulator of the C kernel free of overflow
MIN_RANGE = 1e-3  # floor of a calibrated activation range (a dead layer must still get a scale > 0)
INPUT_ZP = 0

KIND_CONV, KIND_AVGPOOL, KIND_DENSE = "conv", "avgpool", "dense"


# --------------------------------------------------------------------------------------------------
# TFLM arithmetic helpers (parameter side)
# --------------------------------------------------------------------------------------------------
def f32(x: float) -> float:
    """``x`` rounded to float32 (and widened back), as a .tflite stores scales."""
    return float(np.float32(x))


def _round_half_away(x: float) -> int:
    """C's ``std::round`` (TfLiteRound): halves away from zero; Python's round() would go to even."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLM ``QuantizeMultiplier``: real multiplier → (Q31 significand, shift), ``real ≈ q · 2^(shift-31)``.

    Transcribed from tensorflow/lite/kernels/internal/quantization_util.cc (non-emulated-float path).
    """
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)  # real = q · 2^shift, 0.5 <= |q| < 1
    q_fixed = _round_half_away(q * (1 << 31))
    if abs(q_fixed) > (1 << 31):
        raise AssertionError(f"QuantizeMultiplier: |q_fixed| {q_fixed} > 2^31")  # cannot happen
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:  # every bit would be shifted out: TFLM flushes to zero
        return 0, 0
    return int(q_fixed), int(shift)


def real_multiplier(in_scale: float, w_scale: float, out_scale: float) -> float:
    """The effective requantization scale exactly as TFLM computes it from float32 tensor scales."""
    return (float(np.float32(in_scale)) * float(np.float32(w_scale))) / float(np.float32(out_scale))


def choose_qparams(lo: float, hi: float) -> tuple[float, int]:
    """TFLite asymmetric int8 parameters for the float range [lo, hi] (the range always includes 0).

    Zero point nudged as TFLite's ``ChooseQuantizationParams``; the scale is returned as a float32 value.
    """
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo < MIN_RANGE:
        hi = lo + MIN_RANGE
    scale = f32((hi - lo) / (INT8_MAX - INT8_MIN))
    zp_from_min = INT8_MIN - lo / scale
    zp_from_max = INT8_MAX - hi / scale
    err_min = abs(INT8_MIN) + abs(lo / scale)
    err_max = abs(INT8_MAX) + abs(hi / scale)
    zp_real = zp_from_min if err_min < err_max else zp_from_max
    zp = int(min(max(_round_half_away(zp_real), INT8_MIN), INT8_MAX))
    return scale, zp


def activation_range(relu: bool, zp: int, activations: str = "int8") -> tuple[int, int]:
    """TFLM ``CalculateActivationRangeQuantized`` for int8 / int16 with no activation or a fused ReLU."""
    lo, hi = act_limits(activations)
    if relu:
        return max(lo, zp), hi
    return lo, hi


def act_limits(activations: str) -> tuple[int, int]:
    """The integer range of an activation type (``ACTIVATIONS``)."""
    if activations == "int8":
        return INT8_MIN, INT8_MAX
    if activations == "int16":
        return INT16_MIN, INT16_MAX
    raise ValueError(f"activations must be one of {ACTIVATIONS}, not {activations!r}")


def choose_qparams16(lo: float, hi: float) -> tuple[float, int]:
    """TFLite's int16 activation parameters for [lo, hi]: symmetric, zero point 0 (TFLM's 16x8 kernels
    require it), scale max(|lo|, |hi|) / 32767 as float32."""
    amax = max(abs(lo), abs(hi), MIN_RANGE)
    return f32(amax / INT16_MAX), 0


# --------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------
@dataclass(eq=False)
class QuantLayer:
    """One deployed op (CONV_2D + fused ReLU, the global pool or FULLY_CONNECTED) with every tensor's
    quantization, complete enough to write a .tflite: input/output activation tensors (scale, zp),
    weights (int8, per-channel scales, zp 0 on axis 0), bias (int32, scales ``bias_scales``, zp 0).
    The pool holds no weights or bias (its weights are all 1, its bias 0: :func:`pool_weights`),
    only ``w_scales`` = [1/k²] and its multiplier and shift."""

    name: str
    kind: str  # KIND_CONV | KIND_AVGPOOL | KIND_DENSE
    relu: bool
    in_scale: float  # float32 values
    in_zp: int
    out_scale: float
    out_zp: int
    act_min: int  # int8 clamp of the output (fused activation)
    act_max: int
    weights: np.ndarray | None = None  # int8; conv OHWI (O, kh, kw, I/groups), dense (out, in)
    w_scales: np.ndarray | None = None  # float32; (O,) per channel (conv, dense), (1,) = 1/k² (pool)
    bias: np.ndarray | None = None  # int32 (O,)
    multiplier: np.ndarray | None = None  # int32, one per w_scale
    shift: np.ndarray | None = None  # int32, one per w_scale; > 0 = left shift (TFLM convention)
    # the pool only: True = the exact sum Σ(x − in_zp), not requantized (codegen.quantize, blob format 4):
    # output scale = in_scale, zp 0, w_scales [1.0], multiplier 1, range the sum's bounds
    exact_sum: bool = False

    @property
    def per_channel(self) -> bool:
        return self.w_scales is not None and self.w_scales.size > 1

    @property
    def bias_scales(self) -> np.ndarray | None:
        """float32 scales of the int32 bias tensor (``in_scale * w_scale``)."""
        if self.w_scales is None:
            return None
        return (np.float64(np.float32(self.in_scale)) * self.w_scales.astype(np.float64)).astype(np.float32)

    @property
    def out_range(self) -> tuple[float, float]:
        """The float range the int8 output can represent."""
        return (INT8_MIN - self.out_zp) * self.out_scale, (INT8_MAX - self.out_zp) * self.out_scale

    def equal_arithmetic(self, other: QuantLayer) -> bool:
        """Same name, kind and every number that the int8 arithmetic uses."""
        scalars = ("name", "kind", "relu", "in_scale", "in_zp", "out_scale", "out_zp", "act_min", "act_max",
                   "exact_sum")
        if any(getattr(self, a) != getattr(other, a) for a in scalars):
            return False
        for a in ("weights", "w_scales", "bias", "multiplier", "shift"):
            x, y = getattr(self, a), getattr(other, a)
            if (x is None) != (y is None):
                return False
            if x is not None and (x.dtype != y.dtype or x.shape != y.shape or not np.array_equal(x, y)):
                return False
        return True


@dataclass(eq=False)
class QuantizedF:
    """One user's f in int8: the layers in spec order and the output logit's parameters."""

    arch_hash: str
    arch_name: str
    layers: list[QuantLayer]
    logit_scale: float
    logit_zp: int
    input_scale: float = f32(INPUT_SCALE)
    input_zp: int = INPUT_ZP
    calibration: dict[str, Any] = field(default_factory=dict)  # how the ranges were found (not in blobs)
    activations: str = "int8"  # or "int16" (TFLM 16x8): the type of every activation tensor, input to logit

    @property
    def act_dtype(self) -> type:
        return np.int16 if self.activations == "int16" else np.int8

    def layer(self, name: str) -> QuantLayer:
        for q in self.layers:
            if q.name == name:
                return q
        raise KeyError(f"no layer {name!r} in the quantized f (layers: {[q.name for q in self.layers]})")

    def dequantize_logit(self, q: np.ndarray | int) -> np.ndarray:
        """int8 logit → float32 logit, computed in float32 exactly as the C kernel's decision does."""
        return (np.asarray(q, np.int32) - np.int32(self.logit_zp)).astype(np.float32) * np.float32(
            self.logit_scale
        )

    def threshold_q(self, threshold_logit: float) -> int:
        """Smallest integer logit q whose dequantized value is >= ``threshold_logit`` (max + 1: none is)."""
        lo, hi = act_limits(self.activations)
        qs = np.arange(lo, hi + 1)
        ok = self.dequantize_logit(qs) >= np.float32(threshold_logit)
        return int(qs[ok][0]) if ok.any() else hi + 1

    def decide(self, q: np.ndarray | int, threshold_logit: float) -> np.ndarray:
        """Accept (True) when the dequantized logit >= threshold — the device's rule."""
        return self.dequantize_logit(q) >= np.float32(threshold_logit)

    # Two views of one probe (the image and its mirror image; the firmware's PV_VIEWS 2): the mean of
    # the two dequantized logits, computed in float32 as the C kernel's pv_dequantize_mean2 does:
    # float(q1 + q2 - 2 zp) * scale * 0.5 (the halving is exact).
    def dequantize_mean2(self, q1: np.ndarray | int, q2: np.ndarray | int) -> np.ndarray:
        """Mean of the dequantized logits of the two views, float32, bit for bit the device's."""
        s = np.asarray(q1, np.int32) + np.asarray(q2, np.int32) - np.int32(2 * self.logit_zp)
        return s.astype(np.float32) * np.float32(self.logit_scale) * np.float32(0.5)

    def decide_mean2(self, q1: np.ndarray | int, q2: np.ndarray | int, threshold_logit: float) -> np.ndarray:
        """Accept (True) when the two views' mean is >= threshold — the device's rule with PV_VIEWS 2."""
        return self.dequantize_mean2(q1, q2) >= np.float32(threshold_logit)

    def equal_arithmetic(self, other: QuantizedF) -> bool:
        return (
            self.arch_hash == other.arch_hash
            and self.logit_scale == other.logit_scale
            and self.logit_zp == other.logit_zp
            and self.input_scale == other.input_scale
            and self.input_zp == other.input_zp
            and self.activations == other.activations
            and len(self.layers) == len(other.layers)
            and all(a.equal_arithmetic(b) for a, b in zip(self.layers, other.layers))
        )

    def check(self, spec: ArchSpec = F_SPEC) -> None:
        """Raise ValueError when the record does not fit ``spec`` or breaks a TFLM constraint."""
        if self.arch_hash != spec.arch_hash():
            raise ValueError(
                f"quantized f has arch hash {self.arch_hash}, the spec {spec.name} has "
                f"{spec.arch_hash()}: quantize θ again with this spec"
            )
        if [q.name for q in self.layers] != [la.name for la in spec.layers]:
            raise ValueError(
                f"layers {[q.name for q in self.layers]} do not match the spec's "
                f"{[la.name for la in spec.layers]}"
            )
        if (self.input_scale, self.input_zp) != (f32(INPUT_SCALE), INPUT_ZP):
            raise ValueError(
                f"input params {(self.input_scale, self.input_zp)}: the device feeds q = u - 128 "
                f"(scale 1/128, zero point 0)"
            )
        amin, amax = act_limits(self.activations)
        prev = (self.input_scale, self.input_zp)
        prev_exact: QuantLayer | None = None
        for q, la in zip(self.layers, spec.layers):
            if (q.in_scale, q.in_zp) != prev:
                raise ValueError(f"{q.name}: input params {(q.in_scale, q.in_zp)} != previous output {prev}")
            if q.kind != la.kind or q.relu != bool(getattr(la, "relu", False)):
                raise ValueError(f"{q.name}: kind/relu {q.kind}/{q.relu} does not match the spec")
            for zp in (q.in_zp, q.out_zp):
                if not INT8_MIN <= zp <= INT8_MAX or (self.activations == "int16" and zp != 0):
                    raise ValueError(f"{q.name}: zero point {zp} outside int8 (int16 activations: must be 0)")
            if q.exact_sum and (not isinstance(la, AvgPool) or self.activations != "int8"):
                raise ValueError(f"{q.name}: only an int8 model's pool can pass its exact sum on")
            if prev_exact is not None:  # the dense layer reading the sums: its int32 sum cannot overflow
                biggest = max(abs(prev_exact.act_min), abs(prev_exact.act_max))
                if not isinstance(la, Dense) or q.in_zp != 0 or la.in_features * 127 * biggest >= 2**31:
                    raise ValueError(f"{q.name}: an exact-sum pool must feed a dense layer whose int32 sum cannot "
                                     "overflow")
            prev_exact = q if q.exact_sum else None
            if q.exact_sum:  # its "range" is the sum's bounds, exactly
                range_ok = (q.act_min, q.act_max) == exact_sum_range(la, q.in_zp)
            else:
                range_ok = amin <= q.act_min <= q.act_max <= amax
            if not range_ok:
                raise ValueError(f"{q.name}: activation range [{q.act_min}, {q.act_max}] invalid")
            if isinstance(la, AvgPool):
                if q.weights is not None or q.bias is not None:
                    raise ValueError(f"{q.name}: the pool's weights (1) and bias (0) are implicit")
                for a, dt in ((q.multiplier, np.int32), (q.shift, np.int32), (q.w_scales, np.float32)):
                    if a is None or a.dtype != dt or a.shape != (1,):
                        raise ValueError(f"{q.name}: the pool needs one {np.dtype(dt)} multiplier/shift/scale")
                if q.exact_sum:  # the sum itself: output = input scale and zp 0, weight scale 1, multiplier 1
                    if (q.out_scale, q.out_zp) != (q.in_scale, 0) or q.w_scales[0] != np.float32(1.0) or (
                            int(q.multiplier[0]), int(q.shift[0])) != quantize_multiplier(1.0):
                        raise ValueError(f"{q.name}: an exact-sum pool has output scale = input scale, zp 0, "
                                         "weight scale 1 and multiplier 1")
                elif q.w_scales[0] != np.float32(pool_weight_scale(la)):
                    raise ValueError(f"{q.name}: pool weight scale {q.w_scales[0]} != 1/{la.kernel}²")
                if (q.multiplier < 0).any() or (q.shift < -31).any() or (q.shift > 30).any():
                    raise ValueError(f"{q.name}: multiplier/shift out of range")
            else:
                assert q.weights is not None and q.bias is not None and q.w_scales is not None
                assert q.multiplier is not None and q.shift is not None
                want = (
                    (la.out_ch, la.kernel, la.kernel, la.in_ch // la.groups)
                    if isinstance(la, Conv)
                    else la.weight_shape
                )
                if q.weights.shape != want or q.weights.dtype != np.int8:
                    raise ValueError(f"{q.name}: weights {q.weights.dtype}{q.weights.shape}, want int8{want}")
                n_out = n_q = want[0]
                for a, dt, n in (
                    (q.bias, np.int32, n_out),
                    (q.multiplier, np.int32, n_q),
                    (q.shift, np.int32, n_q),
                    (q.w_scales, np.float32, n_q),
                ):
                    if a.dtype != dt or a.shape != (n,):
                        raise ValueError(f"{q.name}: array {a.dtype}{a.shape}, want {np.dtype(dt)}({n},)")
                if np.abs(q.bias.astype(np.int64)).max() > BIAS_LIMIT:
                    raise ValueError(f"{q.name}: |bias| > 2^30")
                if (q.multiplier < 0).any() or (q.shift < -31).any() or (q.shift > 30).any():
                    raise ValueError(f"{q.name}: multiplier/shift out of range")
            prev = (q.out_scale, q.out_zp)
        if (self.logit_scale, self.logit_zp) != prev:
            raise ValueError(f"logit params {(self.logit_scale, self.logit_zp)} != last layer output {prev}")


def pool_weight_scale(layer: AvgPool) -> float:
    """The float32 scale of the pool's weights (all 1): 1/k², so that weight · scale is the mean."""
    return f32(1.0 / (layer.kernel * layer.kernel))


def exact_sum_range(layer: AvgPool, in_zp: int) -> tuple[int, int]:
    """The bounds of the exact pool's Σ(x − in_zp) over k×k int8 values: its 'activation range'."""
    n = layer.kernel * layer.kernel
    return n * (INT8_MIN - in_zp), n * (INT8_MAX - in_zp)


def pool_weights(layer: AvgPool, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """The pool as a CONV_2D with one group per channel: int8 weights OHWI (C, k, k, 1), all 1, and the
    int32 zero bias — what the .tflite carries; the blob and the C kernel keep them implicit."""
    return np.ones((channels, layer.kernel, layer.kernel, 1), np.int8), np.zeros(channels, np.int32)
