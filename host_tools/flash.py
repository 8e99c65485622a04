"""Put firmware (and θ) on a board: ESP32 family via esptool's Python API, or boot a virtual board.

    python -m host_tools.flash --target esp32 --port /dev/ttyUSB0 --build out/alice/esp32/build
    python -m host_tools.flash --target esp32 --port /dev/ttyUSB0 --build DIR --theta-only --user alice
    python -m host_tools.flash --target cortex-m-qemu [--build DIR | --elf FILE]   # prints socket://…
    python -m host_tools.flash --target riscv32-qemu [--build DIR | --elf FILE]    # the RV32IMC board
    python -m host_tools.flash --target host [--store FILE]                        # the host simulator

ESP32 family (the ``esp-idf`` targets of ``pvcore.targets``, each with its chip's flash layout): the ESP-IDF
build folder's bootloader, partition table and app are written at the chip's offsets — bootloader 0x1000 on
the ESP32, 0x0 on the ESP32-S3/-C3; partition table 0x8000; app 0x10000. When the build folder has ESP-IDF's
``flasher_args.json`` its offsets and flash settings are used (and checked against the table). The θ
partition's offset and size come from the build's ``partition_table/partition-table.bin`` or from the
project's ``partitions.csv`` (``--partitions``; empty offsets are placed as ESP-IDF's gen_esp32part does).

``--theta-only`` writes only the θ partition: an image of the firmware's A/B θ store
(``firmware_templates/common/pv_store.h``) with the user's blob committed in slot A (counter 1) and
slot B erased — :func:`theta_partition_image`. ``--merged FILE`` writes, instead of flashing, one
image of everything at its offset (``esptool merge-bin``): the offline check of the flash plan.

ESP-IDF is not installed here, so an ESP32 app cannot be built (nor ``elf2image``'d) on this machine;
the flash path is exercised offline (plan, θ partition image, merge-bin) and against missing, busy and
silent ports. The virtual boards are ``host_tools.qemu``'s.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pvcore.cli import add_port_args, add_target_arg, add_user_store_args, fail, setup_logging
from pvcore.store_format import SLOT_HEADER_BYTES, pack_slot_header
from pvcore.targets import TARGETS, FlashLayout, Target

if TYPE_CHECKING:
    from host_tools.qemu import _ChildBoard

log = logging.getLogger(__name__)


class FlashError(RuntimeError):
    """Flashing cannot proceed; the message names the bad input and the way out."""


# ---- targets ---------------------------------------------------------------------------------------------
FLASH_SECTOR = 0x1000
PARTITION_TABLE_OFFSET = FlashLayout.partition_table_offset  # ESP-IDF's default, where no target is at hand


def _layout(target: Target) -> FlashLayout:
    if target.flash is None or target.chip is None:
        raise FlashError(f"target {target.name} is not flashed with esptool (an {target.family} board)")
    return target.flash


# ---- partition table -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Partition:
    name: str
    type: int  # 0 app, 1 data, or a custom 0x40..0xFE
    subtype: int
    offset: int
    size: int


_PT_ENTRY = struct.Struct("<2sBBII16sI")
_PT_MAGIC = b"\xaa\x50"
_TYPES = {"app": 0x00, "data": 0x01}
_SUBTYPES = {
    0x00: {"factory": 0x00, "test": 0x20, **{f"ota_{i}": 0x10 + i for i in range(16)}},
    0x01: {"ota": 0x00, "phy": 0x01, "nvs": 0x02, "coredump": 0x03, "nvs_keys": 0x04, "efuse": 0x05,
           "undefined": 0x06, "esphttpd": 0x80, "fat": 0x81, "spiffs": 0x82, "littlefs": 0x83},
}  # fmt: skip


def _int(text: str, what: str) -> int:
    t = text.strip().lower()
    m = re.fullmatch(r"(0x[0-9a-f]+|\d+)\s*([km]?)", t)
    if not m:
        raise FlashError(f"partition table: cannot read {what} {text!r} (use 0x…, decimal, or a K/M suffix)")
    v = int(m.group(1), 0)
    return v * {"": 1, "k": 1024, "m": 1024 * 1024}[m.group(2)]


def parse_partitions_csv(path: str | Path, table_offset: int = PARTITION_TABLE_OFFSET) -> list[Partition]:
    """ESP-IDF partitions.csv (Name, Type, SubType, Offset, Size, Flags). An empty offset follows the
    previous partition, aligned as ESP-IDF's gen_esp32part does: app 0x10000, data 0x1000; the first
    partition starts after the table's sector (0x9000 with the default table offset)."""
    p = Path(path)
    try:
        lines = p.read_text().splitlines()
    except OSError as e:
        raise FlashError(f"cannot read partition table {p}: {e.strerror or e}") from e
    parts: list[Partition] = []
    nxt = table_offset + FLASH_SECTOR
    for n, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        cols = [c.strip() for c in line.split(",")]
        if len(cols) < 5:
            raise FlashError(f"{p}:{n}: expected Name, Type, SubType, Offset, Size[, Flags]")
        name, ty, sub, off, size = cols[:5]
        t = _TYPES.get(ty.lower()) if not ty[:1].isdigit() else _int(ty, "type")
        if t is None:
            raise FlashError(f"{p}:{n}: unknown partition type {ty!r}")
        st = _SUBTYPES.get(t, {}).get(sub.lower()) if sub and not sub[:1].isdigit() else _int(sub or "0", "subtype")
        if st is None:
            raise FlashError(f"{p}:{n}: unknown subtype {sub!r} for type {ty!r}")
        align = 0x10000 if t == 0 else FLASH_SECTOR
        o = _int(off, "offset") if off else (nxt + align - 1) // align * align
        if o % align:
            raise FlashError(f"{p}:{n}: partition {name!r} at 0x{o:x} is not aligned to 0x{align:x}")
        sz = _int(size, "size")
        parts.append(Partition(name, t, st, o, sz))
        nxt = o + sz
    if not parts:
        raise FlashError(f"{p}: no partitions")
    return parts


