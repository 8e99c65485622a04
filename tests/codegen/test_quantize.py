"""Quantization of θ: TFLM's QuantizeMultiplier, activation parameters, weights, calibration set."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from codegen.quantize import (
    PACKAGE_FACES,
    QuantConfig,
    calibration_images,
    deployed_weights,
    float_activations,
    layer_inputs,
    package_calibration,
    package_faces,
    quantize,
)
from codegen.weight_rounding import channel_percentiles, equalization_pairs
from pvcore.qtheta import INT8_MIN, activation_range, choose_qparams, f32, quantize_multiplier, real_multiplier
from pvcore.spec import F_SPEC, Conv
from training.verifier.functional import (
    apply_effective,
    effective_weights,
    f_apply,
    layer_outputs,
    random_theta,
    to_input,
)


@pytest.mark.parametrize(
    ("real", "want"),
    [
        (0.0, (0, 0)),
        (0.5, (1 << 30, 0)),
        (1.0, (1 << 30, 1)),
        (0.25, (1 << 30, -1)),
        (0.75, (3 << 29, 0)),
        (2.0**-31, (1 << 30, -30)),
        (2.0**-32, (1 << 30, -31)),
        (2.0**-33, (0, 0)),  # shift < -31: flushed to zero
        (1.0 - 2.0**-40, (1 << 30, 1)),  # q rounds to 2^31: the carry case
        (0.1, (1717986918, -3)),  # round(0.8 * 2^31) = 1717986918.4 → ...918
        (3.0, (3 << 29, 2)),
        (-0.5, (-(1 << 30), 0)),
    ],
)
def test_quantize_multiplier_hand_values(real: float, want: tuple[int, int]) -> None:
    assert quantize_multiplier(real) == want


def test_quantize_multiplier_rounds_half_away_from_zero() -> None:
    # q·2^31 = 2^30 + 0.5 exactly: C's round gives 2^30 + 1 (Python's round() would give 2^30)
    real = (2**30 + 0.5) / 2**31
    assert quantize_multiplier(real) == ((1 << 30) + 1, 0)


def test_quantize_multiplier_reconstructs() -> None:
    rng = np.random.default_rng(0)
    for real in rng.uniform(1e-6, 4.0, 500):
        m, s = quantize_multiplier(float(real))
        assert (1 << 30) <= m < (1 << 31)
        assert abs(m * 2.0 ** (s - 31) - real) <= 2.0 ** (s - 32)


def test_real_multiplier_uses_float32_scales() -> None:
    a, b, c = 0.1, 0.2, 0.3
    assert real_multiplier(a, b, c) == (f32(a) * f32(b)) / f32(c)


def test_choose_qparams() -> None:
    scale, zp = choose_qparams(0.0, 2.55)
    assert zp == INT8_MIN and scale == f32(2.55 / 255)
    scale, zp = choose_qparams(-1.0, 1.0)
    assert zp in (-1, 0) and math.isclose(scale, 2.0 / 255, rel_tol=1e-6)
    scale, zp = choose_qparams(0.5, 1.0)  # range widened to include 0
    assert zp == INT8_MIN
    scale, zp = choose_qparams(0.0, 0.0)  # degenerate: still a valid scale
    assert scale > 0


def test_activation_range() -> None:
    assert activation_range(True, -128) == (-128, 127)
    assert activation_range(True, -5) == (-5, 127)
    assert activation_range(False, -5) == (-128, 127)


def test_calibration_set_is_deterministic_and_face_sized() -> None:
    faces = package_faces()
    assert faces.shape == (len(PACKAGE_FACES), 112, 112, 3) and faces.dtype == np.uint8
    a, b = calibration_images(n_aug=3), calibration_images(n_aug=3)
    assert np.array_equal(a, b)
    assert len(a) == len(PACKAGE_FACES) * 4
    enroll = np.full((112, 112, 3), 90, np.uint8)
    c = calibration_images(enroll, n_aug=3)
    assert len(c) == (len(PACKAGE_FACES) + 1) * 4 and np.array_equal(c[0], enroll)
    with pytest.raises(ValueError, match="uint8"):
        calibration_images(enroll.astype(np.float32))


@pytest.fixture(scope="module")
def qf0():
    return quantize(random_theta(0), cfg=QuantConfig(n_aug=4))


def test_quantized_record_is_consistent(qf0) -> None:
    qf0.check()
    assert qf0.arch_hash == F_SPEC.arch_hash()
    assert [q.name for q in qf0.layers] == [la.name for la in F_SPEC.layers]
    assert qf0.input_scale == 1 / 128 and qf0.input_zp == 0
    assert (qf0.logit_scale, qf0.logit_zp) == (qf0.layers[-1].out_scale, qf0.layers[-1].out_zp)
    # spec v5's pool, an L2 normalization: TFLM's fixed output (1/128, zp 0) read by fc1, no weights; its one
    # requantization the identity in int8 (the input's own scale, multiplier 1)
    pool, gdc = qf0.layer("pool"), qf0.layers[F_SPEC.pool_index - 1]
    assert pool.kind == "l2norm" and pool.weights is None and pool.bias is None and not pool.exact_sum
    assert (pool.in_scale, pool.in_zp) == (gdc.out_scale, gdc.out_zp)
    assert (pool.out_scale, pool.out_zp, pool.act_min, pool.act_max) == (1 / 128, 0, INT8_MIN, 127)
    assert pool.w_scales.tolist() == [np.float32(pool.in_scale)]
    assert (int(pool.multiplier[0]), int(pool.shift[0])) == (1 << 30, 1)
    assert (qf0.layer("fc1").in_scale, qf0.layer("fc1").in_zp) == (1 / 128, 0)
    # 16x8: QUANTIZE int16 → int8 at the intermediate scale (zp 0), the int8 op, the int16 output at 1/128
    q16 = quantize(random_theta(0), cfg=dataclasses.replace(CFG0, activations="int16"))
    p16 = q16.layer("pool")
    assert (p16.out_scale, p16.out_zp, p16.act_min, p16.act_max) == (1 / 128, 0, -(2**15), 2**15 - 1)
    assert (int(p16.multiplier[0]), int(p16.shift[0])) == quantize_multiplier(
        float(np.float32(p16.in_scale)) / float(p16.w_scales[0]))
    # the intermediate covers the features' calibrated range at int8's grain
    assert p16.w_scales[0] * 127 >= np.float32(gdc.out_range[1] / 2)


def test_the_exact_pool_of_a_spec_with_a_global_pool() -> None:
    """Spec v4's global pool (tests.helpers.specs.SPEC_V4): the exact pool (the default) passes the sums
    Σ(x − zp) themselves, scale = its input's, zp 0, the sum's bounds as its range, weight scale 1,
    multiplier 1; fc1's weight scales carry the 1/k²; with exact_pool off the global mean requantizes."""
    from tests.helpers.specs import SPEC_V4

    spec = SPEC_V4
    qf0 = quantize(random_theta(0, spec=spec), cfg=CFG0, spec=spec)
    qf0.check(spec)
    i_pool = [la.name for la in spec.layers].index("pool")
    k2 = spec.layers[i_pool].kernel ** 2
    pool = qf0.layer("pool")
    assert pool.exact_sum and pool.weights is None and pool.bias is None
    assert (pool.out_scale, pool.out_zp) == (pool.in_scale, 0)
    in_zp = qf0.layers[i_pool - 1].out_zp
    assert (pool.act_min, pool.act_max) == (k2 * (INT8_MIN - in_zp), k2 * (127 - in_zp))
    assert pool.w_scales.tolist() == [1.0] and (int(pool.multiplier[0]), int(pool.shift[0])) == (1 << 30, 1)
    qr = quantize(random_theta(0, spec=spec), cfg=dataclasses.replace(CFG0, exact_pool=False), spec=spec)
    qr.check(spec)
    pool = qr.layer("pool")
    assert not pool.exact_sum and pool.weights is None and pool.bias is None
    assert pool.w_scales.tolist() == [np.float32(1 / k2)] and pool.multiplier.shape == (1,)
    assert pool.out_range[1] >= qr.calibration["ranges"]["pool"][1] * 0.999
    fc1, fc1r = qf0.layer("fc1"), qr.layer("fc1")
    assert np.array_equal(fc1.w_scales, (fc1r.w_scales.astype(np.float64) / k2).astype(np.float32))


