"""Quantize one θ of the verifier f the TensorFlow Lite Micro way into a :class:`pvcore.qtheta.QuantizedF`:
full int8 (``QuantConfig.activations="int8"``) or TFLM's 16x8 (``"int16"``: int16 activations, int8
weights). Why each choice, its measurements, and what was tried and not kept: docs/quantization.md.

What every consumer (golden model, .tflite writer, blob and C header writers) may rely on:

- The record passes ``QuantizedF.check(spec)``; ``pvcore.blob.format_version`` names its blob format
  (4: int8 with the exact pool, 2: int8 with a requantizing pool, 3: 16x8).
- It quantizes :func:`deployed_weights` — f's effective weights with the linear tail folded (fc1's row 0
  is the logit, head an exact int8 identity: :func:`fold_linear_tail`) and the conv channels equalized —
  the same function of the input as the float f.
- Weights: symmetric int8 per output channel (dense: per output feature), zero point 0, in [-127, 127],
  conv OHWI, dense (out, in); convs rounded by GPTQ (``gptq``), dense to nearest. Equalization and GPTQ
  read the package faces only, so a layer's int8 weights depend on θ alone: a shared prefix (``base``,
  ``split``) is one base for every user. Biases: int32 at ``in_scale · w_scale[c]``, clipped to ±2^30.
- Requantization per output channel (per tensor for a pool): ``double(in_scale) · double(w_scale) /
  double(out_scale)`` becomes a Q31 multiplier and shift by TFLM's ``QuantizeMultiplier``
  (:func:`pvcore.qtheta.quantize_multiplier`; shift > 0 shifts left); a shift > 30 is refused.
- int8 activations: the input ``u − 128`` at scale 1/128, zp 0 (exact); a ReLU output covers [0, hi]
  (zp −128, scale hi/255); the logit (and, folded, fc1 that carries it) covers [min(lo, 0), max(hi, 0)]
  with TFLite's nudged zero point. 16x8: int16, symmetric, zp 0 (TFLM's int16 kernels require it), and
  the folded logit row is split into its int8 grid values plus the residual (:func:`residual_logit_row`).
- The global pool. int8 with ``exact_pool`` (the default): not rounded — it passes the exact sums
  ``S_c = Σ_p (x_pc − in_zp)`` (:func:`pvcore.qtheta.exact_sum_range`, int16) to fc1, whose weight
  scales carry the 1/k²; its record has output scale = input scale, zp 0, weight scale 1, multiplier 1,
  ``exact_sum`` set (in a .tflite: one CONV_2D k×k VALID with fc1's weights at every tap). Otherwise
  (``exact_pool=False``, or 16x8) it requantizes to its own calibrated range: a CONV_2D k×k with one
  group per channel, weights 1 at scale 1/k² — TFLM's AVERAGE_POOL_2D would keep its input's scale.

Calibration: the float f runs on :func:`calibration_images` — the enrollment crop and the installed
packages' faces (:data:`PACKAGE_FACES`, fixed boxes, no detector), each with ``n_aug`` seeded
augmentations — so the ranges are deterministic and need no data set. int8: ``hi = margin ·
percentile_p`` of a layer's outputs (the logit's ``lo`` likewise at 100 − p), p = 99.99, margin 1.2,
and 2.0 where the calibration faces show too few of the values real faces produce: the last conv's map
(``layer_margins``), a requantizing pool (``pool_margin``), the logit (``logit_margin``). 16x8:
``margin16`` × the calibration max. Every range is floored at ``MIN_RANGE``.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import numpy as np
import torch

from codegen.weight_rounding import equalize, gptq_conv, per_channel_scales
from pvcore.qtheta import (
    BIAS_LIMIT,
    INPUT_ZP,
    INT8_MAX,
    INT8_MIN,
    L2NORM_OUT_SCALE,
    MIN_RANGE,
    QuantizedF,
    QuantLayer,
    act_limits,
    activation_range,
    choose_qparams,
    choose_qparams16,
    exact_sum_range,
    f32,
    l2norm_multiplier,
    pool_weight_scale,
    quantize_multiplier,
    real_multiplier,
)
from pvcore.spec import F_SPEC, INPUT_SCALE, ArchSpec, AvgPool, Conv, Dense, L2Norm
from training.data.variants import LUMA
from training.verifier.functional import effective_weights, layer_outputs, to_input

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# Calibration images
# --------------------------------------------------------------------------------------------------
# (loader, box (left, top, right, bottom) in the original image): hand-chosen, square, the face about
# where ArcFace alignment puts it in a 112×112 crop.
PACKAGE_FACES: dict[str, tuple[int, int, int, int]] = {
    "skimage:astronaut": (157, 41, 291, 175),
    "matplotlib:grace_hopper.jpg": (120, 48, 410, 338),
}


def _load_package_image(name: str) -> np.ndarray:
    if name == "skimage:astronaut":
        import skimage.data

        return np.asarray(skimage.data.astronaut())
    if name == "matplotlib:grace_hopper.jpg":
        from matplotlib import cbook
        from PIL import Image

        with cbook.get_sample_data("grace_hopper.jpg") as fh:
            return np.asarray(Image.open(fh).convert("RGB"))
    raise KeyError(name)


def package_faces(size: int = 112) -> np.ndarray:
    """The face images shipped by installed packages, cropped to the face and resized: (n, size, size, 3)."""
    from PIL import Image

    out = []
    for name, box in PACKAGE_FACES.items():
        img = Image.fromarray(_load_package_image(name)).crop(box).resize((size, size), Image.BILINEAR)
        out.append(np.asarray(img, np.uint8))
    return np.stack(out)


def augment(images: np.ndarray, n_aug: int, seed: int = 0) -> np.ndarray:
    """Deterministic augmentations of uint8 (N, H, W, 3) images: ``n_aug`` variants per image."""
    rng = np.random.default_rng(seed)
    out = []
    for img in images:
        base = img.astype(np.float32)
        for k in range(n_aug):
            x = base[:, ::-1] if k % 2 else base
            if k % 4 == 3:  # grey-scale
                x = np.repeat(x @ np.array(LUMA, np.float32), 3).reshape(x.shape)
            contrast = rng.uniform(0.6, 1.5)
            brightness = rng.uniform(-40, 40)
            mean = x.mean()
            x = (x - mean) * contrast + mean + brightness
            dy, dx = rng.integers(-4, 5, size=2)
            x = np.pad(x, ((4, 4), (4, 4), (0, 0)), mode="edge")[
                4 + dy : 4 + dy + img.shape[0], 4 + dx : 4 + dx + img.shape[1]
            ]
            x = x + rng.normal(0.0, rng.uniform(0.0, 6.0), size=x.shape)
            out.append(np.clip(np.rint(x), 0, 255).astype(np.uint8))
    return np.stack(out) if out else np.zeros((0, *images.shape[1:]), np.uint8)


def calibration_images(enroll_u8: np.ndarray | None = None, n_aug: int = 12, seed: int = 0) -> np.ndarray:
    """The calibration set: enrollment crop(s) and package faces, each as is and ``n_aug`` augmentations."""
    bases = [package_faces()]
    if enroll_u8 is not None:
        e = np.asarray(enroll_u8)
        if e.ndim == 3:
            e = e[None]
        if e.dtype != np.uint8 or e.shape[1:] != (112, 112, 3):
            raise ValueError(f"enrollment crop must be uint8 (112, 112, 3), got {e.dtype}{e.shape}")
        bases.insert(0, e)
    base = np.concatenate(bases)
    return np.concatenate([base, augment(base, n_aug, seed)])


# --------------------------------------------------------------------------------------------------
# Float activations
# --------------------------------------------------------------------------------------------------
def float_activations(
    params: dict[str, torch.Tensor], x: torch.Tensor, spec: ArchSpec = F_SPEC
) -> dict[str, torch.Tensor]:
    """Every layer's float output (after its ReLU) for input x (N, 3, H, W): f's own forward, layer by layer."""
    return {layer.name: out for layer, _pre, out in layer_outputs(x, params, spec)}


# --------------------------------------------------------------------------------------------------
# The float weights that are quantized
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QuantConfig:
    percentile: float = 99.99  # of the layer's output values over the calibration set (100 = max)
    margin: float = 1.2  # the range is widened by this factor
    pool_margin: float = 2.0  # the same for a requantizing pool's output (why wider: docs/quantization.md)
    logit_margin: float = 2.0  # the same for the logit (no ReLU bounds it; docs/quantization.md)
    fold_linear_tail: bool = True  # fc1 · head → fc1's row 0, head an int8 identity (module docstring)
    equalize_alpha: float = 0.6  # cross-layer equalization strength, 0 = off (codegen.weight_rounding)
    gptq: bool = True  # conv weights rounded by GPTQ instead of to nearest (codegen.weight_rounding)
    n_aug: int = 12  # augmentations per calibration base image
    seed: int = 0
    # (layer, margin) pairs that override ``margin``: the last conv's map varies most (docs/quantization.md)
    # (gdc, f's pooled features, is rounded like a requantizing pool's output: the pool's margin)
    layer_margins: tuple[tuple[str, float], ...] = (("b5_dw", 2.0), ("gdc", 2.0))
    exact_pool: bool = True  # int8: the pool's exact sums feed fc1, no int8 rounding (module docstring)
    activations: str = "int8"  # "int16": TFLM 16x8 — int16 activations, int8 weights (module docstring)
    margin16: float = 4.0  # int16 activations: every range is margin16 × the calibration max (no percentile)


def linear_tail(spec: ArchSpec = F_SPEC) -> tuple[int, int] | None:
    """Indices (a, h) of the last two layers when they are Dense without ReLU and h has one output (f's
    fc1 and head): the pair :func:`fold_linear_tail` may fold. None otherwise."""
    if len(spec.layers) < 2:
        return None
    a, h = spec.layers[-2], spec.layers[-1]
    if isinstance(a, Dense) and isinstance(h, Dense) and not a.relu and not h.relu and h.out_features == 1:
        return len(spec.layers) - 2, len(spec.layers) - 1
    return None


def fold_linear_tail(params: dict[str, torch.Tensor], spec: ArchSpec = F_SPEC) -> dict[str, torch.Tensor]:
    """The same f with its linear tail folded: ``head(fc1(p)) = (w_h W_1) p + (w_h b_1 + b_h)`` becomes
    fc1's row 0 (its other rows and biases 0) and head = [1, 0, …, 0] with bias 0. Exact in float (up to
    float32 rounding of the product); the graph keeps its ops and shapes."""
    ia, ih = linear_tail(spec) or (None, None)
    if ia is None:
        raise ValueError(f"{spec.name} does not end in two linear dense layers with one output")
    a, h = spec.layers[ia].name, spec.layers[ih].name
    w1, b1 = params[f"{a}.weight"].double(), params[f"{a}.bias"].double()
    wh, bh = params[f"{h}.weight"].double(), params[f"{h}.bias"].double()
    wa, ba = torch.zeros_like(w1), torch.zeros_like(b1)
    wa[0], ba[0] = (wh @ w1)[0], (wh @ b1 + bh)[0]
    whn = torch.zeros_like(wh)
    whn[0, 0] = 1.0
    return {**params, f"{a}.weight": wa.float(), f"{a}.bias": ba.float(),
            f"{h}.weight": whn.float(), f"{h}.bias": torch.zeros_like(bh).float()}


def package_calibration(cfg: QuantConfig) -> np.ndarray:
    """The calibration set without any user's image (package faces + augmentations): what equalization and
    GPTQ read, so that a layer's int8 weights depend on θ alone (see codegen.weight_rounding)."""
    return _package_calibration(cfg.n_aug, cfg.seed).copy()  # cached; a copy, so no caller can alter it


