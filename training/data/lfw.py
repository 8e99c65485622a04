"""The official Labeled Faces in the Wild lists (View 1 and View 2) and image layout.

Layout of the LFW folder (default ``shared_path("data", "lfw")``; every function takes ``root`` to
override it)::

    <root>/pairs.txt            View 2: "10 300", then per fold 300 same + 300 different pairs
    <root>/pairsDevTrain.txt    View 1: "N", then N same + N different pairs (likewise pairsDevTest.txt)
    <root>/people.txt           View 2: "10", then per fold a count and that many "name count" lines
    <root>/peopleDevTrain.txt   View 1: "N", then N "name count" lines (likewise peopleDevTest.txt)
    <root>/lfw-deepfunneled/<name>/<name>_<n:04d>.jpg

Image paths handed out here (:attr:`Pair.a`, :func:`all_images`) are POSIX paths relative to the image
root :func:`lfw_root` (``<root>/lfw-deepfunneled``), e.g. ``"Zico/Zico_0001.jpg"``. Image numbers in the
lists start at 1.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from pvcore.paths import shared_path

log = logging.getLogger(__name__)

IMAGE_DIR = "lfw-deepfunneled"
N_IMAGES = 13_233
N_IDENTITIES = 5_749
N_FOLDS = 10

PairsView = Literal["view2", "devtrain", "devtest"]
PeopleView = Literal["view2", "devtrain", "devtest"]

_PAIRS_FILES: dict[str, str] = {
    "view2": "pairs.txt",
    "devtrain": "pairsDevTrain.txt",
    "devtest": "pairsDevTest.txt",
}
_PEOPLE_FILES: dict[str, str] = {
    "view2": "people.txt",
    "devtrain": "peopleDevTrain.txt",
    "devtest": "peopleDevTest.txt",
}
_IMAGE_NAME = re.compile(r"^(?P<name>.+)_(?P<num>\d{4})\.jpg$")


class LFWFormatError(ValueError):
    """An LFW list file does not have the official layout; the message names the file and line."""


@dataclass(frozen=True)
class Pair:
    """One verification pair. ``a``/``b`` are image paths relative to :func:`lfw_root`.

    ``fold`` is 0..9 for View 2 and 0 for the View 1 (development) lists.
    """

    a: str
    b: str
    same: bool
    fold: int


def lfw_dir(root: str | Path | None = None) -> Path:
    """The LFW folder holding the lists and the image folder (default: the shared ``data/lfw``)."""
    if root is None:
        return shared_path("data", "lfw")
    p = Path(root).expanduser()
    if not p.is_dir():
        raise FileNotFoundError(f"LFW folder {p} not found (it should hold pairs.txt and {IMAGE_DIR}/)")
    return p


def lfw_root(root: str | Path | None = None) -> Path:
    """The image root ``<LFW folder>/lfw-deepfunneled``; pair and image paths are relative to it."""
    p = lfw_dir(root) / IMAGE_DIR
    if not p.is_dir():
        raise FileNotFoundError(f"LFW image folder {p} not found")
    return p


def image_path(name: str, number: int) -> str:
    """Relative path of image ``number`` (1-based) of identity ``name``: ``name/name_0001.jpg``."""
    return f"{name}/{name}_{number:04d}.jpg"


def identity_of(rel_path: str | Path) -> str:
    """Identity of an LFW image path (relative or absolute), from its file name ``<name>_<nnnn>.jpg``."""
    fname = PurePosixPath(Path(rel_path).as_posix()).name
    m = _IMAGE_NAME.match(fname)
    if m is None:
        raise ValueError(f"{rel_path!s} is not an LFW image path (expected <name>/<name>_<nnnn>.jpg)")
    return m.group("name")


# --------------------------------------------------------------------------------------------------
# parsing helpers


class _Lines:
    """Non-empty lines of a list file with their 1-based line numbers, for precise error messages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with open(path, encoding="utf-8") as f:
            self._lines = [(i, ln.split()) for i, ln in enumerate(f, start=1) if ln.strip()]
        self._pos = 0

    def error(self, lineno: int | None, msg: str) -> LFWFormatError:
        where = f"{self.path}:{lineno}" if lineno is not None else str(self.path)
        return LFWFormatError(f"{where}: {msg}")

    def next(self, what: str) -> tuple[int, list[str]]:
        if self._pos >= len(self._lines):
            last = self._lines[-1][0] if self._lines else 0
            raise self.error(last, f"file ends early; expected {what}")
        item = self._lines[self._pos]
        self._pos += 1
        return item

    def int_field(self, lineno: int, text: str, what: str, minimum: int = 1) -> int:
        try:
            value = int(text)
        except ValueError:
            raise self.error(lineno, f"{what} must be an integer, got {text!r}") from None
        if value < minimum:
            raise self.error(lineno, f"{what} must be >= {minimum}, got {value}")
        return value

    def expect_end(self) -> None:
        if self._pos < len(self._lines):
            lineno, fields = self._lines[self._pos]
            raise self.error(lineno, f"unexpected extra line {' '.join(fields)!r} after the last record")