def test_quantized_layers_are_int8(qf0) -> None:
    for q, la in zip(qf0.layers, F_SPEC.layers):
        if getattr(la, "relu", False):
            assert q.out_zp == INT8_MIN and q.act_min == INT8_MIN
        if q.weights is not None:
            assert q.weights.dtype == np.int8 and np.abs(q.weights.astype(int)).max() == 127
            assert q.per_channel == (q.weights.shape[0] > 1)  # conv and dense: per output channel


CFG0 = QuantConfig(n_aug=4)  # qf0's configuration


def test_weights_are_the_deployed_weights(qf0) -> None:
    """Scales max|w_c|/127 of the deployed (folded, equalized) weights; dense rows rounded to nearest; conv
    filters by GPTQ, which may move a weight beyond half a step but makes the layer's output on the
    package calibration faces closer to the float one than rounding to nearest does."""
    eff = deployed_weights(random_theta(0), cfg=CFG0)
    inputs = layer_inputs(eff, to_input(package_calibration(CFG0)))
    for q, la in zip(qf0.layers, F_SPEC.layers):
        if q.weights is None:
            continue
        w = eff[f"{la.name}.weight"].double().numpy()
        flat = (w.transpose(0, 2, 3, 1) if isinstance(la, Conv) else w).reshape(len(w), -1)
        scales = q.w_scales.astype(np.float64)
        amax = np.abs(flat).max(1)
        assert np.allclose(scales, np.where(amax > 0, amax / 127, 1 / 127), rtol=1e-6)  # 1/127: a zero row
        deq = q.weights.reshape(len(w), -1) * scales[:, None]
        if isinstance(la, Conv):
            rtn = np.clip(np.rint(flat / scales[:, None]), -127, 127) * scales[:, None]
            layer_err = {}
            for name, wq in (("gptq", deq), ("nearest", rtn)):
                wt = torch.from_numpy(wq.reshape(w.shape[0], *w.shape[2:], w.shape[1]).transpose(0, 3, 1, 2).copy())
                one = {**eff, f"{la.name}.weight": wt.float()}
                with torch.no_grad():
                    *_, (_, _, ref) = layer_outputs(inputs[la.name], eff, _single(la))
                    *_, (_, _, got) = layer_outputs(inputs[la.name], one, _single(la))
                layer_err[name] = float(((got - ref) ** 2).mean())
            assert layer_err["gptq"] < layer_err["nearest"], (la.name, layer_err)
        else:
            assert (np.abs(deq - flat) <= scales[:, None] / 2 * (1 + 1e-6)).all()
        b = eff[f"{la.name}.bias"].double().numpy()
        assert np.allclose(
            q.bias * q.bias_scales.astype(np.float64), b, atol=float(q.bias_scales.max()) * 0.51 + 1e-12
        )
        assert np.allclose(scales, np.where(amax > 0, amax / 127, 1 / 127), rtol=1e-6)


