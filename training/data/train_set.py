"""The training set of h_gen and the held-out evaluation pairs, people-disjoint; training augmentation.

LFW split (``fold`` = 0…9): training uses the images of the people of the *other nine* people.txt
folds; the people of ``fold`` are never seen in training — their View 2 pairs (pairs.txt, fold
``fold``: 300 same + 300 different; every pair's people belong to that people.txt fold, checked) are
the evaluation. Images whose alignment failed are left out, and so are identities with fewer than
``min_images_per_id`` usable images.

CFP people may join (``cfp_train_folds``, :func:`with_cfp_people`): every photo, frontal and profile, of
the people of chosen CFP protocol folds (people-disjoint, 50 each), with the same people-disjointness
across both sets by name; the benchmark then scores CFP on its other folds only.

Per training image the set holds: the index of its aligned 112×112 crop in the LFW crop memmap (f's
input), its identity label, and the backbone embedding of the un-augmented image (h's input), from the
project's embedding cache. ``missing_embeddings="compute"`` runs the backbone on crops not cached yet
(minutes on a CPU for the whole of LFW); ``"drop"`` leaves those *training* images out instead (logged), for
quick runs on what is cached; the evaluation images' embeddings are always completed.

Augmentation (:func:`augment`) works on a batch of uint8 crops in torch, seeded per step: horizontal
flip, a small random crop-and-resize with translation (an affine resampling, zoom ≤ ``scale``,
shift ≤ ``translate_px``), brightness/contrast jitter, and grayscale views (``gray``, off by default); it
returns f's float input (see :func:`training.verifier.functional.to_input`). Each switch can be turned off.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from training.data.variants import LUMA
from training.verifier.functional import INPUT_SCALE, INPUT_ZERO, to_input

log = logging.getLogger(__name__)


@dataclass
class TrainSet:
    crops: np.ndarray  # (N_all, 112, 112, 3) uint8, may be a memmap; f's input
    images: np.ndarray  # (n,) int64 index into ``crops`` of each training image
    labels: np.ndarray  # (n,) int64 identity label 0..n_identities-1
    embeddings: np.ndarray  # (n, d) float32, L2-normalised backbone embeddings of the un-augmented images
    names: list[str]  # identity name of each label

    def __post_init__(self) -> None:
        n = len(self.images)
        if not (len(self.labels) == len(self.embeddings) == n):
            raise ValueError(f"images ({n}), labels ({len(self.labels)}) and embeddings ({len(self.embeddings)}) "
                             "differ in length")

    @property
    def n_identities(self) -> int:
        return len(self.names)

    def batch_crops(self, idx: np.ndarray) -> torch.Tensor:
        """uint8 (len(idx), H, W, 3) crops of training images ``idx`` (sorted reads of the memmap)."""
        rows = self.images[np.asarray(idx)]
        order = np.argsort(rows, kind="stable")
        out = np.empty((len(rows), *self.crops.shape[1:]), np.uint8)
        out[order] = self.crops[rows[order]]
        return torch.from_numpy(out)


@dataclass
class EvalPairs:
    crops: np.ndarray  # the same crop array as the training set
    images: np.ndarray  # (u,) index into ``crops`` of every image used by the pairs
    embeddings: np.ndarray  # (u, d)
    left: np.ndarray  # (P,) index into ``images``
    right: np.ndarray
    same: np.ndarray  # (P,) bool
    name: str = "pairs"

    def crops_of(self, idx: np.ndarray) -> torch.Tensor:
        rows = self.images[np.asarray(idx)]
        return torch.from_numpy(np.ascontiguousarray(self.crops[rows]))


# --------------------------------------------------------------------------------------------------
# LFW


def _embeddings(backbone: str, kind_crops: np.ndarray, rows: np.ndarray, missing: str,
                progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of crops ``rows`` of the backbone's input kind → (emb (k, d), mask of rows kept)."""
    from training.backbones import load_backbone
    from training.backbones.embedding_cache import EmbeddingCache, content_key

    cache = EmbeddingCache(load_backbone(backbone))
    if missing == "compute":
        emb = cache.embed(kind_crops[rows], progress=progress)
        return emb.astype(np.float32), np.ones(len(rows), bool)
    keys = [content_key(kind_crops[r]) for r in rows]
    store = cache._store  # the cache has no public look-up without computing; "drop" must not compute
    keep = np.array([k in store for k in keys], bool)
    if not keep.any():
        raise RuntimeError(f"no {backbone} embedding is cached for these images; use missing_embeddings=compute")
    emb = np.stack([store[k] for k, ok in zip(keys, keep) if ok]).astype(np.float32)
    return emb, keep


