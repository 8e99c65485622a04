"""Face verification evaluation: ``python -m training.evaluate (--backbone NAME | --model FILE...) --dataset lfw``.

``--model``: a trained hypernetwork (``model_final.pt`` of ``training.train``). For a pair (a, b):
θ_a = h(a), score = f(b; θ_a), averaged with f(a; θ_b) unless ``--one-way`` (what a device computes).
``--views 2``: f(b) is the mean of f on b's crop and on its mirror image (two passes of f per probe).
The same pairs in the device's integer arithmetic: ``python -m codegen.accuracy --model FILE``.
LFW: a model trained with people.txt fold k held out is scored on View 2 fold k only (people-disjoint);
give one model per fold (``--model run0/model_final.pt run1/...``) for the full 10-fold protocol.

Baseline of a frozen backbone: score(a, b) = cosine similarity of the two embeddings. Reports the
10-fold accuracy (threshold chosen on the other 9 folds, LFW View 2 protocol), TAR at FAR 1e-3 and 1e-2
and ROC AUC, and writes ``report.json``, ``roc.png`` and ``scores.png`` to ``--out``.

Datasets (``--dataset``): ``lfw`` (View 2 pairs.txt, or View 1 ``--view devtest``; images aligned once and
cached, see ``python -m training.align``); ``cfp-ff`` / ``cfp-fp`` (CFP's frontal-frontal and frontal-profile
10-fold protocols, ``training.data.cfp``); an image folder (one sub-folder per person, any format OpenCV
reads; its 10 people-disjoint folds of pairs are drawn by ``training.data.image_folder.verification_pairs``);
or an InsightFace verification ``.bin`` file (already aligned 112×112 crops: lfw.bin, cfp_fp.bin,
agedb_30.bin, calfw.bin, cplfw.bin, vgg2_fp.bin; dlib's chip is fitted in them, ``training.face.box_align``).
``--variant gray|lowres``: the set's crops in grayscale or at 40×40 (``training.data.variants``).
A ``--model`` is scored on the pairs it was not trained on (:func:`model_pairs`): on LFW its held-out
fold; on CFP without the people whose names are in the LFW folds it saw; any other set whole.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pvcore.atomic import atomic_write_json
from pvcore.cli import EXIT_USAGE, fail, setup_logging
from pvcore.paths import REPO_ROOT, SharedDataMissing
from training.backbones import available_backbones, backbone_info, load_backbone, resolve_detector
from training.backbones.base import ARCFACE112, DLIB150, mirrored
from training.backbones.embedding_cache import EmbeddingCache
from training.data.variants import VARIANTS
from training.eval.metrics import VerificationReport, interleaved_folds
from training.eval.plots import save_roc_png, save_score_histogram_png

if TYPE_CHECKING:  # for annotations only: the functions import torch where they use it, as before
    import torch

log = logging.getLogger(__name__)


@dataclass
class PairSet:
    """Pairs as indices into one array of aligned crops."""

    name: str
    crops: dict[str, np.ndarray]  # input kind → (M, H, W, 3) uint8 crops of the images used
    left: np.ndarray  # (P,) index into crops
    right: np.ndarray
    same: np.ndarray  # (P,) bool
    folds: np.ndarray | None  # (P,) fold id, or None for consecutive equal splits
    info: dict = field(default_factory=dict)  # how the set was made: alignment paths, excluded pairs


def spread(n_total: int, n: int | None) -> np.ndarray:
    """``n`` indices spread evenly over range(n_total) (all of them for None or n >= n_total): on a pair
    list laid out fold by fold, same pairs then different ones, every fold and both kinds keep their share."""
    if n is None or n >= n_total:
        return np.arange(n_total)
    return np.unique(np.linspace(0, n_total - 1, n).round().astype(np.int64))


def _limited(pairs: list, limit: int | None, info: dict) -> list:
    """``pairs`` cut to ``limit`` by :func:`spread` (recorded in ``info``), before any image is aligned."""
    if limit is None or limit >= len(pairs):
        return pairs
    info["limited_to_pairs"] = int(limit)
    return [pairs[i] for i in spread(len(pairs), limit)]


def _cached_pairs(name: str, cache, pairs: list, info: dict) -> PairSet:
    """A PairSet of ``pairs`` (each with .a, .b image paths of ``cache``, .same, .fold) from aligned crops."""
    from training.face.cache import DLIB150

    used = sorted({p.a for p in pairs} | {p.b for p in pairs})
    idx = cache.indices(used)
    pos = {p: i for i, p in enumerate(used)}
    crops = {ARCFACE112: np.asarray(cache.crops(ARCFACE112)[idx]), DLIB150: np.asarray(cache.crops(DLIB150)[idx])}
    folds = np.array([p.fold for p in pairs])
    return PairSet(name=name, crops=crops, left=np.array([pos[p.a] for p in pairs]),
                   right=np.array([pos[p.b] for p in pairs]), same=np.array([p.same for p in pairs]),
                   folds=folds if len(np.unique(folds)) >= 2 else None,
                   info={"images": len(used), **info})


def _alignment_counts(cache, idx: np.ndarray) -> dict[str, int]:
    """How many of the images ``idx`` each alignment path handled (the cache's status names)."""
    from training.face.cache import STATUS_NAMES

    status = cache.status[np.asarray(idx, np.int64)]
    return {name: int((status == code).sum()) for code, name in STATUS_NAMES.items()}


def lfw_pairs(view: str = "view2", detector: str = "dlib", max_folds: int | None = None,
              workers: int = 2, progress: bool = True, fold: int | None = None, limit: int | None = None) -> PairSet:
    """LFW's ``view`` pairs (the first ``max_folds`` folds, or View 2 ``fold`` alone; ``limit`` of them)."""
    from training.data import lfw
    from training.face.cache import lfw_cache

    pairs = lfw.load_pairs(view)
    if max_folds is not None:
        pairs = [p for p in pairs if p.fold < max_folds]
    if fold is not None:
        pairs = [p for p in pairs if p.fold == fold]
    info: dict = {"detector": detector}
    pairs = _limited(pairs, limit, info)
    cache = lfw_cache(detector)
    idx = cache.indices(sorted({p.a for p in pairs} | {p.b for p in pairs}))
    summary = cache.ensure(idx, workers=workers, progress=progress)
    log.info("LFW alignment cache: %s", summary)
    name = f"lfw-{view}" + (f"-folds{max_folds}" if max_folds else "") + (f"-fold{fold}" if fold is not None else "")
    return _cached_pairs(name, cache, pairs, {**info, "alignment": _alignment_counts(cache, idx)})


def cfp_pairs(protocol: str, detector: str = "dlib", workers: int = 2, progress: bool = True,
              exclude_lfw_folds: tuple[int, ...] = (), limit: int | None = None,
              cfp_folds: tuple[int, ...] | None = None) -> PairSet:
    """CFP's ``protocol`` ("FF" or "FP"), 10 folds of 350 same + 350 different pairs (only the folds
    ``cfp_folds`` if given: a model trained on CFP's other folds); without the pairs of people whose name is
    in one of the LFW people.txt folds ``exclude_lfw_folds`` (a model's training folds); ``limit`` of them,
    spread over the folds. A single fold is dealt into 10 interleaved folds for the k-fold figures, as
    LFW's held-out fold is.
    Faces neither detector finds are aligned in the box of CFP's own fiducials (``training.data.cfp.align``)."""
    from training.data import cfp, lfw

    pairs = cfp.load_pairs(protocol)  # type: ignore[arg-type]
    info: dict = {"protocol": protocol, "protocol_pairs": len(pairs), "detector": detector}
    if cfp_folds is not None:
        if not cfp_folds:
            raise ValueError(f"CFP {protocol}: no CFP fold to score (cfp_folds is empty)")
        pairs = [p for p in pairs if p.fold in set(cfp_folds)]
        info.update(cfp_folds=sorted(cfp_folds), fold_pairs=len(pairs))
    if exclude_lfw_folds:
        overlap = cfp.lfw_overlap(cfp.load_names(), lfw.load_people_folds())
        present = {cfp.identity_of(x) for p in pairs for x in (p.a, p.b)}
        drop = {pid for pid, k in overlap.items() if k in set(exclude_lfw_folds) and pid in present}
        kept = [p for p in pairs if cfp.identity_of(p.a) not in drop and cfp.identity_of(p.b) not in drop]
        info.update(lfw_name_overlap_people=len(overlap), excluded_lfw_folds=sorted(exclude_lfw_folds),
                    excluded_people=len(drop), excluded_pairs=len(pairs) - len(kept))
        pairs = kept
    if not pairs:
        raise ValueError(f"CFP {protocol}: no pair left after excluding the people of LFW folds {exclude_lfw_folds}")
    pairs = _limited(pairs, limit, info)
    cache = cfp.cfp_cache(detector)
    idx = cache.indices(sorted({p.a for p in pairs} | {p.b for p in pairs}))
    info["alignment"] = cfp.align(cache, idx, workers, progress)
    out = _cached_pairs(f"cfp-{protocol.lower()}", cache, pairs, info)
    if out.folds is None:  # one protocol fold: 10 interleaved folds (its same pairs come first)
        out.folds = interleaved_folds(len(out.same))
    return out


def folder_pairs(root: str | Path, detector: str = "dlib", workers: int = 2, progress: bool = True,
                 per_fold: int = 300, seed: int = 0, limit: int | None = None) -> PairSet:
    """An image folder (one sub-folder per person): every image aligned (cached), the ones no detector
    finds left out, then 10 people-disjoint folds of up to ``per_fold`` same and as many different pairs
    (``training.data.image_folder.verification_pairs``)."""
    from types import SimpleNamespace

    from training.data.image_folder import verification_pairs
    from training.face.cache import FAILED, folder_cache

    cache = folder_cache(root, detector)
    cache.ensure(None, workers=workers, progress=progress)
    ok = np.flatnonzero(cache.status != FAILED)
    identity = [p.split("/", 1)[0] for p in cache.paths]
    _, labels = np.unique([identity[i] for i in ok], return_inverse=True)
    a, b, same, fold = verification_pairs(labels, per_fold=per_fold, seed=seed)
    pairs = [SimpleNamespace(a=cache.paths[ok[i]], b=cache.paths[ok[j]], same=bool(s), fold=int(f))
             for i, j, s, f in zip(a, b, same, fold)]
    info = {"detector": detector, "alignment": _alignment_counts(cache, np.arange(len(cache.paths))),
            "pairs_per_fold": per_fold, "seed": seed}
    pairs = _limited(pairs, limit, info)
    return _cached_pairs(f"folder-{Path(root).resolve().name}", cache, pairs, info)


def bin_pairs(path: Path, dlib_chips: bool = False, limit: int | None = None) -> PairSet:
    """An InsightFace ``.bin`` set: its aligned 112×112 crops and pairs (consecutive 10-fold splits, as
    InsightFace scores them; ``limit`` of them, spread); ``dlib_chips``: also dlib's 150×150 chip of each
    crop, for dlib-resnet."""
    from training.data.insightface_bin import read_bin

    images, issame = read_bin(path)
    keep = spread(len(issame), limit)
    info: dict = {"alignment": {"as given (ArcFace crops of the file)": int(2 * len(keep))}}
    if len(keep) < len(issame):
        info["limited_to_pairs"] = int(len(keep))
        images = np.ascontiguousarray(np.stack([images[0::2][keep], images[1::2][keep]], axis=1)
                                      .reshape(-1, *images.shape[1:]))
    issame = np.asarray(issame, bool)[keep]
    n = len(issame)
    crops = {ARCFACE112: images}
    if dlib_chips:
        from training.backbones.base import DLIB150
        from training.face.box_align import dlib_chips_from_arcface

        crops[DLIB150] = dlib_chips_from_arcface(images)
        info["dlib150"] = "68-point fit in the ArcFace template's face box (training.face.box_align)"
    return PairSet(name=path.stem, crops=crops, left=np.arange(0, 2 * n, 2), right=np.arange(1, 2 * n, 2),
                   same=np.asarray(issame, bool), folds=None, info={"images": int(len(images)), **info})


DATASETS_HELP = "lfw, cfp-ff, cfp-fp, an image folder (one sub-folder per person) or an InsightFace .bin file"


def load_pairs(dataset: str, detector: str = "dlib", workers: int = 2, progress: bool = True,
               view: str = "view2", max_folds: int | None = None, dlib_chips: bool = False,
               exclude_lfw_folds: tuple[int, ...] = (), limit: int | None = None) -> PairSet:
    """The pairs of ``dataset`` (:data:`DATASETS_HELP`; ``limit`` of them, spread over the list, chosen before
    anything is aligned); ValueError naming the choices for anything else."""
    if dataset == "lfw":
        return lfw_pairs(view, detector, max_folds, workers, progress, limit=limit)
    if dataset in ("cfp-ff", "cfp-fp"):
        return cfp_pairs(dataset[4:].upper(), detector, workers, progress, exclude_lfw_folds, limit)
    path = Path(dataset)
    if path.is_dir():
        return folder_pairs(path, detector, workers, progress, limit=limit)
    if path.is_file() and path.suffix == ".bin":
        return bin_pairs(path, dlib_chips, limit)
    raise ValueError(f"dataset {dataset!r} is neither lfw, cfp-ff, cfp-fp, an image folder (one sub-folder per "
                     "person) nor an InsightFace .bin file")


def seen_lfw_folds(model) -> tuple[int, ...]:
    """The LFW people.txt folds a hypermodel saw (trained on, or chose its checkpoint and threshold on):
    every fold but its held-out ``fold``."""
    from training.data.lfw import N_FOLDS

    return tuple(k for k in range(N_FOLDS) if k != int(model.meta["config"]["fold"]))


CFP_SETS = ("cfp-ff", "cfp-fp", "cfp-ff-val", "cfp-fp-val")


def cfp_report_folds(model) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(the CFP folds a model is reported on, its CFP validation folds): a model trained on CFP people
    (``cfp_train_folds``) is scored on the folds it neither trained nor chose on."""
    from training.config import parse_cfp_folds

    cfg = model.meta["config"]
    train, val = parse_cfp_folds(cfg.get("cfp_train_folds")), parse_cfp_folds(cfg.get("cfp_val_folds"))
    return tuple(k for k in range(10) if k not in set(train) | set(val)), val


def model_pairs(dataset: str, model, workers: int = 2, progress: bool = True, view: str = "view2",
                limit: int | None = None) -> PairSet:
    """The pairs of ``dataset`` that ``model`` was not trained on: LFW's held-out fold only (its 600 pairs
    dealt into 10 interleaved folds for the k-fold figures, as training scores it; ``lfw-val``: the model's
    validation fold instead, where choices are made); CFP without the people of the LFW folds it saw and
    without the CFP folds it trained on (``cfp-ff-val`` / ``cfp-fp-val``: its CFP validation folds only);
    any other set whole. ``limit``: that many of them (:func:`load_pairs`)."""
    from training.backbones import backbone_info
    from training.backbones.base import DLIB150

    if dataset in ("lfw", "lfw-val"):
        key = "fold" if dataset == "lfw" else "val_fold"
        fold = int(model.meta["config"].get(key, -1))
        if fold < 0:  # lfw-val: only a model trained with a validation fold has one
            raise ValueError(f"{model.path}: no LFW validation fold (its config has no val_fold); use lfw")
        sub = lfw_pairs(view, model.detector, None, workers, progress, fold=fold, limit=limit)
        sub.folds = interleaved_folds(len(sub.same))
        sub.info.update({"held_out_fold" if dataset == "lfw" else "validation_fold": fold})
        return sub
    if dataset in CFP_SETS:  # by name: a .bin file or a folder may be called cfp_fp.bin or cfp_faces/
        report, val = cfp_report_folds(model)
        if dataset.endswith("-val") and not val:
            raise ValueError(f"{model.path}: no CFP validation fold (its config has no cfp_val_folds); use "
                             f"{dataset[:-4]}")
        folds = val if dataset.endswith("-val") else report
        return cfp_pairs(dataset[4:6].upper(), model.detector, workers, progress, seen_lfw_folds(model), limit,
                         cfp_folds=None if len(folds) == 10 else folds)
    dlib = backbone_info(model.backbone).input_kind == DLIB150
    return load_pairs(dataset, model.detector, workers, progress, view, dlib_chips=dlib, limit=limit)


def with_variant(pairs: PairSet, variant: str) -> PairSet:
    """The same pairs on every crop kind under ``variant`` (``training.data.variants``)."""
    from training.data.variants import apply_variant

    if variant == "clean":
        return pairs
    return PairSet(f"{pairs.name}-{variant}", {k: apply_variant(v, variant) for k, v in pairs.crops.items()},
                   pairs.left, pairs.right, pairs.same, pairs.folds, {**pairs.info, "variant": variant})


def backbone_scores(pairs: PairSet, backbone_name: str, progress: bool = True,
                    **backbone_kwargs: object) -> tuple[np.ndarray, dict[str, float]]:
    info = backbone_info(backbone_name)
    if info.input_kind not in pairs.crops:
        raise ValueError(f"backbone {backbone_name} needs {info.input_kind} crops; dataset {pairs.name} "
                         f"only has {', '.join(pairs.crops)}")
    t0 = time.perf_counter()
    backbone = load_backbone(backbone_name, **backbone_kwargs)
    emb = EmbeddingCache(backbone).embed(pairs.crops[info.input_kind], progress=progress)
    t1 = time.perf_counter()
    scores = np.sum(emb[pairs.left] * emb[pairs.right], axis=1)
    return scores, {"embed_s": t1 - t0, "images": int(len(emb))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--backbone", choices=available_backbones(), help="frozen backbone to evaluate (cosine baseline)")
    src.add_argument("--model", type=Path, nargs="+",
                     help="trained hypermodel file(s): one model on any set, or one per held-out LFW fold")
    ap.add_argument("--one-way", action="store_true", help="--model: score f(b; h(a)) only, no symmetric average")
    ap.add_argument("--views", type=int, choices=(1, 2), default=1,
                    help="--model: 2 = f(b) is the mean of f on b and on b mirrored (two passes per probe)")
    ap.add_argument("--dataset", default="lfw", help=DATASETS_HELP + " (default lfw)")
    ap.add_argument("--variant", default="clean", choices=VARIANTS,
                    help="the crops as aligned (clean), in grayscale, or at 40x40 (lowres); training.data.variants")
    ap.add_argument("--view", default="view2", choices=["view2", "devtest", "devtrain"], help="LFW pair list")
    ap.add_argument("--detector", default="auto", choices=["auto", "dlib", "retinaface"],
                    help="face detector (LFW, CFP, image folders); auto (default): the one whose landmarks the "
                         "backbone was trained with (RetinaFace for ArcFace-family models, dlib for dlib-resnet)")
    ap.add_argument("--max-folds", type=int, default=None, help="use only the first N View 2 folds (smoke runs)")
    ap.add_argument("--checkpoint", type=Path, default=None, help="iresnet: checkpoint file")
    ap.add_argument("--depth", type=int, default=50, choices=[18, 34, 50, 100], help="iresnet depth")
    ap.add_argument("--out", type=Path, default=None, help="report folder (default: runs/eval/<dataset>-<backbone>)")
    ap.add_argument("--workers", type=int, default=2, help="alignment worker processes")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    setup_logging(args.verbose)
    progress = not args.no_progress

    if args.model:
        return main_model(args, progress)
    if args.views != 1:
        fail("--views 2 scores a hypermodel's f (--model), not a backbone")
    t0 = time.perf_counter()
    detector = resolve_detector(args.detector, args.backbone)
    try:
        dlib = backbone_info(args.backbone).input_kind == DLIB150
        pairs = with_variant(load_pairs(args.dataset, detector, args.workers, progress, args.view, args.max_folds,
                                        dlib_chips=dlib), args.variant)
        t_data = time.perf_counter() - t0
        kwargs = {"checkpoint": args.checkpoint, "depth": args.depth} if args.backbone == "iresnet" else {}
        scores, timing = backbone_scores(pairs, args.backbone, progress, **kwargs)
    except (SharedDataMissing, FileNotFoundError, ValueError) as e:
        fail(str(e))

    report = VerificationReport.from_scores(scores, pairs.same, pairs.folds)
    suffix = f"-{detector}" if args.dataset in ("lfw", "cfp-ff", "cfp-fp") else ""
    out = args.out or REPO_ROOT / "runs" / "eval" / f"{pairs.name}-{args.backbone}{suffix}"
    label = f"{args.backbone} on {pairs.name}" + (f" ({detector} alignment)" if suffix else "")
    save_roc_png(out / "roc.png", {label: (scores, pairs.same)})
    save_score_histogram_png(out / "scores.png", scores, pairs.same, threshold=report.best_threshold)
    result = {
        "backbone": args.backbone, "dataset": pairs.name, "detector": detector if suffix else None, "set": pairs.info,
        **report.to_dict(), "data_s": round(t_data, 2), "embed_s": round(timing["embed_s"], 2),
        "images": timing["images"], "total_s": round(time.perf_counter() - t0, 2),
    }
    atomic_write_json(out / "report.json", result)
    print(f"{label}: {report.summary()}")
    print(f"time: data+alignment {t_data:.1f} s, embeddings {timing['embed_s']:.1f} s "
          f"({timing['images']} images); report in {out}")
    return 0


def pair_thetas(pairs: PairSet, model, progress: bool = True) -> torch.Tensor:
    """h(crop) of every image of ``pairs``: (images, θ_size), backbone embeddings from the cache."""
    import torch

    info = backbone_info(model.backbone)
    emb = EmbeddingCache(load_backbone(model.backbone)).embed(pairs.crops[info.input_kind], progress=progress)
    return torch.from_numpy(model.theta(emb))


def directed_logits(pairs: PairSet, model, rows: np.ndarray, cols: np.ndarray, progress: bool = True,
                    thetas: torch.Tensor | None = None, mirror: bool = False) -> np.ndarray:
    """Float f(crop[cols[i]]; h(crop[rows[i]])) for every i (image indices into ``pairs.crops``).
    ``thetas``: :func:`pair_thetas`, if already computed. ``mirror``: each logit the mean of f on the probe
    and on its mirror image. (The device's integer arithmetic on the same pairs: ``codegen.accuracy``.)"""
    import torch
    from tqdm import tqdm

    from training.verifier.batched import pairwise_logits
    from training.verifier.functional import to_input

    if thetas is None:
        thetas = pair_thetas(pairs, model, progress)
    x_all = pairs.crops[ARCFACE112]
    out = []
    step = 200
    with torch.no_grad():
        for s in tqdm(range(0, len(rows), step), desc="pairs", unit="×200", disable=not progress):
            r, c = rows[s:s + step], cols[s:s + step]
            u, inv = np.unique(c, return_inverse=True)
            views = [x_all[u], mirrored(x_all[u])] if mirror else [x_all[u]]
            out.append(np.mean([pairwise_logits(to_input(v), thetas[torch.from_numpy(r)],
                                                columns=torch.from_numpy(inv)[:, None])[:, 0].numpy()
                                for v in views], axis=0))
    return np.concatenate(out).astype(np.float64)


def fold_subset(pairs: PairSet, fold: int) -> PairSet:
    """The pairs of one View 2 fold (every pair when the set has no folds), in their file order."""
    keep = pairs.folds == fold if pairs.folds is not None else np.ones(len(pairs.same), bool)
    return PairSet(f"{pairs.name}-fold{fold}", pairs.crops, pairs.left[keep], pairs.right[keep], pairs.same[keep],
                   None, dict(pairs.info))


def directions(pairs: PairSet, one_way: bool) -> tuple[np.ndarray, np.ndarray]:
    """(θ rows, probe columns) of the directed pairs: (a, b) only, or (a, b) then (b, a)."""
    a, b = pairs.left, pairs.right
    return (a, b) if one_way else (np.concatenate([a, b]), np.concatenate([b, a]))


def pair_scores(lg: np.ndarray, n: int, one_way: bool) -> np.ndarray:
    """Directed logits (a→b then b→a) → pair scores: the first half alone, or both directions' mean."""
    return lg if one_way else (lg[:n] + lg[n:]) / 2


def model_scores(pairs: PairSet, model, one_way: bool = False, progress: bool = True,
                 mirror: bool = False) -> np.ndarray:
    """Hypernetwork scores of ``pairs``: f(b; h(a)) (and f(a; h(b)) averaged in, unless ``one_way``);
    ``mirror``: every f the mean over the probe and its mirror image."""
    rows, cols = directions(pairs, one_way)
    return pair_scores(directed_logits(pairs, model, rows, cols, progress, mirror=mirror), len(pairs.left), one_way)


def main_model(args: argparse.Namespace, progress: bool) -> int:
    from training.hypermodel import HyperModel, HyperModelError

    t0 = time.perf_counter()
    all_scores, all_same, all_folds, names = [], [], [], []
    try:
        models = [HyperModel.load(p) for p in args.model]
        if len(models) > 1 and args.dataset != "lfw":
            fail("several --model files are one per held-out LFW fold: use --dataset lfw, or one model", EXIT_USAGE)
        infos = []
        for m in models:
            sub = with_variant(model_pairs(args.dataset, m, args.workers, progress, args.view), args.variant)
            sc = model_scores(sub, m, args.one_way, progress, mirror=args.views == 2)
            all_scores.append(sc)
            all_same.append(sub.same)
            fold = sub.info.get("held_out_fold")
            all_folds.append(np.full(len(sc), fold) if len(models) > 1 else sub.folds)
            names.append(f"{sub.name}:{m.model_id}")
            infos.append(sub.info)
    except (HyperModelError, SharedDataMissing, FileNotFoundError, ValueError) as e:
        fail(str(e))
    scores, same, folds = np.concatenate(all_scores), np.concatenate(all_same), np.concatenate(all_folds)
    report = VerificationReport.from_scores(scores, same, folds)
    tag = "-".join(["one-way" if args.one_way else "symmetric"] + ["mirror"] * (args.views == 2))
    base = "lfw" if args.dataset == "lfw" else names[0].split(":")[0]
    variant = "" if args.variant == "clean" or args.dataset != "lfw" else f"-{args.variant}"
    out = args.out or REPO_ROOT / "runs" / "eval" / f"{base}{variant}-hypernet-{models[0].model_id}-{tag}"
    label = f"h ({models[0].backbone}) on {', '.join(names)} [{tag}]"
    save_roc_png(out / "roc.png", {label: (scores, same)})
    save_score_histogram_png(out / "scores.png", scores, same, threshold=report.best_threshold)
    result = {"models": [str(p) for p in args.model], "model_ids": [m.model_id for m in models], "scoring": tag,
              "dataset": args.dataset, "variant": args.variant, "sets": infos,
              "pairs": int(len(scores)), **report.to_dict(), "total_s": round(time.perf_counter() - t0, 2)}
    atomic_write_json(out / "report.json", result)
    print(f"{label}: {report.summary()}")
    print(f"{len(scores)} pairs; report in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