def _single(layer):
    """The layer alone, as the spec layer_outputs walks."""
    import types

    return types.SimpleNamespace(layers=(layer,))


def test_equalization_is_the_same_f_and_balances_the_channels() -> None:
    theta = random_theta(0)
    x = to_input(calibration_images(None, 2))
    plain = deployed_weights(theta, cfg=QuantConfig(n_aug=4, equalize_alpha=0.0))
    eq = deployed_weights(theta, cfg=CFG0)
    with torch.no_grad():
        want = apply_effective(x, plain)
        got = apply_effective(x, eq)
        acts_p, acts_e = float_activations(plain, x), float_activations(eq, x)
    assert torch.allclose(got, want, atol=1e-5 * float(want.abs().max()))
    for a, _b in equalization_pairs(F_SPEC):
        rp, re = channel_percentiles(acts_p[a.name], 99.99), channel_percentiles(acts_e[a.name], 99.99)
        live = rp > rp.max() / 100
        assert (re[live].max() / re[live].min()) < (rp[live].max() / rp[live].min()), a.name


def test_int8_weights_do_not_depend_on_the_enrollment_image() -> None:
    """Equalization and GPTQ read the package faces only: the same θ gives the same int8 weights whoever
    enrolled (a shared prefix is one base for all users); only activation ranges see the user's crop."""
    theta = random_theta(1).numpy()
    faces = package_faces()
    qa, qb = quantize(theta, faces[0], CFG0), quantize(theta, faces[1], CFG0)
    assert all(np.array_equal(a.weights, b.weights) for a, b in zip(qa.layers, qb.layers) if a.weights is not None)
    assert qa.calibration["ranges"] != qb.calibration["ranges"]


