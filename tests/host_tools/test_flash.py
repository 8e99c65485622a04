"""host_tools.flash: partition tables, the θ partition image (booted by the real C store on the host
simulator), the ESP32 flash plan checked offline with esptool merge-bin, and the errors for missing,
busy and silent ports (esptool's real connection code on a pty: no ESP32 is attached here)."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import serial

from codegen.golden import run_int8
from host_tools import flash
from host_tools.flash import (
    FlashError,
    Partition,
    firmware_items,
    merge,
    parse_partition_table_bin,
    parse_partitions_csv,
    theta_item,
    theta_partition_image,
)
from host_tools.qemu import HostBoard
from host_tools.serial_link import LinkError, SerialLink
from pvcore.cli import EXIT_ERROR, EXIT_USAGE
from pvcore.signed import verify
from pvcore.store_format import BLOB_MAX_BYTES, SLOT_HEADER_BYTES, SlotHeader, check_slot, pack_slot_header
from pvcore.targets import TARGETS
from tests.helpers.signing import TRUSTED, sign

REPO = Path(__file__).resolve().parents[2]
HOST_STORE_BYTES = 2 * (BLOB_MAX_BYTES + 4096)  # firmware_templates/host/main.c STORE_BYTES

CSV = """# Name,   Type, SubType, Offset,  Size, Flags
nvs,      data, nvs,     ,        0x6000,
phy_init, data, phy,     ,        0x1000,
factory,  app,  factory, ,        1M,
theta,    data, 0x40,    ,        0x22000,
"""


def test_partitions_csv_auto_offsets(tmp_path: Path) -> None:
    p = tmp_path / "partitions.csv"
    p.write_text(CSV)
    parts = parse_partitions_csv(p)
    # gen_esp32part's placement: after the table's sector (0x9000), data aligned 4 KiB, app 64 KiB
    assert [(q.name, q.offset, q.size) for q in parts] == [
        ("nvs", 0x9000, 0x6000),
        ("phy_init", 0xF000, 0x1000),
        ("factory", 0x10000, 0x100000),
        ("theta", 0x110000, 0x22000),
    ]
    assert parts[3].type == 1 and parts[3].subtype == 0x40


def test_partitions_csv_errors_name_the_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.csv"
    p.write_text("nvs, data, nvs, 0x9000, 0x6000\napp0, app, factory, 0x11000, 1M\n")
    with pytest.raises(FlashError, match=r"bad.csv:2: partition 'app0' at 0x11000 is not aligned to 0x10000"):
        parse_partitions_csv(p)
    p.write_text("x, weird, nvs, , 0x1000\n")
    with pytest.raises(FlashError, match="unknown partition type 'weird'"):
        parse_partitions_csv(p)
    with pytest.raises(FlashError, match="cannot read partition table"):
        parse_partitions_csv(tmp_path / "missing.csv")


def test_partition_table_bin_round_trip() -> None:
    parts = [Partition("nvs", 1, 2, 0x9000, 0x6000), Partition("theta", 1, 0x40, 0x110000, 0x22000)]
    raw = b"".join(
        struct.pack("<2sBBII16sI", b"\xaa\x50", p.type, p.subtype, p.offset, p.size, p.name.encode(), 0) for p in parts
    )
    raw += b"\xeb\xeb" + b"\xff" * 14 + bytes(16) + b"\xff" * 32  # MD5 entry, then erased flash
    assert parse_partition_table_bin(raw) == parts
    with pytest.raises(FlashError, match="no partition named 'theta2'"):
        theta_item(b"", parts, "theta2")


def test_theta_partition_image_boots_on_the_real_store(tmp_path: Path, host_exe: Path, blobs, crops) -> None:
    """The image --theta-only writes is read by the firmware's own A/B store (pv_store.c in the host
    simulator) as a committed θ: INFO names the user and INFER equals the golden model. The other way round,
    the slot header the C store writes on COMMIT is byte for byte pvcore.store_format's."""
    ub, _theta = blobs["alice"]
    store = tmp_path / "store.bin"
    store.write_bytes(theta_partition_image(sign(ub.blob), HOST_STORE_BYTES))
    bob = sign(blobs["bob"][0].blob)  # signed later: a higher counter
    with HostBoard(store, exe=host_exe) as url, SerialLink(url, timeout=5) as link:
        info = link.info()
        assert (info.active_slot, info.commit_counter, info.user_id) == (0, 1, "alice")
        assert info.theta_bytes == len(ub.blob)
        q = (crops[:3].astype(np.int16) - 128).astype(np.int8)
        got = [link.infer(x).logit for x in q]
        assert link.install_theta(bob) == (1, 2)
    assert got == list(np.asarray(run_int8(ub.qf, crops[:3])))
    slot_b = store.read_bytes()[HOST_STORE_BYTES // 2 :]
    assert slot_b[:SLOT_HEADER_BYTES] == pack_slot_header(2, bob)
    assert check_slot(slot_b) == (SlotHeader(counter=2, blob_len=len(bob), blob_crc=zlib.crc32(bob)), bob)


def test_theta_partition_too_small(blobs) -> None:
    ub, _ = blobs["alice"]
    with pytest.raises(FlashError, match="too small"):
        theta_partition_image(sign(ub.blob), 0x8000)


def test_theta_partition_holds_signed_theta_only(blobs) -> None:
    """The firmware checks the signature of a stored θ at boot: a bare blob is refused here already."""
    with pytest.raises(FlashError, match="signed θ"):
        theta_partition_image(blobs["alice"][0].blob, 0x22000)


def _esp_idf_like_build(root: Path, chip: str) -> Path:
    """A synthetic build folder in ESP-IDF's layout (ESP-IDF cannot run here): the bytes are markers,
    only the offsets and the esptool calls are under test."""
    b = root / "build"
    (b / "bootloader").mkdir(parents=True)
    (b / "partition_table").mkdir()
    (b / "bootloader" / "bootloader.bin").write_bytes(b"BOOT" * 100)
    table = struct.pack("<2sBBII16sI", b"\xaa\x50", 1, 0x40, 0x110000, 0x22000, b"theta", 0)
    (b / "partition_table" / "partition-table.bin").write_bytes(table + b"\xff" * 32)
    (b / "pv_app.bin").write_bytes(b"APPL" * 1000)
    boot = TARGETS[chip].flash.bootloader_offset
    (b / "flasher_args.json").write_text(
        json.dumps(
            {
                "flash_files": {
                    f"0x{boot:x}": "bootloader/bootloader.bin",
                    "0x8000": "partition_table/partition-table.bin",
                    "0x10000": "pv_app.bin",
                },
                "flash_settings": {"flash_mode": "dio", "flash_size": "4MB", "flash_freq": "40m"},
                "extra_esptool_args": {"chip": chip},
            }
        )
    )
    return b


@pytest.mark.parametrize("chip", ["esp32", "esp32s3", "esp32c3"])
def test_flash_plan_offsets_merged_by_esptool_on_a_synthetic_build(tmp_path: Path, chip: str, blobs) -> None:
    signed = sign(blobs["alice"][0].blob)
    build = _esp_idf_like_build(tmp_path, chip)
    items, settings = firmware_items(TARGETS[chip], tmp_path)  # the project folder: build/ is found
    items.append(theta_item(signed, flash.partitions_of(build, None)))
    assert [it.offset for it in items] == sorted([TARGETS[chip].flash.bootloader_offset, 0x8000, 0x10000]) + [0x110000]
    out = tmp_path / "merged.bin"
    base = merge(TARGETS[chip], items, out, settings)
    assert base == min(it.offset for it in items)
    data = b"\xff" * base + out.read_bytes()  # as the flash reads after writing the image at base
    for it in items:
        got = data[it.offset : it.offset + len(it.data)]
        if it.what == "bootloader":
            continue  # merge-bin rewrites the bootloader header's flash mode/size/freq bytes
        assert got == it.data, it.what
    # θ slot A header then the blob, at the θ partition's offset
    header, blob = check_slot(data[0x110000 : 0x110000 + SLOT_HEADER_BYTES + len(signed)])
    assert header.counter == 1 and blob == signed


def test_flasher_args_for_another_chip_is_refused(tmp_path: Path) -> None:
    _esp_idf_like_build(tmp_path, "esp32")
    with pytest.raises(FlashError, match="is a build for esp32, not esp32s3: pass --target esp32"):
        firmware_items(TARGETS["esp32s3"], tmp_path)


def test_missing_build_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "app.bin").write_bytes(b"x")
    with pytest.raises(FlashError, match=r"bootloader .*bootloader.bin not found: build the ESP-IDF project"):
        firmware_items(TARGETS["esp32"], tmp_path / "b")


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "host_tools.flash", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def test_cli_theta_only_merged_image(tmp_path: Path, blobs) -> None:
    signed = sign(blobs["alice"][0].blob)
    (tmp_path / "theta.blob").write_bytes(signed)
    (tmp_path / "partitions.csv").write_text(CSV)
    out = tmp_path / "m.bin"
    r = run_cli("--target", "esp32", "--theta-only", "--theta", str(tmp_path / "theta.blob"),
                "--partitions", str(tmp_path / "partitions.csv"), "--merged", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "0x110000" in r.stdout and "θ partition 'theta'" in r.stdout
    assert "to be written at 0x110000" in r.stdout
    assert out.read_bytes() == theta_partition_image(signed, 0x22000)


def test_cli_missing_port_is_a_clear_error(tmp_path: Path, blobs) -> None:
    ub, _ = blobs["alice"]
    (tmp_path / "theta.blob").write_bytes(ub.blob)
    (tmp_path / "partitions.csv").write_text(CSV)
    r = run_cli("--target", "esp32", "--port", "/dev/ttyUSB_nonexistent", "--theta-only", "--theta",
                str(tmp_path / "theta.blob"), "--partitions", str(tmp_path / "partitions.csv"))  # fmt: skip
    assert r.returncode == 1
    assert "error: esptool on /dev/ttyUSB_nonexistent: Could not open" in r.stderr
    assert "No such file" in r.stderr


@pytest.fixture
def pty_port():
    master, slave = os.openpty()
    try:
        yield os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)


