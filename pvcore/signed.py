"""The signed θ: a θ blob in an Ed25519-signed envelope, the only form a board installs.

Layout (all little-endian; the firmware reads it through ``pv_blob_format.h``, generated from this module
by ``python -m codegen.c_shared``)::

    off  size  field
    0    4     magic b"PVSG"
    4    2     u16 version = 1
    6    2     u16 header_size = 32
    8    4     u32 total_size = 32 + blob_size + 64
    12   4     u32 counter: the signer's monotonic counter (>= 1); a board refuses a θ whose counter is
               lower than its active θ's (a replay of an older blob)
    16   8     key_id: the first 8 bytes of SHA-256 of the signer's raw 32-byte Ed25519 public key
    24   4     u32 blob_size: the θ blob's total_size (a multiple of 4)
    28   4     u32 reserved = 0
    32   ...   the θ blob (pvcore.blob), byte for byte; 4-byte aligned, so the kernel reads it in place
    end  64    Ed25519 signature (RFC 8032) by the key ``key_id`` over bytes [0, 32 + blob_size)

The signature covers the header (counter, key id, sizes) and the whole blob: no byte of either can change
without the board refusing the envelope. The board keeps the envelope as received in its A/B θ store and
checks the signature again at boot. Keys and counters: :mod:`pvcore.keys`; the threat model:
docs/signing.md.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

SIGNED_MAGIC = b"PVSG"
SIGNED_VERSION = 1
SIGNED_HEADER_SIZE = 32
SIGNATURE_BYTES = 64
PUBLIC_KEY_BYTES = 32
KEY_ID_BYTES = 8
COUNTER_MAX = 0xFFFFFFFF
SIGNED_OVERHEAD = SIGNED_HEADER_SIZE + SIGNATURE_BYTES

SIGNED_HEADER_STRUCT = struct.Struct("<4sHHII8sII")
SIGNED_HEADER_FIELDS = ("magic", "version", "header_size", "total_size", "counter", "key_id", "blob_size",
                        "reserved")
assert SIGNED_HEADER_STRUCT.size == SIGNED_HEADER_SIZE


def _offsets() -> dict[str, int]:
    from pvcore.blob import _offsets as offsets

    return offsets(SIGNED_HEADER_STRUCT, SIGNED_HEADER_FIELDS)


SIGNED_HEADER_OFFSETS = _offsets()


class SignatureError(ValueError):
    """An envelope that is malformed, unsigned, signed by an untrusted key or whose signature is wrong."""


@dataclass(frozen=True)
class Envelope:
    counter: int
    key_id: bytes
    blob: bytes
    signature: bytes
    signed_part: bytes  # bytes [0, 32 + blob_size): what the signature covers


def key_id(public_key: bytes) -> bytes:
    """The 8-byte id of a raw Ed25519 public key (what the envelope and pv_trusted_keys.h carry)."""
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise ValueError(f"an Ed25519 public key is {PUBLIC_KEY_BYTES} bytes, not {len(public_key)}")
    return hashlib.sha256(public_key).digest()[:KEY_ID_BYTES]


def is_signed(data: bytes) -> bool:
    return bytes(data[:4]) == SIGNED_MAGIC


def signed_part(blob: bytes, counter: int, kid: bytes) -> bytes:
    """The bytes a signer signs: the envelope header and the blob."""
    from pvcore.blob import HEADER_STRUCT, MAGIC

    blob = bytes(blob)
    if len(blob) < HEADER_STRUCT.size or blob[:4] != MAGIC:
        raise SignatureError("only a θ blob (magic PVTB) can be signed")
    if len(blob) % 4:
        raise SignatureError(f"θ blob of {len(blob)} bytes: a multiple of 4 is needed (kernel alignment)")
    if not 1 <= counter <= COUNTER_MAX:
        raise SignatureError(f"counter {counter}: must be 1..{COUNTER_MAX}")
    if len(kid) != KEY_ID_BYTES:
        raise SignatureError(f"key id of {len(kid)} bytes, not {KEY_ID_BYTES}")
    head = SIGNED_HEADER_STRUCT.pack(SIGNED_MAGIC, SIGNED_VERSION, SIGNED_HEADER_SIZE,
                                     SIGNED_HEADER_SIZE + len(blob) + SIGNATURE_BYTES, counter, kid, len(blob), 0)
    return head + blob


def seal(blob: bytes, counter: int, private_key) -> bytes:
    """The envelope of ``blob``: signed by ``private_key`` (cryptography's Ed25519PrivateKey)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    pub = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    part = signed_part(blob, counter, key_id(pub))
    return part + private_key.sign(part)


def parse(data: bytes) -> Envelope:
    """The envelope's fields (no signature check); raises SignatureError when it is not one."""
    data = bytes(data)
    if len(data) >= 4 and data[:4] != SIGNED_MAGIC:
        raise SignatureError("unsigned: not a signed θ envelope (magic PVSG); sign it with the host key "
                             "(python -m host_tools.keys --help)")
    if len(data) < SIGNED_OVERHEAD:
        raise SignatureError(f"signed θ of {len(data)} bytes: shorter than its header and signature")
    magic, version, hsize, total, counter, kid, blob_size, _res = SIGNED_HEADER_STRUCT.unpack_from(data)
    if version != SIGNED_VERSION or hsize != SIGNED_HEADER_SIZE:
        raise SignatureError(f"signed θ version {version} / header size {hsize}: expected {SIGNED_VERSION} / "
                             f"{SIGNED_HEADER_SIZE}")
    if total != len(data) or total != SIGNED_OVERHEAD + blob_size or blob_size % 4:
        raise SignatureError(f"signed θ sizes inconsistent: total {total}, blob {blob_size}, file {len(data)}")
    end = SIGNED_HEADER_SIZE + blob_size
    return Envelope(counter, kid, data[SIGNED_HEADER_SIZE:end], data[end:], data[:end])


def verify(data: bytes, trusted: dict[bytes, bytes]) -> Envelope:
    """The envelope, after checking its signature against ``trusted`` (key id → raw public key), as the
    board does; raises SignatureError naming the fault."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    env = parse(data)
    pub = trusted.get(env.key_id)
    if pub is None:
        raise SignatureError(f"signed by key {env.key_id.hex()}, which is not trusted")
    try:
        Ed25519PublicKey.from_public_bytes(pub).verify(env.signature, env.signed_part)
    except InvalidSignature:
        raise SignatureError(f"signature by key {env.key_id.hex()} is wrong: the θ was changed after signing") from None
    return env


def inner_blob(data: bytes) -> bytes:
    """The θ blob of an envelope, or ``data`` itself when it is a bare blob."""
    return parse(data).blob if is_signed(data) else bytes(data)
