"""codegen.emit's output folder: every emitted folder carries a marker (.pv-emit.json); --force replaces only
a folder with that marker, and every other --out (the user store, a folder emit did not write, a file, the
working folder and its parents, the repository, /, /proc) is refused with a message and exit 1, nothing
touched; a failed write keeps the old folder; two emits into one new folder: exactly one writes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from codegen import emit as emit_mod
from codegen.emit import MARKER, EmitError, emit, write_output
from pvcore.blob import unpack_blob
from pvcore.cli import EXIT_ERROR
from pvcore.paths import REPO_ROOT
from pvcore.user_store import UserStore
from tests.codegen.users import make_store
from tests.helpers.race import race, winners


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> UserStore:
    return make_store(tmp_path_factory.mktemp("store") / "users")


def run_cli(store: UserStore, *args: str, capsys) -> tuple[int, str, str]:
    """emit's CLI on the blob alone (the cheapest output); any exception but SystemExit fails the test."""
    try:
        rc = emit_mod.main(["--users", str(store.root), "--format", "blob", *args])
    except SystemExit as e:
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def tree(root: Path) -> dict[str, bytes | None]:
    """Everything under root (root itself when a file): relative path → bytes, or None for a folder."""
    if root.is_file():
        return {".": root.read_bytes()}
    return {p.relative_to(root).as_posix(): (None if p.is_dir() else p.read_bytes()) for p in root.rglob("*")}