@functools.lru_cache(maxsize=4)
def _package_calibration(n_aug: int, seed: int) -> np.ndarray:
    return calibration_images(None, n_aug, seed)


def residual_logit_row(params: dict[str, torch.Tensor], spec: ArchSpec = F_SPEC) -> dict[str, torch.Tensor]:
    """16x8 only, on a folded tail: fc1's row 0 (the logit's weights w) becomes its own int8 grid values
    ``w0 = q(w) · s`` (exactly what int8 stores) and row 1 the residual ``w − w0`` (its own, ~127× finer
    per-channel scale); head = [1, 1, 0, …] adds the two. The same f in float; in int16 the logit's
    weights carry ~15 bits instead of 8 (int16 outputs resolve the small residual: with int8 outputs it
    would round away). Why: docs/quantization.md, "The schemes"."""
    ia, ih = linear_tail(spec) or (None, None)
    if ia is None:
        raise ValueError(f"{spec.name} has no linear tail to split")
    a, h = spec.layers[ia].name, spec.layers[ih].name
    w = params[f"{a}.weight"].double().numpy().copy()
    q, scales = _quantize_weights_per_channel(w[:1])
    w0 = q[0].astype(np.float64) * np.float64(scales[0])
    w[1], w[0] = w[0] - w0, w0
    wh = params[f"{h}.weight"].clone()
    wh[0, 1] = wh[0, 0]
    return {**params, f"{a}.weight": torch.from_numpy(w).float(), f"{h}.weight": wh}