def test_multipliers_follow_tflm_formula(qf0) -> None:
    for q in qf0.layers:
        if q.weights is None:
            continue
        for s, m, sh in zip(q.w_scales, q.multiplier, q.shift):
            assert (int(m), int(sh)) == quantize_multiplier(
                real_multiplier(q.in_scale, float(s), q.out_scale)
            )


def test_bad_theta_refused() -> None:
    with pytest.raises(ValueError, match="flat vector"):
        quantize(torch.zeros(10))
    bad = random_theta(0)
    bad[5] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        quantize(bad)


def test_check_names_the_arch_mismatch(qf0) -> None:
    import copy

    other = copy.copy(qf0)
    other.arch_hash = "0123456789abcdef"
    with pytest.raises(ValueError, match="0123456789abcdef"):
        other.check()


def test_decision_rule(qf0) -> None:
    qs = np.arange(-128, 128)
    deq = qf0.dequantize_logit(qs)
    assert deq.dtype == np.float32 and (np.diff(deq) > 0).all()
    thr = float(deq[140])
    assert qf0.threshold_q(thr) == qs[140]
    assert qf0.decide(qs[140], thr) and not qf0.decide(qs[139], thr)
    assert qf0.threshold_q(1e9) == 128


def test_linear_tail_fold_is_the_same_f_and_head_an_int8_identity(qf0) -> None:
    theta = random_theta(0)
    x = calibration_images(None, 2)
    with torch.no_grad():
        want = f_apply(to_input(x), theta)
        got = apply_effective(to_input(x), deployed_weights(theta))
    assert torch.allclose(got, want, atol=1e-5 * float(want.abs().max()))
    eff, dep = effective_weights(theta), deployed_weights(theta, cfg=QuantConfig(equalize_alpha=0.0))
    w_fold = eff["head.weight"].double() @ eff["fc1.weight"].double()
    assert torch.allclose(dep["fc1.weight"][0].double(), w_fold[0], rtol=1e-5, atol=1e-7)
    assert (dep["fc1.weight"][1:] == 0).all() and (dep["fc1.bias"][1:] == 0).all()
    assert qf0.calibration["folded_tail"] == ["fc1", "head"]
    fc1, head = qf0.layer("fc1"), qf0.layer("head")
    assert (fc1.out_scale, fc1.out_zp) == (head.out_scale, head.out_zp)
    assert head.weights.tolist() == [[127] + [0] * 23] and head.bias.tolist() == [0]
    from codegen.golden import run_int8

    q, layers = run_int8(qf0, x, return_layers=True)
    assert np.array_equal(layers["fc1"][:, 0], q)  # head passes fc1's row 0 through, bit for bit
    assert (layers["fc1"][:, 1:] == fc1.out_zp).all()  # the zero rows give exact zeros
    unfolded = quantize(theta, cfg=QuantConfig(n_aug=4, fold_linear_tail=False))
    assert unfolded.calibration["folded_tail"] == [] and (unfolded.layer("fc1").weights[1:] != 0).any()
