"""The 64 KB build on QEMU mps2-an386: the shipped model's shared prefix compiled in (``make BASE=``),
A/B slots sized for personal θ blobs. Three users' personal blobs over the serial link: INFER over the
UART and INFER_BULK bit-exact with the golden model; slot switching survives a reset; a full blob and the
base blob (too large for a slot), a base blob small enough for one (no model: PV_ERR_BASE) and a personal
blob of another model's prefix are refused, the old θ stays active."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from codegen.golden import images_to_int8, run_int8
from codegen.quantize import augment, package_faces
from codegen.shared_prefix import make_base, make_personal, render_base_header, split_index
from host_tools.fw_bench import build
from host_tools.qemu import QemuBoard
from host_tools.serial_link import DeviceError, ErrorCode, SerialLink
from training.hypermodel import HyperModel
from training.verifier.functional import random_theta

pytestmark = pytest.mark.slow
N_UART, N_BULK = 6, 120


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    if shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None:
        pytest.fail("qemu-system-arm / arm-none-eabi-gcc missing: run .ci/setup (apt packages)")
    tmp = tmp_path_factory.mktemp("shared-prefix")
    m = HyperModel.load()
    split = split_index(str(m.meta["config"]["personal_from"]))
    e = np.random.default_rng(11).normal(size=(3, 128)).astype(np.float32)
    thetas = m.theta(e / np.linalg.norm(e, axis=1, keepdims=True))
    base, base_blob = make_base(thetas[0], split, m.threshold)
    (tmp / "base").mkdir()
    (tmp / "base" / "pv_base_theta.h").write_text(render_base_header(base_blob, base, split))
    elf = build(True, tmp / "build", tmp / "base")
    images = augment(package_faces(), (N_UART + N_BULK) // 2, seed=21)
    users = []
    for k, th in enumerate(thetas):
        qf, blob = make_personal(th, images[k], base, split, f"user{k}", m.threshold)
        users.append((f"user{k}", qf, blob))
    other_q, _ = make_base(random_theta(4).numpy(), split, 0.0)  # another model's prefix
    _, foreign = make_personal(random_theta(4).numpy(), None, other_q, split, "foreign", 0.0)
    return {"elf": elf, "images": images, "users": users, "base_qf": base, "foreign": foreign, "tmp": tmp}


def test_personal_blobs_bit_exact_over_uart_and_bulk(setup) -> None:
    images, tmp = setup["images"], setup["tmp"]
    bulk = tmp / "bulk.bin"
    bulk.write_bytes(images_to_int8(images[N_UART:]).tobytes())
    with QemuBoard(setup["elf"], bulk=bulk) as url, SerialLink(url, timeout=10.0) as link:
        link.info()
        for name, qf, blob in setup["users"]:
            assert len(blob) + 96 < 4096 - 32  # signed (envelope: 96 B), in a slot of the 64 KB build
            link.install_theta(blob)
            assert link.info().user_id == name
            want = run_int8(qf, images)
            got = [link.infer(images_to_int8(images[i])).logit for i in range(N_UART)]
            assert got == [int(q) for q in want[:N_UART]], name
            res = link.infer_bulk(0, N_BULK, per_inference_s=5.0)
            assert [r.logit for r in res] == [int(q) for q in want[N_UART:]], name


def test_slots_switch_and_mismatches_are_refused(setup) -> None:
    (n0, _, b0), (n1, _, b1), _ = setup["users"]
    with QemuBoard(setup["elf"]) as url, SerialLink(url, timeout=10.0) as link:
        link.info()
        s0, c0 = link.install_theta(b0)
        s1, c1 = link.install_theta(b1)
        assert s1 != s0 and c1 == c0 + 1
        info = link.reset()
        assert info is not None and (info.user_id, info.active_slot) == (n1, s1)
        with pytest.raises(DeviceError) as ei:  # another model's prefix: refused at COMMIT
            link.install_theta(setup["foreign"])
        assert ei.value.code == ErrorCode.BLOB_INVALID and ei.value.detail == -14  # PV_ERR_BASE
        from pvcore.blob import pack_blob

        small_base = pack_blob(setup["base_qf"], "base", 0.0, split=2)  # layers [0, 2): 3 KB, fits a slot
        assert len(small_base) + 96 < 4096 - 32
        with pytest.raises(DeviceError) as ei:  # a base blob is no model: refused at COMMIT
            link.install_theta(small_base)
        assert ei.value.code == ErrorCode.BLOB_INVALID and ei.value.detail == -14  # PV_ERR_BASE
        full = pack_blob(setup["base_qf"], "full", 0.0)  # 30.5 KB: larger than a slot of this build
        base = pack_blob(setup["base_qf"], "base", 0.0, split=split_index("pool"))  # the base: 27.6 KB
        for big in (full, base):
            with pytest.raises(DeviceError):
                link.install_theta(big)
        after = link.info()
        assert (after.user_id, after.active_slot, after.commit_counter) == (n1, s1, c1)
