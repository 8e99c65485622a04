"""The A/B θ store in C (gcc build): refusals, slot choice at boot, and power cuts during an update
(replayed from a journal of every flash byte it changes), with real θ blobs from codegen."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.firmware.conftest import User, run_c_tool


def _run(host_exe: Path, users: dict[str, User], tmp_path: Path, stride: int) -> int:
    paths = []
    for name in ("alice", "bob", "carol"):
        p = tmp_path / f"{name}.bin"
        p.write_bytes(users[name].blob)
        paths.append(str(p))
    res = run_c_tool(host_exe.parent / "pv_store_test", "--stride", str(stride), *paths)
    out = res.stdout.decode() + res.stderr.decode()
    assert res.returncode == 0, out
    assert " 0 failed" in out
    return int(out.split("power cuts simulated:")[1].split()[0])


def test_store_refusals_and_sampled_power_cuts(
    host_exe: Path, users: dict[str, User], tmp_path: Path
) -> None:
    assert _run(host_exe, users, tmp_path, stride=61) > 2 * len(users["bob"].blob) // 61


@pytest.mark.slow
def test_store_survives_a_power_cut_at_every_byte(
    host_exe: Path, users: dict[str, User], tmp_path: Path
) -> None:
    cuts = _run(host_exe, users, tmp_path, stride=1)
    assert cuts > len(users["bob"].blob) + len(users["carol"].blob)
