"""Fixtures for the firmware tests: real θ blobs from codegen, builds, and virtual boards.

Boards come in three kinds with the same C core: the host simulator (fast, a Linux process), the
Cortex-M4 firmware on QEMU mps2-an386 and the RV32IMC firmware on QEMU virt (both marked slow). Protocol
tests run on all three.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from codegen.quantize import quantize
from host_tools.qemu import (
    HostBoard,
    QemuBoard,
    RiscvQemuBoard,
    build_host_sim,
    build_qemu_firmware,
    build_riscv_firmware,
)
from pvcore.blob import pack_blob
from pvcore.qtheta import QuantizedF
from pvcore.spec import F_SPEC

HOST_BUILD = Path(__file__).resolve().parents[2] / "firmware_templates" / "host" / "build"


@dataclass(frozen=True)
class User:
    name: str
    qf: QuantizedF
    threshold: float
    blob: bytes


def _user(name: str, seed: int, threshold: float) -> User:
    theta = torch.randn(F_SPEC.theta_size, generator=torch.Generator().manual_seed(seed))
    qf = quantize(theta)
    return User(name, qf, threshold, pack_blob(qf, name, threshold))


@pytest.fixture(scope="session")
def users() -> dict[str, User]:
    """Three users' real θ blobs (random θ, quantized by codegen, packed by pvcore.blob)."""
    return {u.name: u for u in (_user("alice", 1, 0.5), _user("bob", 2, -0.25), _user("carol", 3, 0.0))}


@pytest.fixture(scope="session")
def images() -> np.ndarray:
    """uint8 RGB test images (N, 112, 112, 3): two random ones and a smooth gradient."""
    rng = np.random.default_rng(7)
    rand = rng.integers(0, 256, (2, 112, 112, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:112, 0:112]
    grad = np.stack([xx * 2, yy * 2, (xx + yy)], axis=-1).clip(0, 255).astype(np.uint8)[None]
    return np.concatenate([rand, grad])


@pytest.fixture(scope="session")
def host_exe() -> Path:
    return build_host_sim()


@pytest.fixture(scope="session")
def qemu_elf() -> Path:
    if shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None:
        pytest.fail("qemu-system-arm / arm-none-eabi-gcc missing: run .ci/setup (apt packages)")
    return build_qemu_firmware()


@pytest.fixture(scope="session")
def rv32_elf() -> Path:
    """The RV32IMC firmware as its Makefile builds it by default (int8 and 16x8 θ blobs)."""
    if shutil.which("qemu-system-riscv32") is None or shutil.which("riscv64-unknown-elf-gcc") is None:
        pytest.fail("qemu-system-riscv32 / riscv64-unknown-elf-gcc missing: run .ci/setup (apt packages)")
    return build_riscv_firmware()


@dataclass
class BoardHandle:
    kind: str
    url: str
    board: HostBoard | QemuBoard | RiscvQemuBoard


def start_board(
    kind: str, tmp: Path, request: pytest.FixtureRequest, bulk: Path | None = None
) -> BoardHandle:
    if kind == "host":
        b: HostBoard | QemuBoard | RiscvQemuBoard = HostBoard(
            tmp / "store.bin", exe=request.getfixturevalue("host_exe"), bulk=bulk
        )
    elif kind == "riscv32":
        b = RiscvQemuBoard(request.getfixturevalue("rv32_elf"), bulk=bulk)
    else:
        b = QemuBoard(request.getfixturevalue("qemu_elf"), bulk=bulk)
    url = b.start()
    return BoardHandle(kind, url, b)


BOARD_KINDS = ["host", pytest.param("qemu", marks=pytest.mark.slow), pytest.param("riscv32", marks=pytest.mark.slow)]


@pytest.fixture(scope="module", params=BOARD_KINDS)
def board(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BoardHandle]:
    """One board per module and kind (state carries over between the module's tests)."""
    h = start_board(request.param, tmp_path_factory.mktemp(f"board-{request.param}"), request)
    try:
        yield h
    finally:
        h.board.stop()


@pytest.fixture(params=BOARD_KINDS)
def fresh_board(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BoardHandle]:
    """A newly booted board with an empty θ store."""
    h = start_board(request.param, tmp_path, request)
    try:
        yield h
    finally:
        h.board.stop()


def run_c_tool(exe: Path, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(exe), *args], input=stdin, capture_output=True, timeout=300)
