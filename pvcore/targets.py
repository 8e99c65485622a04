"""The one table of targets: every board a firmware project is rendered for, flashed to or booted on.

One record per target, as esptool keeps one chip definition per chip: ``codegen.project`` renders the
project from it, ``codegen.emit`` picks the default θ (activations, views) and checks what the target can
run, ``host_tools.flash`` writes an ESP-IDF build at the record's flash offsets (or boots a virtual
board), ``host_tools.qemu`` boots the virtual ones. A new board is a new record here, nowhere else.

Families:
- ``esp-idf``: an ESP-IDF project (ESP32, ESP32-S3, ESP32-C3), flashed with esptool; ``flash`` holds
  its flash map and θ partition.
- ``cortex-m-qemu``: the Cortex-M4 firmware on QEMU's mps2-an386 board (a Makefile project).
- ``riscv32-qemu``: the RV32IMC firmware on QEMU's virt board, machine mode (a Makefile project).
- ``host``: the POSIX simulator of a board (a Makefile project, a Linux process).

Kernels: ``fixed`` (the C kernel of firmware_templates/common, runs θ blobs) or ``tflm`` (TFLite Micro
runs the .tflite).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from pvcore.store_format import BLOB_MAX_BYTES, SLOT_HEADER_BYTES

FAMILIES = ("esp-idf", "cortex-m-qemu", "riscv32-qemu", "host")
VIRTUAL_FAMILIES = ("cortex-m-qemu", "riscv32-qemu", "host")  # boards this machine boots (host_tools.qemu)
KERNELS = ("fixed", "tflm")


@dataclass(frozen=True)
class FlashLayout:
    """Where an ESP-IDF build goes in flash (esptool offsets) and the θ partition its partitions.csv
    declares. The firmware's A/B θ store (firmware_templates/common/pv_store.h) splits the θ partition in
    two slots."""

    esptool_chip: str  # ESPLoader.CHIP_NAME the connected chip reports ("ESP32-S3")
    bootloader_offset: int  # 0x1000 on the ESP32, 0x0 on the newer chips
    partition_table_offset: int = 0x8000
    app_offset: int = 0x10000
    app_size: int = 0x180000
    theta_partition: str = "theta"
    theta_subtype: int = 0x40  # a custom data subtype
    theta_offset: int = 0x190000  # 64 KiB aligned (MMU page): memory-mapped in place
    # the largest blob + its slot header, rounded up to the 4 KiB erase size (PV_SLOT_BYTES of app_main.c.j2)
    theta_slot_bytes: int = -(-(BLOB_MAX_BYTES + SLOT_HEADER_BYTES) // 4096) * 4096

    @property
    def theta_size(self) -> int:
        return 2 * self.theta_slot_bytes


@dataclass(frozen=True)
class QemuBoot:
    """How ``host_tools.qemu`` boots a QEMU family's firmware: the emulator, its machine, the options that
    machine needs, and where the firmware reads images preloaded for INFER_BULK (its board.h
    BOARD_BULK_BASE / BOARD_BULK_BYTES: the two must agree)."""

    system: str  # the emulator's program
    package: str  # the Debian package that installs it (named in the error when it is missing)
    machine: str  # -M
    options: tuple[str, ...]  # the machine's own options, before the common ones
    port: str  # the template folder of the board's port (board.h, linker script), shared by its firmwares
    bulk_base: int
    bulk_bytes: int = 16 * 1024 * 1024


@dataclass(frozen=True)
class Target:
    name: str  # --target of every tool
    family: str  # FAMILIES
    kernel: str  # KERNELS
    chip: str | None  # ESP-IDF's IDF_TARGET and esptool's --chip; None for the virtual boards
    description: str
    firmware: str  # its template folder under firmware_templates/ (a TFLM project adds tflm-common/'s files)
    uart: int = 0
    baud: int = 921600
    # Views per probe the firmware scores by default (PV_VIEWS, firmware_templates/common/pv_protocol.h):
    # 2 = the mean of f on the image and its mirror (int8 decisions agree with float f more often, at
    # twice the MACs and a second 32 KB arena, which the ESP32s' ≥ 320 KB of SRAM has to spare); 1 keeps
    # the Cortex-M build in its 48 KB RAM budget. TFLM runs the .tflite once per image: 1 only.
    # (the default of an int8 build; a 16x8 build always runs one view)
    views: int = 1
    # The θ the project runs by default (codegen.emit --activations overrides): "int16", TFLM's 16x8, run
    # by the s16 kernels (common/kernels/pv_*_s16.c) on every fixed-kernel target: the scheme whose decisions
    # agree with float f on ≥ 99.5 % of faces for every user measured, full int8's not for all of them
    # (docs/results.md, "Device decisions vs float f"). Its arena, PV_KERNEL16_ARENA_BYTES (int8:
    # PV_KERNEL_ARENA_BYTES), fits the Cortex-M's 48 KB budget; the price is speed (≈ 4× int8's SMLAD
    # instructions: docs/results.md, "Firmware on the emulated Cortex-M4"). The TFLM projects run the int8
    # .tflite by default (cortex-m-qemu-tflm also the 16x8 one: tflm-common/pv_tflm.cc).
    activations: str = "int16"
    # The firmware compiles a model's shared prefix in (pv_base_theta.h, codegen.emit --shared-prefix): the
    # Makefile when the file is there, the ESP-IDF projects through pv_app_config.h. Not the -tflm ones:
    # their .tflite carries the whole model.
    shared_prefix: bool = True
    flash: FlashLayout | None = None  # esp-idf only
    qemu: QemuBoot | None = None  # the QEMU families only

    @property
    def virtual(self) -> bool:
        """A board this machine boots (host_tools.qemu), not one that is flashed."""
        return self.family in VIRTUAL_FAMILIES


_MPS2_AN386 = QemuBoot("qemu-system-arm", "qemu-system-arm", "mps2-an386",
                       # semihosting: the firmware's exit code (RESET mode 1) becomes QEMU's
                       ("-semihosting-config", "enable=on,target=native"),
                       port="cortex-m-qemu", bulk_base=0x21000000)  # PSRAM
_ESP32 = FlashLayout("ESP32", 0x1000)
_ESP32S3 = FlashLayout("ESP32-S3", 0x0)
_ESP32C3 = FlashLayout("ESP32-C3", 0x0)

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("esp32", "esp-idf", "fixed", "esp32", "ESP32 (Xtensa LX6), ESP-IDF project, fixed kernel", "esp32",
               views=2, flash=_ESP32),
        Target("esp32s3", "esp-idf", "fixed", "esp32s3", "ESP32-S3 (Xtensa LX7), ESP-IDF project, fixed kernel",
               "esp32", views=2, flash=_ESP32S3),
        Target("esp32c3", "esp-idf", "fixed", "esp32c3", "ESP32-C3 (RISC-V), ESP-IDF project, fixed kernel", "esp32",
               views=2, flash=_ESP32C3),
        Target("esp32-tflm", "esp-idf", "tflm", "esp32", "ESP32, ESP-IDF project, TFLite Micro on the .tflite",
               "esp32", activations="int8", shared_prefix=False, flash=_ESP32),
        Target("esp32s3-tflm", "esp-idf", "tflm", "esp32s3", "ESP32-S3, ESP-IDF project, TFLite Micro",
               "esp32", activations="int8", shared_prefix=False, flash=_ESP32S3),
        Target("esp32c3-tflm", "esp-idf", "tflm", "esp32c3", "ESP32-C3, ESP-IDF project, TFLite Micro",
               "esp32", activations="int8", shared_prefix=False, flash=_ESP32C3),
        Target("cortex-m-qemu", "cortex-m-qemu", "fixed", None,
               "Cortex-M4 on QEMU mps2-an386 (arm-none-eabi-gcc, Makefile)", "cortex-m-qemu", qemu=_MPS2_AN386),
        Target("cortex-m-qemu-tflm", "cortex-m-qemu", "tflm", None,
               "Cortex-M4 on QEMU mps2-an386, TFLite Micro on the .tflite (reference or CMSIS-NN kernels)",
               "cortex-m-qemu-tflm", activations="int8", shared_prefix=False, qemu=_MPS2_AN386),
        Target("riscv32-qemu", "riscv32-qemu", "fixed", None,
               "RV32IMC on QEMU virt (riscv64-unknown-elf-gcc + picolibc, Makefile)", "riscv32-qemu",
               shared_prefix=False,
               qemu=QemuBoot("qemu-system-riscv32", "qemu-system-misc", "virt",
                             ("-bios", "none"),  # no OpenSBI: the firmware starts in machine mode at 0x80000000
                             port="riscv32-qemu",
                             bulk_base=0x81000000)),  # the top 16 MiB of virt's default 128 MiB of RAM
        Target("host", "host", "fixed", None, "POSIX simulator of a board (gcc, Makefile)", "host",
               shared_prefix=False),
    )
}  # fmt: skip

# Old names still accepted on the command line (with a warning): name → the target's name now.
ALIASES = {"qemu": "cortex-m-qemu"}


class UnknownTarget(ValueError):
    pass


def target_names(families: tuple[str, ...] | None = None) -> list[str]:
    return [n for n, t in TARGETS.items() if families is None or t.family in families]


def get_target(name: str, families: tuple[str, ...] | None = None) -> Target:
    """The record of ``name`` (an alias warns and resolves); ``families``: the ones the caller can use."""
    if name in ALIASES:
        new = ALIASES[name]
        print(f"warning: target {name!r} is deprecated; use {new!r}", file=sys.stderr)
        name = new
    names = target_names(families)
    if name not in names:
        raise UnknownTarget(f"unknown target {name!r}; targets: {', '.join(names)}")
    return TARGETS[name]
