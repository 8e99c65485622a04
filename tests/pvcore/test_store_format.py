"""pvcore.store_format: the A/B θ store's slot header, the bytes the firmware's pv_store.c reads and writes
(its pv_store_format.h is generated from this module; tests/host_tools/test_flash.py checks both ways
against the C store on the host simulator)."""

from __future__ import annotations

import zlib

import pytest

from pvcore.store_format import (
    BLOB_MAX_BYTES,
    SLOT_HEADER_BYTES,
    SLOT_HEADER_CRC_SPAN,
    SLOT_HEADER_OFFSETS,
    SlotHeader,
    SlotHeaderError,
    check_slot,
    pack_slot_header,
    parse_slot_header,
)

BLOB = bytes(range(200))


def test_layout_is_the_one_on_flash() -> None:
    """The documented layout, pinned: changing it would strand every θ already committed on a board."""
    assert SLOT_HEADER_BYTES == 32 and SLOT_HEADER_CRC_SPAN == 28 and BLOB_MAX_BYTES == 65536
    assert SLOT_HEADER_OFFSETS == {"magic": 0, "counter": 4, "blob_len": 8, "blob_crc": 12, "flags": 16,
                                   "reserved": 20, "header_crc": 28}
    head = pack_slot_header(7, BLOB)
    body = b"PVSL" + (7).to_bytes(4, "little") + (200).to_bytes(4, "little") + \
        zlib.crc32(BLOB).to_bytes(4, "little") + bytes(4) + b"\xff" * 8
    assert head == body + zlib.crc32(body).to_bytes(4, "little")


def test_round_trip() -> None:
    assert check_slot(pack_slot_header(3, BLOB) + BLOB + b"\xff" * 50) == (
        SlotHeader(counter=3, blob_len=len(BLOB), blob_crc=zlib.crc32(BLOB)), BLOB)


@pytest.mark.parametrize(
    ("corrupt", "match"),
    [
        (lambda s: b"\xff" * len(s), "magic"),  # an erased slot
        (lambda s: s[:5] + bytes([s[5] ^ 1]) + s[6:], "header CRC"),  # a torn/flipped header byte
        (lambda s: s[:SLOT_HEADER_BYTES + 10] + bytes([s[SLOT_HEADER_BYTES + 10] ^ 1]) + s[SLOT_HEADER_BYTES + 11:],
         "blob CRC"),
        (lambda s: s[: SLOT_HEADER_BYTES + 100], "exceeds the slot"),  # a slot too short for its length
        (lambda s: s[:20], "a slot header is 32"),
    ],
)
def test_refused_as_the_firmware_refuses(corrupt, match: str) -> None:
    with pytest.raises(SlotHeaderError, match=match):
        check_slot(corrupt(pack_slot_header(1, BLOB) + BLOB))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="counter 0"):
        pack_slot_header(0, BLOB)
    with pytest.raises(ValueError, match="at most 65536"):
        pack_slot_header(1, bytes(BLOB_MAX_BYTES + 1))
    assert parse_slot_header(pack_slot_header(2**32 - 1, b"")).counter == 2**32 - 1
