"""Firmware projects rendered with jinja2 from ``firmware_templates/``, one per target of the registry
(:data:`pvcore.targets.TARGETS`: the family, kernel, chip, flash layout and defaults of each board).

- ``esp32``, ``esp32s3``, ``esp32c3``: ESP-IDF projects (CMakeLists.txt, main/ with app_main + UART +
  θ partition, partitions.csv with a θ data partition, sdkconfig.defaults, idf_component.yml) built from
  ``firmware_templates/esp32/``; the ``-tflm`` variants swap the fixed kernel for TFLite Micro
  (``firmware_templates/tflm-common/pv_tflm.cc``, espressif/esp-tflite-micro).
- ``cortex-m-qemu``: the mps2-an386 firmware (``firmware_templates/cortex-m-qemu/``), a self-contained Makefile.
- ``cortex-m-qemu-tflm``: the same board with TFLite Micro on the .tflite (``tflm-common/``: the glue
  pv_tflm.cc that the ESP-IDF -tflm projects share, and tflm.mk, which builds TFLM from the shared folder's
  third_party sources: the project is built with ``TFLM_THIRD_PARTY=…/shared/third_party``).
- ``riscv32-qemu``: the RV32IMC firmware for QEMU virt (``firmware_templates/riscv32-qemu/``), a
  self-contained Makefile. Both QEMU boards are a port (board.c, board.h) of one main loop
  (``firmware_templates/qemu-common/``), copied beside it.
- ``host``: the POSIX simulator (``firmware_templates/host/main.c``), a self-contained Makefile.

Every project carries its own copy of the portable core (``common/``) under ``pv/`` with a ``pv_arch.h``
rendered from the spec, so it builds without this repository. ESP-IDF itself is not installable here:
the portable C of an emitted project is compiled with gcc and arm-none-eabi-gcc by the tests instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from codegen import third_party
from codegen.c_arch import render as render_arch_h
from codegen.c_header import c_ident, jinja_env
from pvcore import targets
from pvcore.paths import REPO_ROOT
from pvcore.spec import F_SPEC
from pvcore.targets import TARGETS, Target

TEMPLATES = REPO_ROOT / "firmware_templates"
COMMON = TEMPLATES / "common"
QEMU_COMMON = TEMPLATES / "qemu-common"  # the QEMU boards' main loop and the port it runs on (board.h)
QEMU_COMMON_FILES = ("pv_qemu_main.c", "pv_qemu_board.h")
TFLM_COMMON = TEMPLATES / "tflm-common"  # the TFLM glue every TFLM project shares, and the bare-metal build

TFLM_COMPONENT = ("espressif/esp-tflite-micro", "^1.3.3")


class ProjectError(ValueError):
    pass


def get_target(name: str) -> Target:
    try:
        return targets.get_target(name)
    except targets.UnknownTarget as e:
        raise ProjectError(f"{e} (--list-targets)") from None


@dataclass(frozen=True)
class Artifacts:
    """The per-user files a project can carry (file name → bytes); None where not emitted."""

    user_id: str
    threshold: float
    arch_hash: str
    theta_header: tuple[str, bytes] | None
    model_header: tuple[str, bytes] | None
    blob: tuple[str, bytes] | None
    tflite: tuple[str, bytes] | None
    base_header: tuple[str, bytes] | None = None  # pv_base_theta.h (codegen.shared_prefix), blob is then personal
    activations: str = "int8"  # "int16": a 16x8 θ blob (format 3): the firmware is built with PV_WITH_16X8=1
    trusted_keys: tuple[str, bytes] | None = None  # pv_trusted_keys.h (codegen.trusted_keys): a project needs it

    @property
    def with16(self) -> int:
        """PV_WITH_16X8 of the build (firmware_templates/common/pv_protocol.h)."""
        return int(self.activations == "int16")


def core_file_lists() -> dict[str, list[str]]:
    """The portable core's source lists of ``common/sources.mk`` (PV_LINK_FILES, PV_MODEL_FILES,
    PV_KERNEL_FILES: paths relative to common/), the one list the boards' Makefiles build from too."""
    text = (COMMON / "sources.mk").read_text().replace("\\\n", " ")
    return {m[1]: m[2].split() for m in re.finditer(r"^(PV_\w+_FILES)\s*:=(.*)$", text, re.M)}


