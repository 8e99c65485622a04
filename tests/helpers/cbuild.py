"""C builds for the tests, through the firmware's own build files: the source lists come from
``firmware_templates/common/sources.mk`` and the compiler flags from the boards' Makefiles, both read with
``make pv-print-VAR`` (a rule of sources.mk), so a test compiles exactly what a board compiles — no
private list of sources, no copied flags."""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from pvcore.paths import REPO_ROOT
from tests.helpers import in_ci

TEMPLATES = REPO_ROOT / "firmware_templates"
COMMON = TEMPLATES / "common"
HOST_DIR = TEMPLATES / "host"  # the POSIX host build: the flags of the host tests
QEMU_DIR = TEMPLATES / "cortex-m-qemu"  # the Cortex-M4 build: the ARM flags


def tool(name: str, hint: str) -> str:
    """Path of a build tool; a test without it fails in CI and is skipped on a developer machine."""
    path = shutil.which(name)
    if path is None:
        msg = f"{name} not installed ({hint})"
        if in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@functools.cache
def make_var(directory: Path, name: str, *assignments: str) -> tuple[str, ...]:
    """The words of variable ``name`` as ``directory``'s Makefile sets it (with ``assignments`` such as
    ``DSP=0`` on the command line)."""
    env = {k: v for k, v in os.environ.items() if k not in ("CFLAGS", "EXTRA_CFLAGS", "MAKEFLAGS")}
    res = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(directory), *assignments, f"pv-print-{name}"],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 0, f"make pv-print-{name} in {directory}: {res.stderr}"
    return tuple(shlex.split(res.stdout))


def kernel_sources() -> list[str]:
    """The blob parser and the fixed kernel (sources.mk PV_KERNEL_SRCS): what a kernel test links."""
    return list(make_var(HOST_DIR, "PV_KERNEL_SRCS"))


def core_sources() -> list[str]:
    """Every source of the portable core (sources.mk PV_CORE_SRCS)."""
    return list(make_var(HOST_DIR, "PV_CORE_SRCS"))


def host_flags() -> list[str]:
    """The host build's compiler flags (firmware_templates/host/Makefile: CFLAGS, PV_CFLAGS)."""
    return [*make_var(HOST_DIR, "CFLAGS"), *make_var(HOST_DIR, "PV_CFLAGS")]


def arm_flags(dsp: bool, extra: str = "") -> list[str]:
    """The Cortex-M4 firmware's compiler flags for its kernel (firmware_templates/cortex-m-qemu/Makefile CFLAGS
    and OPT, the optimization of the files that run per inference), with or without the SMLAD kernel and with
    ``extra`` as its EXTRA_CFLAGS."""
    args = (f"DSP={int(dsp)}", f"EXTRA_CFLAGS={extra}")
    return [*make_var(QEMU_DIR, "CFLAGS", *args), *make_var(QEMU_DIR, "OPT", *args)]


def arm_link_flags() -> list[str]:
    """The Cortex-M4 firmware's link flags, without its linker script (LINK_FLAGS)."""
    return list(make_var(QEMU_DIR, "LINK_FLAGS"))


def build_host(out: Path, main: Path, extra_flags: list[str] | None = None) -> Path:
    """Compile the test driver ``main`` with the blob parser and the kernel for the host, as the host build
    does; ``extra_flags`` after the build's own (e.g. -DPV_WITH_16X8=1)."""
    cc = make_var(HOST_DIR, "CC")[0]
    if shutil.which(cc) is None:
        pytest.fail(f"no host C compiler ({cc}): install build-essential")
    cmd = [cc, *host_flags(), *(extra_flags or []), *kernel_sources(), str(main), "-o", str(out), "-lm"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, f"host build failed:\n{' '.join(cmd)}\n{res.stderr}"
    return out


def run(binary: Path, *args: str | Path) -> subprocess.CompletedProcess:
    """Run a test driver, its output as text."""
    return subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True, timeout=300)
