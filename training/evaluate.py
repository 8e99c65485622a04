"""Face verification evaluation: ``python -m training.evaluate --backbone NAME --dataset lfw``.

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

import numpy as np

from training.atomic import atomic_write_json
from training.backbones import available_backbones, backbone_info, load_backbone, resolve_detector
from training.backbones.base import ARCFACE112
from training.backbones.embedding_cache import EmbeddingCache
from training.cli_common import fail, setup_logging
from training.eval.metrics import VerificationReport
from training.eval.plots import save_roc_png, save_score_histogram_png
from training.paths import REPO_ROOT, SharedDataMissing

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
    ap.add_argument("--backbone", required=True, choices=available_backbones(), help="frozen backbone to evaluate")
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


if __name__ == "__main__":
    raise SystemExit(main())