def _core_files(kernel: str) -> dict[str, bytes]:
    """The portable core in one flat folder: the sources of sources.mk (minus the fixed kernel for TFLM,
    whose main/pv_tflm.cc takes its place), every header of common/ and a fresh pv_arch.h."""
    lists = core_file_lists()
    sources = lists["PV_LINK_FILES"] + lists["PV_MODEL_FILES"] + (lists["PV_KERNEL_FILES"] if kernel != "tflm" else [])
    headers = [p.relative_to(COMMON).as_posix() for p in COMMON.rglob("*.h") if p.name != "pv_arch.h"]
    out = {Path(rel).name: (COMMON / rel).read_bytes() for rel in sources + headers}
    assert len(out) == len(sources) + len(headers), "two files of the core share a name"
    out.update(third_party.sources())  # Monocypher (the signature check), fetched from PyPI
    out["monocypher-LICENSE.txt"] = (third_party.MONOCYPHER.folder / "LICENSE").read_bytes()
    out["pv_arch.h"] = render_arch_h(F_SPEC).encode()
    return dict(sorted(out.items()))


def check_views(target: Target, views: int | None) -> int:
    """The views per probe a project of ``target`` is built for: ``views``, or the target's default."""
    v = target.views if views is None else views
    if v not in (1, 2):
        raise ProjectError(f"views must be 1 or 2, not {v}")
    if v == 2 and target.kernel == "tflm":
        raise ProjectError(f"target {target.name} runs the .tflite in TFLite Micro, one view per image; "
                           "two views need the fixed kernel's streamed input (use the target without -tflm)")
    return v


def render_project(target: Target, art: Artifacts, out: Path, views: int | None = None) -> list[Path]:
    """Write the project of ``target`` into the (new, empty) folder ``out``; returns the files written.
    ``views``: PV_VIEWS of the build (None: the target's default)."""
    if target.kernel == "tflm" and art.model_header is None:
        raise ProjectError(f"target {target.name} runs the .tflite: emit it with --format tflite or all")
    views = check_views(target, views)
    if art.trusted_keys is None:
        raise ProjectError("a firmware project needs the keys it trusts (pv_trusted_keys.h from the keyring)")
    files: dict[str, bytes] = {}
    ident = c_ident(art.user_id)
    if target.family == "esp-idf":
        _esp_idf(target, art, ident, files, views)
    elif target.kernel == "tflm":
        _make_tflm(target, art, files)
    else:
        _make(target, art, files, views)
    # the keys the firmware trusts, beside the core that includes it (pv_sign.c)
    files[("main/pv/" if target.family == "esp-idf" else "pv/") + art.trusted_keys[0]] = art.trusted_keys[1]
    written = []
    for rel, data in files.items():
        p = out / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        written.append(p)
    return written


