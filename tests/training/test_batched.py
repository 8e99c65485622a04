"""The fast nB×nB step equals the loop over networks (values and gradients), θ layout round trips."""

import pytest
import torch

from pvcore.spec import F_SPEC
from training.verifier.batched import (
    effective_weights_batched,
    pairwise_logits,
    pairwise_logits_loop,
    pairwise_logits_vmap,
)
from training.verifier.functional import effective_weights, flatten, random_theta, unflatten


@pytest.fixture(autouse=True)
def _one_thread():
    # one intra-op thread: on a machine shared with other jobs, OpenMP threads that lose their core stall
    # every parallel region (minutes instead of seconds); results do not depend on it.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _problem(n_nets=6, n_img=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n_img, 3, 112, 112, generator=g) * 2 - 1
    th = torch.stack([random_theta(seed + j) for j in range(n_nets)])
    # f's LSUV gains make these logits O(1) (std ≈ 1 over images), so an absolute 1e-5 means something
    return x, th


def test_theta_layout_round_trip():
    th = random_theta(1)
    params = unflatten(th)
    assert set(params) == {f"{s.layer}.{s.tensor}" for s in F_SPEC.layout}
    assert sum(p.numel() for p in params.values()) == F_SPEC.theta_size
    assert torch.equal(flatten(params), th)
    stack = torch.stack([th, 2 * th])
    batched = unflatten(stack)
    assert batched["stem.weight"].shape == (2, *unflatten(th)["stem.weight"].shape)
    assert torch.equal(torch.stack([flatten({k: v[i] for k, v in batched.items()}) for i in range(2)]), stack)


def test_batched_effective_weights_equal_per_network():
    _, th = _problem(3)
    eb = effective_weights_batched(th)
    for j in range(3):
        for k, v in effective_weights(th[j]).items():
            torch.testing.assert_close(eb[k][j], v, atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def full_problem():
    x, th = _problem()
    return x, th, pairwise_logits_loop(x, th)


@pytest.mark.parametrize("chunk", [1, 4, 64])
def test_batched_equals_loop(chunk, full_problem):
    x, th, ref = full_problem
    assert ref.shape == (6, 9) and ref.abs().max() > 0.5
    torch.testing.assert_close(pairwise_logits(x, th, chunk=chunk), ref, atol=2e-5, rtol=0)


@pytest.mark.parametrize("chunk", [1, 4])
def test_batched_equals_loop_with_column_subsampling(chunk, full_problem):
    x, th, full = full_problem
    cols = torch.randint(0, 9, (6, 4), generator=torch.Generator().manual_seed(5))
    ref = pairwise_logits_loop(x, th, columns=cols)
    got = pairwise_logits(x, th, columns=cols, chunk=chunk)
    assert got.shape == (6, 4)
    torch.testing.assert_close(got, ref, atol=2e-5, rtol=0)
    # a subsampled entry is the full matrix's entry
    torch.testing.assert_close(got, torch.gather(full, 1, cols), atol=2e-5, rtol=0)


def test_gradients_equal_loop():
    x, th = _problem(5, 6)
    cols = torch.randint(0, 6, (5, 3), generator=torch.Generator().manual_seed(2))
    for columns in (None, cols):
        a, b = th.clone().requires_grad_(), th.clone().requires_grad_()
        w = torch.randn(5, 6 if columns is None else 3, generator=torch.Generator().manual_seed(3))
        (pairwise_logits(x, a, columns=columns, chunk=2) * w).sum().backward()
        (pairwise_logits_loop(x, b, columns=columns) * w).sum().backward()
        torch.testing.assert_close(a.grad, b.grad, atol=1e-4, rtol=1e-4)


def test_other_implementations_agree():
    x, th = _problem(3, 4)
    ref = pairwise_logits_loop(x, th)
    torch.testing.assert_close(pairwise_logits_vmap(x, th), ref, atol=2e-5, rtol=0)
    cl = pairwise_logits_loop(x, th, memory_format=torch.channels_last)
    torch.testing.assert_close(cl, ref, atol=2e-5, rtol=0)


def test_bad_shapes_are_refused():
    x, th = _problem(2, 3)
    with pytest.raises(ValueError, match="columns"):
        pairwise_logits(x, th, columns=torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="index images"):
        pairwise_logits(x, th, columns=torch.full((2, 2), 7))
    with pytest.raises(ValueError, match="thetas"):
        effective_weights_batched(th[:, :-1])


@pytest.mark.parametrize("first_personal", ["b5_dw", "pool"])  # "pool": a dense-only personal suffix
def test_split_path_equals_full_path_for_a_shared_prefix(first_personal):
    from training.verifier.batched import pairwise_logits_split, split_spec

    x, th = _problem(n_nets=5, n_img=7, seed=3)
    _, _, n = split_spec(F_SPEC, first_personal)
    th[:, :n] = th[0, :n]  # one shared prefix, personal suffixes
    cols = torch.tensor([[0, 1, 2], [3, 4, 5], [6, 0, 1], [2, 3, 4], [5, 6, 0]])
    full = pairwise_logits(x, th)
    loop = pairwise_logits_loop(x, th)
    torch.testing.assert_close(full, loop, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(pairwise_logits_split(x, th, first_personal), full, atol=1e-5, rtol=1e-4)
    sub = pairwise_logits_split(x, th, first_personal, columns=cols)
    torch.testing.assert_close(sub, torch.gather(full, 1, cols), atol=1e-5, rtol=1e-4)


def test_partial_personalization_generates_a_shared_prefix():
    from training.verifier.batched import split_spec
    from training.verifier.hypernet import HGen, HGenConfig

    h = HGen(HGenConfig(embedding_dim=16, hidden=32, rank=8, personal_from="b5_dw"))
    th = h(torch.randn(4, 16))
    _, _, n = split_spec(F_SPEC, "b5_dw")
    assert th.shape == (4, F_SPEC.theta_size) and h.n_shared == n
    assert torch.equal(th[0, :n], th[3, :n]) and not torch.equal(th[0, n:], th[3, n:])