def deployed_weights(theta: torch.Tensor, spec: ArchSpec = F_SPEC, fold: bool = True,
                     cfg: QuantConfig | None = None) -> dict[str, torch.Tensor]:
    """The float weights :func:`quantize` turns into int8: f's effective weights, with the linear tail
    folded (``fold`` and the spec has one) and the conv channels equalized (``cfg.equalize_alpha`` > 0;
    ``cfg`` None: QuantConfig()). The same function of the input as ``f_apply(·, θ)``."""
    cfg = QuantConfig() if cfg is None else cfg
    params = effective_weights(theta, spec)
    if fold and linear_tail(spec) is not None:
        params = fold_linear_tail(params, spec)
    if cfg.equalize_alpha > 0:
        with torch.no_grad():
            acts = float_activations(params, to_input(package_calibration(cfg)), spec)
        params = equalize(params, acts, spec, cfg.equalize_alpha, cfg.percentile)
    return params


def layer_inputs(params: dict[str, torch.Tensor], x: torch.Tensor, spec: ArchSpec = F_SPEC) -> dict[str, torch.Tensor]:
    """Every layer's float input for input x (N, 3, H, W) — what GPTQ's Hessians are made of."""
    out, prev = {}, x
    with torch.no_grad():
        for layer, _pre, y in layer_outputs(x, params, spec):
            out[layer.name], prev = prev, y
    return out


