"""The enroll, parity and bench tools end to end on the host simulator (the firmware's C core as a Linux
process, real sockets through pyserial), their CLIs and their errors. The QEMU run of parity is in
test_parity_qemu.py (slow)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codegen.quantize import QuantConfig, quantize
from host_tools.bench import run_bench
from host_tools.enroll import EnrollError, UserBlob, blob_from_file, enroll
from host_tools.parity import ParityError, load_image_dir, run_parity, write_reports
from host_tools.qemu import HostBoard
from host_tools.serial_link import SerialLink
from pvcore.blob import pack_blob
from pvcore.cli import EXIT_CHECK_FAILED, EXIT_USAGE
from pvcore.spec import F_SPEC
from tests.conftest import require_shared

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def board(tmp_path: Path, host_exe: Path):
    with HostBoard(tmp_path / "store.bin", exe=host_exe) as url:
        yield url


def cli(module: str, *args: str, store=None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if store is not None:
        env["FACEVERIF_USERS"] = str(store.root)
    return subprocess.run(
        [sys.executable, "-m", f"host_tools.{module}", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


# ---- enroll ----------------------------------------------------------------------------------------------
def test_enroll_cli_installs_the_users_theta(board: str, store, blobs) -> None:
    r = cli("enroll", "--user", "bob", "--port", board, "--no-progress", store=store)
    assert r.returncode == 0, r.stderr
    assert "bob enrolled on host" in r.stdout and "slot 0, commit counter 1" in r.stdout
    ub, _ = blobs["bob"]
    with SerialLink(board) as link:
        info = link.info()
    assert (info.user_id, info.theta_bytes, info.threshold_logit) == ("bob", len(ub.blob), 0.25)


def test_enroll_cli_blob_file_and_its_checks(board: str, store, blobs, tmp_path: Path) -> None:
    ub, _ = blobs["alice"]
    f = tmp_path / "alice.blob"
    f.write_bytes(ub.blob)
    r = cli("enroll", "--user", "alice", "--port", board, "--blob", str(f), "--no-progress", store=store)
    assert r.returncode == 0, r.stderr
    r = cli("enroll", "--user", "bob", "--port", board, "--blob", str(f), store=store)
    assert r.returncode == 1 and "holds the θ of 'alice', not of 'bob'" in r.stderr
    bad = bytearray(ub.blob)
    bad[100] ^= 0xFF
    f.write_bytes(bytes(bad))
    r = cli("enroll", "--user", "alice", "--port", board, "--blob", str(f), store=store)
    assert r.returncode == 1 and "CRC mismatch" in r.stderr


def test_enroll_cli_errors(store) -> None:
    r = cli("enroll", "--user", "zed", "--port", "socket://127.0.0.1:9", store=store)
    assert r.returncode == 1 and "unknown user 'zed'" in r.stderr and "alice, bob" in r.stderr
    r = cli("enroll", "--user", "alice", "--port", "socket://127.0.0.1:9", store=store)
    assert r.returncode == 1 and "cannot open socket://127.0.0.1:9" in r.stderr and "nothing listens there" in r.stderr
    r = cli("enroll", "--user", "alice", "--port", "/dev/ttyUSB_nonexistent", store=store)
    assert r.returncode == 1 and "is the board plugged in?" in r.stderr
    assert cli("enroll", "--help").returncode == 0


def test_enroll_refuses_a_theta_for_another_architecture(board: str, blobs) -> None:
    """A blob whose arch hash differs from the firmware's: the board refuses it (ARCH_MISMATCH) and the
    tool says what to do; nothing is installed."""
    ub, _ = blobs["alice"]
    head = bytearray(ub.blob[:-4])
    head[12:20] = bytes.fromhex("0123456789abcdef")  # the header's arch hash (pvcore.blob.HEADER_STRUCT)
    other = bytes(head) + struct.pack("<I", zlib.crc32(head))
    fake = UserBlob("alice", other, ub.qf, 0.0, "test")  # host-side record says the right arch: the board decides
    with SerialLink(board) as link:
        with pytest.raises(EnrollError, match="ARCH_MISMATCH.*rebuild and flash the firmware"):
            enroll(link, fake)
        assert link.info().active_slot is None


def test_blob_from_file_errors(tmp_path: Path) -> None:
    with pytest.raises(EnrollError, match="cannot read θ blob"):
        blob_from_file(tmp_path / "nope.blob")
    (tmp_path / "x.blob").write_bytes(b"not a blob at all" * 10)
    with pytest.raises(EnrollError, match="bad magic"):
        blob_from_file(tmp_path / "x.blob")


# ---- parity ----------------------------------------------------------------------------------------------
def test_parity_on_the_host_simulator(board: str, blobs, crops, tmp_path: Path) -> None:
    ub, theta = blobs["alice"]
    with SerialLink(board) as link:
        enroll(link, ub)
    names = [f"crop{i}" for i in range(len(crops))]
    r = run_parity([board], ub, theta, crops, names, source="package faces", show_progress=False)
    assert r.n_images == len(crops) and r.bit_exact == r.n_images
    assert r.golden_decision_agree == r.n_images
    # the summary is what the rows say
    rows = r.images
    assert r.float_decision_agree == sum(row["device_decision"] == row["float_decision"] for row in rows)
    dscore = [abs(row["device_score"] - row["float_score"]) for row in rows]
    assert r.abs_dscore["max"] == pytest.approx(max(dscore))
    paths = write_reports(r, tmp_path / "rep")
    data = json.loads(paths["json"].read_text())
    assert data["summary"]["bit_exact"] == len(crops) and len(data["images"]) == len(crops)
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "int8 logit bit-exact with the golden model | 12/12 (100.00 %)" in paths["md"].read_text()


def test_parity_detects_a_board_that_is_not_bit_exact(board: str, blobs, crops) -> None:
    """The board holds alice's θ quantized with other activation ranges: same user, same size, different
    arithmetic. Parity must report the mismatches and fail."""
    ub, theta = blobs["alice"]
    qf2 = quantize(theta, cfg=QuantConfig(margin=2.0))
    other = UserBlob("alice", pack_blob(qf2, "alice", ub.threshold), qf2, ub.threshold, "margin 2.0")
    with SerialLink(board) as link:
        enroll(link, other)
    r = run_parity([board], ub, theta, crops, [str(i) for i in range(len(crops))], source="t", show_progress=False)
    assert r.bit_exact < r.n_images and not r.passed


def test_parity_two_boards_share_the_images(tmp_path: Path, host_exe: Path, blobs, crops) -> None:
    ub, theta = blobs["bob"]
    with (
        HostBoard(tmp_path / "a.bin", exe=host_exe) as a,
        HostBoard(tmp_path / "b.bin", exe=host_exe) as b,
    ):
        for url in (a, b):
            with SerialLink(url) as link:
                enroll(link, ub)
        r = run_parity([a, b], ub, theta, crops, [str(i) for i in range(len(crops))], source="t", show_progress=False)
    assert r.bit_exact == len(crops) and len(r.boards) == 2


def test_parity_refuses_a_board_with_another_user(board: str, blobs, crops) -> None:
    ub, theta = blobs["alice"]
    with SerialLink(board) as link:
        enroll(link, blobs["bob"][0])
    with pytest.raises(ParityError, match="holds the θ of 'bob', not 'alice'"):
        run_parity([board], ub, theta, crops[:2], ["a", "b"], source="t", show_progress=False)


def test_parity_cli_with_an_image_folder(board: str, store, crops, tmp_path: Path) -> None:
    """A folder with aligned 112×112 crops and one full photo (aligned by the dlib pipeline first)."""
    import skimage.data

    d = tmp_path / "imgs"
    d.mkdir()
    for i, c in enumerate(crops[:5]):
        Image.fromarray(c).save(d / f"c{i}.png")
    Image.fromarray(skimage.data.astronaut()).save(d / "astronaut_full.png")
    (d / "notes.txt").write_text("not an image")
    out = tmp_path / "rep"
    r = cli("parity", "--user", "alice", "--port", board, "--images", str(d), "--enroll", "--out", str(out),
            "--no-progress", store=store)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "bit-exact with golden 6/6 (100.00 %)" in r.stdout and "PASSED" in r.stdout
    r = cli("parity", "--user", "alice", "--port", board, "--images", str(d), "--out", str(out), "--json",
            "--no-progress", store=store)  # fmt: skip
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)  # --json: stdout is the JSON summary alone
    assert summary["bit_exact"] == 6 and summary["passed"] and summary["reports"]["json"] == str(out / "parity.json")
    names = [row["name"] for row in json.loads((out / "parity.json").read_text())["images"]]
    assert names == ["astronaut_full.png", "c0.png", "c1.png", "c2.png", "c3.png", "c4.png"]
    imgs, _ = load_image_dir(d)
    assert imgs.shape == (6, 112, 112, 3)


def test_parity_cli_fails_with_exit_3_when_not_bit_exact(board: str, store, blobs, tmp_path: Path, crops) -> None:
    ub, theta = blobs["alice"]
    qf2 = quantize(theta, cfg=QuantConfig(margin=2.0))
    with SerialLink(board) as link:
        enroll(link, UserBlob("alice", pack_blob(qf2, "alice", ub.threshold), qf2, ub.threshold, "t"))
    np.save(tmp_path / "crops.npy", crops)
    r = cli("parity", "--user", "alice", "--port", board, "--images", str(tmp_path / "crops.npy"),
            "--out", str(tmp_path / "rep"), "--no-progress", store=store)  # fmt: skip
    assert r.returncode == EXIT_CHECK_FAILED, r.stderr
    assert "FAILED" in r.stdout
    assert "Images that differ" in (tmp_path / "rep" / "parity.md").read_text()


def test_parity_cli_errors(store, tmp_path: Path) -> None:
    r = cli("parity", "--user", "alice", "--port", "socket://127.0.0.1:9", "--images", str(tmp_path / "none"),
            store=store)  # fmt: skip
    assert r.returncode == 1 and "no such folder" in r.stderr
    r = cli("parity", "--user", "zed", "--port", "socket://127.0.0.1:9", "--dataset", "lfw", store=store)
    assert r.returncode == 1 and "unknown user 'zed'" in r.stderr
    r = cli("parity", "--user", "alice", "--port", "x")
    assert r.returncode == EXIT_USAGE and "one of the arguments --images --dataset is required" in r.stderr
    assert cli("parity", "--help").returncode == 0


# ---- bench -----------------------------------------------------------------------------------------------
def test_bench_on_the_host_simulator(board: str, blobs) -> None:
    ub, _ = blobs["alice"]
    res = run_bench(board, n=5, link_n=3, install=ub)
    assert res["n"] == 5 and res["user"] == "alice" and res["board"] == "host"
    assert 0 < res["ticks_min"] <= res["ticks_mean"] <= res["ticks_max"]
    assert res["macs"] == sum(F_SPEC.macs())
    assert "instructions_mean" not in res  # the simulator's ticks are nanoseconds, not instructions
    assert res["link"]["host_to_device_bytes_per_s"] > 0


def test_bench_cli(board: str, store, tmp_path: Path) -> None:
    r = cli("bench", "--port", board, "--n", "3", "--link-n", "2", store=store)
    assert r.returncode == 1 and "holds no θ" in r.stderr
    out = tmp_path / "b.json"
    r = cli("bench", "--port", board, "--user", "bob", "--n", "3", "--link-n", "2", "--out", str(out), store=store)
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["user"] == "bob"
    assert "ticks_mean" in r.stdout
    r = cli("bench", "--port", board, "--n", "3", "--link-n", "0", "--json", store=store)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["n"] == 3  # --json: stdout is the JSON report alone


@pytest.mark.slow
def test_parity_cli_lfw_crops_on_the_host_simulator(board: str, store, tmp_path: Path) -> None:
    """--dataset lfw: a seeded sample of the aligned-crop cache (CI has LFW and builds the cache). The θ is
    random (no recognizer), so only bit-exactness is gated here; the ≥ 99.5 % agreement gate runs on a
    trained θ in test_parity_qemu.py."""
    from training.face.cache import lfw_cache

    require_shared("data", "lfw", "lfw-deepfunneled")
    lfw_cache("dlib").ensure(progress=False)  # a no-op once `python -m training.align --dataset lfw` ran
    out = tmp_path / "rep"
    r = cli("parity", "--user", "alice", "--port", board, "--dataset", "lfw", "--limit", "200", "--enroll",
            "--min-agreement", "0", "--out", str(out), "--no-progress", store=store)  # fmt: skip
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "parity.json").read_text())["summary"]
    assert summary["n_images"] == 200 and summary["bit_exact"] == 200
    assert summary["source"].startswith("LFW aligned crops")