def _esp_idf(target: Target, art: Artifacts, ident: str, files: dict[str, bytes], views: int) -> None:
    src = TEMPLATES / target.firmware
    env = jinja_env(src)
    core = _core_files(target.kernel)
    flash = target.flash
    assert flash is not None, f"{target.name}: an esp-idf target without a flash layout"
    main_sources = ["app_main.c", "pv_app.c"] + [f"pv/{n}" for n in core if n.endswith(".c")]
    if target.kernel == "tflm":
        main_sources.append("pv_tflm.cc")
    ctx = dict(
        user_id=art.user_id, ident=ident, target=target.name, chip=target.chip, uart=target.uart,
        baud=target.baud, partition=flash.theta_partition, subtype=f"0x{flash.theta_subtype:x}",
        partition_offset=f"0x{flash.theta_offset:x}", partition_size=f"0x{flash.theta_size:x}",
        theta_slot_bytes=flash.theta_slot_bytes,
        app_size=f"0x{flash.app_size:x}", arch=F_SPEC.name, arch_hash=art.arch_hash,
        theta_header=art.theta_header[0] if art.theta_header else None,
        model_header=art.model_header[0] if art.model_header and target.kernel == "tflm" else None,
        blob_name=art.blob[0] if art.blob else None, board_name=(target.chip or "esp")[:7],
        base_header=art.base_header[0] if art.base_header else None,
        sources=main_sources, views=views, with16=art.with16,
        extra_cflags=f" -DPV_VIEWS={views}u" + (" -DPV_WITH_16X8=1" if art.with16 else "")
        + ("" if target.kernel == "fixed" else " -DPV_KERNEL_TFLM -Wno-missing-field-initializers"),
        components=[TFLM_COMPONENT] if target.kernel == "tflm" else [],
        main_stack=8192 if target.kernel == "fixed" else 12288,
        runtime_desc=("fixed 16x8 kernel" if art.with16 else "fixed int8 kernel") if target.kernel == "fixed"
        else "TFLite Micro",
        runtime_note=("`main/pv_tflm.cc` runs the .tflite in TFLite Micro in place of the fixed kernel."
                      if target.kernel == "tflm" else
                      "The 16x8 kernels (`pv/pv_*_s16.c` behind `pv/pv_kernel.c`, built with PV_WITH_16X8=1) run the "
                      "16x8 θ in place." if art.with16
                      else "The fixed int8 kernels (`pv/pv_*_s8.c` behind `pv/pv_kernel.c`) run θ in place."),
    )
    for tpl, rel in (("CMakeLists.txt.j2", "CMakeLists.txt"), ("partitions.csv.j2", "partitions.csv"),
                     ("sdkconfig.defaults.j2", "sdkconfig.defaults"), ("README.md.j2", "README.md"),
                     ("main/CMakeLists.txt.j2", "main/CMakeLists.txt"),
                     ("main/idf_component.yml.j2", "main/idf_component.yml"),
                     ("main/app_main.c.j2", "main/app_main.c"),
                     ("main/pv_app_config.h.j2", "main/pv_app_config.h")):
        files[rel] = env.get_template(tpl).render(**ctx).encode()
    for name in ("pv_app.c", "pv_app.h"):
        files[f"main/{name}"] = (src / "main" / name).read_bytes()
    if target.kernel == "tflm":
        files["main/pv_tflm.cc"] = (TFLM_COMMON / "pv_tflm.cc").read_bytes()
    for name, data in core.items():
        files[f"main/pv/{name}"] = data
    _put_artifacts(art, files, "main/", target.kernel)


def _put_artifacts(art: Artifacts, files: dict[str, bytes], header_dir: str, kernel: str) -> None:
    if art.theta_header:
        files[header_dir + art.theta_header[0]] = art.theta_header[1]
    if art.model_header:
        files[(header_dir if kernel == "tflm" else "") + art.model_header[0]] = art.model_header[1]
    for a in (art.blob, art.tflite):
        if a:
            files[a[0]] = a[1]
    if art.base_header:
        files[header_dir + art.base_header[0]] = art.base_header[1]


def _object_rules(linker_script: str) -> str:
    """The emitted QEMU boards' build: one object per source at two optimization levels (the kernel's files,
    ``{hot}`` when the Makefile is formatted, at OPT; the rest at OPT_COLD, as qemu-common/qemu_board.mk does),
    linked with ``linker_script``."""
    return (
        "# two levels: the fixed kernel (what runs per inference) for speed, the rest (serial link, θ store, blob\n"
        "# parser, signature check: run once per command or θ install) for size\n"
        "OPT ?= -O2\nOPT_COLD ?= -Os\nHOT := {hot}\nOBJS := $(patsubst %,$(BUILD)/obj/%.o,$(basename $(SRCS)))\n\n"
        "all: $(BUILD)/pv_fw.elf\n\n"
        "$(BUILD)/obj/%.o: %.c $(DEPS)\n\tmkdir -p $(dir $@)\n"
        "\t$(CC) $(CFLAGS) $(if $(filter $(notdir $<),$(HOT)),$(OPT),$(OPT_COLD)) -c -o $@ $<\n\n"
        "$(BUILD)/obj/%.o: %.S Makefile\n\tmkdir -p $(dir $@)\n\t$(CC) $(CFLAGS) -c -o $@ $<\n\n"
        f"$(BUILD)/pv_fw.elf: $(OBJS) {linker_script}\n\t$(CC) $(LDFLAGS) -o $@ $(OBJS) -lm\n\t$(SIZE) $@\n\n"
    )