def _parse_pair_line(lines: _Lines, same: bool, fold: int) -> Pair:
    lineno, f = lines.next("a same pair" if same else "a different pair")
    if same:
        if len(f) != 3:
            raise lines.error(lineno, f"expected a same pair 'name n1 n2', got {' '.join(f)!r}")
        name = f[0]
        n1 = lines.int_field(lineno, f[1], "image number")
        n2 = lines.int_field(lineno, f[2], "image number")
        return Pair(image_path(name, n1), image_path(name, n2), True, fold)
    if len(f) != 4:
        raise lines.error(lineno, f"expected a different pair 'name1 n1 name2 n2', got {' '.join(f)!r}")
    n1 = lines.int_field(lineno, f[1], "image number")
    n2 = lines.int_field(lineno, f[3], "image number")
    return Pair(image_path(f[0], n1), image_path(f[2], n2), False, fold)


def parse_pairs_file(path: str | Path, view2: bool) -> list[Pair]:
    """Parse a pairs list. ``view2``: header "folds n" (pairs.txt); else header "n" (dev lists, fold 0)."""
    lines = _Lines(Path(path))
    lineno, header = lines.next("the header line")
    if view2:
        if len(header) != 2:
            raise lines.error(lineno, f"expected header 'n_folds n_per_fold', got {' '.join(header)!r}")
        n_folds = lines.int_field(lineno, header[0], "number of folds")
        n = lines.int_field(lineno, header[1], "pairs per fold")
    else:
        if len(header) != 1:
            raise lines.error(lineno, f"expected header 'n_pairs', got {' '.join(header)!r}")
        n_folds = 1
        n = lines.int_field(lineno, header[0], "number of pairs")
    pairs: list[Pair] = []
    for fold in range(n_folds):
        pairs += [_parse_pair_line(lines, True, fold) for _ in range(n)]
        pairs += [_parse_pair_line(lines, False, fold) for _ in range(n)]
    lines.expect_end()
    log.debug("parsed %d pairs from %s", len(pairs), path)
    return pairs


def _parse_people_block(lines: _Lines, count: int) -> list[tuple[str, int]]:
    out = []
    for _ in range(count):
        lineno, f = lines.next("a 'name count' line")
        if len(f) != 2:
            raise lines.error(lineno, f"expected 'name count', got {' '.join(f)!r}")
        out.append((f[0], lines.int_field(lineno, f[1], "image count")))
    return out


def parse_people_file(path: str | Path, view2: bool) -> list[list[tuple[str, int]]]:
    """Parse a people list into folds of ``(name, n_images)``; the dev lists give one fold."""
    lines = _Lines(Path(path))
    lineno, header = lines.next("the header line")
    if len(header) != 1:
        raise lines.error(lineno, f"expected a header with one integer, got {' '.join(header)!r}")
    first = lines.int_field(lineno, header[0], "header")
    if view2:
        folds = []
        for _ in range(first):
            ln, f = lines.next("a fold size line")
            if len(f) != 1:
                raise lines.error(ln, f"expected a fold size (one integer), got {' '.join(f)!r}")
            folds.append(_parse_people_block(lines, lines.int_field(ln, f[0], "fold size")))
    else:
        folds = [_parse_people_block(lines, first)]
    lines.expect_end()
    return folds


# --------------------------------------------------------------------------------------------------
# public API


def load_pairs(view: PairsView = "view2", root: str | Path | None = None) -> list[Pair]:
    """Pairs of ``view``: "view2" (pairs.txt, 6000 pairs in 10 folds), "devtrain" or "devtest"."""
    if view not in _PAIRS_FILES:
        raise ValueError(f"unknown LFW pairs view {view!r}; use one of {', '.join(_PAIRS_FILES)}")
    return parse_pairs_file(lfw_dir(root) / _PAIRS_FILES[view], view2=view == "view2")


def load_people(view: PeopleView = "view2", root: str | Path | None = None) -> dict[str, int]:
    """Identities of a people list with their image counts (all folds together for "view2")."""
    if view not in _PEOPLE_FILES:
        raise ValueError(f"unknown LFW people view {view!r}; use one of {', '.join(_PEOPLE_FILES)}")
    path = lfw_dir(root) / _PEOPLE_FILES[view]
    out: dict[str, int] = {}
    for fold in parse_people_file(path, view2=view == "view2"):
        for name, count in fold:
            if name in out:
                raise LFWFormatError(f"{path}: identity {name!r} is listed twice")
            out[name] = count
    return out


def load_people_folds(root: str | Path | None = None) -> list[list[str]]:
    """The 10 View 2 folds of people.txt as lists of identity names (in file order)."""
    return [[name for name, _ in fold] for fold in parse_people_file(lfw_dir(root) / "people.txt", True)]


def all_images(root: str | Path | None = None) -> list[str]:
    """Sorted relative paths of every ``.jpg`` under the image root (13,233 for the full LFW)."""
    img_root = lfw_root(root)
    out: list[str] = []
    with os.scandir(img_root) as people:
        for person in people:
            if not person.is_dir() or person.name.startswith("."):
                continue
            with os.scandir(person.path) as files:
                out += [
                    f"{person.name}/{f.name}"
                    for f in files
                    if f.is_file() and f.name.lower().endswith(".jpg") and not f.name.startswith(".")
                ]
    out.sort()
    return out
