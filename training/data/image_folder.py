"""A dataset laid out as one folder per identity: ``root/<identity>/<image>.(jpg|jpeg|png|bmp|webp)``.

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

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


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
