"""Crafted θ blobs at every parameter bound (tests/helpers/extreme_blobs.py): the Python parser
(``pvcore.blob.unpack_blob``), the host simulator built with ASan + UBSan (``-fno-sanitize-recover=all``:
any undefined behaviour ends the process) and the Cortex-M4 firmware on QEMU (slow) give the same answer
for each — all refuse, or all accept and give the golden model's logits, bit for bit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from codegen.golden import images_to_int8, run_int8
from codegen.quantize import QuantConfig, quantize
from host_tools.qemu import HostBoard, QemuBoard, build_host_sim, build_qemu_firmware
from host_tools.serial_link import DeviceError, SerialLink
from pvcore.blob import BlobError, pack_blob, unpack_blob
from pvcore.spec import F_SPEC
from tests.helpers.extreme_blobs import cases_int8, cases_int16

WITH_16X8 = "-DPV_WITH_16X8=1"  # both kernels, so that the 16x8 cases reach theirs
SANITIZE = f"{WITH_16X8} -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
Answer = tuple[str, ...]  # ("refused",) or the logits as strings


@pytest.fixture(scope="module")
def crafted() -> dict[str, bytes]:
    """Every crafted blob by name, from two real θ: an int8 blob and a 16x8 one."""
    theta = torch.randn(F_SPEC.theta_size, generator=torch.Generator().manual_seed(5))
    int8 = pack_blob(quantize(theta), "extreme", 0.25)
    int16 = pack_blob(quantize(theta, cfg=QuantConfig(activations="int16")), "extreme16", 0.25)
    out = {"real int8 blob": int8, "real 16x8 blob": int16}
    out.update({name: make(int8) for name, make in cases_int8().items()})
    out.update({name: make(int16) for name, make in cases_int16().items()})
    return out


@pytest.fixture(scope="module")
def probe_images() -> np.ndarray:
    """A random image, a saturated one (every u = 255) and a dark one (every u = 0): the extremes of the input."""
    rng = np.random.default_rng(11)
    return np.stack([rng.integers(0, 256, (112, 112, 3), dtype=np.uint8),
                     np.full((112, 112, 3), 255, np.uint8), np.zeros((112, 112, 3), np.uint8)])


def python_answer(blob: bytes, images: np.ndarray) -> Answer:
    try:
        _, qf = unpack_blob(blob)
    except BlobError:
        return ("refused",)
    return tuple(str(int(v)) for v in run_int8(qf, images))


def board_answer(link: SerialLink, blob: bytes, images: np.ndarray) -> Answer:
    try:
        link.install_theta(blob)
    except DeviceError:
        return ("refused",)
    return tuple(str(link.infer(images_to_int8(img)).logit) for img in images)


def compare(url: str, board: HostBoard | QemuBoard, crafted: dict[str, bytes], images: np.ndarray) -> list[str]:
    """One row per case, 'case: python | board'; asserts that the two agree for every case."""
    rows, bad = [], []
    with SerialLink(url, timeout=20.0) as link:
        for name, blob in crafted.items():
            want = python_answer(blob, images)
            got = board_answer(link, blob, images)
            rows.append(f"{name}: python {' '.join(want)} | {board.name} {' '.join(got)}")
            if got != want:
                bad.append(rows[-1])
    print("\n".join(rows))
    console = board.console()
    assert "runtime error" not in console and "AddressSanitizer" not in console, console[-4000:]
    assert not bad, "answers differ:\n" + "\n".join(bad)
    return rows


def test_cases_cover_both_answers(crafted: dict[str, bytes], probe_images: np.ndarray) -> None:
    answers = {name: python_answer(blob, probe_images[:1]) for name, blob in crafted.items()}
    refused = [n for n, a in answers.items() if a == ("refused",)]
    accepted = [n for n, a in answers.items() if a != ("refused",)]
    assert len(refused) >= 30 and len(accepted) >= 30, (refused, accepted)
    for name in ("stem mult 2^31-1 shift 7", "every layer mult 2^31-1 shift 7", "threshold +FLT_MAX",
                 "stem bias -2^30", "16x8 every layer mult 2^30 shift -31",
                 # the L2 normalization's extremes: rows of zeros (acc 0) and saturated rows, both activations
                 "gdc mult 0 shift 0 (pool rows all zero)", "gdc zp 127 mult 2^31-1 shift 7 (pool |x - zp| up to 255)",
                 "16x8 pool mid scale in/64 (mult 2^30 shift 7)", "16x8 pool mid scale in*2^32 (mult 2^30 shift -31)",
                 "16x8 pool mid scale in*2^40 (mult 0 shift 0: rows all zero)",
                 "16x8 gdc mult 2^31-1 shift 7 (pool rows saturated)"):
        assert name in accepted
    # a left shift of the accumulator by more than 7: no multiplier the quantizer gives
    for name in ("stem shift 8", "stem mult 2^31-1 shift 30", "every layer mult 2^31-1 shift 30",
                 "stem shift 31", "stem mult 2^30-1", "stem bias +(2^30+1)", "threshold NaN", "stem weights -128",
                 "stem act_min > act_max", "16x8 stem zp 1",
                 # an L2 normalization's record other than the one its scales give
                 "pool (l2norm) mult 2^31-1", "pool (l2norm) out zp 1", "16x8 pool mult 2^31-1 shift 7",
                 "16x8 pool mid scale in/128 (mult 2^30 shift 8)"):
        assert name in refused


@pytest.fixture(scope="module")
def sanitized_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, HostBoard]]:
    exe = build_host_sim(tmp_path_factory.mktemp("host-asan"), extra_cflags=SANITIZE)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=1")
        mp.setenv("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        board = HostBoard(tmp_path_factory.mktemp("store") / "store.bin", exe=exe)
        url = board.start()
        try:
            yield url, board
        finally:
            board.stop()


def test_sanitized_host_agrees_with_python(sanitized_host: tuple[str, HostBoard], crafted: dict[str, bytes],
                                           probe_images: np.ndarray) -> None:
    url, board = sanitized_host
    compare(url, board, crafted, probe_images)
    assert board.proc is not None and board.proc.poll() is None, board.console()[-4000:]


@pytest.mark.slow
def test_qemu_agrees_with_python(qemu_elf: Path, crafted: dict[str, bytes], probe_images: np.ndarray,
                                 tmp_path: Path) -> None:
    board = QemuBoard(build_qemu_firmware(tmp_path / "build", extra_cflags=WITH_16X8))
    url = board.start()
    try:
        compare(url, board, crafted, probe_images[:2])
    finally:
        board.stop()
