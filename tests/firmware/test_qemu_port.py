"""The QEMU boards' ports agree with the host that boots them: the registry's QemuBoot.bulk_base and
bulk_bytes (where host_tools.qemu preloads INFER_BULK's images) are each board's BOARD_BULK_BASE and
BOARD_BULK_BYTES (qemu-common/pv_qemu_board.h), a region its linker script gives to nothing else. Read from
the sources: no toolchain needed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from host_tools.qemu import QemuBoard, RiscvQemuBoard, TflmQemuBoard
from pvcore.targets import TARGETS

TEMPLATES = Path(__file__).resolve().parents[2] / "firmware_templates"
QEMU_TARGETS = [name for name, t in TARGETS.items() if t.qemu is not None]


def c_define(header: Path, name: str) -> str:
    m = re.search(rf"^#define {name} (.+?)\s*(/\*.*)?$", header.read_text(), re.M)
    assert m, f"{header}: no #define {name}"
    return m.group(1)


def c_uint(text: str) -> int:
    return int(text.rstrip("uU"), 0)


def memories(ld: Path) -> list[tuple[str, int, int]]:
    """The MEMORY regions of a linker script: (name, origin, length)."""
    pat = r"^\s*(\w+)\s*\([rwx]+\)\s*:\s*ORIGIN\s*=\s*(0x[0-9A-Fa-f]+),\s*LENGTH\s*=\s*(0x[0-9A-Fa-f]+)"
    return [(n, int(o, 16), int(s, 16)) for n, o, s in re.findall(pat, ld.read_text(), re.M)]


@pytest.mark.parametrize("name", QEMU_TARGETS)
def test_bulk_region_is_the_boards(name: str) -> None:
    t = TARGETS[name]
    assert t.qemu is not None
    board_h = TEMPLATES / t.qemu.port / "board.h"  # the port the target's firmware is built on
    assert c_uint(c_define(board_h, "BOARD_BULK_BASE")) == t.qemu.bulk_base, name
    assert c_uint(c_define(board_h, "BOARD_BULK_BYTES")) == t.qemu.bulk_bytes, name
    (ld,) = (TEMPLATES / t.qemu.port).glob("*.ld")
    regions = memories(ld)
    assert regions, ld
    lo, hi = t.qemu.bulk_base, t.qemu.bulk_base + t.qemu.bulk_bytes
    for region, origin, length in regions:
        assert origin + length <= lo or origin >= hi, f"{ld}: {region} overlaps the bulk images"


def test_every_qemu_target_has_a_board_class() -> None:
    assert sorted(b.target.name for b in (QemuBoard, TflmQemuBoard, RiscvQemuBoard)) == sorted(QEMU_TARGETS)
