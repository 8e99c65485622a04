import json
import os

import numpy as np
import pytest

from pvcore.spec import F_SPEC
from pvcore.user_store import ArchMismatch, UnknownUser, UserExists, UserStore, UserStoreError


@pytest.fixture
def store(tmp_path):
    return UserStore(tmp_path / "users")


def theta(seed=0):
    return np.random.default_rng(seed).standard_normal(F_SPEC.theta_size).astype(np.float32)


def save(store, uid="alice", seed=0, **kw):
    return store.save(uid, theta(seed), backbone="mobilefacenet-y1", hypermodel_id="h1", threshold=0.5, **kw)


def test_round_trip(store):
    meta = save(store)
    t, m = store.load("alice")
    np.testing.assert_array_equal(t, theta(0))
    assert m == meta and m.arch_hash == F_SPEC.arch_hash() and store.list() == ["alice"]


def test_refuses_to_overwrite_without_force(store):
    save(store, seed=0)
    with pytest.raises(UserExists, match="--force"):
        save(store, seed=1)
    np.testing.assert_array_equal(store.load("alice")[0], theta(0))
    save(store, seed=1, force=True)
    np.testing.assert_array_equal(store.load("alice")[0], theta(1))
    assert [p.name for p in store.root.iterdir()] == ["alice"]  # no temp or backup folders left


def test_a_failed_write_keeps_the_old_entry(store, monkeypatch):
    save(store, seed=0)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save(store, seed=1, force=True)
    monkeypatch.undo()
    np.testing.assert_array_equal(store.load("alice")[0], theta(0))
    assert [p.name for p in store.root.iterdir()] == ["alice"]


def test_errors(store):
    with pytest.raises(UnknownUser, match="unknown user 'bob'"):
        store.load("bob")
    with pytest.raises(UserStoreError, match="invalid user id"):
        save(store, uid="../evil")
    with pytest.raises(ArchMismatch):
        store.save("carol", np.zeros(10, np.float32), backbone="b", hypermodel_id="h", threshold=0.0)
    bad = theta()
    bad[3] = np.nan
    with pytest.raises(UserStoreError, match="NaN"):
        store.save("carol", bad, backbone="b", hypermodel_id="h", threshold=0.0)


def test_corrupt_and_foreign_entries(store):
    save(store)
    d = store.path("alice")
    meta = json.loads((d / "meta.json").read_text())
    meta["arch_hash"] = "0123456789abcdef"
    (d / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ArchMismatch, match="0123456789abcdef"):
        store.load("alice")
    save(store, force=True)
    with open(d / "theta.npy", "r+b") as f:
        f.seek(-8, os.SEEK_END)
        f.write(b"\x00" * 8)
    with pytest.raises(UserStoreError, match="CRC"):
        store.load("alice")
