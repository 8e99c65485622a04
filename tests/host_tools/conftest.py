"""Fixtures for the host tools: a user store with real θ entries (codegen quantizes them for real) and
virtual boards (host simulator; QEMU mps2-an386 for the slow tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from codegen.quantize import augment, package_faces
from host_tools.enroll import UserBlob, blob_from_store
from host_tools.qemu import build_host_sim
from pvcore.user_store import UserStore
from training.verifier.functional import random_theta


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> UserStore:
    """Two users with random θ (the tools are tested on the deployment chain, not on recognition)."""
    st = UserStore(tmp_path_factory.mktemp("users"))
    for name, seed, thr in (("alice", 11, 0.0), ("bob", 12, 0.25)):
        st.save(name, random_theta(seed).numpy(), backbone="none", hypermodel_id="random-θ-test", threshold=thr)
    return st


@pytest.fixture(scope="session")
def blobs(store: UserStore) -> dict[str, tuple[UserBlob, np.ndarray]]:
    out = {}
    for name in ("alice", "bob"):
        ub, theta, _meta = blob_from_store(name, store)
        out[name] = (ub, theta)
    return out


@pytest.fixture(scope="session")
def crops() -> np.ndarray:
    """Package face crops and augmentations of them (uint8 (N, 112, 112, 3))."""
    return augment(package_faces(), 6, seed=3)


@pytest.fixture(scope="session")
def host_exe() -> Path:
    return build_host_sim()
