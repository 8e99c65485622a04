"""θ blob: round trip, fixed header layout, and one clear error per kind of corruption."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from codegen.quantize import QuantConfig, quantize
from pvcore.blob import (
    HEADER_SIZE,
    BlobError,
    base_blob_size,
    blob_size,
    blob_split,
    pack_blob,
    payload_size,
    unpack_base,
    unpack_blob,
    unpack_header,
    write_blob,
)
from pvcore.qtheta import QuantizedF
from pvcore.spec import F_SPEC
from tests.helpers.blobs import CORRUPTIONS, corruptions, recrc
from training.verifier.functional import random_theta


@pytest.fixture(scope="module")
def qf() -> QuantizedF:
    return quantize(random_theta(3), cfg=QuantConfig(n_aug=4))


@pytest.fixture(scope="module")
def blob(qf: QuantizedF) -> bytes:
    return pack_blob(qf, "alice", -0.25)


def test_round_trip(qf: QuantizedF, blob: bytes) -> None:
    header, back = unpack_blob(blob)
    assert back.equal_arithmetic(qf)
    assert header.user_id == "alice" and header.threshold_logit == -0.25
    assert header.arch_hash == F_SPEC.arch_hash() and header.total_size == len(blob) == blob_size()
    assert pack_blob(back, "alice", -0.25) == blob  # deterministic bytes


def test_fixed_header_layout(blob: bytes) -> None:
    assert blob[:4] == b"PVTB"
    assert struct.unpack_from("<HHI", blob, 4) == (2, 64, len(blob))  # format version 2: every layer requantizes
    assert blob[12:20] == bytes.fromhex(F_SPEC.arch_hash())
    assert blob[20:52] == b"alice" + b"\0" * 27
    assert struct.unpack_from("<f", blob, 52)[0] == -0.25
    assert struct.unpack_from("<II", blob, 56) == (payload_size(), 0)
    assert struct.unpack_from("<I", blob, len(blob) - 4)[0] == zlib.crc32(blob[:-4])
    assert len(blob) % 4 == 0 and payload_size() % 4 == 0


def test_payload_arrays_are_aligned(blob: bytes) -> None:
    n_layers = struct.unpack_from("<I", blob, HEADER_SIZE)[0]
    for i in range(n_layers):
        rec = HEADER_SIZE + 32 + 64 * i
        for off in struct.unpack_from("<5I", blob, rec + 36):
            assert off % 4 == 0


def test_write_blob_atomic(tmp_path, qf: QuantizedF) -> None:
    p = write_blob(tmp_path / "u" / "theta.bin", qf, "bob", 0.0)
    assert unpack_blob(p.read_bytes())[0].user_id == "bob"


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_each_corruption_has_a_clear_error(blob: bytes, name: str) -> None:
    data, pattern = corruptions(blob)[name]
    with pytest.raises(BlobError, match=pattern):
        unpack_blob(data)


def test_crc_is_checked_before_anything_in_the_payload(blob: bytes) -> None:
    bad = bytearray(blob)
    bad[-1] ^= 1
    with pytest.raises(BlobError, match="CRC"):
        unpack_header(bytes(bad))


@pytest.mark.parametrize("uid", ["", "x" * 33, "a\0b", "é" * 17])
def test_bad_user_id(qf: QuantizedF, uid: str) -> None:
    with pytest.raises(BlobError, match="user id"):
        pack_blob(qf, uid, 0.0)


def test_utf8_user_id_and_bad_threshold(qf: QuantizedF) -> None:
    assert unpack_blob(pack_blob(qf, "é" * 16, 0.0))[0].user_id == "é" * 16
    with pytest.raises(BlobError, match="finite"):
        pack_blob(qf, "alice", float("nan"))


def test_arrays_survive_exactly(qf: QuantizedF, blob: bytes) -> None:
    _, back = unpack_blob(blob)
    for a, b in zip(qf.layers, back.layers):
        for f in ("weights", "bias", "multiplier", "shift", "w_scales"):
            x, y = getattr(a, f), getattr(b, f)
            assert (x is None and y is None) or (x.dtype == y.dtype and np.array_equal(x, y))


def test_format_4_the_exact_pool_of_a_spec_with_a_global_pool(blob: bytes) -> None:
    """F_SPEC (v5) normalizes instead of pooling: its int8 blobs are format 2. On a spec with a global pool
    (tests.helpers.specs.SPEC_V4) the exact pool packs as format 4 and reads back; exact_pool off packs as
    format 2; the flag is refused in a blob that says format 2 — a format-2 reader would requantize those sums."""
    from tests.helpers.specs import SPEC_V4

    assert unpack_header(blob).format_version == 2
    theta = random_theta(3, spec=SPEC_V4)
    q4 = quantize(theta, cfg=QuantConfig(n_aug=4), spec=SPEC_V4)
    q2 = quantize(theta, cfg=QuantConfig(n_aug=4, exact_pool=False), spec=SPEC_V4)
    b4, b2 = pack_blob(q4, "alice", -0.25, SPEC_V4), pack_blob(q2, "alice", -0.25, SPEC_V4)
    header, back = unpack_blob(b2, SPEC_V4)
    assert header.format_version == 2 and back.equal_arithmetic(q2) and not back.layer("pool").exact_sum
    header, back = unpack_blob(b4, SPEC_V4)
    assert header.format_version == 4 and back.equal_arithmetic(q4) and back.layer("pool").exact_sum
    forged = bytearray(b4)
    struct.pack_into("<H", forged, 4, 2)
    with pytest.raises(BlobError, match="flags"):
        unpack_blob(recrc(forged), SPEC_V4)


@pytest.mark.parametrize("split", range(1, len(F_SPEC.layers)))
def test_base_and_personal_blobs_at_every_split(qf: QuantizedF, split: int) -> None:
    """A base blob holds layers [0, split) only and is no model; the personal blob completes it exactly."""
    base = pack_blob(qf, "base", 0.0, split=split)
    personal = pack_blob(qf, "alice", -0.25, split=split, personal=True)
    assert blob_split(base) == (0, split) and len(base) == base_blob_size(split) == blob_size(end_layer=split)
    assert len(base) + len(personal) == blob_size() + blob_size(first_layer=split, end_layer=split)
    b = unpack_base(base)
    assert b.split == split and len(b.layers) == split
    assert all(x.equal_arithmetic(y) for x, y in zip(b.layers, qf.layers))
    with pytest.raises(BlobError, match="no runnable model"):
        unpack_blob(base)
    with pytest.raises(BlobError, match="not a base"):
        unpack_base(personal)
    _, back = unpack_blob(personal, base=base)
    assert back.equal_arithmetic(qf)
