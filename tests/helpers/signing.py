"""Signing in the tests: the TEST key (pvcore/test_key.py), which the template builds trust, and a keyring
holding it for the tools the tests run (codegen.emit, host_tools.enroll)."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from pvcore import signed, test_key
from pvcore.test_key import NAME as TEST_KEY_NAME
from pvcore.test_key import next_counter, sign, sign_if_bare

TEST_KEY = test_key.private_key()
TEST_PUBLIC = test_key.public_key()
TRUSTED = {signed.key_id(TEST_PUBLIC): TEST_PUBLIC}

__all__ = ["TEST_KEY", "TEST_KEY_NAME", "TEST_PUBLIC", "TRUSTED", "next_counter", "sign", "sign_if_bare",
           "write_test_keyring"]


def write_test_keyring(folder: Path) -> Path:
    """A keyring holding the test key (active), for tools run by tests (codegen.emit, host_tools.enroll)."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = folder / f"{TEST_KEY_NAME}.key"
    if not key.exists():
        key.write_bytes(TEST_KEY.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        key.chmod(0o600)
        (folder / f"{TEST_KEY_NAME}.pub").write_text(TEST_PUBLIC.hex() + "\n")
        (folder / f"{TEST_KEY_NAME}.counter").write_text(f"{next_counter()}\n")
        (folder / "ACTIVE").write_text(TEST_KEY_NAME + "\n")
    return folder
