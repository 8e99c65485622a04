"""The decision rule pinned at its edge: a probe is accepted when its integer logit q reaches threshold_q — the
smallest q whose dequantized logit is >= the θ's threshold — and refused at threshold_q − 1.

Python: QuantizedF.threshold_q / decide / decide_mean2 on the golden model's logits. C: the host simulator
over the serial protocol (pv_decide for int8, pv_decide16 for 16x8, pv_decide_mean2 for two views), with
blobs whose threshold is set to the dequantized value of the very logit the board computes for an image,
so that q == threshold_q exactly (accept), then to the next one up (refuse). Turning the device's >= into >
fails here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from codegen.golden import images_to_int8, run_int8, run_int8_views
from codegen.quantize import QuantConfig, quantize
from host_tools.qemu import HostBoard, build_host_sim
from host_tools.serial_link import SerialLink
from pvcore.blob import pack_blob
from pvcore.qtheta import QuantizedF, act_limits
from pvcore.spec import F_SPEC


@pytest.fixture(scope="module", params=["int8", "int16"])
def qf(request: pytest.FixtureRequest) -> QuantizedF:
    theta = torch.randn(F_SPEC.theta_size, generator=torch.Generator().manual_seed(5))
    return quantize(theta, cfg=QuantConfig(activations=request.param))


def interior(qf: QuantizedF, qs: np.ndarray) -> int:
    """Index of a logit with room on both sides (threshold_q − 1 and + 1 exist)."""
    lo, hi = act_limits(qf.activations)
    ok = np.flatnonzero((qs > lo + 1) & (qs < hi - 1))
    assert ok.size, f"every test image saturates the logit ({qs}): pick other images"
    return int(ok[0])


# ---- Python --------------------------------------------------------------------------------------------------
def test_threshold_q_is_the_first_accepted_logit(qf: QuantizedF) -> None:
    lo, hi = act_limits(qf.activations)
    qs = np.arange(lo, hi + 1)
    for q in np.linspace(lo + 1, hi - 1, 9).astype(int):
        at = float(qf.dequantize_logit(q))  # a threshold exactly on q's dequantized value
        assert qf.threshold_q(at) == q
        assert qf.decide(q, at) and not qf.decide(q - 1, at)
        between = float(np.nextafter(np.float32(qf.dequantize_logit(q - 1)), np.float32(np.inf)))
        assert qf.threshold_q(between) == q and qf.decide(q, between) and not qf.decide(q - 1, between)
        np.testing.assert_array_equal(qf.decide(qs, at), qs >= q)  # one rule, every logit
    assert qf.threshold_q(float(qf.dequantize_logit(hi)) + 1.0) == hi + 1  # nothing accepted
    assert qf.threshold_q(float(qf.dequantize_logit(lo)) - 1.0) == lo  # everything accepted


def test_golden_logit_at_the_threshold(qf: QuantizedF, images: np.ndarray) -> None:
    qs = np.asarray(run_int8(qf, images))
    i = interior(qf, qs)
    q = int(qs[i])
    assert qf.decide(q, float(qf.dequantize_logit(q)))  # logit == threshold_q: accepted
    assert not qf.decide(q, float(qf.dequantize_logit(q + 1)))  # logit == threshold_q − 1: refused


def test_two_view_mean_at_the_threshold(images: np.ndarray) -> None:
    theta = torch.randn(F_SPEC.theta_size, generator=torch.Generator().manual_seed(5))
    qf = quantize(theta)
    q, qm = (int(v) for v in run_int8_views(qf, images[:1], views=2)[0])
    at = float(qf.dequantize_mean2(q, qm))
    assert qf.decide_mean2(q, qm, at) and not qf.decide_mean2(q - 1, qm, at)
    assert not qf.decide_mean2(q, qm, float(qf.dequantize_mean2(q + 1, qm)))


# ---- C, over the protocol ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def board16(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The host simulator built with PV_WITH_16X8=1: it runs int8 blobs (pv_decide) and 16x8 ones
    (pv_decide16)."""
    tmp = tmp_path_factory.mktemp("decide16")
    exe = build_host_sim(tmp / "build", extra_cflags="-DPV_WITH_16X8=1")
    with HostBoard(tmp / "store.bin", exe=exe) as url:
        yield url


def infer_with_threshold(url: str, qf: QuantizedF, threshold: float, image: np.ndarray):
    with SerialLink(url, timeout=10.0) as link:
        link.install_theta(pack_blob(qf, "edge", threshold))
        assert link.info().threshold_logit == np.float32(threshold)
        return link.infer(images_to_int8(image))


def test_device_decides_at_threshold_q(board16: str, qf: QuantizedF, images: np.ndarray) -> None:
    qs = np.asarray(run_int8(qf, images))
    i = interior(qf, qs)
    q = int(qs[i])
    at = infer_with_threshold(board16, qf, float(qf.dequantize_logit(q)), images[i])
    assert at.logit == q and at.logit16 == (qf.activations == "int16")
    assert at.decision, f"logit {q} == threshold_q refused: the device's rule is not q >= threshold_q"
    above = infer_with_threshold(board16, qf, float(qf.dequantize_logit(q + 1)), images[i])
    assert above.logit == q and not above.decision, f"logit {q} == threshold_q − 1 accepted"


def test_two_view_device_decides_at_threshold_q2(tmp_path: Path, images: np.ndarray) -> None:
    theta = torch.randn(F_SPEC.theta_size, generator=torch.Generator().manual_seed(5))
    qf = quantize(theta)
    exe = build_host_sim(tmp_path / "build", extra_cflags="-DPV_VIEWS=2u")
    q, qm = (int(v) for v in run_int8_views(qf, images[:1], views=2)[0])
    with HostBoard(tmp_path / "store.bin", exe=exe) as url:
        at = infer_with_threshold(url, qf, float(qf.dequantize_mean2(q, qm)), images[0])
        assert at.logits == (q, qm) and at.decision, "q1 + q2 == threshold_q2 refused"
        above = infer_with_threshold(url, qf, float(qf.dequantize_mean2(q + 1, qm)), images[0])
        assert above.logits == (q, qm) and not above.decision, "q1 + q2 == threshold_q2 − 1 accepted"
