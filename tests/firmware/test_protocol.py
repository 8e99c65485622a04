"""The serial protocol end to end on the virtual boards: the host simulator, the Cortex-M4 firmware on
QEMU mps2-an386 and the RV32IMC firmware on QEMU virt (slow). Real θ blobs (codegen), a real byte stream
through pyserial, and the C kernel's outputs checked against the int8 golden model bit for bit."""

from __future__ import annotations

import math
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from codegen.c_arch import kernel16_arena_bytes, kernel_arena_bytes
from codegen.golden import images_to_int8, run_int8, run_int8_views
from host_tools.serial_link import (
    ERRF_FRAME,
    Cmd,
    DeviceError,
    ErrorCode,
    SerialLink,
    cobs_encode,
    encode_frame,
)
from pvcore.spec import F_SPEC
from tests.firmware.conftest import BOARD_KINDS, BoardHandle, User, start_board
from tests.helpers.signing import sign

IMAGE_BYTES = 112 * 112 * 3


def read_error(link: SerialLink, timeout: float = 10.0) -> tuple[int, int, int, int, int]:
    """The next ERROR frame: (code, request cmd, flags, detail, seq)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        f = link.read_frame(left)
        if f is not None and f.cmd == Cmd.ERROR:
            code, req, flags, _r, detail = struct.unpack_from("<BBBBi", f.payload)
            return code, req, flags, detail, f.seq
    raise AssertionError("no ERROR frame from the board")


def expect_refusal(fn: object, code: ErrorCode) -> DeviceError:
    with pytest.raises(DeviceError) as ei:
        fn()  # type: ignore[operator]
    assert ei.value.code == code, str(ei.value)
    return ei.value


def golden(user: User, images: np.ndarray) -> np.ndarray:
    return np.asarray(run_int8(user.qf, images))


@pytest.fixture
def link(board: BoardHandle) -> SerialLink:
    with SerialLink(board.url, timeout=5.0) as lk:
        lk.info()
        yield lk


# ---- boot ------------------------------------------------------------------------------------------------
def test_ready_and_info(board: BoardHandle, link: SerialLink) -> None:
    ready = board.board.ready
    assert ready is not None
    assert ready.arch_hash == F_SPEC.arch_hash()
    assert ready.proto_version == 1
    assert ready.image_bytes == IMAGE_BYTES
    assert ready.max_payload == 4096
    info = link.info()
    assert info.arch_hash == F_SPEC.arch_hash()
    assert info.arena_bytes > 0
    if board.kind == "qemu":
        assert info.tick_hz == 25_000_000 and info.board == "mps2386"
        # the last image slot of the 16 MiB PSRAM keeps the last INFER image (for BENCH)
        assert info.bulk_images == (16 * 1024 * 1024 - IMAGE_BYTES) // IMAGE_BYTES
        assert info.free_ram > 1024 * 1024
        stack, static = struct.unpack_from("<II", link.request(Cmd.INFO).payload, 100)
        assert 0 < stack < 4096 and 0 < static
        # two views add the mirror's arena, stream and row buffer
        budget = 48 * 1024 if info.views == 1 else 84 * 1024
        assert static + stack <= budget, f"peak RAM over {budget // 1024} KiB with {info.views} view(s)"
        assert info.arena_bytes == info.views * kernel_arena_bytes()
    if board.kind == "riscv32":  # minstret at a nominal 1 GHz: under -icount shift=0, ticks = instructions
        assert info.tick_hz == 1_000_000_000 and info.board == "rv32virt" and info.runs_16x8
        assert info.bulk_images == (16 * 1024 * 1024 - IMAGE_BYTES) // IMAGE_BYTES
        stack, static = struct.unpack_from("<II", link.request(Cmd.INFO).payload, 100)
        assert 0 < stack < 4096 and 0 < static
        assert static + stack <= 48 * 1024 and info.arena_bytes == kernel16_arena_bytes()  # the 16x8 arena


# ---- θ and inference -------------------------------------------------------------------------------------
def test_load_commit_infer_matches_golden(
    link: SerialLink, users: dict[str, User], images: np.ndarray
) -> None:
    alice = users["alice"]
    slot, counter = link.install_theta(alice.blob)
    info = link.info()
    assert (info.active_slot, info.commit_counter, info.user_id) == (slot, counter, "alice")
    assert info.threshold_logit == pytest.approx(alice.threshold)
    assert info.theta_bytes == len(alice.blob)
    want = run_int8_views(alice.qf, images[:2], views=info.views)  # PV_VIEWS 2: the image and its mirror
    for img, qs in zip(images[:2], want):
        r = link.infer(images_to_int8(img))
        assert r.logits == tuple(int(q) for q in qs)
        if info.views == 2:
            real = float(alice.qf.dequantize_mean2(qs[0], qs[1]))
            decision = bool(alice.qf.decide_mean2(qs[0], qs[1], alice.threshold))
        else:
            real, decision = float(alice.qf.dequantize_logit(qs[0])), bool(alice.qf.decide(qs[0], alice.threshold))
        assert r.logit_real == real  # float32 on both sides, the same operations
        assert r.score == pytest.approx(1 / (1 + math.exp(-real)), rel=1e-5)
        assert r.decision == decision
        assert r.ticks > 0
    assert link.stats.retries == 0


def test_bench_runs_the_last_image(
    board: BoardHandle, link: SerialLink, users: dict[str, User], images: np.ndarray
) -> None:
    if link.info().user_id != "alice":
        link.install_theta(users["alice"].blob)
    link.infer(images_to_int8(images[2]))
    b = link.bench(3)
    views = link.info().views
    qs = run_int8_views(users["alice"].qf, images[2:3], views=views)[0]
    assert b.n == 3 and b.logit == int(qs[0]) and (views == 1 or b.logit_mirror == int(qs[1]))
    assert 0 < b.min_ticks <= b.mean_ticks <= b.max_ticks
    if board.kind == "qemu":  # -icount shift=0: the instruction count is deterministic
        assert b.max_ticks - b.min_ticks <= 1
    expect_refusal(lambda: link.bench(0), ErrorCode.BAD_ARG)


# ---- bad frames: an error frame each, the board keeps answering, the θ stays ---------------------------
def _raw(cmd: int, seq: int, payload: bytes, *, declared: int | None = None, crc: int | None = None) -> bytes:
    body = struct.pack("<BBH", cmd, seq, len(payload) if declared is None else declared) + payload
    return body + struct.pack("<I", zlib.crc32(body) if crc is None else crc)


BAD_WIRE = {
    "truncated": (b"\x00" + cobs_encode(_raw(1, 77, b"")[:-2]) + b"\x00", ErrorCode.BAD_LENGTH),
    "bad_crc": (b"\x00" + cobs_encode(_raw(1, 77, b"", crc=0xDEADBEEF)) + b"\x00", ErrorCode.BAD_CRC),
    "oversized_length_field": (
        b"\x00" + cobs_encode(_raw(2, 77, b"\x01" * 8, declared=60000)) + b"\x00",
        ErrorCode.BAD_LENGTH,
    ),
    "oversized_frame": (b"\x00" + cobs_encode(_raw(2, 77, b"\x01" * 6000)) + b"\x00", ErrorCode.BAD_LENGTH),
    "length_field_short": (
        b"\x00" + cobs_encode(_raw(1, 77, b"abc", declared=1)) + b"\x00",
        ErrorCode.BAD_LENGTH,
    ),
    "garbage": (b"\x00\x17\x99\xff\xfeRANDOM\x01\x02\x03 noise\x00", ErrorCode.BAD_CRC),
}


@pytest.mark.parametrize("name", list(BAD_WIRE))
def test_bad_frame_gets_an_error_and_the_board_keeps_answering(
    link: SerialLink, users: dict[str, User], name: str
) -> None:
    if link.info().active_slot is None:
        link.install_theta(users["alice"].blob)
    before = link.info()
    wire, code = BAD_WIRE[name]
    link.write_raw(wire)
    got_code, _req, flags, _detail, _seq = read_error(link)
    assert flags & ERRF_FRAME
    assert got_code == code
    after = link.info()
    assert (after.active_slot, after.commit_counter, after.user_id) == (
        before.active_slot,
        before.commit_counter,
        before.user_id,
    )
    assert after.frames_bad == before.frames_bad + 1


def test_garbage_between_frames(link: SerialLink) -> None:
    """Garbage (20 pieces), then a good request: an error per piece, then the right answer."""
    link.write_raw(b"\x00\xaa\xbb\xcc\xdd" * 20 + encode_frame(Cmd.INFO, 5, leading_delimiter=True))
    errors = 0
    while True:
        f = link.read_frame(5.0)
        assert f is not None, "the board stopped answering"
        if f.cmd != Cmd.ERROR:
            break
        code, _req, flags, _r, _detail = struct.unpack_from("<BBBBi", f.payload)
        assert flags & ERRF_FRAME and code in (ErrorCode.BAD_CRC, ErrorCode.BAD_LENGTH)
        errors += 1
    assert errors == 20
    assert f.cmd == Cmd.INFO | 0x80 and f.seq == 5
    assert link.info().arch_hash == F_SPEC.arch_hash()


def test_unknown_command(link: SerialLink, users: dict[str, User]) -> None:
    if link.info().active_slot is None:
        link.install_theta(users["alice"].blob)
    before = link.info()
    e = expect_refusal(lambda: link.request(0x5A, b"xyz"), ErrorCode.UNKNOWN_CMD)
    assert e.request_cmd == 0x5A and not e.frame_level
    after = link.info()
    assert (after.active_slot, after.commit_counter, after.user_id) == (
        before.active_slot,
        before.commit_counter,
        before.user_id,
    )


def test_wrong_image_size(link: SerialLink, users: dict[str, User], images: np.ndarray) -> None:
    if link.info().active_slot is None:
        link.install_theta(users["alice"].blob)
    small = bytes(64 * 64 * 3)
    expect_refusal(
        lambda: link.request(Cmd.INFER, struct.pack("<II", len(small), 0) + small[:1000]),
        ErrorCode.BAD_IMAGE_SIZE,
    )
    # data running past the end of a right-sized image
    expect_refusal(
        lambda: link.request(Cmd.INFER, struct.pack("<II", IMAGE_BYTES, IMAGE_BYTES - 10) + bytes(20)),
        ErrorCode.BAD_IMAGE_SIZE,
    )
    # a gap between chunks
    link.request(Cmd.INFER, struct.pack("<II", IMAGE_BYTES, 0) + bytes(100))
    expect_refusal(
        lambda: link.request(Cmd.INFER, struct.pack("<II", IMAGE_BYTES, 500) + bytes(100)),
        ErrorCode.BAD_STATE,
    )
    assert link.info().user_id == "alice"
    # the image streams through the kernel as it arrives: a chunk resent with a new seq (overlapping
    # what was taken) only feeds its new bytes; an image interrupted by errors restarts at offset 0
    img = images_to_int8(images[1]).tobytes()
    link.request(Cmd.INFER, struct.pack("<II", IMAGE_BYTES, 0) + img[:3000])
    link.request(Cmd.INFER, struct.pack("<II", IMAGE_BYTES, 1000) + img[1000:4000])
    r = link.request(Cmd.INFER, struct.pack("<II", IMAGE_BYTES, 4000) + img[4000:8000])
    assert struct.unpack_from("<I", r.payload, 16)[0] == 8000
    for off in range(8000, IMAGE_BYTES, 4000):
        r = link.request(Cmd.INFER, struct.pack("<II", IMAGE_BYTES, off) + img[off : off + 4000])
    want = int(golden(users["alice"], images[1:2])[0])
    assert r.payload[2] & 1 and struct.unpack_from("<b", r.payload, 1)[0] == want
    assert link.infer(img).logit == want


def _resealed(blob: bytes, patch: dict[int, int]) -> bytes:
    b = bytearray(blob)
    for off, val in patch.items():
        b[off] = val
    b[-4:] = struct.pack("<I", zlib.crc32(bytes(b[:-4])))
    return bytes(b)


def test_theta_with_wrong_arch_hash_is_refused(link: SerialLink, users: dict[str, User]) -> None:
    if link.info().user_id != "alice":
        link.install_theta(users["alice"].blob)
    before = link.info()
    other = _resealed(users["bob"].blob, {12: users["bob"].blob[12] ^ 0xFF})
    e = expect_refusal(lambda: link.load_theta(other), ErrorCode.ARCH_MISMATCH)
    assert e.request_cmd == Cmd.LOAD_THETA
    expect_refusal(link.commit, ErrorCode.BAD_STATE)
    after = link.info()
    assert (after.user_id, after.commit_counter, after.active_slot) == (
        "alice",
        before.commit_counter,
        before.active_slot,
    )


def test_corrupt_theta_is_refused_at_commit(link: SerialLink, users: dict[str, User]) -> None:
    if link.info().user_id != "alice":
        link.install_theta(users["alice"].blob)
    bad_crc = bytearray(users["bob"].blob)
    bad_crc[200] ^= 0x01  # payload changed after the CRC was computed
    link.load_theta(bytes(bad_crc))
    expect_refusal(link.commit, ErrorCode.BLOB_INVALID)
    bad_record = _resealed(users["bob"].blob, {64 + 32: 0x7F})  # first layer's kind: CRC fine, content not
    link.load_theta(bad_record)
    e = expect_refusal(link.commit, ErrorCode.BLOB_INVALID)
    assert e.detail < 0  # pv_blob_parse's status
    assert link.info().user_id == "alice"


def test_transfer_cut_before_commit_keeps_the_old_theta(
    board: BoardHandle, link: SerialLink, users: dict[str, User], images: np.ndarray
) -> None:
    if link.info().user_id != "alice":
        link.install_theta(users["alice"].blob)
    bob = sign(users["bob"].blob)
    step = link.max_payload - 4
    for off in range(0, len(bob) // 2, step):  # half the chunks, then the "cable is cut"
        link.request(Cmd.LOAD_THETA, struct.pack("<I", off) + bob[off : off + step])
    mid = link.info()
    assert mid.transfer_open and mid.user_id == "alice"
    expect_refusal(link.commit, ErrorCode.BAD_STATE)
    info = link.reset()  # power cycle: the store is read again at boot
    assert info is not None and info.user_id == "alice" and not info.transfer_open
    assert link.infer(images_to_int8(images[0])).logit == int(golden(users["alice"], images[:1])[0])


def test_commit_switches_slot_and_survives_reset(link: SerialLink, users: dict[str, User]) -> None:
    if link.info().user_id != "alice":
        link.install_theta(users["alice"].blob)
    old = link.info()
    slot, counter = link.install_theta(users["carol"].blob)
    assert slot != old.active_slot and counter == old.commit_counter + 1
    info = link.reset()
    assert info is not None and (info.user_id, info.active_slot, info.commit_counter) == (
        "carol",
        slot,
        counter,
    )


def test_retry_with_the_same_seq_is_answered_from_the_cache(link: SerialLink, users: dict[str, User]) -> None:
    link.load_theta(users["alice"].blob)
    wire = encode_frame(Cmd.COMMIT, 200, leading_delimiter=True)
    link.write_raw(wire)
    first = link.read_frame(10.0)
    link.write_raw(wire)  # the reply was "lost": the host resends the same frame
    second = link.read_frame(10.0)
    assert first is not None and first == second and first.cmd == Cmd.COMMIT | 0x80
    _slot, counter = struct.unpack_from("<BxxxI", first.payload)
    assert link.info().commit_counter == counter  # committed once
    link.write_raw(encode_frame(Cmd.COMMIT, 201, leading_delimiter=True))  # a new request: nothing open
    assert read_error(link)[0] == ErrorCode.BAD_STATE


def test_ping_both_directions(link: SerialLink) -> None:
    assert link.ping(4000, 4) == 4
    assert link.ping(0, 4096) == 4096
    expect_refusal(lambda: link.ping(0, 5000), ErrorCode.BAD_ARG)


# ---- fresh boards ----------------------------------------------------------------------------------------
def test_no_theta_on_a_new_board(fresh_board: BoardHandle) -> None:
    ready = fresh_board.board.ready
    assert ready is not None and ready.active_slot is None and ready.user_id == ""
    with SerialLink(fresh_board.url) as link:
        link.info()
        expect_refusal(lambda: link.infer(bytes(IMAGE_BYTES)), ErrorCode.NO_THETA)
        expect_refusal(lambda: link.bench(1), ErrorCode.NO_THETA)
        expect_refusal(link.commit, ErrorCode.BAD_STATE)


@pytest.mark.parametrize("kind", BOARD_KINDS)
def test_infer_bulk_from_preloaded_images(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, users: dict[str, User], images: np.ndarray
) -> None:
    bulk = tmp_path / "imgs.bin"
    bulk.write_bytes(images_to_int8(images).tobytes())
    h = start_board(kind, tmp_path, request, bulk=bulk)
    try:
        with SerialLink(h.url) as link:
            link.info()
            link.install_theta(users["bob"].blob)
            res = link.infer_bulk(0, len(images))
            assert [r.index for r in res] == list(range(len(images)))
            assert [r.logit for r in res] == [int(q) for q in golden(users["bob"], images)]
            one = link.infer_bulk(2, 1)
            assert one[0].logit == res[2].logit and one[0].index == 2
            if kind == "host":
                expect_refusal(lambda: link.infer_bulk(0, len(images) + 1), ErrorCode.BAD_ARG)
            link.exit(7)
        assert h.board.wait(30) == 7  # semihosting exit code on QEMU, process exit code on the host
    finally:
        h.board.stop()


# ---- boot robustness ---------------------------------------------------------------------------------------
def test_host_boards_boot_in_parallel(host_exe: Path, tmp_path: Path) -> None:
    """Eight simulators started at once (a loaded machine): every one becomes ready and answers."""
    from concurrent.futures import ThreadPoolExecutor

    from host_tools.qemu import HostBoard

    boards = [HostBoard(tmp_path / f"store{i}.bin", exe=host_exe) for i in range(8)]
    try:
        with ThreadPoolExecutor(len(boards)) as ex:
            urls = list(ex.map(lambda b: b.start(), boards))
        for url in urls:
            with SerialLink(url) as link:
                assert link.info().arch_hash == F_SPEC.arch_hash()
    finally:
        for b in boards:
            b.stop()


def test_ready_after_a_dropped_connection(host_exe: Path, tmp_path: Path) -> None:
    """A client that connects and leaves at once swallows a READY; the next one still gets the board."""
    import socket

    from host_tools.qemu import HostBoard

    b = HostBoard(tmp_path / "store.bin", exe=host_exe)
    try:
        url = b.start()
        host, port = url.removeprefix("socket://").split(":")
        for _ in range(3):
            socket.create_connection((host, int(port)), timeout=5).close()
        with SerialLink(url) as link:
            assert link.wait_ready(10.0).arch_hash == F_SPEC.arch_hash()
            assert link.info().active_slot is None
    finally:
        b.stop()