def test_busy_port_is_a_clear_error(pty_port: str, blobs, tmp_path: Path) -> None:
    ub, _ = blobs["alice"]
    items = [theta_item(sign(ub.blob), [Partition("theta", 1, 0x40, 0x110000, 0x22000)])]
    with serial.Serial(pty_port, exclusive=True):  # another program holds the port
        with pytest.raises(FlashError, match="(?s)busy or doesn.t exist.*Could not exclusively lock port"):
            flash.write(TARGETS["esp32"], pty_port, items, connect_attempts=1)


def test_silent_port_fails_to_connect(pty_port: str, blobs) -> None:
    """A port where no ESP32 answers (a pty): esptool's real connect gives up with its message."""
    ub, _ = blobs["alice"]
    items = [theta_item(sign(ub.blob), [Partition("theta", 1, 0x40, 0x110000, 0x22000)])]
    with pytest.raises(FlashError, match="Failed to connect to Espressif device: No serial data received"):
        flash.write(TARGETS["esp32"], pty_port, items, connect_attempts=1)


def test_cli_host_target_boots_and_prints_its_url(host_exe: Path, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "host_tools.flash", "--target", "host", "--build", str(host_exe.parent),
         "--store", str(tmp_path / "s.bin")],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("socket://127.0.0.1:"), proc.stderr.read() if proc.stderr else ""
        with SerialLink(url, timeout=5) as link:
            assert link.info().board == "host"
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0  # SIGTERM ends the simulator too (its socket refuses connections now)
    with pytest.raises(LinkError, match="nothing listens there"):
        SerialLink(url).open()


