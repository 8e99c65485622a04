"""The A/B θ store's slot header: the 32 bytes in front of a committed θ blob in flash.

The one definition of it. The firmware's store (firmware_templates/common/pv_store.c) reads and writes it
through ``pv_store_format.h``, generated from this module by ``python -m codegen.c_shared``; the host packs
it here (``host_tools.flash`` builds the θ partition image esptool writes, the emitter and the firmware
benchmark count its size).

A θ partition (a store region) is two equal slots, each one this header followed by the signed θ (the θ
blob in its Ed25519 envelope, ``pvcore.signed``; "blob" below means that envelope, which the firmware
verifies at boot)::

     0 magic "PVSL"   4 u32 counter (commit counter, 1 for the first θ)   8 u32 blob length
    12 u32 CRC-32 of the blob   16 u32 flags (0)   20..27 reserved (0xFF)   28 u32 CRC-32 of bytes 0..27

All little-endian, CRC-32 as zlib's. A slot is valid when the magic, the header CRC, the length (within
``BLOB_MAX_BYTES`` and the slot), the blob CRC and the blob itself are good; the valid slot with the
highest counter is the active one. The header is written last, in one write: it is the commit point.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

SLOT_MAGIC = b"PVSL"
SLOT_FLAGS = 0  # no flags defined; written as 0
BLOB_MAX_BYTES = 65536  # largest θ blob a store accepts (the firmware refuses larger transfers)

# (name, struct code), in order; offsets follow from the codes (little-endian, no padding)
_FIELDS = (("magic", "4s"), ("counter", "I"), ("blob_len", "I"), ("blob_crc", "I"), ("flags", "I"),
           ("reserved", "8s"), ("header_crc", "I"))
_SLOT_HEADER = struct.Struct("<" + "".join(code for _, code in _FIELDS))
SLOT_HEADER_BYTES = _SLOT_HEADER.size
SLOT_HEADER_OFFSETS = {name: struct.calcsize("<" + "".join(c for _, c in _FIELDS[:k]))
                       for k, (name, _) in enumerate(_FIELDS)}
SLOT_RESERVED_BYTES = struct.calcsize("<" + dict(_FIELDS)["reserved"])
# the header CRC covers everything before it
SLOT_HEADER_CRC_SPAN = SLOT_HEADER_OFFSETS["header_crc"]
assert SLOT_HEADER_BYTES == 32 and SLOT_HEADER_CRC_SPAN == SLOT_HEADER_BYTES - 4


class SlotHeaderError(ValueError):
    """Bytes that are not a committed slot header (the message says which check failed)."""


@dataclass(frozen=True)
class SlotHeader:
    counter: int
    blob_len: int
    blob_crc: int
    flags: int = SLOT_FLAGS


def pack_slot_header(counter: int, blob: bytes) -> bytes:
    """The committed slot header of ``blob`` with commit counter ``counter`` (what pv_store_commit writes)."""
    if not 1 <= counter <= 0xFFFFFFFF:
        raise ValueError(f"slot counter {counter}: must be 1..2^32-1 (0 means no θ committed)")
    if len(blob) > BLOB_MAX_BYTES:
        raise ValueError(f"θ blob of {len(blob)} bytes: a slot holds at most {BLOB_MAX_BYTES}")
    head = _SLOT_HEADER.pack(SLOT_MAGIC, counter, len(blob), zlib.crc32(blob), SLOT_FLAGS,
                             b"\xff" * SLOT_RESERVED_BYTES, 0)[:SLOT_HEADER_CRC_SPAN]
    return head + struct.pack("<I", zlib.crc32(head))


def parse_slot_header(data: bytes) -> SlotHeader:
    """The header at the start of ``data`` (a slot); raises SlotHeaderError unless magic and header CRC are
    good. The blob's own checks (its CRC, pv_blob_parse) are the reader's: see ``check_slot``."""
    if len(data) < SLOT_HEADER_BYTES:
        raise SlotHeaderError(f"{len(data)} bytes: a slot header is {SLOT_HEADER_BYTES}")
    magic, counter, blob_len, blob_crc, flags, _reserved, header_crc = _SLOT_HEADER.unpack_from(data)
    if magic != SLOT_MAGIC:
        raise SlotHeaderError(f"slot magic {magic!r}, not {SLOT_MAGIC!r} (an erased or never committed slot)")
    if zlib.crc32(bytes(data[:SLOT_HEADER_CRC_SPAN])) != header_crc:
        raise SlotHeaderError("slot header CRC wrong (a torn or corrupted header)")
    return SlotHeader(counter, blob_len, blob_crc, flags)


def check_slot(slot: bytes) -> tuple[SlotHeader, bytes]:
    """The header and the blob of a committed slot (header + blob); raises SlotHeaderError when the length
    or the blob's CRC is wrong, as the firmware's store would refuse it."""
    h = parse_slot_header(slot)
    if h.blob_len > min(BLOB_MAX_BYTES, len(slot) - SLOT_HEADER_BYTES):
        raise SlotHeaderError(f"slot blob length {h.blob_len} exceeds the slot or {BLOB_MAX_BYTES}")
    blob = bytes(slot[SLOT_HEADER_BYTES : SLOT_HEADER_BYTES + h.blob_len])
    if zlib.crc32(blob) != h.blob_crc:
        raise SlotHeaderError("slot blob CRC wrong")
    return h, blob
