"""Firmware benchmark on the emulated Cortex-M4 (QEMU mps2-an386) and RV32IMC (QEMU virt), ``-icount shift=0``.

Builds the firmware five times (``make DSP=0``: the plain C kernel; ``DSP=1``: the SMLAD kernel; ``DSP=1
BASE=…``: the SMLAD kernel with the shipped model's shared prefix compiled in and A/B slots for personal θ
blobs, see codegen/shared_prefix.py; ``DSP=1 EXTRA_CFLAGS=-DPV_VIEWS=2u``: two views per probe, the image
and its mirror; ``DSP=1 -DPV_WITH_16X8=1``: the 16x8 kernel, int16 activations, running a 16x8 θ),
boots each on QEMU, installs a θ over the serial link (a random full θ, 16x8 for the 16x8 build; for the
base build a personal blob of the shipped model), streams one face image over the UART (INFER,
checked against the golden model), reruns it on the board (BENCH) and reads the board's INFO. Printed and
written as JSON:

- instructions per inference and per MAC: BENCH's SysTick ticks at 25 MHz under ``-icount shift=0``, where
  one guest instruction takes 1 ns, so one tick = 40 instructions (BENCH starts on a tick edge: exact to
  one tick). An instruction count, not cycles of a real Cortex-M4;
- flash: .isr_vector + .text + .data (``arm-none-eabi-size -A``), the θ blob, their sum with one θ slot
  and with the two A/B slots (blob + slot header each; for the base build also the slots as the firmware
  reserves them, rounded up to the 4 KiB erase size);
- RAM: .data + .bss (every static buffer: kernel arena, frame buffer, UART ring, state) plus the stack
  high-water mark the firmware measures (the stack is painted at boot; INFO's stack_used); the
  reserved stack section is reported too.

Then TensorFlow Lite Micro on the same board (firmware_templates/cortex-m-qemu-tflm: the same protocol, θ
store and main loop, TFLM from the shared folder's third_party in place of the fixed kernel), running the
.tflite that codegen writes for the same θ (int8 and 16x8), with TFLM's reference kernels and with
CMSIS-NN's (for 16x8: grouped int16 convolutions on the reference kernel and the reference
FULLY_CONNECTED, see tflm-common/pv_tflm.cc), checked and measured as above; flash holds the .tflite
(compiled in), peak RAM TFLM's arena (static). Beside them, what TFLM's own CMSIS-NN routing does with the
16x8 model (the upstream defect: wrong logits from grouped int16 convolutions; CMSIS-NN's
FULLY_CONNECTED refuses per-channel int16 weights), reported, not measured.

Then the RV32IMC firmware (firmware_templates/riscv32-qemu: the same portable kernel and protocol, plain C,
no DSP) on QEMU virt, twice: ``PV_WITH_16X8=0`` running the int8 θ and ``PV_WITH_16X8=1`` running the 16x8
θ; the same checks and figures, where the board's ticks are ``minstret`` at a nominal 1 GHz (under
``-icount shift=0`` one instruction is 1 ns: ticks = instructions, exact) and flash is .text + .rodata +
.data (``riscv64-unknown-elf-size -A``).

Then the signature check (docs/signing.md) on the Cortex-M4: ``make sign-bench`` builds
cortex-m-qemu/sign_bench.c with the firmware's flags, which checks a signed personal θ (Monocypher's Ed25519
via pv_sign.c) once as given and once tampered, under ``-icount shift=0`` (instructions = SysTick ticks x 40)
and with the stack painted (its high-water mark); its flash is what pv_sign.o and Monocypher's objects put
into the base build's image (.text + .rodata + .data + .ARM.exidx of those objects, from the linker map),
its static RAM their .data + .bss.

    python -m host_tools.fw_bench [--out FILE] [--bench N] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from host_tools.qemu import QEMU_DIR, RISCV_DIR, QemuBoard, RiscvQemuBoard, build_tflm_firmware, make
from host_tools.serial_link import DeviceError, SerialLink
from pvcore.atomic import atomic_write_json
from pvcore.cli import fail, setup_logging
from pvcore.signed import SIGNED_OVERHEAD
from pvcore.store_format import SLOT_HEADER_BYTES
from pvcore.test_key import sign, sign_if_bare

log = logging.getLogger(__name__)

DEFAULT_OUT = QEMU_DIR / "build" / "fw_bench.json"
GOALS = {"instructions_per_mac_dsp": 1.5, "peak_ram_bytes": 48 * 1024, "flash_bytes": 64 * 1024}


SLOT_OVERHEAD = SLOT_HEADER_BYTES + SIGNED_OVERHEAD  # a θ slot: slot header + the signed θ's envelope
ERASE_BYTES = 4096  # the QEMU boards' θ store erase size (qemu-common/pv_qemu_main.c THETA_ERASE)
# The TFLite Micro rows: name, kernels (make KERNELS=), activations of the .tflite.
TFLM_BUILDS = (("tflm_ref", "ref", "int8"), ("tflm_cmsis", "cmsis", "int8"),
               ("tflm_ref_16x8", "ref", "int16"), ("tflm_cmsis_16x8", "cmsis", "int16"))


def build(dsp: bool, build_dir: Path, base_dir: Path | None = None, views: int = 1, with16: bool = False) -> Path:
    """Cross-compiles the board firmware with (DSP=1) or without the SMLAD kernel, with the shared
    prefix of ``base_dir/pv_base_theta.h`` compiled in when given, for ``views`` views per probe, and with
    the 16x8 kernel (PV_WITH_16X8=1) for ``with16``; returns the ELF."""
    if shutil.which("arm-none-eabi-gcc") is None:
        raise RuntimeError("arm-none-eabi-gcc not found: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi")
    make(QEMU_DIR, f"DSP={1 if dsp else 0}", *([f"BASE={base_dir}"] if base_dir else []), build_dir=build_dir,
         extra_cflags=" ".join([f"-DPV_VIEWS={views}u"] * (views != 1) + ["-DPV_WITH_16X8=1"] * with16))
    return build_dir / "pv_fw.elf"


def build_rv32(with16: bool, build_dir: Path) -> Path:
    """Cross-compiles the RV32IMC firmware with (PV_WITH_16X8=1) or without the 16x8 kernel; returns the ELF."""
    if shutil.which("riscv64-unknown-elf-gcc") is None:
        raise RuntimeError("riscv64-unknown-elf-gcc not found: apt-get install gcc-riscv64-unknown-elf "
                           "picolibc-riscv64-unknown-elf")
    make(RISCV_DIR, f"PV_WITH_16X8={int(with16)}", build_dir=build_dir)
    return build_dir / "pv_fw.elf"


def tflm_model_header(qf: Any, out_dir: Path) -> tuple[Path, int]:
    """The .tflite of ``qf`` as codegen.emit writes it for a TFLM firmware (the model header: user "fw-bench",
    threshold 0, as test_theta_and_image's blob), in out_dir; returns its path and the .tflite's size."""
    from codegen.c_header import render_model_header
    from codegen.emit import TFLM_ARENA_MARGIN
    from codegen.tflite_writer import build_tflite, tflm_arena_bytes

    model = build_tflite(qf, user_id="fw-bench", threshold=0.0)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"fw-bench_{qf.activations}_model.h"
    path.write_text(render_model_header(model, qf, "fw-bench", 0.0, tflm_arena_bytes(model) + TFLM_ARENA_MARGIN))
    return path, len(model)


def upstream_outcome(elf: Path, blob: bytes, image_u8: np.ndarray, golden: int) -> dict[str, Any]:
    """What a TFLM firmware answers over the UART where it may be wrong: its logit beside the golden model's,
    or the board's error."""
    from codegen.golden import images_to_int8

    with QemuBoard(elf) as url, SerialLink(url, timeout=10.0, signer=sign_if_bare) as link:
        link.install_theta(blob)
        try:
            r = link.infer(images_to_int8(image_u8))
        except DeviceError as e:
            return {"error": str(e), "golden_logit": golden, "bit_exact": False}
        return {"logit": r.logits[0], "golden_logit": golden, "bit_exact": r.logits == (golden,)}


def shared_prefix_theta(out_dir: Path) -> tuple[bytes, bytes, np.ndarray, int]:
    """The shipped model's base (written as out_dir/pv_base_theta.h), the personal blob of the θ it
    generates for a fixed random unit embedding (the arithmetic is what is measured, not a decision),
    one package face and its golden logit."""
    from codegen.golden import run_int8
    from codegen.quantize import package_faces
    from codegen.shared_prefix import make_base, make_personal, render_base_header, split_index
    from training.hypermodel import HyperModel

    m = HyperModel.load()
    split = split_index(str(m.meta["config"]["personal_from"]))
    e = np.random.default_rng(1).normal(size=(1, 128)).astype(np.float32)
    theta = m.theta(e / np.linalg.norm(e))[0]
    base, base_blob = make_base(theta, split, m.threshold)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "pv_base_theta.h").write_text(render_base_header(base_blob, base, split))
    face = package_faces()[:1]
    qf, blob = make_personal(theta, face[0], base, split, "fw-bench", m.threshold)
    return base_blob, blob, face[0], int(run_int8(qf, face)[0])


