"""The TEST signing key: what the template builds of ``firmware_templates/`` trust
(``firmware_templates/test_keys/pv_trusted_keys.h``, generated from it), so that the tests,
``host_tools.fw_bench`` and ``host_tools.link_bench`` can install θ on the boards they build from the
templates. Its private half is right here, public: a firmware that trusts it accepts anyone's θ. Never
ship such a build; emitted projects trust the host's keyring instead (docs/signing.md)."""

from __future__ import annotations

import itertools
import threading
import time

from pvcore import signed

NAME = "pv-test-key"
SEED = b"pvtest-key-do-not-use-in-product"  # the 32-byte Ed25519 private key (RFC 8032 seed)

# Counters rise across one process and, mostly, beyond (16 per second since 2026, then +1 per θ): a board
# whose store outlives one run still takes the next run's θ. 2^32 lasts until 2034.
_counter = itertools.count(int(time.time() - 1.767e9) * 16)
_lock = threading.Lock()


def private_key():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(SEED)


def public_key() -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return private_key().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def next_counter() -> int:
    with _lock:
        return next(_counter)


def sign(blob: bytes, counter: int | None = None) -> bytes:
    """``blob`` signed by the test key, with ``counter`` or the next one."""
    return signed.seal(blob, next_counter() if counter is None else counter, private_key())


def sign_if_bare(blob: bytes) -> bytes:
    """A link's signer for the template builds: a bare θ blob is signed; an envelope (or bytes that are no
    θ at all) goes out as it is."""
    return sign(blob) if bytes(blob[:4]) == b"PVTB" else bytes(blob)
