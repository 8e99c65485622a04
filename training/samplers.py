"""Batch samplers: B identities × n images, uniform or K-means centred (KCS), and pair subsampling.

A batch is nB = B·n image indices, identity-major (the n images of identity 0, then identity 1, …), with
identity labels. Identities with ≥ n images give n *distinct* images. Identities with fewer images
repeat theirs (all of them once, then random repeats) — the copies differ only by the training
augmentation, so their "positives" are partly image-with-itself pairs. That is what the paper's
balanced sampling needs on a small training set (LFW: 70 % of people have one image); filter such
identities out with :attr:`training.config.TrainConfig.min_images_per_id` instead.

Randomness is a pure function of (seed, rank, step): ``sample(step, B)`` draws from
``numpy.random.default_rng([seed, rank, step])``. A resumed run therefore draws exactly the batches
of an uninterrupted one with no generator state to save, and DDP ranks draw different batches.

KCS (the paper's K-means centred sampling, §IV-C): identities are clustered with scikit-learn's
KMeans on their mean backbone embedding (L2-normalised); a batch is drawn inside one cluster, the
cluster chosen with probability proportional to its size. A cluster with fewer than B identities is
topped up with the identities of the clusters whose centres are nearest to its own, in order. Before
``switch_at`` steps :class:`KCSSampler` samples uniformly (the paper warms up without KCS, which
otherwise can prevent convergence).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Batch:
    images: np.ndarray  # (nB,) int64 indices into the training set
    labels: np.ndarray  # (nB,) int64 identity labels (0..n_identities-1)
    identities: np.ndarray  # (B,) the identities drawn, in batch order
    cluster: int = -1  # KCS cluster the batch was drawn from; -1 when uniform


class _IdentityIndex:
    """Images grouped by identity label."""

    def __init__(self, labels: np.ndarray) -> None:
        labels = np.asarray(labels, dtype=np.int64)
        if labels.ndim != 1 or labels.size == 0:
            raise ValueError("labels must be a non-empty 1-D array of identity labels")
        self.labels = labels
        order = np.argsort(labels, kind="stable")
        ids, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
        self.ids = ids
        self.images = {int(i): order[s:s + c] for i, s, c in zip(ids, starts, counts)}


class UniformSampler:
    """B identities uniformly without replacement, n images each."""

    def __init__(self, labels: np.ndarray, n_per_id: int, seed: int = 0, rank: int = 0) -> None:
        if n_per_id < 1:
            raise ValueError(f"n_per_id must be >= 1, got {n_per_id}")
        self.index = _IdentityIndex(labels)
        self.n, self.seed, self.rank = n_per_id, int(seed), int(rank)

    @property
    def n_identities(self) -> int:
        return len(self.index.ids)

    def rng(self, step: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.rank, int(step)])

    def _images_of(self, identity: int, rng: np.random.Generator) -> np.ndarray:
        imgs = self.index.images[identity]
        if len(imgs) >= self.n:
            return rng.choice(imgs, self.n, replace=False)
        # fewer than n: every image once, then random repeats (they differ by augmentation only)
        extra = rng.choice(imgs, self.n - len(imgs), replace=True)
        return np.concatenate([rng.permutation(imgs), extra])

    def _assemble(self, identities: np.ndarray, rng: np.random.Generator, cluster: int = -1) -> Batch:
        images = np.concatenate([self._images_of(int(i), rng) for i in identities]).astype(np.int64)
        labels = np.repeat(identities, self.n).astype(np.int64)
        return Batch(images, labels, identities.astype(np.int64), cluster)

    def _check_b(self, b: int) -> None:
        if b < 2:
            raise ValueError(f"a batch needs at least 2 identities, got B={b}")
        if b > self.n_identities:
            raise ValueError(f"B={b} identities per batch but the training set has only {self.n_identities}")

    def sample(self, step: int, b: int) -> Batch:
        self._check_b(b)
        rng = self.rng(step)
        return self._assemble(rng.choice(self.index.ids, b, replace=False), rng)

    def state(self) -> dict:
        return {"kind": type(self).__name__, "seed": self.seed, "rank": self.rank, "n": self.n}


class KCSSampler(UniformSampler):
    """K-means centred sampling after ``switch_at`` steps, uniform before."""

    def __init__(self, labels: np.ndarray, embeddings: np.ndarray, n_per_id: int, k: int, switch_at: int = 0,
                 seed: int = 0, rank: int = 0, cluster_of: np.ndarray | None = None) -> None:
        """``embeddings`` (n_images, d) per image; ``cluster_of`` (n_identities,) reuses a clustering (resume)."""
        super().__init__(labels, n_per_id, seed, rank)
        emb = np.asarray(embeddings, dtype=np.float64)
        if emb.ndim != 2 or len(emb) != len(self.index.labels):
            raise ValueError(f"embeddings must be (n_images={len(self.index.labels)}, d), got {emb.shape}")
        ids = self.index.ids
        if not 1 <= k <= len(ids):
            raise ValueError(f"K={k} clusters for {len(ids)} identities; use 1 <= K <= {len(ids)}")
        self.k, self.switch_at = int(k), int(switch_at)
        means = np.stack([emb[self.index.images[int(i)]].mean(0) for i in ids])
        means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
        if cluster_of is None:
            from sklearn.cluster import KMeans

            km = KMeans(n_clusters=self.k, n_init=3, random_state=self.seed).fit(means)
            cluster_of = km.labels_
        cluster_of = np.asarray(cluster_of, dtype=np.int64)
        if cluster_of.shape != (len(ids),):
            raise ValueError(f"cluster_of must be ({len(ids)},), got {cluster_of.shape}")
        self.cluster_of = cluster_of
        self.members = [ids[cluster_of == c] for c in range(self.k)]
        sizes = np.array([len(m) for m in self.members], dtype=np.float64)
        self.probs = sizes / sizes.sum()
        centres = np.stack([means[cluster_of == c].mean(0) if len(self.members[c]) else np.full(means.shape[1], np.inf)
                            for c in range(self.k)])
        d = ((centres[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
        self.neighbours = np.argsort(np.nan_to_num(d, nan=np.inf, posinf=np.inf), axis=1, kind="stable")
        log.info("KCS: %d identities in %d clusters (sizes min %d, median %d, max %d), from step %d",
                 len(ids), self.k, int(sizes.min()), int(np.median(sizes)), int(sizes.max()), self.switch_at)

    def pool(self, cluster: int, b: int) -> np.ndarray:
        """The identities a batch from ``cluster`` is drawn from: the cluster, topped up with neighbours to ≥ b."""
        out: list[np.ndarray] = []
        total = 0
        for c in self.neighbours[cluster]:  # starts with the cluster itself (distance 0)
            if total >= b:
                break
            out.append(self.members[int(c)])
            total += len(self.members[int(c)])
        return np.concatenate(out)

    def sample(self, step: int, b: int) -> Batch:
        if step < self.switch_at:
            return super().sample(step, b)
        self._check_b(b)
        rng = self.rng(step)
        cluster = int(rng.choice(self.k, p=self.probs))
        return self._assemble(rng.choice(self.pool(cluster, b), b, replace=False), rng, cluster)

    def state(self) -> dict:
        return {**super().state(), "k": self.k, "switch_at": self.switch_at, "cluster_of": self.cluster_of.tolist()}


def select_columns(labels: torch.Tensor, embeddings: torch.Tensor, k: int, mode: str = "hard",
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pair subsampling: each row j keeps all its positives and ``k`` negatives.

    labels (nB,) of a balanced batch; embeddings (nB, d) L2-normalised backbone embeddings. ``mode``
    "hard": the k negatives most similar to image j in the backbone's embedding space (cosine) — cheap,
    since no extra pass of f is needed; "random": k negatives uniformly. Returns ``columns`` (nB, n+k)
    (positives first) and ``is_positive`` (nB, n+k) bool.
    """
    if mode not in ("hard", "random"):
        raise ValueError(f"pair subsampling mode must be 'hard' or 'random', got {mode!r}")
    nb = labels.shape[0]
    same = labels[:, None] == labels[None, :]
    n_pos = same.sum(1)
    if not bool((n_pos == n_pos[0]).all()):
        raise ValueError("pair subsampling needs a balanced batch (the same number of images per identity)")
    n = int(n_pos[0])
    k = min(int(k), nb - n)
    if k < 1:
        raise ValueError(f"pair subsampling needs at least one negative per row (nB={nb}, n={n})")
    idx = torch.arange(nb).expand(nb, nb)
    pos = idx[same].reshape(nb, n)
    if mode == "hard":
        sim = embeddings @ embeddings.t()
        neg = sim.masked_fill(same, float("-inf")).topk(k, dim=1).indices
    else:
        noise = torch.rand(nb, nb, generator=generator)
        neg = noise.masked_fill(same, float("inf")).topk(k, dim=1, largest=False).indices
    cols = torch.cat([pos, neg], dim=1)
    is_pos = torch.zeros(nb, n + k, dtype=torch.bool)
    is_pos[:, :n] = True
    return cols, is_pos
