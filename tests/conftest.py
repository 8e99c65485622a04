"""Shared fixtures. Tests that need the shared folder (LFW, pretrained weights) skip on a developer
machine without it, and FAIL in CI (CI=true), where the data must be present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pvcore.paths import SHARED_ENV, shared_dir


def _trust_the_test_key() -> None:
    """Every test signs θ with the TEST key (tests/helpers/signing.py), which the template builds trust:
    links sign bare blobs with it, and the tools (codegen.emit, host_tools.enroll; subprocesses too) find
    it in a keyring of their own, outside the repository, through $PV_KEYS_DIR."""
    import tempfile

    from host_tools.serial_link import SerialLink
    from pvcore.keys import KEYS_ENV
    from tests.helpers.signing import sign_if_bare, write_test_keyring

    SerialLink.default_signer = staticmethod(sign_if_bare)
    if not os.environ.get("PV_TEST_KEYS_DIR"):
        os.environ["PV_TEST_KEYS_DIR"] = str(write_test_keyring(Path(tempfile.mkdtemp(prefix="pv-test-keys-"))))
    os.environ[KEYS_ENV] = os.environ["PV_TEST_KEYS_DIR"]


_trust_the_test_key()


def require_shared(*parts: str) -> Path:
    p = shared_dir().joinpath(*parts)
    if not p.exists():
        msg = f"{p} missing: set {SHARED_ENV} to the shared folder"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return p


@pytest.fixture
def lfw_dir() -> Path:
    return require_shared("data", "lfw", "lfw-deepfunneled")