def section_sizes(elf: Path, size_tool: str = "arm-none-eabi-size") -> dict[str, int]:
    """Section name → size from ``size -A`` (``size_tool``: the ELF's toolchain's)."""
    out = subprocess.run([size_tool, "-A", str(elf)], capture_output=True, text=True, check=True).stdout
    sizes = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit():
            sizes[parts[0]] = int(parts[1])
    return sizes


def test_theta_and_image(activations: str = "int8") -> tuple[Any, bytes, np.ndarray, int]:
    """A random θ (seed 1) quantized by codegen (full int8, or 16x8 for ``activations`` "int16"), its blob,
    one package face (uint8) and its golden logit."""
    import torch

    from codegen.golden import run_int8
    from codegen.quantize import QuantConfig, package_faces, quantize
    from pvcore.blob import pack_blob
    from pvcore.spec import F_SPEC

    face = package_faces()[:1]
    qf = quantize(torch.randn(F_SPEC.theta_size, generator=torch.Generator().manual_seed(1)), enroll_u8=face[0],
                  cfg=QuantConfig(activations=activations))
    return qf, pack_blob(qf, "fw-bench", 0.0), face[0], int(run_int8(qf, face)[0])


def measure(elf: Path, blob: bytes, image_u8: np.ndarray, golden: tuple[int, ...], n_bench: int,
            board: type[QemuBoard] | type[RiscvQemuBoard] = QemuBoard) -> dict[str, Any]:
    """Boots one firmware on QEMU (``board``: the Cortex-M4's or the RV32IMC's) and measures it over the
    serial link. ``golden``: the golden model's logit of each view the firmware scores (the image; with
    two views, then its mirror)."""
    from codegen.golden import images_to_int8

    with board(elf) as url, SerialLink(url, timeout=10.0, signer=sign_if_bare) as link:  # the template's test key
        views = link.info().views
        if views != len(golden):
            raise RuntimeError(f"{elf}: INFO reports {views} views per probe, expected {len(golden)}")
        link.install_theta(blob)
        r = link.infer(images_to_int8(image_u8))
        if r.logits != golden:
            raise RuntimeError(f"{elf}: INFER over the UART gave logits {r.logits}, the golden model {golden}")
        b = link.bench(n_bench, per_inference_s=5.0 * len(golden))
        got = (b.logit16 if r.logit16 else b.logit,) if len(golden) == 1 else (b.logit, b.logit_mirror)
        if got != golden:
            raise RuntimeError(f"{elf}: BENCH gave logits {got}, the golden model {golden}")
        info = link.info()
        ns_per_tick = 1e9 / info.tick_hz  # -icount shift=0: 1 instruction = 1 ns
        return {
            "bench_min_ticks": b.min_ticks,
            "bench_max_ticks": b.max_ticks,
            "instructions_per_inference": round(b.min_ticks * ns_per_tick),
            "infer_uart_kernel_instructions": round(r.ticks * ns_per_tick),
            "stack_high_water_bytes": info.stack_used,
            "static_ram_reported_bytes": info.static_ram,
            "arena_bytes": info.arena_bytes,
            "bit_exact": True,
        }


