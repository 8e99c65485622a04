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

Datasets: ``lfw`` (View 2 pairs.txt, or View 1 ``--view devtest``; images aligned once and cached, see
``python -m training.align``) or a path to an InsightFace verification ``.bin`` file (already aligned
112×112 crops: lfw.bin, cfp_fp.bin, agedb_30.bin, calfw.bin, cplfw.bin, vgg2_fp.bin).
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pvcore.atomic import atomic_write_json
from pvcore.cli import fail, setup_logging
from pvcore.paths import REPO_ROOT, SharedDataMissing
from training.backbones import available_backbones, backbone_info, load_backbone, resolve_detector
from training.backbones.base import ARCFACE112, mirrored
from training.backbones.embedding_cache import EmbeddingCache
from training.eval.metrics import VerificationReport
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


def lfw_pairs(view: str = "view2", detector: str = "dlib", max_folds: int | None = None,
              workers: int = 2, progress: bool = True) -> PairSet:
    from training.data import lfw
    from training.face.cache import DLIB150, lfw_cache

    pairs = lfw.load_pairs(view)
    if max_folds is not None:
        pairs = [p for p in pairs if p.fold < max_folds]
    cache = lfw_cache(detector)
    used = sorted({p.a for p in pairs} | {p.b for p in pairs})
    idx = cache.indices(used)
    summary = cache.ensure(idx, workers=workers, progress=progress)
    log.info("LFW alignment cache: %s", summary)
    pos = {p: i for i, p in enumerate(used)}
    crops = {ARCFACE112: np.asarray(cache.crops(ARCFACE112)[idx]), DLIB150: np.asarray(cache.crops(DLIB150)[idx])}
    folds = np.array([p.fold for p in pairs])
    return PairSet(
        name=f"lfw-{view}" + (f"-folds{max_folds}" if max_folds else ""),
        crops=crops,
        left=np.array([pos[p.a] for p in pairs]),
        right=np.array([pos[p.b] for p in pairs]),
        same=np.array([p.same for p in pairs]),
        folds=folds if len(np.unique(folds)) >= 2 else None,
    )


def bin_pairs(path: Path) -> PairSet:
    from training.data.insightface_bin import read_bin

    images, issame = read_bin(path)
    n = len(issame)
    return PairSet(name=path.stem, crops={ARCFACE112: images}, left=np.arange(0, 2 * n, 2),
                   right=np.arange(1, 2 * n, 2), same=np.asarray(issame, bool), folds=None)


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
    src.add_argument("--model", type=Path, nargs="+", help="trained hypermodel file(s), one per held-out LFW fold")
    ap.add_argument("--one-way", action="store_true", help="--model: score f(b; h(a)) only, no symmetric average")
    ap.add_argument("--views", type=int, choices=(1, 2), default=1,
                    help="--model: 2 = f(b) is the mean of f on b and on b mirrored (two passes per probe)")
    ap.add_argument("--dataset", default="lfw", help="'lfw' or a path to an InsightFace .bin file")
    ap.add_argument("--view", default="view2", choices=["view2", "devtest", "devtrain"], help="LFW pair list")
    ap.add_argument("--detector", default="auto", choices=["auto", "dlib", "retinaface"],
                    help="LFW face detector; auto (default): the one whose landmarks the backbone was trained "
                         "with (RetinaFace for ArcFace-family models, dlib for dlib-resnet)")
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
        if args.dataset == "lfw":
            pairs = lfw_pairs(args.view, detector, args.max_folds, args.workers, progress)
        else:
            path = Path(args.dataset)
            if not path.is_file():
                fail(f"dataset {args.dataset!r} is neither 'lfw' nor an existing .bin file")
            pairs = bin_pairs(path)
        t_data = time.perf_counter() - t0
        kwargs = {"checkpoint": args.checkpoint, "depth": args.depth} if args.backbone == "iresnet" else {}
        scores, timing = backbone_scores(pairs, args.backbone, progress, **kwargs)
    except (SharedDataMissing, FileNotFoundError, ValueError) as e:
        fail(str(e))

    report = VerificationReport.from_scores(scores, pairs.same, pairs.folds)
    suffix = f"-{detector}" if args.dataset == "lfw" else ""
    out = args.out or REPO_ROOT / "runs" / "eval" / f"{pairs.name}-{args.backbone}{suffix}"
    label = f"{args.backbone} on {pairs.name}" + (f" ({detector} alignment)" if args.dataset == "lfw" else "")
    save_roc_png(out / "roc.png", {label: (scores, pairs.same)})
    save_score_histogram_png(out / "scores.png", scores, pairs.same, threshold=report.best_threshold)
    result = {
        "backbone": args.backbone, "dataset": pairs.name, "detector": detector if args.dataset == "lfw" else None,
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
                   None)


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
        for m in models:
            cfg = m.meta["config"]
            if args.dataset != "lfw":
                fail("--model is evaluated on LFW (people-disjoint from its training folds)")
            fold = int(cfg["fold"])
            sub = fold_subset(lfw_pairs(args.view, m.detector, None, args.workers, progress), fold)
            sc = model_scores(sub, m, args.one_way, progress, mirror=args.views == 2)
            all_scores.append(sc)
            all_same.append(sub.same)
            all_folds.append(np.full(len(sc), fold) if len(models) > 1 else np.arange(len(sc)) % 10)
            names.append(f"fold{fold}:{m.model_id}")
    except (HyperModelError, SharedDataMissing, FileNotFoundError, ValueError) as e:
        fail(str(e))
    scores, same, folds = np.concatenate(all_scores), np.concatenate(all_same), np.concatenate(all_folds)
    report = VerificationReport.from_scores(scores, same, folds)
    tag = "-".join(["one-way" if args.one_way else "symmetric"] + ["mirror"] * (args.views == 2))
    out = args.out or REPO_ROOT / "runs" / "eval" / f"lfw-hypernet-{models[0].model_id}-{tag}"
    label = f"h ({models[0].backbone}) on LFW {', '.join(names)} [{tag}]"
    save_roc_png(out / "roc.png", {label: (scores, same)})
    save_score_histogram_png(out / "scores.png", scores, same, threshold=report.best_threshold)
    result = {"models": [str(p) for p in args.model], "model_ids": [m.model_id for m in models], "scoring": tag,
              "pairs": int(len(scores)), **report.to_dict(), "total_s": round(time.perf_counter() - t0, 2)}
    atomic_write_json(out / "report.json", result)
    print(f"{label}: {report.summary()}")
    print(f"{len(scores)} pairs; report in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
