"""Shared fixtures. Tests that need the shared folder (LFW, pretrained weights) skip on a developer
machine without it, and FAIL in CI (CI=true), where the data must be present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pvcore.paths import SHARED_ENV, shared_dir


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