SIGN_OBJECTS = ("pv_sign.o", "monocypher.o", "monocypher-ed25519.o")  # what checking signatures links in


def object_bytes(map_path: Path, objects: tuple[str, ...]) -> dict[str, int]:
    """Bytes that ``objects`` put into the linked image, per output kind (text, rodata, data, bss, ARM), from
    a GNU ld map file (only the sections kept after --gc-sections)."""
    import re

    kept = map_path.read_text().split("Linker script and memory map", 1)[1]
    out: dict[str, int] = {}
    pending = None
    for line in kept.splitlines():
        m = re.match(r"^ (\.\S+)\s*$", line)
        if m:
            pending = m.group(1)
            continue
        m = re.match(r"^ (\.\S+)?\s+0x[0-9a-f]+\s+0x([0-9a-f]+)\s+(\S+)$", line)
        section, pending = (m.group(1) or pending) if m else None, None
        if m and section and m.group(3).rsplit("/", 1)[-1] in objects:
            kind = section.split(".")[1]
            if kind in ("text", "rodata", "data", "bss", "ARM"):
                out[kind] = out.get(kind, 0) + int(m.group(2), 16)
    return out


def signature_check(build_dir: Path, blob: bytes, base_dir: Path) -> dict[str, Any]:
    """The cost of checking ``blob`` signed (a personal θ) on the Cortex-M4: instructions and stack of
    pv_envelope_verify (cortex-m-qemu/sign_bench.c), and the flash and static RAM the check adds to the
    shared-prefix firmware of ``base_dir`` — read from the linker map of that firmware built without
    link-time optimization (LTO merges the objects, so its map cannot say what each one adds)."""
    import struct

    make(QEMU_DIR, "sign-bench", build_dir=build_dir)
    make(QEMU_DIR, "DSP=1", f"BASE={base_dir}", "LTO=", build_dir=build_dir / "no-lto")
    firmware_map = build_dir / "no-lto" / "pv_fw.map"
    env = sign(blob)
    (build_dir / "len.bin").write_bytes(struct.pack("<I", len(env)))
    (build_dir / "env.bin").write_bytes(env)
    cmd = ["qemu-system-arm", "-M", "mps2-an386", "-display", "none", "-monitor", "none", "-serial", "stdio",
           "-kernel", str(build_dir / "pv_sign_bench.elf"), "-semihosting-config", "enable=on,target=native",
           "-icount", "shift=0", "-device", f"loader,file={build_dir / 'len.bin'},addr=0x21000000,force-raw=on",
           "-device", f"loader,file={build_dir / 'env.bin'},addr=0x21000010,force-raw=on"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, start_new_session=True)
    rows = {w[0]: (int(w[1]), int(w[2]), int(w[3])) for w in map(str.split, res.stdout.splitlines()) if len(w) == 4}
    if res.returncode != 0 or rows.get("verify", (1,))[0] != 0 or rows.get("tampered", (0,))[0] == 0:
        raise RuntimeError(f"sign_bench: exit {res.returncode}, {res.stdout!r} {res.stderr!r}: the check of a "
                           "signed θ must pass, and fail once tampered")
    obj = object_bytes(firmware_map, SIGN_OBJECTS)
    return {
        "signed_bytes": len(env),
        "instructions": rows["verify"][1] * 40,  # one SysTick tick at 25 MHz = 40 instructions
        "instructions_tampered": rows["tampered"][1] * 40,
        "stack_bytes": max(rows["verify"][2], rows["tampered"][2]),
        "flash_bytes": obj.get("text", 0) + obj.get("rodata", 0) + obj.get("data", 0) + obj.get("ARM", 0),
        "static_ram_bytes": obj.get("data", 0) + obj.get("bss", 0),
        "objects": list(SIGN_OBJECTS),
    }


