"""Regression guards on the default firmware build (16x8, SMLAD, Cortex-M4 on QEMU mps2-an386), measured as
``python -m host_tools.fw_bench`` measures it: the same build, θ and image. Under ``-icount shift=0`` the
instruction count is exact for a given binary, so the guards sit close to the measured figures; a real
change of the kernel moves them, and then docs/results.md and these figures move together."""

from __future__ import annotations

from pathlib import Path

import pytest

from host_tools import fw_bench
from pvcore.spec import F_SPEC

# Measured (docs/results.md, "Firmware on the emulated Cortex-M4", build dsp_16x8)
MEASURED_INSTRUCTIONS = 4_523_280  # 1.496 per MAC (spec v4; spec v3: 4,888,880, 1.492)
# bytes: .data + .bss + stack high-water (the deepest of the inference and COMMIT's Ed25519 check, docs/signing.md)
MEASURED_PEAK_RAM = 47_536
INSTRUCTION_TOLERANCE = 0.01  # a compiler flag or a reordered loop, not a change of algorithm
RAM_TOLERANCE = 256  # bytes: the stack high-water moves by an interrupt frame (104 B) with UART timing


@pytest.mark.slow
def test_default_build_instructions_and_peak_ram(tmp_path: Path) -> None:
    _, blob16, image, golden16 = fw_bench.test_theta_and_image("int16")
    elf = fw_bench.build(True, tmp_path / "dsp_16x8", with16=True)
    m = fw_bench.measure(elf, blob16, image, (golden16,), n_bench=2)  # raises unless bit-exact
    sec = fw_bench.section_sizes(elf)
    row = fw_bench.report_row(m, sec, sec.get(".isr_vector", 0) + sec.get(".text", 0), sec.get(".ARM.exidx", 0),
                              len(blob16) + fw_bench.SLOT_OVERHEAD, int(sum(F_SPEC.macs())), 1)
    instr = row["instructions_per_inference"]
    assert abs(instr - MEASURED_INSTRUCTIONS) <= INSTRUCTION_TOLERANCE * MEASURED_INSTRUCTIONS, (
        f"{instr:,} instructions per inference ({row['instructions_per_mac']} per MAC), measured "
        f"{MEASURED_INSTRUCTIONS:,}: update docs/results.md and this guard if the change is meant")
    assert abs(row["peak_ram_bytes"] - MEASURED_PEAK_RAM) <= RAM_TOLERANCE, row
    assert row["peak_ram_bytes"] <= fw_bench.GOALS["peak_ram_bytes"]
