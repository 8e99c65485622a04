"""The two-view firmware build (-DPV_VIEWS=2u) on the host simulator and on QEMU: every INFER runs f on the image
and on its mirror image (rows reversed as they stream in), both int8 logits bit-exact with the golden
model, the score and decision the device's mean rule (QuantizedF.dequantize_mean2 / decide_mean2)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from codegen.c_arch import kernel_arena_bytes
from codegen.golden import images_to_int8, run_int8_views
from host_tools.qemu import HostBoard, QemuBoard, build_host_sim, build_qemu_firmware
from host_tools.serial_link import SerialLink
from tests.firmware.conftest import User


def test_two_view_build_scores_the_image_and_its_mirror(
    tmp_path: Path, users: dict[str, User], images: np.ndarray
) -> None:
    exe = build_host_sim(tmp_path / "build", extra_cflags="-DPV_VIEWS=2u")
    board = HostBoard(tmp_path / "store.bin", exe=exe)
    url = board.start()
    try:
        with SerialLink(url, timeout=5.0) as link:
            info = link.info()
            assert info.views == 2 and info.arena_bytes == 2 * kernel_arena_bytes()
            alice = users["alice"]
            link.install_theta(alice.blob)
            want = run_int8_views(alice.qf, images[:3], views=2)
            assert not np.array_equal(want[:, 0], want[:, 1])  # the mirror is another view
            for img, (q, q_m) in zip(images[:3], want):
                r = link.infer(images_to_int8(img), chunk=1000)  # chunks that split image rows
                assert r.logits == (int(q), int(q_m))
                real = float(alice.qf.dequantize_mean2(q, q_m))
                assert r.logit_real == real
                assert r.score == pytest.approx(1 / (1 + math.exp(-real)), rel=1e-5)
                assert r.decision == bool(alice.qf.decide_mean2(q, q_m, alice.threshold))
            b = link.bench(2)
            assert (b.logit, b.logit_mirror) == (int(want[2, 0]), int(want[2, 1]))
    finally:
        board.stop()


@pytest.mark.slow
def test_two_view_build_on_qemu_bit_exact(tmp_path: Path, users: dict[str, User], images: np.ndarray) -> None:
    """The Cortex-M4 firmware (DSP kernel) built with two views, over the UART: both views' logits of
    every face equal the golden model's, the decision is the mean rule, for two users' θ."""
    elf = build_qemu_firmware(tmp_path / "build", extra_cflags="-DPV_VIEWS=2u")
    with QemuBoard(elf) as url, SerialLink(url, timeout=20.0) as link:
        assert link.info().views == 2
        for name in ("alice", "carol"):
            u = users[name]
            link.install_theta(u.blob)
            want = run_int8_views(u.qf, images[:8], views=2)
            for img, (q, q_m) in zip(images[:8], want):
                r = link.infer(images_to_int8(img))
                assert r.logits == (int(q), int(q_m))
                assert r.decision == bool(u.qf.decide_mean2(q, q_m, u.threshold))