def load_lfw_split(fold: int, backbone: str, detector: str = "dlib", min_images_per_id: int = 2,
                   missing_embeddings: str = "compute", progress: bool = True,
                   val_fold: int = -1) -> tuple[TrainSet, EvalPairs] | tuple[TrainSet, EvalPairs, EvalPairs]:
    """People-disjoint LFW split: train on the people of the nine other folds, evaluate on ``fold``'s pairs.
    ``val_fold`` ≥ 0: its people are left out of training too, and its pairs come back third (validation)."""
    from training.backbones import backbone_info
    from training.backbones.base import ARCFACE112
    from training.data import lfw
    from training.face.cache import lfw_cache

    if not 0 <= fold < lfw.N_FOLDS:
        raise ValueError(f"fold must be 0..{lfw.N_FOLDS - 1}, got {fold}")
    people_folds = lfw.load_people_folds()
    train_people = sorted({p for i, f in enumerate(people_folds) if i not in (fold, val_fold) for p in f})
    cache = lfw_cache(detector)
    status = cache.status
    pending = int((status == 0).sum())
    if pending:
        raise RuntimeError(f"{pending} LFW images are not aligned yet; run python -m training.align --dataset lfw")
    crops = cache.crops(ARCFACE112)
    kind = backbone_info(backbone).input_kind
    kind_crops = cache.crops(kind)

    by_person: dict[str, list[int]] = {}
    for i, rel in enumerate(cache.paths):
        if status[i] > 0:
            by_person.setdefault(lfw.identity_of(rel), []).append(i)
    rows = np.array([r for p in train_people for r in by_person.get(p, [])], np.int64)
    emb, keep = _embeddings(backbone, kind_crops, rows, missing_embeddings, progress)
    if not keep.all():
        log.warning("missing_embeddings=drop: %d of %d training images have no cached %s embedding and are left out",
                    int((~keep).sum()), len(rows), backbone)
    rows = rows[keep]
    person = np.array([lfw.identity_of(cache.paths[r]) for r in rows])
    names, inv, counts = np.unique(person, return_inverse=True, return_counts=True)
    ok = counts[inv] >= min_images_per_id
    names_kept = [str(n) for n, c in zip(names, counts) if c >= min_images_per_id]
    remap = {n: i for i, n in enumerate(names_kept)}
    labels = np.array([remap[p] for p in person[ok]], np.int64)
    train = TrainSet(crops, rows[ok], labels, emb[ok], names_kept)
    log.info("LFW fold %d held out: training on %d images of %d people (of %d people in the other folds; "
             "min %d images each)", fold, len(train.images), train.n_identities, len(train_people), min_images_per_id)

    def fold_pairs(k: int) -> EvalPairs:
        held_out = set(people_folds[k])
        pairs = [p for p in lfw.load_pairs("view2") if p.fold == k]
        for p in pairs:
            for rel in (p.a, p.b):
                if lfw.identity_of(rel) not in held_out:
                    raise RuntimeError(f"pairs.txt fold {k} pair image {rel} is not a person of people.txt fold {k}")
        used = sorted({p.a for p in pairs} | {p.b for p in pairs})
        used_rows = cache.indices(used)
        bad = used_rows[status[used_rows] <= 0]
        if len(bad):
            raise RuntimeError(f"{len(bad)} evaluation images failed alignment, e.g. {cache.paths[int(bad[0])]}")
        # evaluation needs every pair: the few embeddings not cached are computed whatever the policy
        e_emb, _ = _embeddings(backbone, kind_crops, used_rows, "compute", progress)
        pos = {p: i for i, p in enumerate(used)}
        return EvalPairs(crops, used_rows, e_emb, np.array([pos[p.a] for p in pairs]),
                         np.array([pos[p.b] for p in pairs]), np.array([p.same for p in pairs]),
                         name=f"lfw-view2-fold{k}")

    if val_fold >= 0:
        return train, fold_pairs(fold), fold_pairs(val_fold)
    return train, fold_pairs(fold)


def cfp_fold_people(root=None) -> dict[int, set[str]]:
    """CFP protocol fold → its 50 person ids (``"001"``…), read off the FF pairs (FP's folds hold the same
    people, ``tests/training/test_cfp_training.py`` checks it)."""
    from training.data import cfp

    out: dict[int, set[str]] = {}
    for p in cfp.load_pairs("FF", root):
        out.setdefault(p.fold, set()).update((cfp.identity_of(p.a), cfp.identity_of(p.b)))
    return out