def report_row(m: dict[str, Any], sec: dict[str, int], text: int, other_flash: int, theta_slot: int, macs: int,
               views: int) -> dict[str, Any]:
    """One build's report row: ``measure``'s figures ``m`` with the ELF's sections ``sec``. ``text``: the code
    and constants in flash (the toolchains name their sections differently), ``other_flash``: any further
    flash section (.ARM.exidx); the firmware's flash is those plus .data's initial values. ``theta_slot``:
    one θ slot's bytes (blob + slot header); the reserved figure rounds each slot up to the erase size."""
    fw_flash = text + sec.get(".data", 0) + other_flash
    static = sec.get(".data", 0) + sec.get(".bss", 0)
    return {
        **m,
        "views": views,
        "instructions_per_mac": round(m["instructions_per_inference"] / (macs * views), 3),
        "text_bytes": text,
        "data_bytes": sec.get(".data", 0),
        "bss_bytes": sec.get(".bss", 0),
        "stack_reserved_bytes": sec.get(".stack", 0),
        "firmware_flash_bytes": fw_flash,
        "flash_with_one_theta_bytes": fw_flash + theta_slot,
        "flash_with_ab_theta_bytes": fw_flash + 2 * theta_slot,
        "flash_with_ab_slots_reserved_bytes": fw_flash + 2 * (-(-theta_slot // ERASE_BYTES) * ERASE_BYTES),
        "static_ram_bytes": static,
        "peak_ram_bytes": static + m["stack_high_water_bytes"],
    }


def run(out: Path, n_bench: int = 3) -> dict[str, Any]:
    from codegen.golden import run_int8_views
    from pvcore.spec import F_SPEC

    qf, blob, image, golden = test_theta_and_image()
    qf16, blob16, _, golden16 = test_theta_and_image("int16")
    golden2 = tuple(int(v) for v in run_int8_views(qf, image[None], views=2)[0])
    macs = int(sum(F_SPEC.macs()))
    report: dict[str, Any] = {"macs": macs, "theta_blob_bytes": len(blob), "golden_logit": golden}
    with tempfile.TemporaryDirectory(prefix="pv-fw-bench-") as tmp:
        base_blob, p_blob, p_image, p_golden = shared_prefix_theta(Path(tmp) / "base")
        report["base_blob_bytes"], report["personal_blob_bytes"] = len(base_blob), len(p_blob)
        builds = (("plain", False, None, 1), ("dsp", True, None, 1), ("dsp_base", True, Path(tmp) / "base", 1),
                  ("dsp_2views", True, None, 2), ("dsp_16x8", True, None, 1))
        for name, dsp, base_dir, views in builds:
            with16 = name == "dsp_16x8"
            elf = build(dsp, Path(tmp) / name, base_dir, views, with16)
            sec = section_sizes(elf)
            if with16:
                m = measure(elf, blob16, image, (golden16,), n_bench)
                theta_slot = len(blob16) + SLOT_OVERHEAD
            elif base_dir is None:
                m = measure(elf, blob, image, (golden,) if views == 1 else golden2, n_bench)
                theta_slot = len(blob) + SLOT_OVERHEAD
            else:
                m = measure(elf, p_blob, p_image, (p_golden,), n_bench)
                theta_slot = len(p_blob) + SLOT_OVERHEAD
            text = sec.get(".isr_vector", 0) + sec.get(".text", 0)
            report[name] = report_row(m, sec, text, sec.get(".ARM.exidx", 0), theta_slot, macs, views)
        report["signature_check"] = signature_check(Path(tmp) / "sign", p_blob, Path(tmp) / "base")
        for name, kernels, acts in TFLM_BUILDS:
            header, model_bytes = tflm_model_header(qf16 if acts == "int16" else qf, Path(tmp) / "tflm")
            elf = build_tflm_firmware(header, kernels, Path(tmp) / name)
            sec = section_sizes(elf)
            b, g = (blob16, golden16) if acts == "int16" else (blob, golden)
            m = measure(elf, b, image, (g,), n_bench)
            text = sec.get(".isr_vector", 0) + sec.get(".text", 0)
            report[name] = {**report_row(m, sec, text, sec.get(".ARM.exidx", 0), len(b) + SLOT_OVERHEAD, macs, 1),
                            "tflite_bytes": model_bytes}
        # TFLM's own routing of the 16x8 model on CMSIS-NN (without pv_tflm.cc's workaround)
        header16 = Path(tmp) / "tflm" / "fw-bench_int16_model.h"
        upstream = "-DPV_TFLM_UPSTREAM_INT16_CONV"
        report["tflm_cmsis_16x8_upstream"] = {
            "conv_routed_by_tflm": upstream_outcome(
                build_tflm_firmware(header16, "cmsis", Path(tmp) / "up_conv", extra_cxxflags=upstream),
                blob16, image, golden16),
            "cmsis_fully_connected": upstream_outcome(
                build_tflm_firmware(header16, "cmsis", Path(tmp) / "up_fc", fc="cmsis"), blob16, image, golden16),
        }
        for name, with16 in (("rv32_int8", False), ("rv32_16x8", True)):
            elf = build_rv32(with16, Path(tmp) / name)
            sec = section_sizes(elf, "riscv64-unknown-elf-size")
            m = measure(elf, blob16 if with16 else blob, image, (golden16 if with16 else golden,), n_bench,
                        RiscvQemuBoard)
            theta_slot = len(blob16 if with16 else blob) + SLOT_OVERHEAD
            report[name] = report_row(m, sec, sec.get(".text", 0) + sec.get(".rodata", 0), 0, theta_slot, macs, 1)
    dsp = report["dsp"]
    report["goals"] = {
        "dsp_instructions_per_mac<=1.5": dsp["instructions_per_mac"] <= GOALS["instructions_per_mac_dsp"],
        "peak_ram<=48KiB": max(report[k]["peak_ram_bytes"] for k in ("plain", "dsp")) <= GOALS["peak_ram_bytes"],
        "flash_with_one_theta<=64KiB": dsp["flash_with_one_theta_bytes"] <= GOALS["flash_bytes"],
        "flash_with_ab_theta<=64KiB": dsp["flash_with_ab_theta_bytes"] <= GOALS["flash_bytes"],
        "base_build_flash_with_ab_slots_reserved<=64KiB":
            report["dsp_base"]["flash_with_ab_slots_reserved_bytes"] <= GOALS["flash_bytes"],
        "peak_ram_base_build<=48KiB": report["dsp_base"]["peak_ram_bytes"] <= GOALS["peak_ram_bytes"],
        "peak_ram_16x8_build<=48KiB": report["dsp_16x8"]["peak_ram_bytes"] <= GOALS["peak_ram_bytes"],
        "peak_ram_rv32_16x8_build<=48KiB": report["rv32_16x8"]["peak_ram_bytes"] <= GOALS["peak_ram_bytes"],
    }
    atomic_write_json(out, report)
    return report


def _print(report: dict[str, Any]) -> None:
    print(f"MACs per inference: {report['macs']:,}   θ blob: {report['theta_blob_bytes']:,} B   "
          f"shared prefix: base blob {report['base_blob_bytes']:,} B, "
          f"personal blob {report['personal_blob_bytes']:,} B")
    rows = [
        ("views per probe", "views"),
        ("instructions / inference", "instructions_per_inference"),
        ("instructions / MAC", "instructions_per_mac"),
        (".text (+vectors) B", "text_bytes"),
        (".data B", "data_bytes"),
        (".bss B", "bss_bytes"),
        ("kernel arena B", "arena_bytes"),
        ("stack high-water B", "stack_high_water_bytes"),
        ("peak RAM B", "peak_ram_bytes"),
        ("flash: firmware B", "firmware_flash_bytes"),
        ("flash: + one θ B", "flash_with_one_theta_bytes"),
        ("flash: + A/B θ B", "flash_with_ab_theta_bytes"),
        ("flash: + A/B slots (4 KiB) B", "flash_with_ab_slots_reserved_bytes"),
    ]
    for title, builds in (("Cortex-M4, QEMU mps2-an386", ("plain", "dsp", "dsp_base", "dsp_2views", "dsp_16x8")),
                          ("Cortex-M4, QEMU mps2-an386: TFLite Micro beside the fixed kernel (the same θ and image, "
                           "bit-exact)", ("dsp", "dsp_16x8", "tflm_ref", "tflm_cmsis", "tflm_ref_16x8",
                                          "tflm_cmsis_16x8")),
                          ("RV32IMC, QEMU virt (plain C, bit-exact)", ("rv32_int8", "rv32_16x8"))):
        print(title)
        w = max(14, *(len(b) + 2 for b in builds))
        print(f"{'':30s}" + "".join(f"{b:>{w}s}" for b in builds))
        for label, key in rows:
            vals = [report[b][key] for b in builds]
            spec = f"{w}.3f" if isinstance(vals[0], float) else f"{w},d"
            print(f"{label:30s}" + "".join(format(v, spec) for v in vals))
    for what, o in report["tflm_cmsis_16x8_upstream"].items():
        got = o.get("error") or f"logit {o['logit']} (golden {o['golden_logit']})"
        print(f"TFLM + CMSIS-NN 16x8 without pv_tflm.cc's routing, {what}: {got}"
              f"{'' if o['bit_exact'] else ' — NOT bit-exact'}")
    s = report["signature_check"]
    print(f"signature check (Ed25519, Monocypher; a signed personal θ of {s['signed_bytes']:,} B): "
          f"{s['instructions']:,} instructions ({s['instructions_tampered']:,} when tampered), "
          f"stack {s['stack_bytes']:,} B, flash {s['flash_bytes']:,} B, static RAM {s['static_ram_bytes']:,} B")
    for goal, ok in report["goals"].items():
        print(f"goal {goal}: {'met' if ok else 'NOT met'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m host_tools.fw_bench", description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON report (default {DEFAULT_OUT})")
    ap.add_argument("--bench", type=int, default=3, help="BENCH repetitions per build (default 3)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON (instead of the table)")
    args = ap.parse_args(argv)
    setup_logging(quiet=True)
    try:
        report = run(args.out, args.bench)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
        fail(str(e))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print(report)
    print(f"written: {args.out}", file=sys.stderr if args.json else sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
