"""A 16x8 θ (blob format 3) over the serial link, end to end on the host simulator built with
PV_WITH_16X8=1: enroll, INFER (the int16 logit in the result), BENCH, parity bit-exact with the golden
int16 model; and an int8-only firmware refusing the 16x8 blob — on the host (clear error before sending)
and on the board (the first chunk's header, the old θ kept)."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from codegen.c_arch import kernel16_arena_bytes, kernel_arena_bytes
from codegen.golden import images_to_int8, run_int8
from host_tools.enroll import EnrollError, UserBlob, blob_from_store, enroll
from host_tools.parity import run_parity
from host_tools.qemu import HostBoard, build_host_sim
from host_tools.serial_link import DeviceError, ErrorCode, SerialLink

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def host_exe16(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_host_sim(tmp_path_factory.mktemp("host16"), extra_cflags="-DPV_WITH_16X8=1")


@pytest.fixture(scope="module")
def blob16(store) -> tuple[UserBlob, np.ndarray]:
    ub, theta, _ = blob_from_store("bob", store, activations="int16")
    assert ub.qf.activations == "int16" and struct.unpack_from("<H", ub.blob, 4)[0] == 3
    return ub, theta


def test_16x8_theta_runs_bit_exact_over_the_link(tmp_path: Path, host_exe16: Path, blob16, blobs, crops) -> None:
    ub, theta = blob16
    with HostBoard(tmp_path / "store.bin", exe=host_exe16) as url:
        with SerialLink(url) as link:
            info = link.info()
            assert info.runs_16x8 and info.arena_bytes == max(kernel16_arena_bytes(), kernel_arena_bytes())
            enroll(link, ub)
            r = link.infer(images_to_int8(crops[0]))
            want = int(run_int8(ub.qf, crops[:1])[0])
            assert r.logit16 and r.logit == want and r.logit_mirror is None
            assert r.decision == bool(ub.qf.decide(want, ub.threshold))
            assert r.logit_real == pytest.approx(float(ub.qf.dequantize_logit(want)), abs=0)
            b = link.bench(2)
            assert b.logit16 == want
            enroll(link, blobs["alice"][0])  # the same firmware still runs an int8 θ
            r8 = link.infer(images_to_int8(crops[0]))
            assert not r8.logit16 and r8.logit == int(run_int8(blobs["alice"][0].qf, crops[:1])[0])
            enroll(link, ub)
        res = run_parity([url], ub, theta, crops, [str(i) for i in range(len(crops))], source="t",
                         show_progress=False)
    assert res.bit_exact == res.n_images == len(crops)
    assert res.golden_decision_agree == len(crops)


def test_int8_firmware_refuses_a_16x8_theta(tmp_path: Path, host_exe: Path, blob16, blobs) -> None:
    ub, _ = blob16
    with HostBoard(tmp_path / "store.bin", exe=host_exe) as url, SerialLink(url) as link:
        assert not link.info().runs_16x8
        enroll(link, blobs["alice"][0])
        with pytest.raises(EnrollError, match="16x8 model .* runs int8 θ only: build it with PV_WITH_16X8=1"):
            enroll(link, ub)
        with pytest.raises(DeviceError) as e:  # sent anyway: the board refuses the header of the first chunk
            link.load_theta(ub.blob)
        assert e.value.code == ErrorCode.BLOB_INVALID
        assert link.info().user_id == "alice"  # the old θ stays active


def test_parity_cli_with_activations_int16(tmp_path: Path, host_exe16: Path, store, crops) -> None:
    np.save(tmp_path / "crops.npy", crops)
    with HostBoard(tmp_path / "store.bin", exe=host_exe16) as url:
        res = subprocess.run(
            [sys.executable, "-m", "host_tools.parity", "--user", "bob", "--port", url, "--users", str(store.root),
             "--activations", "int16", "--enroll", "--images", str(tmp_path / "crops.npy"),
             "--out", str(tmp_path / "rep"), "--no-progress"],
            cwd=REPO, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"bit-exact with golden {len(crops)}/{len(crops)}" in res.stdout + res.stderr


@pytest.mark.slow
def test_16x8_theta_bit_exact_on_qemu_cortex_m4(tmp_path: Path, blob16, crops) -> None:
    """The cross-compiled Cortex-M4 firmware (PV_WITH_16X8=1) on QEMU mps2-an386: the 16x8 θ over the UART,
    every crop bit-exact with the golden int16 model, and the board's instruction count per inference."""
    import json

    from host_tools.bench import run_bench
    from host_tools.qemu import QemuBoard, build_qemu_firmware

    ub, theta = blob16
    elf = build_qemu_firmware(tmp_path / "fw16", extra_cflags="-DPV_WITH_16X8=1")
    with QemuBoard(elf) as url:
        with SerialLink(url) as link:
            assert link.info().runs_16x8
            enroll(link, ub)
        res = run_parity([url], ub, theta, crops, [str(i) for i in range(len(crops))], source="t",
                         show_progress=False)
        bench = run_bench(url, n=3, link_n=1)
    assert res.bit_exact == res.n_images == len(crops)
    assert bench["ticks_max"] - bench["ticks_min"] <= 1
    print(json.dumps({"16x8 on qemu": f"{res.bit_exact}/{res.n_images} bit-exact",
                      "instructions_mean": bench["instructions_mean"],
                      "instructions_per_mac": bench["instructions_per_mac"]}))
