"""Authenticated θ on the boards (host simulator; Cortex-M4 and RV32IMC on QEMU, slow): a θ signed by a key the
firmware does not trust, an unsigned θ, an older θ replayed, and a θ whose threshold was changed after signing
are each refused with their ERROR frame — and the θ active before still answers with the same logits, also
after a reboot (the store checks the signature of its slots again at boot)."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from codegen.golden import images_to_int8, run_int8
from host_tools.serial_link import Cmd, DeviceError, ErrorCode, SerialLink
from pvcore import signed
from pvcore.blob import HEADER_OFFSETS
from tests.firmware.conftest import BoardHandle, User
from tests.helpers.signing import next_counter, sign

THRESHOLD = HEADER_OFFSETS["threshold_logit"]


@pytest.fixture
def link(board: BoardHandle) -> SerialLink:
    with SerialLink(board.url, timeout=10.0) as lk:
        lk.info()
        yield lk


def _logits(link: SerialLink, images: np.ndarray) -> list[int]:
    return [link.infer(x).logit for x in images_to_int8(images)]


def _refused(link: SerialLink, data: bytes, code: ErrorCode) -> DeviceError:
    """Sends a signed θ as it is (no signer); the refusal comes at the first chunk or at COMMIT."""
    with pytest.raises(DeviceError) as ei:
        link.load_theta(data, sign=False)
        link.commit()
    assert ei.value.code == code, str(ei.value)
    return ei.value


def _threshold_changed(env: bytes, threshold: float) -> bytes:
    """The signed θ with the blob's threshold changed and its CRC fixed: only the signature can tell."""
    e = bytearray(env)
    blob_at = signed.SIGNED_HEADER_SIZE
    n = struct.unpack_from("<I", e, signed.SIGNED_HEADER_OFFSETS["blob_size"])[0]
    struct.pack_into("<f", e, blob_at + THRESHOLD, threshold)
    struct.pack_into("<I", e, blob_at + n - 4, zlib.crc32(bytes(e[blob_at : blob_at + n - 4])))
    return bytes(e)


def _forged(blob: bytes, key_id: bytes, key: Ed25519PrivateKey) -> bytes:
    part = signed.signed_part(blob, next_counter(), key_id)
    return part + key.sign(part)


def test_forged_replayed_and_unsigned_theta_are_refused(
    board: BoardHandle, link: SerialLink, users: dict[str, User], images: np.ndarray
) -> None:
    alice, bob = users["alice"], users["bob"]
    older = sign(bob.blob)  # signed first: its counter is lower than alice's below
    active = sign(alice.blob)
    link.install_theta(active)
    probe = images[:2]
    want = [int(v) for v in run_int8(alice.qf, probe)]
    assert _logits(link, probe) == want
    before = link.info()

    attacker = Ed25519PrivateKey.from_private_bytes(b"an-attacker-with-the-serial-port")
    cases = {
        "untrusted key": (signed.seal(bob.blob, next_counter(), attacker), ErrorCode.UNTRUSTED_KEY),
        "unsigned": (bob.blob, ErrorCode.UNSIGNED),
        "replayed older θ": (older, ErrorCode.REPLAY),
        # alice's own θ, accepting everyone: the threshold set to the lowest float32 after signing
        "threshold modified": (_threshold_changed(sign(alice.blob), -3.0e38), ErrorCode.BAD_SIGNATURE),
        # the attacker's own signature under the trusted key's id
        "forged signature": (_forged(bob.blob, active[16:24], attacker), ErrorCode.BAD_SIGNATURE),
    }
    for name, (data, code) in cases.items():
        e = _refused(link, data, code)
        if code == ErrorCode.REPLAY:
            assert e.detail == signed.parse(active).counter, name  # the active θ's counter
        info = link.info()
        assert (info.user_id, info.commit_counter, info.active_slot, info.threshold_logit) == (
            "alice", before.commit_counter, before.active_slot, before.threshold_logit), name
        assert _logits(link, probe) == want, name
    after = link.reset()  # the store reads its slots again (signature included) at boot
    assert after is not None and (after.user_id, after.commit_counter) == ("alice", before.commit_counter)
    assert _logits(link, probe) == want
    # a θ signed later (a higher counter) is taken; the same signed θ again is not a replay (counter equal)
    newer = sign(bob.blob)
    assert link.install_theta(newer)[1] == before.commit_counter + 1
    assert link.install_theta(newer)[1] == before.commit_counter + 2
    assert link.info().user_id == "bob"


def test_refusal_comes_with_the_first_chunk(link: SerialLink, users: dict[str, User]) -> None:
    """Unsigned and untrusted θ are refused by the first LOAD_THETA chunk, before any flash is erased."""
    attacker = Ed25519PrivateKey.from_private_bytes(b"an-attacker-with-the-serial-port")
    for data, code in ((users["bob"].blob, ErrorCode.UNSIGNED),
                       (signed.seal(users["bob"].blob, next_counter(), attacker), ErrorCode.UNTRUSTED_KEY)):
        with pytest.raises(DeviceError) as ei:
            link.request(Cmd.LOAD_THETA, struct.pack("<I", 0) + data[:1024])
        assert ei.value.code == code and ei.value.request_cmd == Cmd.LOAD_THETA
        assert not link.info().transfer_open