# --------------------------------------------------------------------------------------------------
# Quantization
# --------------------------------------------------------------------------------------------------
def _quantize_weights_per_channel(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output channel (axis 0). An all-zero filter gets scale 1/127."""
    flat = w.reshape(w.shape[0], -1).astype(np.float64)
    scales = per_channel_scales(w)
    q = np.clip(np.rint(flat / scales.astype(np.float64)[:, None]), -127, 127).astype(np.int8)
    return q.reshape(w.shape), scales


def int8_weights(layer: Conv | Dense, params: dict[str, torch.Tensor], gptq_inputs: dict[str, torch.Tensor] | None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The layer's int8 weights (conv OHWI, dense (out, in)) and float32 per-channel scales: convs by GPTQ on
    ``gptq_inputs`` (the package faces' layer inputs; None: round to nearest), dense layers to nearest."""
    w = params[f"{layer.name}.weight"]
    if isinstance(layer, Conv):
        if gptq_inputs is not None:
            q, scales = gptq_conv(w, layer, gptq_inputs[layer.name])
        else:
            q, scales = _quantize_weights_per_channel(w.double().numpy())
        return np.ascontiguousarray(q.transpose(0, 2, 3, 1)), scales  # OIHW → OHWI
    return _quantize_weights_per_channel(w.double().numpy())


def _quantize_bias(b: np.ndarray, bias_scales: np.ndarray, name: str) -> np.ndarray:
    q = np.rint(b.astype(np.float64) / bias_scales.astype(np.float64))
    if np.abs(q).max() > BIAS_LIMIT:
        log.warning("%s: bias clipped to ±2^30 (max |b/scale| = %.3g)", name, np.abs(q).max())
        q = np.clip(q, -BIAS_LIMIT, BIAS_LIMIT)
    return q.astype(np.int32)


def _range(values: torch.Tensor, relu: bool, cfg: QuantConfig, margin: float | None = None) -> tuple[float, float]:
    """The float range [lo, hi] of one layer's output: int8, ``margin`` × the percentile (module docstring);
    int16, ``margin16`` × the max — 65,536 codes can cover every calibration value with room to spare."""
    v = values.detach().double().flatten().numpy()
    if cfg.activations == "int16":
        lo = 0.0 if relu else min(float(v.min()), 0.0) * cfg.margin16
        return lo, max(float(v.max()), MIN_RANGE) * cfg.margin16
    margin = cfg.margin if margin is None else margin
    if cfg.percentile >= 100.0:
        hi, lo = float(v.max()), float(v.min())
    else:  # exact, over every value (np.quantile partitions: O(n), no sort)
        lo, hi = (float(x) for x in np.quantile(v, [1.0 - cfg.percentile / 100.0, cfg.percentile / 100.0]))
    hi = max(hi * margin, MIN_RANGE) if hi > 0 else MIN_RANGE
    lo = 0.0 if relu else min(lo * margin, 0.0)
    return lo, hi


def l2norm_mid_scale(values: torch.Tensor, cfg: QuantConfig) -> float:
    """The 16x8 L2Norm's int8 intermediate scale (zero point 0): the features' ``percentile`` of |value|
    times ``margin``, over 127 — the normalization's only rounding before TFLM's int8 op."""
    v = np.abs(values.detach().double().flatten().numpy())
    top = float(np.quantile(v, cfg.percentile / 100.0)) if cfg.percentile < 100.0 else float(v.max())
    return f32(max(top * cfg.margin, MIN_RANGE) / INT8_MAX)


def quantize(
    theta: torch.Tensor | np.ndarray,
    enroll_u8: np.ndarray | None = None,
    cfg: QuantConfig = QuantConfig(),
    spec: ArchSpec = F_SPEC,
    calib_u8: np.ndarray | None = None,
    base: QuantizedF | None = None,
    split: int = 0,
) -> QuantizedF:
    """Quantize one flat θ. Ranges come from ``calib_u8`` if given, else from :func:`calibration_images`
    built around ``enroll_u8`` (the user's aligned uint8 112×112×3 crop; None: package faces only).

    ``base`` and ``split`` > 0: layers [0, split) are the base's int8 layers as they are (a firmware's
    shared prefix, see pvcore.blob), only layers [split, n) are quantized and calibrated here; θ's
    own prefix must quantize to the base's int8 weights (ValueError otherwise: it is not that model's)."""
    theta_t = (
        torch.as_tensor(np.asarray(theta, np.float32))
        if not isinstance(theta, torch.Tensor)
        else theta.detach().float()
    )
    if theta_t.ndim != 1 or theta_t.numel() != spec.theta_size:
        raise ValueError(
            f"θ must be a flat vector of {spec.theta_size} values, got shape {tuple(theta_t.shape)}"
        )
    if not torch.isfinite(theta_t).all():
        raise ValueError("θ contains NaN or infinity")
    images = calib_u8 if calib_u8 is not None else calibration_images(enroll_u8, cfg.n_aug, cfg.seed)
    tail = linear_tail(spec) if cfg.fold_linear_tail else None
    if tail is not None and tail[0] < split:
        tail = None  # the tail's first layer is in the base: it stays as the base has it
    with torch.no_grad():
        params = deployed_weights(theta_t, spec, fold=tail is not None, cfg=cfg)
        if cfg.activations == "int16" and tail is not None:
            params = residual_logit_row(params, spec)
        acts = float_activations(params, to_input(images), spec)
    gptq_inputs = layer_inputs(params, to_input(package_calibration(cfg)), spec) if cfg.gptq else None

    layers: list[QuantLayer] = []
    in_scale, in_zp = f32(INPUT_SCALE), INPUT_ZP
    ranges: dict[str, list[float]] = {}
    if split and base is None:
        raise ValueError("split > 0 needs the base QuantizedF whose prefix it keeps")
    if base is not None and split and base.activations != cfg.activations:
        raise ValueError(f"the base is {base.activations}, this quantization {cfg.activations}: one type per model")
    act_limits(cfg.activations)  # refuses an unknown type
    for i, layer in enumerate(spec.layers):
        relu = bool(getattr(layer, "relu", False))
        if base is not None and i < split:
            q = base.layers[i]
            if isinstance(layer, Conv | Dense):
                if not np.array_equal(int8_weights(layer, params, gptq_inputs)[0], q.weights):
                    raise ValueError(f"θ's layer {layer.name} is not the base's shared prefix: this θ needs "
                                     "a full blob (or a firmware built with its own model's base)")
            layers.append(q)
            ranges[layer.name] = base.calibration.get("ranges", {}).get(layer.name, [])
            in_scale, in_zp = q.out_scale, q.out_zp
            continue
        exact = (isinstance(layer, AvgPool) and cfg.exact_pool and cfg.activations == "int8"
                 and i + 1 < len(spec.layers) and isinstance(spec.layers[i + 1], Dense))
        if isinstance(layer, L2Norm):  # TFLM's fixed output: the unit vector at scale 1/128, zp 0
            out_scale, out_zp = f32(L2NORM_OUT_SCALE), 0
            act_min, act_max = activation_range(False, 0, cfg.activations)
            ranges[layer.name] = [-1.0, 1.0]
        elif exact:  # the sum Σ(x − in_zp) itself, in units of the input's scale: no range to calibrate
            out_scale, out_zp = in_scale, 0
            act_min, act_max = exact_sum_range(layer, in_zp)
            ranges[layer.name] = []
        else:
            if i == len(spec.layers) - 1 or (tail is not None and i in tail):
                # the logit, and (folded tail) fc1 whose row 0 carries it: one range, so that head is an identity
                lo, hi = _range(acts[spec.layers[-1].name], relu, cfg, cfg.logit_margin)
            else:
                margin = dict(cfg.layer_margins).get(layer.name,
                                                     cfg.pool_margin if isinstance(layer, AvgPool) else None)
                lo, hi = _range(acts[layer.name], relu, cfg, margin)
            ranges[layer.name] = [lo, hi]
            if cfg.activations == "int16":
                out_scale, out_zp = choose_qparams16(lo, hi)
            else:
                out_scale, out_zp = choose_qparams(lo, hi)
                if relu or (isinstance(layer, AvgPool) and lo >= 0.0):  # the mean of a ReLU map is >= 0 too
                    out_scale, out_zp = f32(hi / 255.0), INT8_MIN  # [0, hi] exactly: zp -128
            act_min, act_max = activation_range(relu, out_zp, cfg.activations)
        q = QuantLayer(layer.name, layer.kind, relu, in_scale, in_zp, out_scale, out_zp, act_min, act_max,
                       exact_sum=exact)
        if isinstance(layer, Conv | Dense):
            b = params[f"{layer.name}.bias"].double().numpy()
            q.weights, q.w_scales = int8_weights(layer, params, gptq_inputs)
            if layers and layers[-1].exact_sum:  # it reads sums of k² inputs: its weights act on the mean
                k2 = spec.layers[i - 1].kernel ** 2
                q.w_scales = (q.w_scales.astype(np.float64) / k2).astype(np.float32)
            q.bias = _quantize_bias(b, q.bias_scales, layer.name)
        elif isinstance(layer, L2Norm):  # its int8 intermediate: 16x8, the input's range at int8's grain
            q.w_scales = np.array([in_scale if cfg.activations == "int8" else
                                   l2norm_mid_scale(acts[spec.layers[i - 1].name], cfg)], np.float32)
        elif exact:
            q.w_scales = np.array([1.0], np.float32)
        else:
            q.w_scales = np.array([pool_weight_scale(layer)], np.float32)
        if isinstance(layer, L2Norm):
            mults = [l2norm_multiplier(in_scale, float(q.w_scales[0]))]
        else:
            mults = [quantize_multiplier(real_multiplier(in_scale, float(s), out_scale)) for s in q.w_scales]
        q.multiplier = np.array([m for m, _ in mults], np.int32)
        q.shift = np.array([s for _, s in mults], np.int32)
        if (q.shift > 30).any():
            raise ValueError(f"{layer.name}: requantization multiplier ≥ 2^30 (scales degenerate)")
        layers.append(q)
        in_scale, in_zp = out_scale, out_zp
    qf = QuantizedF(
        spec.arch_hash(),
        spec.name,
        layers,
        logit_scale=in_scale,
        logit_zp=in_zp,
        activations=cfg.activations,
        calibration={
            "n_images": int(len(images)),
            "percentile": cfg.percentile,
            "margin": cfg.margin,
            "enrollment": enroll_u8 is not None,
            "ranges": ranges,
            "shared_prefix_layers": split if base is not None else 0,
            "folded_tail": [spec.layers[i].name for i in tail] if tail is not None else [],
            "equalize_alpha": cfg.equalize_alpha,
            "gptq": cfg.gptq,
            "activations": cfg.activations,
        },
    )
    qf.check(spec)
    return qf