def parse_partition_table_bin(data: bytes) -> list[Partition]:
    """The binary table ESP-IDF writes at 0x8000 (32-byte entries, magic 0xAA50, MD5 entry 0xEBEB)."""
    parts = []
    for off in range(0, len(data) - _PT_ENTRY.size + 1, _PT_ENTRY.size):
        magic, t, st, o, sz, label, _flags = _PT_ENTRY.unpack_from(data, off)
        if magic != _PT_MAGIC:
            break
        parts.append(Partition(label.rstrip(b"\0").decode("ascii", "replace"), t, st, o, sz))
    if not parts:
        raise FlashError("partition-table.bin holds no entries (magic 0xAA50): not an ESP-IDF partition table")
    return parts


def find_partition(parts: list[Partition], name: str) -> Partition:
    for p in parts:
        if p.name == name:
            return p
    raise FlashError(
        f"no partition named {name!r} in the partition table (have: {', '.join(p.name for p in parts)}); "
        "pass --theta-partition NAME"
    )


# ---- θ partition image -----------------------------------------------------------------------------------
def theta_partition_image(blob: bytes, size: int, erase_size: int = FLASH_SECTOR, counter: int = 1) -> bytes:
    """The θ partition as the firmware's A/B store reads it: slot A = committed slot header + the signed θ,
    everything else erased (0xFF). Slot size = (size / 2) rounded down to the erase size (pv_store_init);
    the header is ``pvcore.store_format``'s, the one the firmware's pv_store_format.h is generated from. The
    firmware checks the signature at boot: ``blob`` must be signed (pvcore.signed; a bare blob is refused)."""
    from host_tools.serial_link import check_blob
    from pvcore.signed import is_signed

    if not is_signed(blob):
        raise FlashError("a θ partition holds a signed θ (the firmware checks it at boot): sign the θ blob "
                         "with the host's key (python -m host_tools.flash signs --theta/--user θ with --keys)")
    check_blob(blob)
    slot = (size // 2) // erase_size * erase_size
    if slot < SLOT_HEADER_BYTES + len(blob):
        raise FlashError(
            f"θ partition of {size} bytes has slots of {slot} bytes: too small for a {len(blob)}-byte θ blob "
            f"plus the {SLOT_HEADER_BYTES}-byte slot header; enlarge it in partitions.csv"
        )
    head = pack_slot_header(counter, blob)
    img = bytearray(b"\xff" * size)
    img[: len(head) + len(blob)] = head + blob
    return bytes(img)


# ---- flash plan ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FlashItem:
    offset: int
    data: bytes
    what: str


def _build_root(build: Path) -> Path:
    if not build.is_dir():
        raise FlashError(f"--build {build}: no such folder (the ESP-IDF build folder, e.g. PROJECT/build)")
    if not (build / "flasher_args.json").is_file() and (build / "build" / "flasher_args.json").is_file():
        return build / "build"
    if not (build / "bootloader").is_dir() and (build / "build").is_dir():
        return build / "build"
    return build


def _read(path: Path, what: str) -> bytes:
    if not path.is_file():
        raise FlashError(f"{what} {path} not found: build the ESP-IDF project first (idf.py build)")
    return path.read_bytes()


def firmware_items(target: Target, build: Path) -> tuple[list[FlashItem], dict[str, str]]:
    """Bootloader, partition table and app of an ESP-IDF build folder, with their offsets and the
    flash settings (flash_mode/size/freq: 'keep' unless flasher_args.json gives them)."""
    fl = _layout(target)
    root = _build_root(build)
    settings = {"flash_mode": "keep", "flash_size": "keep", "flash_freq": "keep"}
    fa = root / "flasher_args.json"
    want = {fl.bootloader_offset: "bootloader", fl.partition_table_offset: "partition table", fl.app_offset: "app"}
    if fa.is_file():
        meta = json.loads(fa.read_text())
        fchip = meta.get("extra_esptool_args", {}).get("chip")
        if fchip and fchip != target.chip:
            raise FlashError(f"{fa} is a build for {fchip}, not {target.chip}: pass --target {fchip}")
        files = {int(k, 16): root / v for k, v in meta.get("flash_files", {}).items()}
        for off, what in want.items():
            if off not in files:
                raise FlashError(
                    f"{fa}: nothing at 0x{off:x} ({what}); {target.chip} expects bootloader 0x"
                    f"{fl.bootloader_offset:x}, partition table 0x{fl.partition_table_offset:x}, app "
                    f"0x{fl.app_offset:x}"
                )
        for k in settings:
            settings[k] = meta.get("flash_settings", {}).get(k, "keep")
        items = [FlashItem(off, _read(p, want.get(off, "image")), f"{want.get(off, 'image')} {p.name}")
                 for off, p in sorted(files.items())]  # fmt: skip
        return items, settings
    apps = sorted(p for p in root.glob("*.bin"))
    if len(apps) != 1:
        raise FlashError(
            f"{root}: no flasher_args.json and {len(apps)} app images (*.bin) at the top: point --build at an "
            "ESP-IDF build folder"
        )
    items = [
        FlashItem(fl.bootloader_offset, _read(root / "bootloader" / "bootloader.bin", "bootloader"), "bootloader"),
        FlashItem(
            fl.partition_table_offset,
            _read(root / "partition_table" / "partition-table.bin", "partition table"),
            "partition table",
        ),
        FlashItem(fl.app_offset, apps[0].read_bytes(), f"app {apps[0].name}"),
    ]
    return items, settings


def partitions_of(build: Path | None, csv: Path | None) -> list[Partition]:
    if csv is not None:
        return parse_partitions_csv(csv)
    if build is not None:
        root = _build_root(build)
        pt = root / "partition_table" / "partition-table.bin"
        if pt.is_file():
            return parse_partition_table_bin(pt.read_bytes())
        for cand in (root / "partitions.csv", root.parent / "partitions.csv"):
            if cand.is_file():
                return parse_partitions_csv(cand)
    raise FlashError("no partition table: pass --partitions partitions.csv or --build with partition_table/")


def theta_item(blob: bytes, parts: list[Partition], name: str = "theta") -> FlashItem:
    part = find_partition(parts, name)
    return FlashItem(part.offset, theta_partition_image(blob, part.size), f"θ partition {name!r}")


def check_overlaps(items: list[FlashItem]) -> None:
    spans = sorted((it.offset, it.offset + len(it.data), it.what) for it in items)
    for (a0, a1, aw), (b0, _b1, bw) in zip(spans, spans[1:]):
        if b0 < a1:
            raise FlashError(f"{aw} (0x{a0:x}..0x{a1:x}) overlaps {bw} at 0x{b0:x}")


# ---- esptool ---------------------------------------------------------------------------------------------
def merge(target: Target, items: list[FlashItem], out: Path, settings: dict[str, str] | None = None) -> int:
    """esptool merge-bin (offline): one raw image with every item at its offset, starting at the lowest
    offset (returned: where the image is to be flashed)."""
    from esptool.cmds import merge_bin

    _layout(target)
    s = settings or {}
    base = min(it.offset for it in items)
    merge_bin(
        [(it.offset, it.data) for it in items],
        target.chip,
        output=str(out),
        flash_mode=s.get("flash_mode", "keep"),
        flash_size=s.get("flash_size", "keep"),
        flash_freq=s.get("flash_freq", "keep"),
        target_offset=base,
    )
    return base


def write(
    target: Target,
    port: str,
    items: list[FlashItem],
    *,
    baud: int = 460800,
    settings: dict[str, str] | None = None,
    connect_attempts: int = 7,
) -> None:
    """Connects (auto-reset into the ROM bootloader), checks the chip, writes every item, hard-resets."""
    from esptool.cmds import attach_flash, detect_chip, reset_chip, run_stub, write_flash
    from esptool.util import FatalError

    fl = _layout(target)
    s = settings or {}
    try:
        with detect_chip(port, connect_attempts=connect_attempts) as esp:
            if esp.CHIP_NAME != fl.esptool_chip:
                raise FlashError(f"{port} has an {esp.CHIP_NAME}, not an {fl.esptool_chip}: check --target")
            esp = run_stub(esp)
            if baud != esp.ESP_ROM_BAUD:
                esp.change_baud(baud)
            attach_flash(esp)
            write_flash(
                esp,
                [(it.offset, it.data) for it in items],
                flash_mode=s.get("flash_mode", "keep"),
                flash_size=s.get("flash_size", "keep"),
                flash_freq=s.get("flash_freq", "keep"),
            )
            reset_chip(esp, "hard-reset")
    except FatalError as e:
        raise FlashError(f"esptool on {port}: {str(e).strip()}") from e
    except OSError as e:
        raise FlashError(f"esptool on {port}: {e}") from e


# ---- virtual boards --------------------------------------------------------------------------------------
def qemu_elf(build: Path | None, elf: Path | None, make_vars: tuple[str, ...] = ()) -> Path | None:
    """The firmware ELF to boot: --elf, or pv_fw.elf in --build (made there, with ``make_vars``, if it has a
    Makefile)."""
    from host_tools.qemu import make

    if elf is not None:
        if not elf.is_file():
            raise FlashError(f"--elf {elf}: no such file")
        return elf
    if build is None:
        return None  # host_tools.qemu builds the target's firmware_templates folder
    for cand in (build / "pv_fw.elf", build / "build" / "pv_fw.elf"):
        if cand.is_file():
            return cand
    if (build / "Makefile").is_file():
        make(build, *make_vars)
        if (build / "build" / "pv_fw.elf").is_file():
            return build / "build" / "pv_fw.elf"
    raise FlashError(f"--build {build}: no pv_fw.elf there (nor a Makefile that makes build/pv_fw.elf)")


def serve(board: _ChildBoard) -> int:
    """Boots the board, prints its URL, serves until Ctrl-C, SIGTERM or until the board exits (the board's
    process group is stopped on the way out, also on SIGTERM)."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    with board as url:
        print(url, flush=True)
        proc = board.proc
        while proc is not None and proc.poll() is None:
            time.sleep(0.5)
        return 0 if proc is None else (proc.returncode or 0)


# ---- CLI -------------------------------------------------------------------------------------------------
def _blob(args: argparse.Namespace) -> bytes:
    """The signed θ to flash: --theta FILE as it is when signed, else signed with the keyring (--keys)."""
    from host_tools.enroll import blob_from_file, blob_from_store
    from pvcore.keys import Keyring, KeyringError
    from pvcore.signed import is_signed

    if args.theta is not None:
        blob = blob_from_file(args.theta).blob
    elif args.user:
        blob = blob_from_store(args.user, args.users)[0].blob
    else:
        raise FlashError("--theta-only needs the θ: --theta FILE (a θ blob) or --user ID (from the user store)")
    try:
        return blob if is_signed(blob) else Keyring(args.keys).sign(blob)
    except KeyringError as e:
        raise FlashError(f"cannot sign the θ: {e}") from e


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m host_tools.flash",
        description="Flash an ESP32-family board with esptool, or boot the emulated Cortex-M4 / host simulator.",
    )
    add_target_arg(ap, required=True, help="the board")
    add_port_args(ap, required=False, baud=460800, timeout=None,
                  port_help="ESP32: serial port (/dev/ttyUSB0, rfc2217://host:port); --baud: for writing")
    ap.add_argument("--build", type=Path, help="ESP-IDF build folder / virtual board build folder")
    ap.add_argument("--connect-attempts", type=int, default=7, help="ESP32: esptool connection attempts")
    ap.add_argument("--theta-only", action="store_true", help="ESP32: write only the θ partition")
    ap.add_argument("--theta", type=Path, help="θ blob for --theta-only (or to add to a full flash); signed as it "
                    "is, a bare one signed with --keys")
    ap.add_argument("--keys", type=Path, metavar="DIR",
                    help="the signing keyring for a bare θ (default: $PV_KEYS_DIR or ~/.config/hyperverif-mcu/keys)")
    ap.add_argument("--user", help="θ of this user (from the user store) for --theta-only")
    add_user_store_args(ap)
    ap.add_argument("--partitions", type=Path, help="ESP32: partitions.csv (default: from the build folder)")
    ap.add_argument("--theta-partition", help="name of the θ partition (default: the target's, theta)")
    ap.add_argument("--merged", type=Path, help="ESP32: write one merged image here (esptool merge-bin), no port")
    ap.add_argument("--elf", type=Path, help="cortex-m-qemu, riscv32-qemu: firmware ELF to boot")
    ap.add_argument("--store", type=Path, help="host: θ store file")
    args = ap.parse_args(argv)
    setup_logging()
    from host_tools.enroll import EnrollError
    from pvcore.blob import BlobError
    from pvcore.user_store import UserStoreError

    target = TARGETS[args.target]
    try:
        if target.virtual:
            from host_tools.qemu import HostBoard, QemuBoard, RiscvQemuBoard, TflmQemuBoard, tflm_make_vars

            if target.family == "host":
                exe = None
                if args.build is not None:
                    exe = args.build / "pv_host" if (args.build / "pv_host").is_file() else None
                    if exe is None:
                        raise FlashError(f"--build {args.build}: no pv_host there (make -C firmware_templates/host)")
                board = HostBoard(args.store, exe=exe)
            elif target.family == "riscv32-qemu":
                board = RiscvQemuBoard(qemu_elf(args.build, args.elf))
            elif target.kernel == "tflm":  # an emitted project: TFLM from the shared folder, compiled once
                if args.build is None and args.elf is None:
                    raise FlashError(f"--target {target.name} needs --build (a project of codegen.emit --target "
                                     f"{target.name}) or --elf")
                board = TflmQemuBoard(qemu_elf(args.build, args.elf, ("-j2", *tflm_make_vars())))
            else:
                board = QemuBoard(qemu_elf(args.build, args.elf))
            return serve(board)
        items: list[FlashItem] = []
        settings: dict[str, str] = {}
        if not args.theta_only:
            if args.build is None:
                raise FlashError(f"--target {target.name} needs --build (the ESP-IDF build folder)")
            items, settings = firmware_items(target, args.build)
        if args.theta_only or args.theta is not None or args.user:
            part = args.theta_partition or _layout(target).theta_partition
            items.append(theta_item(_blob(args), partitions_of(args.build, args.partitions), part))
        check_overlaps(items)
        for it in items:
            print(f"0x{it.offset:06x}  {len(it.data):8d} B  {it.what}")
        if args.merged is not None:
            base = merge(target, items, args.merged, settings)
            print(f"merged image: {args.merged} ({args.merged.stat().st_size} bytes), to be written at 0x{base:x}")
            return 0
        if not args.port:
            raise FlashError(f"--target {target.name} needs --port (e.g. /dev/ttyUSB0) or --merged FILE")
        write(target, args.port, items, baud=args.baud, settings=settings, connect_attempts=args.connect_attempts)
        print(f"flashed {len(items)} image(s) to {target.chip} on {args.port}")
    except KeyboardInterrupt:
        return 0
    except (FlashError, EnrollError, UserStoreError, BlobError, ValueError, RuntimeError, OSError) as e:
        fail(str(e))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
