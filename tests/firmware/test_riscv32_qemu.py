"""The RV32IMC firmware (firmware_templates/riscv32-qemu) on QEMU virt: the portable kernel and protocol on
a second instruction set, plain C (no DSP), bit-exact with the golden model over its UART.

Fast: the firmware builds for RV32IMC (the ELF says so) inside the Cortex-M budgets (64 KiB of flash,
48 KiB of static RAM with the stack it reserves). Slow: the README's chain on this board — a package photo
enrolled with the shipped hypernetwork, the emitted riscv32-qemu project built and booted twice, its 16x8 θ
sent over the serial link, parity on 200 views (100 % bit-exact with the golden model, decisions agreeing
with PyTorch float f), then the same board with the user's int8 θ on 40 of the views. The protocol
suite runs on this board too (tests/firmware/test_protocol.py, kind riscv32)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest

from host_tools.fw_bench import section_sizes
from host_tools.qemu import RISCV_DIR, RiscvQemuBoard, make

KIB = 1024


def _tools() -> None:
    missing = [t for t in ("riscv64-unknown-elf-gcc", "qemu-system-riscv32") if shutil.which(t) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run .ci/setup (gcc-riscv64-unknown-elf, "
                    "picolibc-riscv64-unknown-elf, qemu-system-misc)")


def test_rv32imc_elf_builds_inside_the_cortex_m_budgets(tmp_path: Path) -> None:
    _tools()
    make(RISCV_DIR, build_dir=tmp_path)  # the default build: int8 and 16x8 θ blobs
    elf = tmp_path / "pv_fw.elf"
    header = subprocess.run(["riscv64-unknown-elf-readelf", "-h", "-A", str(elf)], capture_output=True, text=True,
                            check=True).stdout
    assert "ELF32" in header and "RISC-V" in header
    assert "RVC, soft-float ABI" in header  # compressed instructions, no FPU
    assert "Entry point address:               0x80000000" in header  # where QEMU's -bios none jumps
    arch = re.search(r'Tag_RISCV_arch: "([^"]+)"', header)
    assert arch is not None
    base, *exts = arch.group(1).split("_")  # e.g. rv32i2p1_m2p0_c2p0_zmmul1p0 (zmmul: M's multiplies)
    assert base.startswith("rv32i") and {re.sub(r"\d+p\d+$", "", e) for e in exts} <= {"m", "c", "zmmul", "zicsr"}
    assert {"m2p0", "c2p0"} <= set(exts)  # RV32IMC: no A, F, D
    sec = section_sizes(elf, "riscv64-unknown-elf-size")
    flash = sec[".text"] + sec[".rodata"] + sec.get(".data", 0)
    static = sec.get(".data", 0) + sec[".bss"]
    assert flash < 64 * KIB, f"firmware flash {flash} B"
    assert static + sec[".stack"] <= 48 * KIB, f"static RAM {static} B + stack {sec['.stack']} B"
    assert sec[".theta_store"] >= 2 * (64 * KIB + 4 * KIB)  # two A/B slots of a full θ blob


@pytest.mark.slow
def test_emitted_project_parity_200_views_over_serial(tmp_path: Path) -> None:
    _tools()
    from codegen.emit import emit
    from host_tools.demo import ENROLLED, STRANGER, aligned_face, enroll_person, package_photo, views
    from host_tools.enroll import blob_from_file, blob_from_store, enroll
    from host_tools.parity import run_parity
    from host_tools.serial_link import SerialLink

    t0 = time.monotonic()
    users = tmp_path / "users"
    person = enroll_person(ENROLLED, package_photo(ENROLLED), users, None)
    res = emit(ENROLLED, "riscv32-qemu", out=tmp_path / "emit", users_root=users)
    make(res.out)  # the emitted project's own Makefile
    elf = res.out / "build" / "pv_fw.elf"
    ub16 = blob_from_file(res.out / f"{ENROLLED}_theta.bin")
    assert ub16.qf.activations == "int16"  # the target's default θ: 16x8
    faces = {name: aligned_face(package_photo(name)) for name in (ENROLLED, STRANGER)}
    n = 100
    images = np.concatenate([views(faces[ENROLLED], n, seed=101), views(faces[STRANGER], n, seed=202)])
    names = [f"{ENROLLED}/view{i:03d}" for i in range(n)] + [f"{STRANGER}/view{i:03d}" for i in range(n)]
    t_prep = time.monotonic() - t0

    with ExitStack() as stack:
        # no -icount: parity needs no instruction counts, and QEMU runs faster without
        urls = [stack.enter_context(RiscvQemuBoard(elf, icount=False)) for _ in range(2)]
        for url in urls:
            with SerialLink(url, timeout=5.0) as link:
                assert link.info().board == "rv32virt"
                enroll(link, ub16)
        r = run_parity(urls, ub16, person.theta, images, names, source="views", show_progress=False)
        t16 = time.monotonic() - t0 - t_prep
        assert r.n_images == 200
        assert r.bit_exact == r.n_images, f"device != golden on {r.n_images - r.bit_exact} of {r.n_images} views"
        assert r.golden_decision_agree == r.n_images
        assert r.agreement_pct >= 99.5, f"decision agreement with float f {r.agreement_pct:.2f} % < 99.5 %"
        dec = np.array([row["device_decision"] for row in r.images], bool)
        assert dec[:n].sum() >= 90 and dec[n:].sum() <= 10, (dec[:n].sum(), dec[n:].sum())

        # the same firmware runs the user's int8 θ bit-exact too
        ub8 = blob_from_store(ENROLLED, users, activations="int8")[0]
        pick = np.r_[0:20, n : n + 20]
        for url in urls:
            with SerialLink(url, timeout=5.0) as link:
                enroll(link, ub8)
        r8 = run_parity(urls, ub8, person.theta, images[pick], [names[i] for i in pick], source="views",
                        show_progress=False)
        assert r8.bit_exact == r8.n_images == 40, f"int8: device != golden on {40 - r8.bit_exact} views"
    print(f"\nrv32 parity: prepare {t_prep:.0f} s, 16x8 on 200 views {t16:.0f} s "
          f"({r.seconds:.0f} s on the link), int8 on 40 views {r8.seconds:.0f} s")
