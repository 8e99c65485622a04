"""Samplers: balanced batches, determinism, KCS after the switch step, pair subsampling."""

import numpy as np
import pytest
import torch

from training.samplers import KCSSampler, UniformSampler, select_columns


def _clustered(n_clusters=4, ids_per_cluster=10, imgs=(1, 2, 5), dim=16, seed=0):
    """Identities in well separated groups; image counts cycle through ``imgs``."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim)) * 10
    labels, emb, group = [], [], []
    ident = 0
    for c in range(n_clusters):
        for _ in range(ids_per_cluster):
            mu = centres[c] + rng.normal(size=dim) * 0.3
            for _ in range(imgs[ident % len(imgs)]):
                labels.append(ident)
                emb.append(mu + rng.normal(size=dim) * 0.05)
            group.append(c)
            ident += 1
    return np.array(labels), np.array(emb), np.array(group)


def test_uniform_batch_is_balanced_and_deterministic():
    labels, _, _ = _clustered()
    s = UniformSampler(labels, n_per_id=3, seed=7)
    b = s.sample(5, 6)
    assert len(b.images) == 18 and len(set(b.identities.tolist())) == 6
    assert (b.labels == np.repeat(b.identities, 3)).all()
    assert (labels[b.images] == b.labels).all()
    again = UniformSampler(labels, n_per_id=3, seed=7).sample(5, 6)
    assert (again.images == b.images).all()
    assert not np.array_equal(s.sample(6, 6).identities, b.identities) or not np.array_equal(
        s.sample(6, 6).images, b.images)
    other_rank = UniformSampler(labels, n_per_id=3, seed=7, rank=1).sample(5, 6)
    assert not np.array_equal(other_rank.images, b.images)


def test_identities_with_few_images_repeat_all_of_them_first():
    labels, _, _ = _clustered(imgs=(2,))
    b = UniformSampler(labels, n_per_id=5, seed=0).sample(0, 4)
    for i, ident in enumerate(b.identities):
        mine = b.images[i * 5:(i + 1) * 5]
        assert set(mine.tolist()) == set(np.flatnonzero(labels == ident).tolist())  # both images present
    big = UniformSampler(labels, n_per_id=2, seed=0).sample(0, 4)
    for i in range(4):
        assert len(set(big.images[i * 2:(i + 1) * 2].tolist())) == 2  # distinct when enough images


def test_kcs_uniform_before_switch_and_one_cluster_after():
    labels, emb, group = _clustered(n_clusters=4, ids_per_cluster=10)
    s = KCSSampler(labels, emb, n_per_id=2, k=4, switch_at=100, seed=3)
    # the clustering recovers the 4 groups
    for c in range(4):
        assert len(set(s.cluster_of[group == c].tolist())) == 1
    mixed = 0
    for step in range(100):
        b = s.sample(step, 6)
        assert b.cluster == -1
        mixed += len(set(group[b.identities].tolist())) > 1
    assert mixed > 80  # uniform: 6 of 40 identities are almost never from one group
    for step in range(100, 160):
        b = s.sample(step, 6)
        assert b.cluster >= 0
        assert len(set(group[b.identities].tolist())) == 1
        assert len(set(s.cluster_of[b.identities].tolist())) == 1
    assert (KCSSampler(labels, emb, 2, 4, 100, seed=3).sample(150, 6).images == s.sample(150, 6).images).all()


def test_kcs_tops_up_small_clusters_with_nearest_neighbours():
    labels, emb, group = _clustered(n_clusters=4, ids_per_cluster=5)
    s = KCSSampler(labels, emb, n_per_id=2, k=4, switch_at=0, seed=1)
    b = s.sample(0, 8)  # 8 > 5 identities per cluster
    assert len(set(b.identities.tolist())) == 8
    home = b.cluster
    pool = s.pool(home, 8)
    nearest = s.neighbours[home][1]
    assert set(pool.tolist()) == set(s.members[home].tolist()) | set(s.members[nearest].tolist())
    # a resumed run can reuse the clustering
    s2 = KCSSampler(labels, emb, 2, 4, 0, seed=1, cluster_of=s.cluster_of)
    assert (s2.sample(3, 8).images == s.sample(3, 8).images).all()


def test_bad_requests_are_refused():
    labels, emb, _ = _clustered(n_clusters=2, ids_per_cluster=3)
    s = UniformSampler(labels, 2)
    with pytest.raises(ValueError, match="only 6"):
        s.sample(0, 7)
    with pytest.raises(ValueError, match="K=99"):
        KCSSampler(labels, emb, 2, 99)


def test_select_columns_hard_and_random():
    labels = torch.arange(4).repeat_interleave(3)  # B=4, n=3, nB=12
    emb = torch.nn.functional.normalize(torch.randn(12, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    cols, is_pos = select_columns(labels, emb, k=4, mode="hard")
    assert cols.shape == (12, 7) and is_pos[:, :3].all() and not is_pos[:, 3:].any()
    for j in range(12):
        assert set(cols[j, :3].tolist()) == set(torch.nonzero(labels == labels[j]).flatten().tolist())
        negs = cols[j, 3:]
        assert (labels[negs] != labels[j]).all() and len(set(negs.tolist())) == 4
        sims = emb[j] @ emb.t()
        others = torch.nonzero(labels != labels[j]).flatten()
        top = others[sims[others].argsort(descending=True)[:4]]
        assert set(negs.tolist()) == set(top.tolist())
    g = torch.Generator().manual_seed(1)
    rc, _ = select_columns(labels, emb, k=5, mode="random", generator=g)
    assert rc.shape == (12, 8)
    for j in range(12):
        assert (labels[rc[j, 3:]] != labels[j]).all() and len(set(rc[j, 3:].tolist())) == 5
    rc2, _ = select_columns(labels, emb, k=5, mode="random", generator=torch.Generator().manual_seed(1))
    assert torch.equal(rc, rc2)
    with pytest.raises(ValueError, match="balanced"):
        select_columns(torch.tensor([0, 0, 1]), emb[:3], 1)