MAKEFILES = {
    "cortex-m-qemu": """# Firmware of user "{user}" for QEMU mps2-an386
# (generated by codegen.emit from firmware_templates/cortex-m-qemu).
#   make          build/pv_fw.elf
#   make run      boot it (UART on stdio); θ: send {blob} over the link (python -m host_tools.enroll)
# With pv_base_theta.h here (codegen.emit --shared-prefix), the model's shared prefix is compiled in and
# the A/B θ slots hold personal blobs (the build that fits 64 KB of flash).
CROSS ?= arm-none-eabi-
CC := $(CROSS)gcc
OBJCOPY := $(CROSS)objcopy
SIZE := $(CROSS)size
BUILD ?= build
# views per probe: 1 = one pass of f; 2 = the mean of f on the image and its mirror (2x MACs, +32 KB RAM)
PV_VIEWS ?= {views}
# 1: the 16x8 kernel too (θ blobs of format 3; +5 KB RAM: the arena holds int16 activations)
PV_WITH_16X8 ?= {with16}
ARCH_FLAGS := -mcpu=cortex-m4 -mthumb -mfpu=fpv4-sp-d16 -mfloat-abi=hard
# link-time optimization (LTO= builds without): part of what fits the shared-prefix build in 64 KiB
LTO ?= -flto
CFLAGS := $(ARCH_FLAGS) -g -std=c99 -Wall -Wextra -Werror -ffreestanding -ffunction-sections \\
  -fdata-sections -DPV_USE_DSP $(if $(wildcard pv_base_theta.h),-DPV_BASE_THETA) -DPV_VIEWS=$(PV_VIEWS)u \\
  -DPV_WITH_16X8=$(PV_WITH_16X8) -Ipv -I. $(LTO) \\
  $(EXTRA_CFLAGS)
LDFLAGS := $(ARCH_FLAGS) -nostartfiles --specs=nano.specs --specs=nosys.specs -Wl,--gc-sections -T mps2_an386.ld \\
  $(LTO)
SRCS := startup.c board.c pv_qemu_main.c $(wildcard pv/*.c)
DEPS := $(wildcard pv/*.h) $(wildcard pv_base_theta.h) board.h pv_qemu_board.h Makefile
""" + _object_rules("mps2_an386.ld") + """run: $(BUILD)/pv_fw.elf
\tqemu-system-arm -M mps2-an386 -display none -monitor none -kernel $< -serial stdio \\
\t  -semihosting-config enable=on,target=native -icount shift=0

clean:
\trm -rf $(BUILD)

.PHONY: all run clean
""",
    "riscv32-qemu": """# Firmware of user "{user}" for QEMU virt, RV32IMC in machine mode
# (generated by codegen.emit from firmware_templates/riscv32-qemu).
#   make          build/pv_fw.elf
#   make run      boot it (UART on stdio); θ: send {blob} over the link (python -m host_tools.enroll)
CROSS ?= riscv64-unknown-elf-
CC := $(CROSS)gcc
SIZE := $(CROSS)size
BUILD ?= build
# views per probe: 1 = one pass of f; 2 = the mean of f on the image and its mirror (2x MACs, +32 KB RAM)
PV_VIEWS ?= {views}
# 1: the 16x8 kernel too (θ blobs of format 3; +5 KB RAM: the arena holds int16 activations)
PV_WITH_16X8 ?= {with16}
# -misa-spec=2.2: the CSR instructions belong to the base ISA, and picolibc's rv32im multilib is picked
ARCH_FLAGS := -march=rv32imc -misa-spec=2.2 -mabi=ilp32
CFLAGS := $(ARCH_FLAGS) -g -std=c99 -Wall -Wextra -Werror -ffreestanding -ffunction-sections \
  -fdata-sections --specs=picolibc.specs -DPV_VIEWS=$(PV_VIEWS)u -DPV_WITH_16X8=$(PV_WITH_16X8) -Ipv -I. \
  $(EXTRA_CFLAGS)
LDFLAGS := $(ARCH_FLAGS) -nostartfiles --specs=picolibc.specs -Wl,--gc-sections -T riscv32_virt.ld
SRCS := startup.S board.c pv_qemu_main.c $(wildcard pv/*.c)
DEPS := $(wildcard pv/*.h) board.h pv_qemu_board.h Makefile
""" + _object_rules("riscv32_virt.ld") + """run: $(BUILD)/pv_fw.elf
\tqemu-system-riscv32 -M virt -bios none -nographic -kernel $< -icount shift=0

clean:
\trm -rf $(BUILD)

.PHONY: all run clean
""",
    "host": """# Host simulator of a board for user "{user}" (generated by codegen.emit from firmware_templates/host).
#   make                        build/pv_host
#   build/pv_host --socket 0    serve the protocol on 127.0.0.1; θ: send {blob} (python -m host_tools.enroll)
BUILD ?= build
# views per probe: 1 = one pass of f; 2 = the mean of f on the image and its mirror (2x MACs, +32 KB RAM)
PV_VIEWS ?= {views}
# 1: the 16x8 kernel too (θ blobs of format 3; +5 KB RAM: the arena holds int16 activations)
PV_WITH_16X8 ?= {with16}
CFLAGS ?= -O2 -g
PV_CFLAGS := -std=c99 -Wall -Wextra -Werror -D_XOPEN_SOURCE=700 -D_DEFAULT_SOURCE -DPV_VIEWS=$(PV_VIEWS)u \\
  -DPV_WITH_16X8=$(PV_WITH_16X8) -Ipv
SRCS := main.c $(wildcard pv/*.c)

all: $(BUILD)/pv_host

$(BUILD)/pv_host: $(SRCS) $(wildcard pv/*.h)
\tmkdir -p $(BUILD)
\t$(CC) $(CFLAGS) $(PV_CFLAGS) $(EXTRA_CFLAGS) -o $@ $(SRCS) -lm

clean:
\trm -rf $(BUILD)

.PHONY: all clean
""",
}


