"""pvcore.atomic's folder writes: create-or-fail publishing (exactly one of two racing writers wins) and the
replace that keeps the old folder whole until the new one is in place, or puts it back when the swap fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvcore.atomic import FolderExists, publish_folder, replace_folder, temp_folder_beside
from tests.helpers.race import race, winners


def filled(dest: Path, text: str) -> Path:
    tmp = temp_folder_beside(dest)
    (tmp / "a.txt").write_text(text)
    (tmp / "b.txt").write_text(text * 2)
    return tmp


def hidden(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_publish_is_create_or_fail(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    publish_folder(filled(dest, "one"), dest)
    assert (dest / "a.txt").read_text() == "one"
    for there in (dest, tmp_path / "file", tmp_path / "empty"):  # a folder, a file, an empty folder
        if there.name == "file":
            there.write_text("x")
        elif there.name == "empty":
            there.mkdir()
        tmp = filled(there, "two")
        with pytest.raises(FolderExists):
            publish_folder(tmp, there)
        assert tmp.is_dir()  # the caller's to clean
    assert (dest / "a.txt").read_text() == "one" and (tmp_path / "file").read_text() == "x"


def test_racing_publishers_exactly_one_wins(tmp_path: Path) -> None:
    for r in range(20):
        dest = tmp_path / f"out{r}"
        tmps = [filled(dest, f"writer{i}") for i in range(2)]
        res = race(2, lambda i, dest=dest, tmps=tmps: publish_folder(tmps[i], dest))
        won = winners(res)
        assert len(won) == 1 and isinstance(res[1 - won[0]], FolderExists), res
        w = f"writer{won[0]}"
        assert (dest / "a.txt").read_text() == w and (dest / "b.txt").read_text() == w * 2  # whole, one writer's
        assert not tmps[won[0]].exists() and tmps[1 - won[0]].is_dir()


def test_replace_swaps_and_leaves_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    publish_folder(filled(dest, "old"), dest)
    replace_folder(filled(dest, "new"), dest)
    assert (dest / "a.txt").read_text() == "new" and hidden(tmp_path) == []


def test_a_failed_swap_puts_the_old_folder_back(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    publish_folder(filled(dest, "old"), dest)
    with pytest.raises(FileNotFoundError):
        replace_folder(tmp_path / ".gone", dest)  # the new folder's rename fails after the old one moved aside
    assert (dest / "a.txt").read_text() == "old" and hidden(tmp_path) == []


def test_replace_of_a_folder_removed_meanwhile_publishes(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    replace_folder(filled(dest, "new"), dest)
    assert (dest / "a.txt").read_text() == "new" and hidden(tmp_path) == []


def test_racing_replacers_leave_one_whole_folder(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    publish_folder(filled(dest, "old"), dest)
    for _ in range(20):
        tmps = [filled(dest, f"writer{i}") for i in range(2)]
        res = race(2, lambda i, tmps=tmps: replace_folder(tmps[i], dest))
        assert all(e is None or isinstance(e, FolderExists) for e in res), res
        text = (dest / "a.txt").read_text()
        assert text in ("writer0", "writer1") and (dest / "b.txt").read_text() == text * 2
        for t in tmps:  # a loser's folder is the caller's to remove
            if t.exists():
                for f in t.iterdir():
                    f.unlink()
                t.rmdir()
        assert hidden(tmp_path) == []
