"""A dataset laid out as one folder per identity: ``root/<identity>/<image>`` in any still-image format
OpenCV decodes (:data:`IMAGE_EXTENSIONS`: JPEG, PNG, BMP, WebP, the Netpbm formats .pgm/.ppm/.pbm/.pnm,
TIFF, JPEG 2000, Sun raster).

Only the first level of sub-folders counts as identities; files lying directly in ``root`` and deeper
sub-folders are ignored (the first are logged). Hidden files and folders (leading dot) are skipped.
Identities are sorted, and so are the images of each identity, so the order is reproducible.
Identity folders without any image are left out (logged), so every listed identity has an image.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".webp", ".pgm", ".ppm",
                                     ".pbm", ".pnm", ".tif", ".tiff", ".jp2", ".sr", ".ras")


class EmptyImageFolderError(ValueError):
    """The folder holds no identity sub-folder with an image."""


@dataclass(frozen=True)
class ImageFolder:
    """Samples ``(rel_path, identity)`` of an identity-per-folder dataset; build with :meth:`scan`.

    ``rel_path`` is the POSIX path relative to ``root`` (``"<identity>/<file>"``).
    """

    root: Path
    samples: list[tuple[str, str]]
    identities: list[str]
    _index: dict[str, int] = field(repr=False, compare=False)

    @classmethod
    def scan(
        cls,
        root: str | Path,
        extensions: Iterable[str] = IMAGE_EXTENSIONS,
        min_images_per_identity: int = 1,
    ) -> ImageFolder:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {root} not found or not a folder")
        exts = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
        samples: list[tuple[str, str]] = []
        identities: list[str] = []
        stray = 0
        with os.scandir(root) as entries:
            subdirs = []
            for e in entries:
                if e.name.startswith("."):
                    continue
                if e.is_dir():
                    subdirs.append(e)
                elif e.is_file() and e.name.lower().endswith(exts):
                    stray += 1
        if stray:
            log.warning("%s: %d image(s) directly in the root ignored (expected root/<identity>/...)",
                        root, stray)
        skipped = 0
        for d in sorted(subdirs, key=lambda e: e.name):
            with os.scandir(d.path) as files:
                names = sorted(
                    f.name
                    for f in files
                    if not f.name.startswith(".") and f.is_file() and f.name.lower().endswith(exts)
                )
            if len(names) < max(min_images_per_identity, 1):
                skipped += 1
                continue
            identities.append(d.name)
            samples += [(f"{d.name}/{n}", d.name) for n in names]
        if skipped:
            log.info("%s: %d identity folder(s) with fewer than %d image(s) left out",
                     root, skipped, max(min_images_per_identity, 1))
        if not samples:
            raise EmptyImageFolderError(
                f"no images found in {root}: expected root/<identity>/<image> with an extension in "
                f"{', '.join(exts)}"
                + (f" and at least {min_images_per_identity} images per identity"
                   if min_images_per_identity > 1 else "")
            )
        index = {name: i for i, name in enumerate(identities)}
        log.debug("%s: %d images of %d identities", root, len(samples), len(identities))
        return cls(root=root, samples=samples, identities=identities, _index=index)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[str, str]:
        return self.samples[i]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.samples)

    def path(self, i: int) -> Path:
        """Absolute path of sample ``i``."""
        return self.root / self.samples[i][0]

    def label_of(self, identity: str) -> int:
        """Index of ``identity`` in the sorted :attr:`identities`."""
        try:
            return self._index[identity]
        except KeyError:
            raise KeyError(f"identity {identity!r} not in {self.root}") from None

    def labels(self) -> np.ndarray:
        """Integer label (index into :attr:`identities`) of every sample, int64."""
        return np.fromiter((self._index[ident] for _, ident in self.samples), dtype=np.int64,
                           count=len(self.samples))


def verification_pairs(labels: np.ndarray, n_folds: int = 10, per_fold: int = 300, seed: int = 0
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A verification protocol for a set without a pair list, built as LFW's View 2 is: the identities
    split into ``n_folds`` people-disjoint folds (a seeded shuffle dealt round-robin; fewer folds when there
    are fewer than 2 identities per fold), then in each fold up to ``per_fold`` same pairs (an identity
    with ≥ 2 images drawn uniformly, then two of its images) and as many different pairs (two images of
    different identities), each pair at most once. Returns ``(a, b, same, fold)``, indices into
    ``labels``. Deterministic for a given ``seed``. ValueError when fewer than 2 folds get pairs."""
    labels = np.asarray(labels, np.int64)
    rng = np.random.default_rng(seed)
    ids = np.unique(labels)
    n_folds = min(n_folds, len(ids) // 2)
    if n_folds < 2:
        raise ValueError(f"{len(ids)} identities: a 2-fold protocol needs at least 4")
    fold_of_id = dict(zip(rng.permutation(ids).tolist(), np.arange(len(ids)) % n_folds))
    out: list[tuple[int, int, bool, int]] = []
    for fold in range(n_folds):
        members = [np.flatnonzero(labels == i) for i in ids if fold_of_id[int(i)] == fold]
        same = _same_pairs(rng, [m for m in members if len(m) >= 2], per_fold)
        diff = _different_pairs(rng, members, labels, len(same))
        out += [(a, b, True, fold) for a, b in same] + [(a, b, False, fold) for a, b in diff]
    if len({f for *_, f in out}) < 2:
        raise ValueError("fewer than 2 folds with an identity of 2 images: no 10-fold protocol to build")
    a, b, s, f = (np.array(v) for v in zip(*out))
    return a.astype(np.int64), b.astype(np.int64), s.astype(bool), f.astype(np.int64)


def _same_pairs(rng: np.random.Generator, groups: list[np.ndarray], n: int) -> list[tuple[int, int]]:
    """Up to n distinct pairs of images of one identity: an identity (group) uniformly, then two images."""
    n = min(n, sum(len(g) * (len(g) - 1) // 2 for g in groups))
    seen: set[tuple[int, int]] = set()
    for _ in range(100 * n):
        if len(seen) == n:
            break
        a, b = sorted(int(v) for v in rng.choice(groups[rng.integers(len(groups))], 2, replace=False))
        seen.add((a, b))
    return sorted(seen)


def _different_pairs(rng: np.random.Generator, groups: list[np.ndarray], labels: np.ndarray, n: int
                     ) -> list[tuple[int, int]]:
    """Up to n distinct pairs of images of different identities among ``groups``."""
    images = np.concatenate(groups) if groups else np.zeros(0, np.int64)
    n = min(n, (len(images) ** 2 - sum(len(g) ** 2 for g in groups)) // 2)
    seen: set[tuple[int, int]] = set()
    for _ in range(100 * n):
        if len(seen) == n:
            break
        a, b = sorted(int(v) for v in rng.choice(images, 2, replace=False))
        if labels[a] != labels[b]:
            seen.add((a, b))
    return sorted(seen)
