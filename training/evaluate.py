"""Face verification evaluation: ``python -m training.evaluate (--backbone NAME | --model FILE...) --dataset lfw``.

``--model``: a trained hypernetwork (``model_final.pt`` of ``training.train``). For a pair (a, b):
θ_a = h(a), score = f(b; θ_a), averaged with f(a; θ_b) unless ``--one-way`` (what a device computes).
``--int8``: f(b; θ_a) is the int8 golden model's dequantized logit (what every device computes bit for
bit), θ_a quantized by ``codegen.quantize`` with a's crop as the enrollment image — the accuracy cost of
deployment on the same pairs and protocol. ``--mirror``: f(b) is the mean of f on b's crop and on its
mirror image (two passes of f per probe, float and int8 alike: the int8 rounding noise of the two views
partly cancels).
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

from training.atomic import atomic_write_json
from training.backbones import available_backbones, backbone_info, load_backbone, resolve_detector
from training.backbones.base import ARCFACE112, mirrored
from training.backbones.embedding_cache import EmbeddingCache
from training.cli_common import fail, setup_logging
from training.eval.metrics import VerificationReport
from training.eval.plots import save_roc_png, save_score_histogram_png
from training.paths import REPO_ROOT, SharedDataMissing

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
    ap.add_argument("--int8", action="store_true",
                    help="--model: score with the int8 golden model of each quantized θ (the device's arithmetic)")
    ap.add_argument("--activations", choices=["int8", "int16"], default="int8",
                    help="--int8: the integer model's activation type — int8 (full int8, default) or int16 "
                         "(TFLM's 16x8: int16 activations, int8 weights)")
    ap.add_argument("--mirror", action="store_true",
                    help="--model: f(b) = mean of f on b and on b mirrored (two passes per probe, float and int8)")
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

    if args.activations != "int8" and not args.int8:
        fail("--activations chooses the integer model of --int8: give --int8 too")
    if args.model:
        return main_model(args, progress)
    if args.mirror:
        fail("--mirror scores a hypermodel's f (--model), not a backbone")
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


def _int8_logits(thetas, rows: np.ndarray, cols: np.ndarray, crops: np.ndarray, progress: bool,
                 mirror: bool = False, activations: str = "int8") -> np.ndarray:
    """f_int8(crops[cols[i]]; quantize(θ[rows[i]], enrollment crop = crops[rows[i]])), dequantized;
    ``mirror``: the mean of that and of f_int8 on the mirrored probe (same quantized θ)."""
    from tqdm import tqdm

    from codegen.golden import run_int8, run_int8_views
    from codegen.quantize import QuantConfig, quantize

    out = np.empty(len(rows), np.float64)
    order = np.argsort(rows, kind="stable")  # every θ quantized once, for all of its probes
    starts = np.flatnonzero(np.r_[True, rows[order][1:] != rows[order][:-1]])
    ends = np.r_[starts[1:], len(order)]
    for s, e in tqdm(list(zip(starts, ends)), desc="int8", unit="θ", disable=not progress):
        idx = order[s:e]
        r = int(rows[idx[0]])
        qf = quantize(thetas[r].numpy(), enroll_u8=crops[r], cfg=QuantConfig(activations=activations))
        probes = np.ascontiguousarray(crops[cols[idx]])
        if mirror:  # the device's two-view score (PV_VIEWS 2), bit for bit
            q = run_int8_views(qf, probes, views=2)
            out[idx] = qf.dequantize_mean2(q[:, 0], q[:, 1])
        else:
            out[idx] = qf.dequantize_logit(run_int8(qf, probes))
    return out


def pair_thetas(pairs: PairSet, model, progress: bool = True) -> torch.Tensor:
    """h(crop) of every image of ``pairs``: (images, θ_size), backbone embeddings from the cache."""
    import torch

    info = backbone_info(model.backbone)
    emb = EmbeddingCache(load_backbone(model.backbone)).embed(pairs.crops[info.input_kind], progress=progress)
    return torch.from_numpy(model.theta(emb))


def directed_logits(pairs: PairSet, model, rows: np.ndarray, cols: np.ndarray, progress: bool = True,
                    int8: bool = False, thetas: torch.Tensor | None = None, mirror: bool = False,
                    activations: str = "int8") -> np.ndarray:
    """f(crop[cols[i]]; h(crop[rows[i]])) for every i (image indices into ``pairs.crops``); ``int8``: with
    the int8 golden model of each quantized θ instead of the float f. ``thetas``: :func:`pair_thetas`,
    if already computed. ``mirror``: each logit the mean of f on the probe and on its mirror image."""
    import torch
    from tqdm import tqdm

    from training.verifier.batched import pairwise_logits
    from training.verifier.functional import to_input

    if thetas is None:
        thetas = pair_thetas(pairs, model, progress)
    x_all = pairs.crops[ARCFACE112]
    if int8:
        return _int8_logits(thetas, rows, cols, x_all, progress, mirror, activations)
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


def _pair_scores(lg: np.ndarray, n: int, one_way: bool) -> np.ndarray:
    return lg if one_way else (lg[:n] + lg[n:]) / 2


def model_scores(pairs: PairSet, model, one_way: bool = False, progress: bool = True,
                 int8: bool = False, mirror: bool = False) -> np.ndarray:
    """Hypernetwork scores of ``pairs``: f(b; h(a)) (and f(a; h(b)) averaged in, unless ``one_way``);
    ``int8``: with the int8 golden model of each quantized θ instead of the float f; ``mirror``: every f
    the mean over the probe and its mirror image."""
    rows, cols = directions(pairs, one_way)
    return _pair_scores(directed_logits(pairs, model, rows, cols, progress, int8, mirror=mirror),
                        len(pairs.left), one_way)


NEAR_THRESHOLD = 1.0  # logit units: the pairs whose float logit is this close to the threshold are "near" it


def expected_agreement(lg_float: np.ndarray, lg_int8: np.ndarray, threshold: float) -> float:
    """The agreement to expect if every near-threshold error (signed int8 − float of the pairs within 1 of
    the threshold) could fall on any pair: the mean over pairs i and such errors e_j of [float_i and
    float_i + e_j decide alike]. Steadier than the count of the few pairs that did flip."""
    d = (lg_int8 - lg_float)[np.abs(lg_float - threshold) < NEAR_THRESHOLD]
    if not d.size:
        return 1.0
    acc = lg_float >= threshold
    return float(np.mean([((lg_float + e >= threshold) == acc).mean() for e in d]))


def int8_agreement(lg_float: np.ndarray, lg_int8: np.ndarray, threshold: float) -> dict:
    """Decision agreement of the int8 and float f at the model's threshold, over directed pairs (what a
    device decides), and the |Δlogit| figures. ``near_threshold_*``: over the pairs whose float logit is
    within 1 of the threshold — the error that can flip a decision, a smoother figure than the few flips."""
    d = np.abs(lg_int8 - lg_float)
    near = np.abs(lg_float - threshold) < NEAR_THRESHOLD
    return {"directed_pairs": int(len(d)), "threshold": float(threshold),
            "decision_agreement": float(((lg_int8 >= threshold) == (lg_float >= threshold)).mean()),
            "n_disagree": int(((lg_int8 >= threshold) != (lg_float >= threshold)).sum()),
            "mean_abs_dlogit": float(d.mean()), "max_abs_dlogit": float(d.max()),
            "near_threshold_pairs": int(near.sum()),
            "near_threshold_mean_abs_dlogit": float(d[near].mean()) if near.any() else float("nan"),
            "expected_agreement": expected_agreement(lg_float, lg_int8, threshold),
            "float_logit_std": float(lg_float.std())}


def main_model(args: argparse.Namespace, progress: bool) -> int:
    from training.hypermodel import HyperModel, HyperModelError

    t0 = time.perf_counter()
    all_scores, all_same, all_folds, names, agreements = [], [], [], [], []
    try:
        models = [HyperModel.load(p) for p in args.model]
        for m in models:
            cfg = m.meta["config"]
            if args.dataset != "lfw":
                fail("--model is evaluated on LFW (people-disjoint from its training folds)")
            fold = int(cfg["fold"])
            sub = fold_subset(lfw_pairs(args.view, m.detector, None, args.workers, progress), fold)
            if args.int8:  # both arithmetics on every directed pair: the int8 scores and what int8 changes
                rows, cols = directions(sub, False)
                thetas = pair_thetas(sub, m, progress)  # h once for both
                lg_q = directed_logits(sub, m, rows, cols, progress, int8=True, thetas=thetas, mirror=args.mirror,
                                       activations=args.activations)
                lg_f = directed_logits(sub, m, rows, cols, progress, int8=False, thetas=thetas, mirror=args.mirror)
                agreements.append(int8_agreement(lg_f, lg_q, m.threshold))
                n = len(sub.left)
                sc = _pair_scores(lg_q[:n] if args.one_way else lg_q, n, args.one_way)
            else:
                sc = model_scores(sub, m, args.one_way, progress, mirror=args.mirror)
            all_scores.append(sc)
            all_same.append(sub.same)
            all_folds.append(np.full(len(sc), fold) if len(models) > 1 else np.arange(len(sc)) % 10)
            names.append(f"fold{fold}:{m.model_id}")
    except (HyperModelError, SharedDataMissing, FileNotFoundError, ValueError) as e:
        fail(str(e))
    scores, same, folds = np.concatenate(all_scores), np.concatenate(all_same), np.concatenate(all_folds)
    report = VerificationReport.from_scores(scores, same, folds)
    kind = "int8" if args.activations == "int8" else "16x8"
    tag = "-".join(["one-way" if args.one_way else "symmetric"] + ["mirror"] * args.mirror + [kind] * args.int8)
    out = args.out or REPO_ROOT / "runs" / "eval" / f"lfw-hypernet-{models[0].model_id}-{tag}"
    label = f"h ({models[0].backbone}) on LFW {', '.join(names)} [{tag}]"
    save_roc_png(out / "roc.png", {label: (scores, same)})
    save_score_histogram_png(out / "scores.png", scores, same, threshold=report.best_threshold)
    result = {"models": [str(p) for p in args.model], "model_ids": [m.model_id for m in models], "scoring": tag,
              "pairs": int(len(scores)), **report.to_dict(), "total_s": round(time.perf_counter() - t0, 2)}
    if agreements:
        result["int8_vs_float"] = agreements
    atomic_write_json(out / "report.json", result)
    print(f"{label}: {report.summary()}")
    for a in agreements:
        print(f"{kind} vs float, {a['directed_pairs']} directed pairs at threshold {a['threshold']:.4f}: decisions "
              f"agree {100 * a['decision_agreement']:.2f} % ({a['n_disagree']} differ), |Δlogit| mean "
              f"{a['mean_abs_dlogit']:.4f} max {a['max_abs_dlogit']:.4f}, within 1 of the threshold "
              f"{a['near_threshold_mean_abs_dlogit']:.4f} ({a['near_threshold_pairs']} pairs; float logit std "
              f"{a['float_logit_std']:.3f}); expected agreement {100 * a['expected_agreement']:.2f} %")
    print(f"{len(scores)} pairs; report in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
