"""The int8 emulation of codegen.quant_robust: it must round as codegen does, pass gradients the way the
fine-tune relies on, and its folded head must give f's logit."""

from __future__ import annotations

import numpy as np
import torch

from codegen.quant_robust import QRConfig, fake_quant, folded_heads, pooled_features
from pvcore.qtheta import choose_qparams
from pvcore.spec import F_SPEC
from training.verifier.batched import split_spec
from training.verifier.functional import f_apply, random_theta


def test_fake_quant_rounds_like_codegen() -> None:
    x = torch.rand(10_000, dtype=torch.float64) * 4.0 - 0.5  # some below 0 (ReLU range) and above hi
    lo, hi = 0.0, 3.0
    scale, zp = choose_qparams(lo, hi)
    q = np.clip(np.floor(x.numpy() / scale + 0.5) + zp, -128, 127)  # no ties in random doubles
    expected = (q - zp) * scale
    got = fake_quant(x, torch.tensor(lo, dtype=torch.float64), torch.tensor(hi, dtype=torch.float64))
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-4 * scale)  # codegen keeps the scale in float32


def test_fake_quant_gradients() -> None:
    """Straight-through inside the range, zero where clipped; the range gets the rounding noise / scale."""
    x = torch.tensor([-1.0, 0.3, 1.7, 2.9, 5.0], requires_grad=True)
    hi = torch.tensor(3.0, requires_grad=True)
    fake_quant(x, torch.tensor(0.0), hi).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
    scale = 3.0 / 255
    u = np.array([0.3, 1.7, 2.9]) / scale - 128
    lsq = (np.round(u) - u).sum() / 255 + 1.0  # in range: rounding noise / 255; the clipped 5.0: (127 + 128) / 255
    assert abs(float(hi.grad) - lsq) < 1e-4


def test_pooled_features_and_folded_head_give_f() -> None:
    """logit = w_head · W_fc1 · pool(prefix(x)) + const: the metric M of the fine-tune is the logit's."""
    prefix, _suffix, n = split_spec(F_SPEC, "pool")
    pool = F_SPEC.layers[len(prefix.layers)]
    theta = random_theta(3)
    x = torch.rand(5, 3, 112, 112) * 2 - 1
    with torch.no_grad():
        p = pooled_features(x, theta[:n], prefix, pool)
        w = folded_heads(theta[None])[0]
        direct = f_apply(x, theta)
        zero = f_apply(torch.zeros(1, 3, 112, 112), theta)
        p0 = pooled_features(torch.zeros(1, 3, 112, 112), theta[:n], prefix, pool)
    np.testing.assert_allclose((p - p0) @ w, direct - zero, rtol=1e-4, atol=1e-4)


def test_emulated_pool_is_near_float() -> None:
    """With ranges from the calibration images, the emulated int8 features differ from the float ones by
    about the rounding step — neither equal (nothing quantized) nor far off (a wrong range)."""
    from codegen.quantize import QuantConfig, package_calibration
    from training.verifier.functional import to_input

    prefix, _suffix, n = split_spec(F_SPEC, "pool")
    pool = F_SPEC.layers[len(prefix.layers)]
    theta = random_theta(4)[:n]
    cal = to_input(package_calibration(QuantConfig()))
    x = cal[:8]
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        pf = pooled_features(x, theta, prefix, pool)
        pq = pooled_features(x, theta, prefix, pool, QRConfig(), g, cal)
    rel = float((pq - pf).norm() / pf.norm())
    assert 1e-4 < rel < 0.05, rel
