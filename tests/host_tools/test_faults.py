"""Faults on the link and on the board during enrollment, with the real C core (host simulator) and the
Cortex-M4 firmware on QEMU (slow): bytes dropped and garbage injected on the wire (a TCP proxy in the
middle, tests/host_tools/fault_proxy.py), a board reset in the middle of the θ transfer, and a power cut.
The tool retries or fails with a clear message, and the board keeps answering with its previous θ."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from codegen.golden import images_to_int8, run_int8
from host_tools.enroll import EnrollError, UserBlob, enroll
from host_tools.qemu import HostBoard, QemuBoard, build_qemu_firmware
from host_tools.serial_link import Cmd, SerialLink, encode_frame
from tests.host_tools.fault_proxy import FaultProxy, drop_every, garbage_every


def golden(ub: UserBlob, crops: np.ndarray) -> list[int]:
    return [int(v) for v in np.asarray(run_int8(ub.qf, crops))]


def device(link: SerialLink, crops: np.ndarray) -> list[int]:
    return [link.infer(x).logit for x in images_to_int8(crops)]


def assert_holds(url: str, ub: UserBlob, crops: np.ndarray, counter: int | None = None) -> None:
    """The board's active θ is ub's: INFO names it and INFER equals the golden model."""
    with SerialLink(url, timeout=5) as link:
        info = link.info()
        assert info.user_id == ub.user_id and info.theta_bytes == len(ub.blob)
        if counter is not None:
            assert info.commit_counter == counter
        assert device(link, crops) == golden(ub, crops)


@pytest.fixture
def host(tmp_path: Path, host_exe: Path):
    b = HostBoard(tmp_path / "store.bin", exe=host_exe)
    b.start()
    yield b
    b.stop()


# ---- damaged byte stream -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "to_board,to_host",
    [
        pytest.param(drop_every(20011, start=9000), drop_every(401, start=150), id="bytes-dropped"),
        pytest.param(garbage_every(15013, seed=1), garbage_every(333, seed=2), id="garbage-injected"),
        pytest.param(drop_every(25013, start=5000), garbage_every(501, seed=3), id="drop-and-garbage"),
    ],
)
def test_enroll_and_infer_through_a_damaged_link(host: HostBoard, blobs, crops, to_board, to_host) -> None:
    ub, _ = blobs["alice"]
    with FaultProxy(host.url, to_board=to_board, to_host=to_host) as url, SerialLink(url, timeout=0.5) as link:
        res = enroll(link, ub)
        assert res.info.user_id == "alice"
        got = device(link, crops[:6])
        retries, bad = link.stats.retries, link.stats.frame_errors
    assert got == golden(ub, crops[:6])
    assert retries > 0  # the faults were hit and recovered from by resending
    with SerialLink(host.url, timeout=5) as direct:
        board_bad = direct.info().frames_bad
    assert board_bad > 0 or bad > 0
    assert_holds(host.url, ub, crops[:2], counter=1)


def test_a_link_that_drops_everything_fails_clearly_and_keeps_the_old_theta(host: HostBoard, blobs, crops) -> None:
    alice, _ = blobs["alice"]
    bob, _ = blobs["bob"]
    with SerialLink(host.url, timeout=5) as link:
        enroll(link, alice)
    kill = {"on": False}

    def cut(data: bytes) -> bytes:
        return b"" if kill["on"] else data

    def progress(received: int, total: int) -> None:
        kill["on"] = True  # the cable is cut after the first chunk

    with FaultProxy(host.url, to_board=cut) as url, SerialLink(url, timeout=0.3, retries=2) as link:
        with pytest.raises(EnrollError, match="did not come back within 1 s.*previous θ stays active"):
            enroll(link, bob, ready_timeout=1.0, progress=progress)
    assert_holds(host.url, alice, crops[:3], counter=1)


# ---- board reset / power cut during the transfer -------------------------------------------------------
def reset_frame() -> bytes:
    return encode_frame(Cmd.RESET, 0x5A, b"\x00", leading_delimiter=True)


def test_board_reset_mid_transfer_restarts_it(host: HostBoard, blobs, crops) -> None:
    """The board reboots after the second chunk (the RESET command stands in for a watchdog reset):
    the next chunk is refused with BAD_STATE and the tool sends the whole θ again."""
    alice, _ = blobs["alice"]
    bob, _ = blobs["bob"]
    with SerialLink(host.url, timeout=2) as link:
        enroll(link, alice)
        done = {"n": 0}

        def progress(received: int, total: int) -> None:
            done["n"] += 1
            if done["n"] == 2:
                link.write_raw(reset_frame())

        res = enroll(link, bob, progress=progress)
    assert res.attempts == 2 and res.commit_counter == 2
    assert_holds(host.url, bob, crops[:3], counter=2)


def test_board_reset_mid_transfer_without_retries_fails_and_keeps_the_old_theta(host: HostBoard, blobs, crops) -> None:
    alice, _ = blobs["alice"]
    bob, _ = blobs["bob"]
    with SerialLink(host.url, timeout=2) as link:
        enroll(link, alice)

        def progress(received: int, total: int) -> None:
            if received == 4092:
                link.write_raw(reset_frame())

        with pytest.raises(EnrollError, match=r"θ transfer of 'bob' failed 1 times .*keeps its previous θ"):
            enroll(link, bob, attempts=1, progress=progress)
    assert_holds(host.url, alice, crops[:3], counter=1)


def test_power_cut_mid_transfer(tmp_path: Path, host_exe: Path, blobs, crops) -> None:
    """The simulator is killed (SIGKILL) in the middle of the transfer: the tool reports the cut link;
    the board, powered up again on the same flash file, answers with the previous θ."""
    alice, _ = blobs["alice"]
    bob, _ = blobs["bob"]
    store = tmp_path / "store.bin"
    b = HostBoard(store, exe=host_exe)
    b.start()
    try:
        with SerialLink(b.url, timeout=2) as link:
            enroll(link, alice)

            def progress(received: int, total: int) -> None:
                if received > 12000 and b.proc is not None:
                    os.killpg(b.proc.pid, signal.SIGKILL)
                    b.proc.wait(5)

            with pytest.raises(EnrollError, match="(lost|did not come back).*previous θ"):
                enroll(link, bob, progress=progress, ready_timeout=2.0)
    finally:
        b.stop()
    with HostBoard(store, exe=host_exe) as url:
        assert_holds(url, alice, crops[:3], counter=1)


# ---- QEMU: a real system reset through QEMU's monitor (QMP) ---------------------------------------------
class QmpQemuBoard(QemuBoard):
    """The firmware on QEMU with a QMP socket, to reset the emulated board from outside."""

    def __init__(self, elf: Path, qmp_path: Path) -> None:
        super().__init__(elf)
        self.qmp_path = qmp_path

    def command(self, fd: int) -> list[str]:
        return [*super().command(fd), "-qmp", f"unix:{self.qmp_path},server=on,wait=off"]

    def system_reset(self) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(self.qmp_path))
            f = s.makefile("rwb")
            json.loads(f.readline())  # greeting
            for cmd in ({"execute": "qmp_capabilities"}, {"execute": "system_reset"}):
                f.write(json.dumps(cmd).encode() + b"\n")
                f.flush()
                while "return" not in (reply := json.loads(f.readline())):
                    assert "error" not in reply, reply


@pytest.fixture(scope="module")
def qemu_elf() -> Path:
    return build_qemu_firmware()


@pytest.mark.slow
def test_qemu_system_reset_mid_transfer(tmp_path: Path, qemu_elf: Path, blobs, crops) -> None:
    alice, _ = blobs["alice"]
    bob, _ = blobs["bob"]
    b = QmpQemuBoard(qemu_elf, tmp_path / "qmp.sock")
    with b as url:
        with SerialLink(url, timeout=3) as link:
            enroll(link, alice)

            def reset_after(n_chunks: int):
                state = {"n": 0}

                def progress(received: int, total: int) -> None:
                    state["n"] += 1
                    if state["n"] == n_chunks:
                        b.system_reset()
                        time.sleep(0.2)

                return progress

            with pytest.raises(EnrollError, match="failed 1 times"):
                enroll(link, bob, attempts=1, progress=reset_after(3))
        assert_holds(url, alice, crops[:2], counter=1)  # the reset kept the old θ (flash region survives)
        with SerialLink(url, timeout=3) as link:
            res = enroll(link, bob, progress=reset_after(4))
        assert res.attempts == 2
        assert_holds(url, bob, crops[:2], counter=2)


@pytest.mark.slow
def test_qemu_enroll_through_a_damaged_link(qemu_elf: Path, blobs, crops) -> None:
    ub, _ = blobs["bob"]
    with QemuBoard(qemu_elf) as board_url:
        with (
            FaultProxy(board_url, to_board=drop_every(7001), to_host=garbage_every(300, seed=5)) as url,
            SerialLink(url, timeout=1.0) as link,
        ):
            enroll(link, ub)
            got = device(link, crops[:2])
            assert link.stats.retries > 0
        assert got == golden(ub, crops[:2])
        assert_holds(board_url, ub, crops[:1], counter=1)
