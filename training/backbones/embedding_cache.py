"""On-disk embedding cache keyed by backbone and image content.

One file per backbone, ``<cache>/embeddings/<cache_key>.npz`` with ``keys`` (16-byte BLAKE2b digests of
the crop bytes) and ``emb`` (float32). Same crop, same backbone → the stored embedding, whatever
dataset or path it came from. The file is rewritten atomically every few batches, so an interrupted
run keeps what it computed. Several processes may share a file: saves merge under a lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import multiprocessing as mp
import os

import numpy as np
from tqdm import tqdm

from pvcore.atomic import atomic_write
from pvcore.paths import cache_dir
from training.backbones.base import Backbone

log = logging.getLogger(__name__)


# A backbone that holds the GIL on one core (``single_core = True``: dlib's bindings) embeds in worker processes
# when enough images are missing to pay for starting them (a few seconds: the workers load the model).
PARALLEL_MIN_IMAGES = 256
_WORKER_BACKBONE: Backbone | None = None


def _init_worker(name: str) -> None:
    global _WORKER_BACKBONE
    from training.backbones import load_backbone

    _WORKER_BACKBONE = load_backbone(name)


def _embed_in_worker(images: np.ndarray) -> np.ndarray:
    return _WORKER_BACKBONE.embed(images)


def content_key(image: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).digest()


class EmbeddingCache:
    def __init__(self, backbone: Backbone) -> None:
        self.backbone = backbone
        self.key = getattr(backbone, "cache_key", backbone.name)
        self.path = cache_dir("embeddings") / f"{self.key}.npz"
        self._store: dict[bytes, np.ndarray] = {}
        self._load_into(self._store)

    def __len__(self) -> int:
        return len(self._store)

    def _load_into(self, store: dict[bytes, np.ndarray]) -> None:
        if self.path.exists():
            with np.load(self.path) as z:
                for k, e in zip((bytes(k) for k in z["keys"]), z["emb"]):
                    store.setdefault(k, e)

    def _workers(self, n_missing: int) -> int:
        if (not getattr(self.backbone, "single_core", False) or n_missing < PARALLEL_MIN_IMAGES
                or mp.current_process().daemon):  # a pool's worker may not start processes of its own
            return 1
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(1, min(2, cores))

    def save(self) -> None:
        """Merge with what other processes saved meanwhile (under a lock), then write atomically."""
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._load_into(self._store)
            keys = np.array(list(self._store), dtype="S16")
            emb = np.stack(list(self._store.values())) if self._store else np.zeros((0, 0), np.float32)
            atomic_write(self.path, lambda f: np.savez(f, keys=keys, emb=emb))

    def embed(self, images: np.ndarray, batch: int = 128, progress: bool = True,
              save_every: int = 20) -> np.ndarray:
        """Embeddings of ``images`` (N, H, W, 3) uint8, computing only the ones not cached yet."""
        keys = [content_key(im) for im in images]
        missing = sorted({k: i for i, k in enumerate(keys) if k not in self._store}.values())
        if missing:
            bar = tqdm(total=len(missing), desc=f"embed {self.backbone.name}", unit="img", disable=not progress)
            workers = self._workers(len(missing))
            # forkserver, not fork: a parent that already ran torch/OpenMP threads can hang forked children
            pool = (mp.get_context("forkserver").Pool(workers, _init_worker, (self.backbone.name,))
                    if workers > 1 else None)
            try:
                for n, start in enumerate(range(0, len(missing), batch)):
                    idx = missing[start:start + batch]
                    if pool is None:
                        embs = self.backbone.embed(np.asarray(images[idx]))
                    else:  # the batch split over the workers, in order
                        parts = [np.asarray(images[p]) for p in np.array_split(np.asarray(idx), workers) if len(p)]
                        embs = np.concatenate(pool.map(_embed_in_worker, parts))
                    for i, e in zip(idx, embs):
                        self._store[keys[i]] = e.astype(np.float32)
                    bar.update(len(idx))
                    if (n + 1) % save_every == 0:
                        self.save()
            finally:
                if pool is not None:
                    pool.close()
                    pool.join()
            bar.close()
            self.save()
        return np.stack([self._store[k] for k in keys]) if keys else np.zeros(
            (0, self.backbone.embedding_dim), np.float32)
