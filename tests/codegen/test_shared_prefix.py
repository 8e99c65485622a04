"""Base + personal θ blobs (codegen/shared_prefix.py): θ of the shipped hypernetwork, whose layers before
``pool`` are shared by every user. The base blob holds those layers only, the personal blob round-trips
to the same int8 arithmetic on it, the C kernel on the host runs it on the base bit-exactly, and every
mismatch is refused with PV_ERR_BASE."""

from __future__ import annotations

import os
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from codegen.golden import run_int8
from codegen.shared_prefix import make_base, make_personal, render_base_header, split_index
from pvcore.blob import (
    HEADER_OFFSETS,
    HEADER_SIZE,
    PAYLOAD_HEAD_OFFSETS,
    PAYLOAD_HEAD_SIZE,
    BlobError,
    base_blob_size,
    blob_size,
    blob_split,
    pack_blob,
    payload_size,
    prefix_id,
    unpack_base,
    unpack_blob,
)
from pvcore.spec import F_SPEC
from training.hypermodel import HyperModel
from training.verifier.functional import random_theta

SPLIT = split_index("pool")


@pytest.fixture(scope="module")
def model_thetas() -> np.ndarray:
    """θ of the shipped model for three unit embeddings (random: what matters here is the arithmetic)."""
    m = HyperModel.load()
    assert m.meta["config"]["personal_from"] == "pool"
    e = np.random.default_rng(3).normal(size=(3, 128)).astype(np.float32)
    return m.theta(e / np.linalg.norm(e, axis=1, keepdims=True))


@pytest.fixture(scope="module")
def base(model_thetas):
    return make_base(model_thetas[0], SPLIT, 0.3)


def test_model_thetas_share_the_prefix(model_thetas) -> None:
    n_prefix = min(s.offset for s in F_SPEC.layout if s.layer == "fc1")
    assert np.array_equal(model_thetas[0][:n_prefix], model_thetas[2][:n_prefix])
    assert not np.array_equal(model_thetas[0][n_prefix:], model_thetas[2][n_prefix:])


def test_personal_blob_round_trip(model_thetas, base, face_images) -> None:
    bqf, bblob = base
    assert blob_split(bblob) == (0, SPLIT) and len(bblob) == base_blob_size(SPLIT)
    for k, th in enumerate(model_thetas):
        qf, blob = make_personal(th, face_images[k], bqf, SPLIT, f"u{k}", 0.3)
        assert blob_split(blob) == (SPLIT, 0) and len(blob) == blob_size(first_layer=SPLIT) < 3200
        assert all(a is b for a, b in zip(qf.layers[:SPLIT], bqf.layers[:SPLIT]))  # the base's prefix
        _, back = unpack_blob(blob, base=bblob)
        assert back.equal_arithmetic(qf)
        assert np.array_equal(run_int8(back, face_images[:16]), run_int8(qf, face_images[:16]))


def _old_layout_base(bqf) -> bytes:
    """A base blob as made before bases held their prefix only: the full blob with split and prefix id set."""
    b = bytearray(pack_blob(bqf, "base", 0.3))
    struct.pack_into("<I", b, HEADER_SIZE + PAYLOAD_HEAD_OFFSETS["split"], SPLIT)
    struct.pack_into("<I", b, HEADER_OFFSETS["prefix_id"], prefix_id(bqf, SPLIT))
    struct.pack_into("<I", b, len(b) - 4, zlib.crc32(b[:-4]))
    return bytes(b)


def test_base_blob_holds_the_shared_prefix_only(base) -> None:
    bqf, bblob = base
    # the base's and a personal blob's payloads together are the full payload and one more payload head
    assert payload_size(end_layer=SPLIT) + payload_size(first_layer=SPLIT) == payload_size() + PAYLOAD_HEAD_SIZE
    assert len(bblob) == base_blob_size(SPLIT) == 26_692 and blob_size() - len(bblob) == 2_932  # shipped model
    b = unpack_base(bblob)
    assert b.split == SPLIT and b.header.prefix_id == prefix_id(bqf, SPLIT) and b.activations == "int8"
    assert [q.name for q in b.layers] == [la.name for la in F_SPEC.layers[:SPLIT]]
    full = unpack_blob(pack_blob(bqf, "x", 0.3))[1]  # the same layers as a full blob reads them back
    assert all(q.equal_arithmetic(w) for q, w in zip(b.layers, full.layers[:SPLIT]))


def test_base_blob_is_no_model_and_only_a_base_is_one(base) -> None:
    bqf, bblob = base
    with pytest.raises(BlobError, match="no runnable model"):
        unpack_blob(bblob)
    with pytest.raises(BlobError, match="no runnable model"):
        unpack_blob(bblob, base=bblob)
    with pytest.raises(BlobError, match="not a base"):
        unpack_base(pack_blob(bqf, "x", 0.3))
    with pytest.raises(BlobError, match="old layout"):
        unpack_base(_old_layout_base(bqf))
    with pytest.raises(BlobError, match="truncated"):
        unpack_base(bblob[:-8])


