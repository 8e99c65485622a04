"""Aligned face crops for codegen's checks (bit-exactness, int8-vs-float accuracy, benchmarks).

``load_crops("lfw", n)`` takes n LFW images spread evenly over the sorted image list (many people, not
the first few) from the aligned-crop cache of ``training.face.cache``, aligning the ones still missing
(only those: a few seconds for hundreds of images when the cache is cold). An image folder (one
sub-folder per identity) works the same way. Needs the shared folder for LFW: the error says where.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_DETECTOR = "retinaface"  # the alignment of the ArcFace-family backbones (MobileFaceNet)


def spread(n_total: int, n: int) -> np.ndarray:
    """n indices spread evenly over range(n_total)."""
    n = min(n, n_total)
    return np.unique(np.linspace(0, n_total - 1, n).round().astype(np.int64))


def load_crops(
    dataset: str = "lfw", limit: int = 500, detector: str = DEFAULT_DETECTOR, workers: int = 1
) -> tuple[np.ndarray, list[str]]:
    """(uint8 (N, 112, 112, 3) crops, their relative image paths) — images whose alignment failed are
    left out. ``dataset``: "lfw" or the path of an image folder."""
    from training.face.cache import FAILED, PENDING, folder_cache, lfw_cache

    if dataset == "lfw":
        cache = lfw_cache(detector)
    elif Path(dataset).is_dir():
        cache = folder_cache(dataset, detector)
    else:
        raise ValueError(f"dataset {dataset!r}: use 'lfw' or the path of an image folder (one folder per person)")
    idx = spread(len(cache.paths), limit)
    status = cache.status
    if (status[idx] == PENDING).any():
        log.info("aligning %d of %d images (%s)", int((status[idx] == PENDING).sum()), len(idx), detector)
        cache.ensure(idx, workers=workers, progress=False)
        status = cache.status
    idx = idx[(status[idx] != PENDING) & (status[idx] != FAILED)]
    crops = np.ascontiguousarray(cache.crops()[idx])
    return crops, [cache.paths[i] for i in idx]