def hidden(parent: Path) -> list[str]:
    """Temp or backup folders emit would leave beside its output."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(".")) if parent.is_dir() else []


def test_every_output_carries_the_marker(store: UserStore, tmp_path: Path, capsys) -> None:
    out = tmp_path / "o"
    rc, text, err = run_cli(store, "--user", "alice", "--out", str(out), capsys=capsys)
    assert rc == 0, err
    m = json.loads((out / MARKER).read_text())
    assert m["tool"] == "codegen.emit" and m["user"] == "alice" and m["target"] is None
    assert m["version"] and m["activations"] == "int8" and m["created"].endswith("Z")
    assert MARKER in text  # the report lists it with the other files


# ---- what --force refuses ------------------------------------------------------------------------------------
def _foreign_project(tmp: Path) -> Path:
    p = tmp / "proj"
    (p / "src").mkdir(parents=True)
    (p / "src" / "main.c").write_text("int main(void) { return 0; }\n")
    return p


def _file(tmp: Path) -> Path:
    p = tmp / "notes.txt"
    p.write_text("mine")
    return p


def _marked(tmp: Path, text: str) -> Path:
    p = tmp / "marked"
    p.mkdir()
    (p / MARKER).write_text(text)
    (p / "data.bin").write_bytes(b"\x01\x02")
    return p


def _link_to_emitted(tmp: Path) -> Path:
    real = tmp / "real"
    real.mkdir()
    (real / MARKER).write_text(json.dumps({"tool": "codegen.emit"}))
    link = tmp / "link"
    link.symlink_to(real, target_is_directory=True)
    return link


def _work_folder(tmp: Path) -> Path:
    (tmp / "work").mkdir()
    (tmp / "work" / "photo.jpg").write_bytes(b"jpeg")
    return tmp / "work"


REFUSED = {  # name: (make --out under tmp (and the store), cwd relative to tmp, expected words)
    "user store root": (lambda tmp, st: st.root, ".", "is the user store"),
    "user store entry": (lambda tmp, st: st.root / "alice", ".", "is in the user store"),
    "new folder in the store": (lambda tmp, st: st.root / "alice-esp32", ".", "is in the user store"),
    "folder holding the store": (lambda tmp, st: st.root.parent, ".", "holds the user store"),
    "project folder emit did not write": (lambda tmp, st: _foreign_project(tmp), ".", "not written by codegen.emit"),
    "file": (lambda tmp, st: _file(tmp), ".", "is a file"),
    "marker of another tool": (lambda tmp, st: _marked(tmp, '{"tool": "other"}'), ".", "of another tool"),
    "unreadable marker": (lambda tmp, st: _marked(tmp, "not json"), ".", "unreadable .pv-emit.json"),
    "link to an emitted folder": (lambda tmp, st: _link_to_emitted(tmp), ".", "symbolic link"),
    "the working folder (.)": (lambda tmp, st: Path("."), "work", "is the working folder"),
    "a parent of the working folder": (lambda tmp, st: tmp, "work", "or a folder above it"),
    "the repository": (lambda tmp, st: REPO_ROOT, ".", "is the repository"),
    "/": (lambda tmp, st: Path("/"), ".", "is the working folder"),
    "/proc/x": (lambda tmp, st: Path("/proc/x"), ".", "under /proc"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_force_refuses_what_emit_did_not_write(store: UserStore, tmp_path: Path, capsys,
                                               monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    make, cwd, words = REFUSED[case]
    _work_folder(tmp_path)
    out = make(tmp_path, store)
    watched = [tmp_path, store.root]
    before = [tree(w) for w in watched]
    monkeypatch.chdir(tmp_path / cwd)
    rc, _, err = run_cli(store, "--user", "alice", "--out", str(out), "--force", capsys=capsys)
    assert rc == EXIT_ERROR and err.startswith("error: ") and words in err, err
    assert [tree(w) for w in watched] == before  # nothing touched, no temp folder left
    assert store.load("alice")[1].user_id == "alice"


def test_the_store_is_refused_without_force_too(store: UserStore, tmp_path: Path, capsys) -> None:
    before = tree(store.root)
    rc, _, err = run_cli(store, "--user", "alice", "--out", str(store.root / "fresh"), capsys=capsys)
    assert rc == EXIT_ERROR and "is in the user store" in err
    assert tree(store.root) == before


@pytest.mark.parametrize("below", ["sub", "sub/deeper"])
def test_an_out_below_a_file_is_a_message(store: UserStore, tmp_path: Path, capsys, below: str) -> None:
    _file(tmp_path)
    rc, _, err = run_cli(store, "--user", "alice", "--out", str(tmp_path / "notes.txt" / below), capsys=capsys)
    assert rc == EXIT_ERROR and "notes.txt is a file" in err, err
    assert (tmp_path / "notes.txt").read_text() == "mine" and hidden(tmp_path) == []


def test_a_folder_it_cannot_write_is_a_message(store: UserStore, tmp_path: Path, capsys) -> None:
    """A write that fails past the checks (here: the parent turns into a file after them) is an EmitError
    naming the path, never a traceback."""
    with pytest.raises(EmitError, match=r"cannot write .*notes.txt"):
        write_output(_file(tmp_path) / "sub", lambda folder: None, b"{}", force=False)
    assert (tmp_path / "notes.txt").read_text() == "mine" and hidden(tmp_path) == []


def test_a_failed_write_keeps_the_old_folder(store: UserStore, tmp_path: Path, capsys) -> None:
    out = tmp_path / "o"
    assert run_cli(store, "--user", "alice", "--out", str(out), capsys=capsys)[0] == 0
    before = tree(out)

    def fill(folder: Path) -> None:
        (folder / "half.bin").write_bytes(b"\0" * 100)
        raise OSError(28, "No space left on device")

    with pytest.raises(EmitError, match="cannot write .*No space left"):
        write_output(out, fill, b"{}", force=True)
    assert tree(out) == before and hidden(tmp_path) == []


# ---- two emits at once -----------------------------------------------------------------------------------------
def _writer(i: int):
    def fill(folder: Path) -> None:
        (folder / "a.txt").write_text(f"writer{i}")
        (folder / "b.txt").write_text(f"writer{i}" * 1000)
    return fill


def test_racing_writers_of_one_new_folder_exactly_one_wins(tmp_path: Path) -> None:
    marker = json.dumps({"tool": "codegen.emit"}).encode()
    for r in range(20):
        out = tmp_path / f"o{r}"
        res = race(2, lambda i, out=out: write_output(out, _writer(i), marker, force=False))
        won = winners(res)
        assert len(won) == 1, res
        loser = res[1 - won[0]]
        assert isinstance(loser, EmitError) and "another process" in str(loser) and "--force" in str(loser)
        w = f"writer{won[0]}"
        assert (out / "a.txt").read_text() == w and (out / "b.txt").read_text() == w * 1000  # whole, one writer's
    assert hidden(tmp_path) == []


def test_racing_forced_writers_both_finish_whole(tmp_path: Path) -> None:
    marker = json.dumps({"tool": "codegen.emit"}).encode()
    out = tmp_path / "o"
    for _ in range(20):
        res = race(2, lambda i: write_output(out, _writer(i), marker, force=True))
        assert winners(res) == [0, 1], res
        text = (out / "a.txt").read_text()
        assert text in ("writer0", "writer1") and (out / "b.txt").read_text() == text * 1000
    assert hidden(tmp_path) == []


def test_two_emits_into_one_new_folder(store: UserStore, tmp_path: Path) -> None:
    """emit() end to end in two threads (both check --out before quantizing, both try to publish)."""
    users = ("alice", "bob")
    for r in range(3):
        out = tmp_path / f"o{r}"
        res = race(2, lambda i, out=out: emit(users[i], out=out, fmt="blob", users_root=store.root))
        won = winners(res)
        assert len(won) == 1, res
        assert isinstance(res[1 - won[0]], EmitError), res
        user = users[won[0]]
        header, _ = unpack_blob((out / f"{user}_theta.bin").read_bytes())
        assert header.user_id == user and sorted(p.name for p in out.iterdir()) == [MARKER, f"{user}_theta.bin"]
    assert hidden(tmp_path) == []


@pytest.mark.slow  # two processes that import torch: ~30 s on two busy cores
def test_two_emit_processes_into_one_new_folder(store: UserStore, tmp_path: Path) -> None:
    """Two `python -m codegen.emit` at once: one exits 0, the other 1 with a message, no traceback."""
    out = tmp_path / "o"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    procs = [subprocess.Popen([sys.executable, "-m", "codegen.emit", "--users", str(store.root), "--user", u,
                               "--format", "blob", "--out", str(out)], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for u in ("alice", "bob")]
    done = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _, _ in done) == [0, EXIT_ERROR], done
    loser_err = next(err for rc, _, err in done if rc == EXIT_ERROR)
    assert "error: " in loser_err and "Traceback" not in loser_err and str(out) in loser_err
    assert (out / MARKER).is_file() and hidden(tmp_path) == []