def cfp_training_people(cfp_folds: tuple[int, ...], held_out_lfw_folds: tuple[int, ...],
                        root=None) -> tuple[dict[str, str], list[str]]:
    """(CFP person id → training identity name, the ids left out) for the people of CFP folds ``cfp_folds``.

    People-disjointness across both sets, by name (``training.data.cfp.lfw_matches``): a CFP person named in
    an LFW people.txt fold of ``held_out_lfw_folds`` is left out (LFW evaluates that person); one named in
    another LFW fold gets that LFW name, so his CFP and LFW photos are one identity (a person must not be a
    negative of himself); the others are ``cfp-<id>``."""
    from training.data import cfp, lfw

    fold_people = cfp_fold_people(root)
    match = cfp.lfw_matches(cfp.load_names(root), lfw.load_people_folds())
    wanted = sorted(set().union(*(fold_people[k] for k in cfp_folds)))
    excluded = [pid for pid in wanted if pid in match and match[pid][1] in set(held_out_lfw_folds)]
    kept = {pid: match[pid][0] if pid in match else f"cfp-{pid}" for pid in wanted if pid not in set(excluded)}
    return kept, excluded


def held_out_lfw_folds(config: dict) -> tuple[int, ...]:
    """The LFW people.txt folds a training config keeps out of training: ``fold`` and ``val_fold`` (if any)."""
    return tuple(k for k in (config.get("fold", -1), config.get("val_fold", -1)) if k is not None and k >= 0)


def with_cfp_people(train: TrainSet, cfp_folds: tuple[int, ...], held_out_lfw_folds: tuple[int, ...], backbone: str,
                    detector: str = "dlib", missing_embeddings: str = "compute", progress: bool = True,
                    root=None, min_images_per_id: int = 1) -> TrainSet:
    """``train`` plus every photo (frontal and profile) of the people of CFP protocol folds ``cfp_folds``
    (:func:`cfp_training_people` says who and under which name). Images are aligned first where the CFP
    cache lacks them. The crops are copied into one in-memory array (≈ 38 KB per image), so the set no
    longer indexes the LFW memmap."""
    from training.backbones import backbone_info
    from training.backbones.base import ARCFACE112
    from training.data import cfp

    if not cfp_folds:
        return train
    identity, excluded = cfp_training_people(cfp_folds, held_out_lfw_folds, root)
    cache = cfp.cfp_cache(detector, root)
    paths = cache.paths
    rows = np.array([i for i, rel in enumerate(paths) if cfp.identity_of(rel) in identity], np.int64)
    cfp.align(cache, rows, progress=progress, root=root)
    rows = rows[cache.status[rows] > 0]
    emb, keep = _embeddings(backbone, cache.crops(backbone_info(backbone).input_kind), rows, missing_embeddings,
                            progress)
    rows = rows[keep]
    pid = np.array([cfp.identity_of(paths[r]) for r in rows])
    _, inv, counts = np.unique(pid, return_inverse=True, return_counts=True)
    enough = counts[inv] >= min_images_per_id  # as for LFW's people (after failed alignments, dropped embeddings)
    rows, emb, pid = rows[enough], emb[enough], pid[enough]
    cfp_person = [identity[p] for p in pid]
    merged = set(cfp_person) & set(train.names)
    names_out, labels = np.unique(np.array([train.names[k] for k in train.labels] + cfp_person), return_inverse=True)
    n_lfw = len(train.images)
    crops = np.empty((n_lfw + len(rows), *train.crops.shape[1:]), np.uint8)  # one copy, filled in place
    np.take(train.crops, train.images, axis=0, out=crops[:n_lfw])  # no intermediate copy of the LFW part
    crops[n_lfw:] = cache.crops(ARCFACE112)[rows]  # rows ascending: sequential reads
    log.info("CFP folds %s join training: %d images of %d people (%d of them also LFW training people, one "
             "identity each); %d CFP people left out, named in the held-out LFW folds %s",
             ",".join(map(str, cfp_folds)), len(rows), len(set(cfp_person)), len(merged), len(excluded),
             ",".join(map(str, held_out_lfw_folds)))
    return TrainSet(crops, np.arange(len(crops), dtype=np.int64), labels.astype(np.int64),
                    np.concatenate([train.embeddings, emb]).astype(np.float32), [str(n) for n in names_out])


