import dataclasses

import torch

from pvcore.spec import F_SPEC
from training.model_info import info
from training.verifier.functional import VerifierModule, f_apply, random_theta, standardize


def test_budget_counted_by_ptflops():
    d = info()
    assert d["params"] <= 23_000  # θ: weights, biases and the per-channel gains
    assert d["deployed_params"] == d["ptflops_params"] < d["params"]  # gains fold into the weights
    assert d["ptflops_macs"] <= 5_400_000
    assert abs(d["ptflops_macs"] - d["macs_analytic"]) / d["macs_analytic"] < 0.05  # ReLU/pool/bias extras


def test_arch_hash_changes_with_the_spec():
    h = F_SPEC.arch_hash()
    assert len(h) == 16 and h == F_SPEC.arch_hash()
    layers = list(F_SPEC.layers)
    layers[1] = dataclasses.replace(layers[1], groups=3)
    assert dataclasses.replace(F_SPEC, layers=tuple(layers)).arch_hash() != h


def test_weight_standardization_is_scale_invariant():
    w = torch.randn(8, 4, 3, 3)
    s = standardize(w, 2.0)
    torch.testing.assert_close(s, standardize(w * 37.0, 2.0))
    torch.testing.assert_close(s.flatten(1).norm(dim=1), torch.full((8,), 2.0), atol=1e-4, rtol=0)
    torch.testing.assert_close(s.flatten(1).mean(dim=1), torch.zeros(8), atol=1e-6, rtol=0)


def test_module_equals_functional():
    theta = random_theta(3)
    x = torch.rand(2, 3, 112, 112) * 2 - 1
    torch.testing.assert_close(VerifierModule(theta)(x).reshape(-1), f_apply(x, theta))