def _make(target: Target, art: Artifacts, files: dict[str, bytes], views: int) -> None:
    src = TEMPLATES / target.firmware
    board_files = {"cortex-m-qemu": ["startup.c", "board.c", "board.h", "mps2_an386.ld"],
                   "riscv32-qemu": ["startup.S", "board.c", "board.h", "riscv32_virt.ld"]}
    for name in board_files.get(target.family, ["main.c"]):
        files[name] = (src / name).read_bytes()
    if target.family in board_files:  # a QEMU board: its port runs the shared main loop
        for name in QEMU_COMMON_FILES:
            files[name] = (QEMU_COMMON / name).read_bytes()
    for name, data in _core_files("fixed").items():
        files[f"pv/{name}"] = data
    blob = art.blob[0] if art.blob else "the θ blob (--format blob)"
    hot = " ".join(Path(f).name for f in core_file_lists()["PV_KERNEL_FILES"])  # the -O2 files, as the boards build
    text = MAKEFILES[target.family].format(user=art.user_id, blob=blob, views=views, with16=art.with16, hot=hot)
    files["Makefile"] = text.encode()
    _put_artifacts(art, files, "", "fixed")


TFLM_MAKEFILE = """# TFLite Micro firmware of user "{user}" for QEMU mps2-an386 (Cortex-M4F)
# (generated by codegen.emit from firmware_templates/cortex-m-qemu-tflm): the board port of cortex-m-qemu,
# the serial protocol and θ store under pv/, and tflm/pv_tflm.cc running {model} in TensorFlow Lite Micro.
#   make TFLM_THIRD_PARTY=DIR   build/pv_fw.elf; DIR: the third_party folder of the shared data (TFLM,
#                               CMSIS-NN; FACEVERIF_SHARED=… names the shared folder instead)
#   make ... KERNELS=cmsis      CMSIS-NN's kernels (default {kernels})
#   make run                    boot it (UART on stdio); θ: send {blob} over the link (python -m host_tools.enroll)
# TFLM itself is compiled once into TFLM_CACHE (tflm/tflm.mk). The model is {kind}.
CROSS ?= arm-none-eabi-
BUILD ?= build
KERNELS ?= {kernels}
TFLM_THIRD_PARTY ?= $(if $(FACEVERIF_SHARED),$(FACEVERIF_SHARED)/third_party)
TFLM_CACHE ?= $(CURDIR)/.tflm-cache
ARCH_FLAGS := -mcpu=cortex-m4 -mthumb -mfpu=fpv4-sp-d16 -mfloat-abi=hard
TFLM_CONV := $(KERNELS)
# {fc_note}
TFLM_FC ?= {fc}
TFLM_ARCH_FLAGS := $(ARCH_FLAGS)
include tflm/tflm.mk
.DEFAULT_GOAL := all

CC := $(CROSS)gcc
CXX := $(CROSS)g++
OBJCOPY := $(CROSS)objcopy
SIZE := $(CROSS)size
PV_DEFS := -DPV_KERNEL_TFLM -DPV_VIEWS=1u
CFLAGS := $(ARCH_FLAGS) -O2 -g -std=c99 -Wall -Wextra -Werror -ffreestanding -ffunction-sections \\
  -fdata-sections $(PV_DEFS) -Ipv -I. $(EXTRA_CFLAGS)
CXXFLAGS := $(TFLM_CXXFLAGS) -fno-use-cxa-atexit -g -Wall -Wextra -Werror -Wno-unused-parameter $(PV_DEFS) \\
  -DPV_MODEL_HEADER='"{model}"' -Ipv -I. $(EXTRA_CXXFLAGS)
LDFLAGS := $(ARCH_FLAGS) -nostartfiles --specs=nano.specs --specs=nosys.specs -Wl,--gc-sections -T mps2_an386.ld
C_SRCS := startup.c board.c pv_qemu_main.c $(wildcard pv/*.c)
CXX_SRCS := tflm/pv_tflm.cc tflm/pv_tflm_debug_log.cc
OBJS := $(addprefix $(BUILD)/obj/,$(C_SRCS:.c=.o) $(CXX_SRCS:.cc=.o))
HDRS := $(wildcard pv/*.h) board.h pv_qemu_board.h {model}

all: $(BUILD)/pv_fw.elf

$(BUILD)/obj/%.o: %.c $(HDRS) Makefile
\t@mkdir -p $(dir $@)
\t$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/obj/%.o: %.cc $(HDRS) Makefile
\t@mkdir -p $(dir $@)
\t$(CXX) $(CXXFLAGS) -c -o $@ $<

$(BUILD)/pv_fw.elf: $(OBJS) $(TFLM_KERNEL_OBJS) $(TFLM_LIB) mps2_an386.ld
\t$(CXX) $(LDFLAGS) -o $@ $(OBJS) $(TFLM_KERNEL_OBJS) $(TFLM_LIB) -lm
\t$(SIZE) $@

run: $(BUILD)/pv_fw.elf
\tqemu-system-arm -M mps2-an386 -display none -monitor none -kernel $< -serial stdio \\
\t  -semihosting-config enable=on,target=native -icount shift=0

clean:
\trm -rf $(BUILD)

.PHONY: all run clean
"""


