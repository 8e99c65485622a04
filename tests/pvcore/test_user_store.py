import json
import os
import subprocess
import sys

import numpy as np
import pytest

from pvcore.spec import F_SPEC
from pvcore.user_store import ArchMismatch, UnknownUser, UserExists, UserStore, UserStoreError
from tests.helpers.race import race, winners


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
    with pytest.raises(UserStoreError, match="disk full"):
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


def test_concurrent_enrollments_of_one_user_store_exactly_one(store):
    """Without force, saving is create-or-fail: of two writers racing for one new user, one stores its θ and
    the other gets UserExists — never both "succeed" with one silently replacing the other."""
    for r in range(20):
        uid = f"racer{r}"
        res = race(2, lambda i, uid=uid: save(store, uid=uid, seed=100 + i))
        won = winners(res)
        assert len(won) == 1, res
        loser = res[1 - won[0]]
        assert isinstance(loser, UserExists) and "--force" in str(loser), repr(loser)
        np.testing.assert_array_equal(store.load(uid)[0], theta(100 + won[0]))  # the winner's θ, whole
    assert sorted(p.name for p in store.root.iterdir()) == sorted(f"racer{r}" for r in range(20))  # no temp left


def test_concurrent_enrollments_in_processes(store):
    """The same rule between processes (what two `training.enroll` runs are)."""
    code = ("import sys, numpy as np; from pvcore.spec import F_SPEC; from pvcore.user_store import UserStore, "
            "UserExists\nst = UserStore(sys.argv[1]); t = np.full(F_SPEC.theta_size, float(sys.argv[3]), "
            "np.float32)\ntry:\n    st.save(sys.argv[2], t, backbone='b', hypermodel_id='h', threshold=0.0)\n"
            "except UserExists as e:\n    print(e, file=sys.stderr); sys.exit(1)\n")
    for r in range(5):
        procs = [subprocess.Popen([sys.executable, "-c", code, str(store.root), f"proc{r}", str(k)],
                                  stderr=subprocess.PIPE, text=True) for k in (1, 2)]
        rcs = [(p.wait(timeout=60), p.stderr.read()) for p in procs]
        assert sorted(rc for rc, _ in rcs) == [0, 1], rcs
        winner = 1 + [rc for rc, _ in rcs].index(0)
        assert "already enrolled" in next(err for rc, err in rcs if rc == 1)
        assert store.load(f"proc{r}")[0][0] == winner


def test_force_replaces_an_entry_but_not_a_stranger(store):
    save(store, seed=0)
    res = race(2, lambda i: save(store, seed=10 + i, force=True))  # two forced writers: both whole, one stays
    assert winners(res) == [0, 1], res
    assert store.load("alice")[0][0] in (theta(10)[0], theta(11)[0])
    (store.root / "notes").write_text("mine")
    with pytest.raises(UserStoreError, match="not a user entry"):
        save(store, uid="notes", force=True)
    assert (store.root / "notes").read_text() == "mine"
    assert sorted(p.name for p in store.root.iterdir()) == ["alice", "notes"]


def test_unwritable_store_is_a_message(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserStoreError, match="cannot write user 'alice'.*--users"):
        save(UserStore(blocker / "users"))


@pytest.mark.parametrize("edit,match", [
    (lambda m: m.update(threshold="abc"), "threshold is 'abc', not a finite number"),
    (lambda m: m.update(threshold=True), "threshold is True"),
    (lambda m: m.update(theta_size="22634"), "theta_size is '22634', not an integer"),
    (lambda m: m.pop("threshold"), "missing threshold"),
    (lambda m: m.update(extra=1), "unknown extra"),
])
def test_damaged_meta_is_a_message(store, edit, match):
    save(store)
    p = store.path("alice") / "meta.json"
    meta = json.loads(p.read_text())
    edit(meta)
    p.write_text(json.dumps(meta))
    with pytest.raises(UserStoreError, match=match) as e:
        store.load("alice")
    assert str(p) in str(e.value) and "--force" in str(e.value)  # names the file and the way out


@pytest.mark.parametrize("text", ["", "{not json", "[1, 2]", "\udcff"])
def test_unparsable_meta_is_a_message(store, text):
    save(store)
    p = store.path("alice") / "meta.json"
    p.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(UserStoreError, match="meta.json"):
        store.load("alice")


@pytest.mark.parametrize("cut", [0, 50, 1000])
def test_empty_or_truncated_theta_is_a_message(store, cut):
    save(store, crop=np.zeros((112, 112, 3), np.uint8))
    for name in ("theta.npy", "crop.npy"):
        p = store.path("alice") / name
        p.write_bytes(p.read_bytes()[:cut])
    with pytest.raises(UserStoreError, match="theta.npy") as e:
        store.load("alice")
    assert "corrupt; enroll the user again" in str(e.value)
    with pytest.raises(UserStoreError, match="crop.npy"):
        store.load_crop("alice")