def test_cli_help_and_usage_errors() -> None:
    assert run_cli("--help").returncode == 0
    r = run_cli("--target", "esp32", "--theta-only")
    assert r.returncode == EXIT_ERROR and "--theta-only needs the θ" in r.stderr
    r = run_cli("--target", "esp32")
    assert r.returncode == EXIT_ERROR and "needs --build" in r.stderr
    r = run_cli("--target", "esp8266")
    assert r.returncode == EXIT_USAGE and "unknown target 'esp8266'; targets: esp32, esp32s3" in r.stderr


@pytest.mark.slow
def test_cli_cortex_m_qemu_boots_the_built_firmware(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "host_tools.flash", "--target", "cortex-m-qemu"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("socket://127.0.0.1:"), proc.stderr.read() if proc.stderr else ""
        with SerialLink(url, timeout=5) as link:
            info = link.info()
        assert info.board == "mps2386" and info.tick_hz == 25_000_000
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    assert proc.returncode == 0
    with pytest.raises(LinkError, match="nothing listens there"):
        SerialLink(url).open()


def test_theta_only_on_an_emitted_esp32_project(tmp_path: Path, store) -> None:
    """codegen.emit's ESP-IDF project: its partitions.csv places the θ partition, and the blob host_tools
    builds from the store is the one emit wrote (same quantization; the ESP32 default: 16x8)."""
    from codegen.emit import emit
    from host_tools.enroll import blob_from_store

    res = emit("alice", "esp32", out=tmp_path / "esp32", users_root=store.root)
    ub = blob_from_store("alice", store, activations="int16")[0]
    signed = (res.out / "alice_theta.bin").read_bytes()  # signed by the tests' keyring ($PV_KEYS_DIR)
    assert verify(signed, TRUSTED).blob == ub.blob
    part = flash.find_partition(flash.parse_partitions_csv(res.out / "partitions.csv"), "theta")
    out = tmp_path / "m.bin"
    r = run_cli("--target", "esp32", "--build", str(res.out), "--theta-only", "--theta",
                str(res.out / "alice_theta.bin"), "--merged", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert f"to be written at 0x{part.offset:x}" in r.stdout
    assert out.read_bytes() == theta_partition_image(signed, part.size)