def _make_tflm(target: Target, art: Artifacts, files: dict[str, bytes]) -> None:
    """A bare-metal TFLM project (cortex-m-qemu-tflm): the board port and main loop of cortex-m-qemu, the core
    without the fixed kernel under pv/, the glue and the TFLM build under tflm/, the model header."""
    assert art.model_header is not None
    board = TEMPLATES / "cortex-m-qemu"
    for name in ("startup.c", "board.c", "board.h", "mps2_an386.ld"):
        files[name] = (board / name).read_bytes()
    for name in QEMU_COMMON_FILES:
        files[name] = (QEMU_COMMON / name).read_bytes()
    for name in ("pv_tflm.cc", "pv_tflm_debug_log.cc", "tflm.mk"):
        files[f"tflm/{name}"] = (TFLM_COMMON / name).read_bytes()
    for name, data in _core_files("tflm").items():
        files[f"pv/{name}"] = data
    int16 = art.activations == "int16"
    files["Makefile"] = TFLM_MAKEFILE.format(
        user=art.user_id, model=art.model_header[0], blob=art.blob[0] if art.blob else "the θ blob (--format blob)",
        kernels="ref", kind="16x8 (int16 activations)" if int16 else "int8",
        fc="ref" if int16 else "$(KERNELS)",
        fc_note=("16x8: the reference FULLY_CONNECTED with either KERNELS (CMSIS-NN's refuses per-channel int16 "
                 "weights)" if int16 else "the FULLY_CONNECTED kernel: KERNELS'"),
    ).encode()
    _put_artifacts(art, files, "", "tflm")


def list_targets() -> str:
    w = max(len(n) for n in TARGETS)

    def default(t: Target) -> str:
        if t.activations == "int16":
            return (f"default 16x8 θ, 1 view per probe (--activations int8: {t.views} view"
                    f"{'s' if t.views > 1 else ''} per probe)")
        return f"int8 θ, {t.views} view{'s' if t.views > 1 else ''} per probe"

    return "\n".join(f"{t.name:<{w}}  {t.description}; {default(t)}" for t in TARGETS.values())