def test_base_prefix_does_not_depend_on_the_user(model_thetas) -> None:
    (b0, _), (b2, _) = make_base(model_thetas[0], SPLIT, 0.3), make_base(model_thetas[2], SPLIT, 0.3)
    assert prefix_id(b0, SPLIT) == prefix_id(b2, SPLIT)


def test_mismatches_are_refused(model_thetas, base, face_images) -> None:
    bqf, bblob = base
    _, blob = make_personal(model_thetas[1], face_images[1], bqf, SPLIT, "bob", 0.3)
    with pytest.raises(BlobError, match="needs the base blob"):
        unpack_blob(blob)
    other_q, other = make_base(random_theta(5).numpy(), SPLIT, 0.3)
    with pytest.raises(BlobError, match="shared prefix"):
        unpack_blob(blob, base=other)
    with pytest.raises(ValueError, match="not the base's shared prefix"):
        make_personal(random_theta(6).numpy(), None, bqf, SPLIT, "eve", 0.3)
    with pytest.raises(BlobError, match="needs the split"):
        pack_blob(bqf, "x", 0.3, personal=True)


def _c(binary: Path, tmp: Path, blob: bytes, base_blob: bytes | None, images: np.ndarray | None = None):
    (tmp / "blob.bin").write_bytes(blob)
    env = dict(os.environ)
    if base_blob is not None:
        (tmp / "base.bin").write_bytes(base_blob)
        env["PV_TEST_BASE"] = str(tmp / "base.bin")
    if images is None:
        return subprocess.run([str(binary), "parse", str(tmp / "blob.bin")], capture_output=True, text=True,
                              env=env).stdout.split()[:2]
    np.ascontiguousarray(images, np.uint8).tofile(tmp / "images.u8")
    res = subprocess.run([str(binary), "infer", str(tmp / "blob.bin"), str(tmp / "images.u8"), str(tmp / "out.i8")],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    return np.fromfile(tmp / "out.i8", np.int8)


@pytest.mark.parametrize("dsp", [False, True])
def test_c_kernel_runs_personal_blobs_on_the_base_bit_exact(model_thetas, base, face_images, pv_test_bin,
                                                            pv_test_bin_dsp, tmp_path, dsp: bool) -> None:
    bqf, bblob = base
    binary = pv_test_bin_dsp if dsp else pv_test_bin
    for k, th in enumerate(model_thetas):
        qf, blob = make_personal(th, face_images[k], bqf, SPLIT, f"u{k}", 0.3)
        got = _c(binary, tmp_path, blob, bblob, face_images)
        want = run_int8(qf, face_images)
        assert np.array_equal(got, want), f"user {k}: {(got != want).sum()} of {len(want)} logits differ"


def test_c_refuses_personal_blobs_without_their_base(model_thetas, base, face_images, pv_test_bin,
                                                     tmp_path) -> None:
    bqf, bblob = base
    _, blob = make_personal(model_thetas[1], face_images[1], bqf, SPLIT, "bob", 0.3)
    assert _c(pv_test_bin, tmp_path, blob, None)[0] == "PV_ERR_BASE"  # no base set
    _, other = make_base(random_theta(5).numpy(), SPLIT, 0.3)
    assert _c(pv_test_bin, tmp_path, blob, other)[0] == "PV_ERR_BASE"  # another model's prefix
    assert _c(pv_test_bin, tmp_path, blob, bblob)[0] == "PV_OK"
    full = pack_blob(bqf, "plain", 0.3)  # a full blob is no base (no split)...
    assert _c(pv_test_bin, tmp_path, blob, full) == ["base", "PV_ERR_BASE"]
    assert _c(pv_test_bin, tmp_path, blob, blob) == ["base", "PV_ERR_BASE"]  # ...nor is a personal one
    assert _c(pv_test_bin, tmp_path, full, bblob)[0] == "PV_OK"  # full blobs still run with a base set


def test_c_refuses_a_base_blob_as_a_model_and_bad_bases(model_thetas, base, face_images, pv_test_bin,
                                                         tmp_path) -> None:
    bqf, bblob = base
    assert _c(pv_test_bin, tmp_path, bblob, None)[0] == "PV_ERR_BASE"  # the base is no model...
    assert _c(pv_test_bin, tmp_path, bblob, bblob)[0] == "PV_ERR_BASE"  # ...with a base set too
    _, blob = make_personal(model_thetas[1], face_images[1], bqf, SPLIT, "bob", 0.3)
    assert _c(pv_test_bin, tmp_path, blob, _old_layout_base(bqf)) == ["base", "PV_ERR_SIZE"]
    assert _c(pv_test_bin, tmp_path, blob, bblob[:-8]) == ["base", "PV_ERR_TRUNCATED"]
    bad = bytearray(bblob)
    bad[HEADER_SIZE + 4096] ^= 1  # a weight of the prefix
    assert _c(pv_test_bin, tmp_path, blob, bytes(bad)) == ["base", "PV_ERR_CRC"]


def test_base_header(base) -> None:
    bqf, bblob = base
    text = render_base_header(bblob, bqf, SPLIT)
    assert f"#define PV_BASE_BLOB_BYTES {len(bblob)}u" in text and f"0x{prefix_id(bqf, SPLIT):08x}u" in text
    assert text.count("0x") >= len(bblob)