def random_split(n_identities: int = 64, images_per_id: int = 4, dim: int = 128, hw: int = 112, seed: int = 0,
                 n_eval_pairs: int = 40) -> tuple[TrainSet, EvalPairs]:
    """Synthetic data for smoke runs and tests: each identity a random colour pattern plus noise, its
    embedding a random direction plus noise. Deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    n_eval_ids = max(4, n_identities // 4)
    total_ids = n_identities + n_eval_ids
    base = rng.integers(0, 256, (total_ids, 8, 8, 3))
    centres = rng.normal(size=(total_ids, dim))
    crops, embs, labels = [], [], []
    for i in range(total_ids):
        for _ in range(images_per_id):
            img = np.kron(base[i], np.ones((hw // 8, hw // 8, 1))) + rng.normal(0, 20, (hw, hw, 3))
            crops.append(np.clip(img, 0, 255).astype(np.uint8))
            e = centres[i] + 0.5 * rng.normal(size=dim)
            embs.append(e / np.linalg.norm(e))
            labels.append(i)
    crops_a = np.stack(crops)
    emb_a = np.stack(embs).astype(np.float32)
    lab_a = np.array(labels, np.int64)
    tr = lab_a < n_identities
    train = TrainSet(crops_a, np.flatnonzero(tr), lab_a[tr], emb_a[tr], [f"id{i}" for i in range(n_identities)])
    ev_rows = np.flatnonzero(~tr)
    ev_lab = lab_a[ev_rows]
    left, right, same = [], [], []
    for p in range(n_eval_pairs):
        a = int(rng.integers(len(ev_rows)))
        cand = np.flatnonzero((ev_lab == ev_lab[a]) if p % 2 == 0 else (ev_lab != ev_lab[a]))
        cand = cand[cand != a]
        b = int(rng.choice(cand))
        left.append(a)
        right.append(b)
        same.append(p % 2 == 0)
    ev = EvalPairs(crops_a, ev_rows, emb_a[ev_rows], np.array(left), np.array(right), np.array(same), "random")
    return train, ev


# --------------------------------------------------------------------------------------------------
# augmentation


@dataclass(frozen=True)
class AugmentConfig:
    flip: bool = True
    translate_px: float = 4.0
    scale: float = 0.08
    brightness: float = 0.15
    contrast: float = 0.15
    gray: float = 0.0  # probability of a grayscale view (BT.601 luma in all 3 channels): the boards' cameras

    @property
    def geometric(self) -> bool:
        return self.translate_px > 0 or self.scale > 0


def augment(crops_u8: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """uint8 (N, H, W, 3) → f's float input (N, 3, H, W), randomly augmented (``generator`` decides)."""
    x = to_input(crops_u8)
    n, _, h, w = x.shape
    if n == 0:
        return x
    u = torch.rand(n, 6, generator=generator)  # one draw of everything, so switches do not shift the stream
    if cfg.flip:
        x = torch.where((u[:, 0] < 0.5)[:, None, None, None], x.flip(-1), x)
    if cfg.geometric:
        # affine_grid maps output to input coordinates in [-1, 1]: zoom s ≤ 1 samples a smaller window
        # (crop-and-resize), t shifts it by up to translate_px pixels.
        s = 1.0 - cfg.scale * u[:, 1]
        tx = (2 * u[:, 2] - 1) * cfg.translate_px * 2 / w
        ty = (2 * u[:, 3] - 1) * cfg.translate_px * 2 / h
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0], theta[:, 1, 1], theta[:, 0, 2], theta[:, 1, 2] = s, s, tx, ty
        grid = F.affine_grid(theta, [n, 3, h, w], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if cfg.contrast > 0 or cfg.brightness > 0:
        c = 1.0 + cfg.contrast * (2 * u[:, 4] - 1)
        b = cfg.brightness * (2 * u[:, 5] - 1)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * c[:, None, None, None] + mean + b[:, None, None, None]
    lo, hi = (0 - INPUT_ZERO) * INPUT_SCALE, (255 - INPUT_ZERO) * INPUT_SCALE
    x = x.clamp_(lo, hi)
    if cfg.gray > 0:  # after the scene's lighting, what the sensor does, from its own draw so that gray = 0
        # keeps the stream above unchanged; (N, 8) and column 4 are the draw the runs of docs/research section 8
        # made (its camera augmentation had 8 parameters), so their commands reproduce them
        g = torch.rand(n, 8, generator=generator)[:, 4] < cfg.gray
        if g.any():  # the luma weights sum to 1, so luma of the scaled input = the scaled luma
            y = (x[g] * torch.tensor(LUMA, dtype=x.dtype).view(1, 3, 1, 1)).sum(1, keepdim=True)
            x[g] = y.expand(-1, 3, -1, -1)
    return x
