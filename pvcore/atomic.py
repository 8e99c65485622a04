"""Atomic file and folder writes: a reader sees the old file (folder) or the new one, never half of one."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(f)`` on a temp file beside ``path``, fsync it, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file 0600; give it the permissions a plain open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


# ---- folders ---------------------------------------------------------------------------------------------
# A folder is written whole into a hidden temp folder beside its destination (same file system), then
# renamed into place. Contracts, POSIX:
#   publish_folder  create-or-fail: renaming a folder onto an existing non-empty folder fails (ENOTEMPTY or
#                   EEXIST), onto a file fails (ENOTDIR), so of two writers racing for one new name exactly
#                   one wins; the other gets FolderExists. The lexists() check before the rename refuses an
#                   empty folder, a file or a link already there; only an empty folder made in the instant
#                   between that check and the rename can be replaced (it holds nothing to lose).
#   replace_folder  old → .<name>.old-XXXX/old, new → name, then the old one is deleted: at every instant the
#                   old folder or the new one is whole; a failed second rename puts the old one back. Two
#                   replacers at once: one may find the name retaken by the other (FolderExists; the old
#                   folder, which both meant to replace, is deleted) and may check and replace again.


class FolderExists(FileExistsError):
    """The destination of publish_folder is there (possibly put there a moment ago by a concurrent writer)."""


def temp_folder_beside(dest: str | Path) -> Path:
    """A fresh, empty hidden folder in ``dest``'s parent (created if missing), to be filled and published."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.tmp-"))


def publish_folder(tmp: str | Path, dest: str | Path) -> None:
    """Rename the complete, non-empty folder ``tmp`` to ``dest``, which must not exist (FolderExists)."""
    tmp, dest = Path(tmp), Path(dest)
    if os.path.lexists(dest):
        raise FolderExists(errno.EEXIST, "already exists", str(dest))
    try:
        os.rename(tmp, dest)
    except OSError as e:
        if e.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):
            raise FolderExists(errno.EEXIST, "already exists (written by another process meanwhile)",
                               str(dest)) from None
        raise


def replace_folder(tmp: str | Path, dest: str | Path) -> None:
    """Put the complete folder ``tmp`` in place of the folder ``dest``; the old one is deleted only once the new
    one is in place, and kept whole where the swap fails. Callers decide first that ``dest`` may go."""
    tmp, dest = Path(tmp), Path(dest)
    aside = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.old-"))
    held = aside / "old"
    try:
        os.rename(dest, held)
    except FileNotFoundError:  # removed meanwhile: nothing to replace
        aside.rmdir()
        publish_folder(tmp, dest)
        return
    except BaseException:
        aside.rmdir()
        raise
    try:
        os.rename(tmp, dest)
    except OSError as e:
        if e.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR) and os.path.lexists(dest):
            # another writer replaced the same folder meanwhile: the old one was going either way
            shutil.rmtree(aside, ignore_errors=True)
            raise FolderExists(errno.EEXIST, "replaced by another writer meanwhile", str(dest)) from None
        _put_back(held, dest, aside)
        raise
    except BaseException:
        _put_back(held, dest, aside)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _put_back(held: Path, dest: Path, aside: Path) -> None:
    try:
        os.rename(held, dest)
    except OSError as e:
        raise OSError(errno.EEXIST, f"{dest} was taken during the swap; its previous content is kept in {held}",
                      str(dest)) from e
    aside.rmdir()
