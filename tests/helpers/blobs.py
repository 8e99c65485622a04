"""θ blobs damaged in one way each, for the Python parser's tests (tests/pvcore/test_blob.py) and the C
parser's (tests/codegen/test_c_kernel.py)."""

from __future__ import annotations

import struct
import zlib

from pvcore.blob import HEADER_SIZE, payload_size
from pvcore.spec import F_SPEC


def recrc(b: bytearray) -> bytes:
    total = struct.unpack_from("<I", b, 8)[0]
    struct.pack_into("<I", b, total - 4, zlib.crc32(bytes(b[: total - 4])) & 0xFFFFFFFF)
    return bytes(b)


def corruptions(blob: bytes) -> dict[str, tuple[bytes, str]]:
    """name → (corrupted blob, regex of the Python parser's error)."""
    b = bytearray(blob)
    out: dict[str, tuple[bytes, str]] = {}
    out["truncated_header"] = (blob[:40], "truncated")
    out["truncated_body"] = (blob[:-100], "truncated")
    bad = bytearray(b)
    bad[0:4] = b"PVTX"
    out["magic"] = (bytes(bad), "bad magic")
    bad = bytearray(b)
    struct.pack_into("<H", bad, 4, 1)  # the previous format (the pool did not requantize)
    out["version"] = (recrc(bad), "version 1")
    bad = bytearray(b)
    struct.pack_into("<H", bad, 6, 48)
    out["header_size"] = (recrc(bad), "header size 48")
    bad = bytearray(b)
    struct.pack_into("<I", bad, 56, payload_size() - 4)
    out["payload_size"] = (recrc(bad), "sizes inconsistent")
    bad = bytearray(b)
    bad[HEADER_SIZE + 5000] ^= 0x40
    out["crc"] = (bytes(bad), "CRC mismatch")
    bad = bytearray(b)
    bad[12:20] = bytes.fromhex("0123456789abcdef")
    out["arch"] = (recrc(bad), f"0123456789abcdef.*{F_SPEC.arch_hash()}")
    bad = bytearray(b)  # a layer record that does not match the architecture
    struct.pack_into("<H", bad, HEADER_SIZE + 32 + 2, 23)
    out["layout"] = (recrc(bad), "expected conv")
    bad = bytearray(b)  # a shift outside [-31, 30]
    off_shift = struct.unpack_from("<I", bad, HEADER_SIZE + 32 + 48)[0]
    struct.pack_into("<i", bad, HEADER_SIZE + off_shift, 40)
    out["param"] = (recrc(bad), "multiplier/shift out of range")
    return out


CORRUPTIONS = (
    "truncated_header",
    "truncated_body",
    "magic",
    "version",
    "header_size",
    "payload_size",
    "crc",
    "arch",
    "layout",
    "param",
)

