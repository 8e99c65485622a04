"""Does refining θ at enrollment pay? ``python -m codegen.refine_study --model M --fold K``

On one LFW View 2 fold (600 pairs, a the enrolled photo, b the probe, one way as the board decides) it scores
variants of the enrolled θ_a side by side:

- ``h``: θ = h(a), as enrollment ships today;
- ``znorm``: h(a)'s logit affinely rescaled so that the cohort's scores of θ have the population's mean and
  spread (a per-user Z-norm, folded into head's gain and bias: still one θ the board runs);
- ``refine:<pull>``: θ refined from h(a) (``training.refine``) with that pull towards h(a);
- ``template``: no h at all: a linear head from the pooled features of a, centred on the cohort's mean and
  whitened by the cohort's within-person covariance (an exemplar LDA), as a refinement start;
- ``template+refine:<pull>``: refined from the template.

The cohort: LFW faces (at most 4 per person) of people in neither fold 0 nor fold 1 (training people only,
for every model of this project); it also gives the template's covariance. Hyper-parameters are chosen on
fold 1 with the model that held out folds 0 and 1 (``hgen_dlib_lfw_val1.pt``); fold 0 is the report fold.

Metrics: the benchmark's (10-fold accuracy with each fold's threshold from the other 9, AUC, TAR at FAR 1e-2
and 1e-3; FAR and FRR at the model's threshold), in float and, with ``--deployed``, in the board's 16x8
arithmetic (``codegen.benchmark.deployed_logits``: θ quantized with a's crop, golden model). Writes JSON
(``--out``) and prints a Markdown table and the refinement's learning curve.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

COHORT_EXCLUDED_FOLDS = (0, 1)


def cohort_crops(detector: str, size: int, exclude_folds=COHORT_EXCLUDED_FOLDS, per_person: int = 4,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(crops, person ids) of up to ``size`` aligned LFW faces of people outside ``exclude_folds``."""
    from training.data import lfw
    from training.face.cache import lfw_cache

    folds = lfw.load_people_folds()
    exclude = {name for k in exclude_folds for name in folds[k]}
    cache = lfw_cache(detector)
    by_person: dict[str, list[int]] = {}
    for i, p in enumerate(lfw.all_images()):
        name = lfw.identity_of(p)
        if name not in exclude:
            by_person.setdefault(name, []).append(i)
    rng = np.random.default_rng(seed)
    picked, ids = [], []
    for pid, idx in enumerate(by_person.values()):
        for j in rng.permutation(idx)[:per_person]:
            picked.append(j)
            ids.append(pid)
    order = rng.permutation(len(picked))[:size]
    picked, ids = np.array(picked)[order], np.array(ids)[order]
    cache.ensure(picked)
    ok = cache.status[picked] > 0
    picked, ids = picked[ok], ids[ok]
    srt = np.argsort(picked)
    from training.face.cache import DLIB150

    return (np.ascontiguousarray(cache.crops()[picked[srt]]), np.ascontiguousarray(cache.crops(DLIB150)[picked[srt]]),
            ids[srt])


def template_linear(enroll_feats: np.ndarray, cohort_feats: np.ndarray, cohort_ids: np.ndarray,
                    ridge: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Exemplar-LDA heads: w = P Σ_w⁻¹ (p_a − μ), P the projection on zero-sum vectors (f's standardized
    dense layers cannot express a sum component); scaled so that the cohort's scores have unit std, b so that
    their mean is −1."""
    mu = cohort_feats.mean(axis=0)
    centred = cohort_feats - np.stack([cohort_feats[cohort_ids == i].mean(axis=0) for i in cohort_ids])
    cov = centred.T @ centred / max(len(centred) - 1, 1)
    cov += ridge * np.trace(cov) / len(cov) * np.eye(len(cov))
    w = np.linalg.solve(cov, (enroll_feats - mu).T).T
    w -= w.mean(axis=1, keepdims=True)
    s = cohort_feats @ w.T  # (M, N)
    w /= s.std(axis=0)[:, None]
    b = -1.0 - (cohort_feats @ w.T).mean(axis=0)
    return w.astype(np.float32), b.astype(np.float32)


def merge_sets(sets: dict) -> tuple:
    """Several PairSets as one, each distinct crop once (by content), and a mask of every set's pairs."""
    import hashlib

    from training.backbones.base import ARCFACE112
    from training.evaluate import PairSet

    kinds = list(next(iter(sets.values())).crops)
    key_row: dict[bytes, int] = {}
    crops: dict[str, list] = {k: [] for k in kinds}
    left, right, same, folds, owner = [], [], [], [], []
    for gi, ps in enumerate(sets.values()):
        remap = np.empty(len(ps.crops[ARCFACE112]), np.int64)
        for i, c in enumerate(ps.crops[ARCFACE112]):
            key = hashlib.sha1(c.tobytes()).digest()
            if key not in key_row:
                key_row[key] = len(key_row)
                for k in kinds:
                    crops[k].append(ps.crops[k][i])
            remap[i] = key_row[key]
        left.append(remap[ps.left])
        right.append(remap[ps.right])
        same.append(ps.same)
        folds.append(ps.folds)
        owner.append(np.full(len(ps.same), gi))
    owner = np.concatenate(owner)
    merged = PairSet("+".join(sets), {k: np.stack(v) for k, v in crops.items()}, np.concatenate(left),
                     np.concatenate(right), np.concatenate(same), np.concatenate(folds))
    return merged, {name: owner == gi for gi, name in enumerate(sets)}


def metrics(scores: np.ndarray, same: np.ndarray, folds: np.ndarray, threshold: float) -> dict:
    from training.eval.metrics import VerificationReport

    rep = VerificationReport.from_scores(scores, same, folds)
    acc = scores >= threshold
    return {"accuracy": rep.accuracy_mean, "accuracy_std": rep.accuracy_std, "auc": rep.auc,
            "tar_1e2": rep.tar_at_far_1e2, "tar_1e3": rep.tar_at_far_1e3,
            "far": float(acc[~same].mean()), "frr": float((~acc[same]).mean())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m codegen.refine_study", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--set", choices=("lfw", "cfp"), default="lfw", help="lfw (one fold) or cfp (FF and FP)")
    ap.add_argument("--fold", type=int, default=None, help="LFW View 2 fold to score (1: validation, 0: report)")
    ap.add_argument("--pulls", default="0.1,1,10", help="pull strengths of the refine variants")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--views", type=int, default=16)
    ap.add_argument("--pos-weight", type=float, default=1.0)
    ap.add_argument("--cohort-size", type=int, default=3000)
    ap.add_argument("--tmap", action="store_true", help="also the teacher-map variants")
    ap.add_argument("--lpulls", default="", help="pull strengths of the linear refinement (with --tmap)")
    ap.add_argument("--llr", type=float, default=0.05, help="learning rate of the linear refinement")
    ap.add_argument("--template", action="store_true", help="also the template (exemplar LDA) variants")
    ap.add_argument("--deployed", default="", help="comma-separated variants to score in 16x8 too (e.g. h,refine:1)")
    ap.add_argument("--limit-pairs", type=int, default=None, help="cfp: that many pairs of each set, over its folds")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import torch

    from training.backbones.base import ARCFACE112
    from training.eval.metrics import interleaved_folds
    from training.evaluate import lfw_pairs, pair_thetas
    from training.hypermodel import HyperModel
    from training.refine import (
        RefineConfig,
        fit_teacher_map,
        linear_tail,
        mixed_start,
        pooled_features,
        positive_views,
        refine,
        refine_linear,
        teacher_map_linear,
        theta_with_linear,
    )

    torch.set_num_threads(args.threads)
    t_all = time.perf_counter()
    model = HyperModel.load(args.model)
    cfg = model.meta["config"]
    if args.set == "lfw":
        held = {int(cfg["fold"])} | ({int(cfg["val_fold"])} if cfg.get("val_fold") is not None else set())
        if args.fold not in held:
            raise SystemExit(f"fold {args.fold} was seen by this model (held out: {sorted(held)})")
        pairs = lfw_pairs("view2", model.detector, fold=args.fold, progress=False)
        pairs.folds = interleaved_folds(len(pairs.same))
        groups = {f"lfw-fold{args.fold}": np.ones(len(pairs.same), bool)}
    else:  # CFP-FF and CFP-FP together: a frontal photo enrolled in both is refined and quantized once
        from training.evaluate import model_pairs

        pairs, groups = merge_sets({name: model_pairs(name, model, progress=False, limit=args.limit_pairs)
                                    for name in ("cfp-ff", "cfp-fp")})
    folds = pairs.folds
    thetas = pair_thetas(pairs, model, progress=False).numpy()
    crops = pairs.crops[ARCFACE112]
    t0 = time.perf_counter()
    feats = pooled_features(thetas[0], crops)
    coh_crops, coh_dlib, coh_ids = cohort_crops(model.detector, args.cohort_size)
    coh = pooled_features(thetas[0], coh_crops)
    lefts = np.unique(pairs.left)
    pos = np.stack([pooled_features(thetas[0], positive_views(crops[i], args.views, seed=int(i))) for i in lefts])
    t_feat = time.perf_counter() - t0
    log.info("features: %d pair images, %d cohort, %d×%d positive views in %.1f s", len(crops), len(coh),
             len(lefts), args.views, t_feat)
    row_of = {int(i): r for r, i in enumerate(lefts)}
    rows = np.array([row_of[int(i)] for i in pairs.left])
    th0 = thetas[lefts]

    def scores_of(th: np.ndarray) -> np.ndarray:
        w, b = (x.detach().numpy() for x in linear_tail(torch.from_numpy(th)))
        return np.einsum("pc,pc->p", feats[pairs.right], w[rows]) + b[rows]

    variants: dict[str, np.ndarray] = {"h": th0}
    timing: dict[str, float] = {}
    curves: dict[str, list] = {}
    # per-user Z-norm folded into head: logit' = μ_pop + σ_pop (logit − μ_u) / σ_u
    w0, b0 = (x.detach().numpy() for x in linear_tail(torch.from_numpy(th0)))
    sc = coh @ w0.T + b0  # (M, N)
    mu_u, sd_u = sc.mean(axis=0), sc.std(axis=0)
    a = sd_u.mean() / sd_u
    variants["znorm"] = theta_like_affine(th0, a, mu_u.mean() - a * mu_u)
    for pull in [float(x) for x in args.pulls.split(",") if x]:
        rc = RefineConfig(steps=args.steps, lr=args.lr, pull=pull, views=args.views, pos_weight=args.pos_weight)
        t0 = time.perf_counter()
        variants[f"refine:{pull:g}"], curves[f"refine:{pull:g}"] = refine(th0, pos, coh, model.threshold, rc,
                                                                          curve_every=50)
        timing[f"refine:{pull:g}"] = time.perf_counter() - t0
    if args.tmap:
        # the teacher-map head: ⟨M^T (t(a) − μ), p⟩ with M the least-squares map from the prefix's pooled
        # features to the centred teacher embedding, fitted on the cohort (training people only)
        from training.backbones import load_backbone
        from training.backbones.base import DLIB150
        from training.backbones.embedding_cache import EmbeddingCache

        bb = EmbeddingCache(load_backbone(model.backbone))
        mu = model.generator.emb_mean.numpy()
        t_pairs = bb.embed(pairs.crops[DLIB150], progress=False) - mu
        t_coh = bb.embed(coh_dlib, progress=False) - mu
        tmap = fit_teacher_map(coh, t_coh)
        wt, bt = teacher_map_linear(t_pairs[lefts], tmap)
        # h's cohort statistics: the same scale and offset, so that the threshold keeps its meaning
        st = coh @ wt.T + bt
        a = sd_u / st.std(axis=0)
        wt, bt = wt * a[:, None], (bt - st.mean(axis=0)) * a + mu_u
        variants["tmap"] = theta_with_linear(th0, wt, bt)
        wm, bm = mixed_start(w0, b0, t_pairs[lefts], coh, tmap)
        variants["h+tmap"] = theta_with_linear(th0, wm, bm)
        for pull in [float(x) for x in args.pulls.split(",") if x]:
            rc = RefineConfig(steps=args.steps, lr=args.lr, pull=pull, views=args.views, pos_weight=args.pos_weight)
            variants[f"h+tmap+refine:{pull:g}"], curves[f"h+tmap+refine:{pull:g}"] = refine(
                variants["h+tmap"], pos, coh, model.threshold, rc, curve_every=50)
        for pull in [float(x) for x in args.lpulls.split(",") if x]:
            rc = RefineConfig(steps=args.steps, lr=args.llr, pull=pull, views=args.views, pos_weight=args.pos_weight)
            for start, (ws, bs) in (("h", (w0, b0)), ("h+tmap", (wm, bm))):
                wr, br, curves[f"{start}+lrefine:{pull:g}"] = refine_linear(ws, bs, pos, coh, model.threshold, rc,
                                                                             curve_every=50)
                variants[f"{start}+lrefine:{pull:g}"] = theta_with_linear(th0, wr, br)
    if args.template:
        wt, bt = template_linear(feats[lefts], coh, coh_ids)
        tt = theta_with_linear(th0, wt, bt + model.threshold)
        variants["template"] = tt
        for pull in [float(x) for x in args.pulls.split(",") if x]:
            rc = RefineConfig(steps=args.steps, lr=args.lr, pull=pull, views=args.views, pos_weight=args.pos_weight)
            variants[f"template+refine:{pull:g}"], curves[f"template+refine:{pull:g}"] = refine(
                tt, pos, coh, model.threshold, rc, curve_every=50)

    result = {"model": str(args.model), "model_id": model.model_id, "set": args.set, "fold": args.fold,
              "threshold": model.threshold,
              "args": {k: str(v) for k, v in vars(args).items()}, "cohort": int(len(coh)),
              "features_s": round(t_feat, 1), "refine_s": {k: round(v, 1) for k, v in timing.items()},
              "float": {}, "deployed": {}, "curves": curves}
    # the non-personal f in float: cosine of the pooled features to a's
    fn = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    cos = np.sum(fn[pairs.left] * fn[pairs.right], axis=1)
    float_scores = {name: scores_of(th) for name, th in variants.items()}
    for g, m in groups.items():
        result["float"][g] = {"nonpersonal(cos)": metrics(cos[m], pairs.same[m], folds[m], np.inf)}
        for name, sc_v in float_scores.items():
            result["float"][g][name] = metrics(sc_v[m], pairs.same[m], folds[m], model.threshold)
        result["deployed"][g] = {}
    for name in [v for v in args.deployed.split(",") if v]:
        from codegen.benchmark import deployed_logits

        t0 = time.perf_counter()
        full = np.array(thetas, copy=True)
        full[lefts] = variants[name]
        (lg,), _ = deployed_logits([(torch.from_numpy(full), pairs.left, pairs.right, crops)], "int16", False)
        agree = (lg >= model.threshold) == (float_scores[name] >= model.threshold)
        for g, m in groups.items():
            result["deployed"][g][name] = {**metrics(lg[m], pairs.same[m], folds[m], model.threshold),
                                           "agreement": float(agree[m].mean()),
                                           "seconds": round(time.perf_counter() - t0, 1)}
    result["total_s"] = round(time.perf_counter() - t_all, 1)
    print(render(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    return 0


def theta_like_affine(theta: np.ndarray, a: np.ndarray, c: np.ndarray) -> np.ndarray:
    """θ whose logit is a · logit(θ) + c (a > 0): head's gain slot scaled, its bias moved."""
    from pvcore.spec import F_SPEC

    th = np.array(theta, np.float32, copy=True)
    head = F_SPEC.layers[-1].name
    slots = {s.tensor: s for s in F_SPEC.layout if s.layer == head}
    g, b = slots["gain"], slots["bias"]
    th[:, g.offset] = (1.0 + th[:, g.offset]) * a - 1.0
    th[:, b.offset] = th[:, b.offset] * a + c
    return th


def render(r: dict) -> str:
    lines = [f"model {r['model']} ({r['model_id']}), {r['set']} fold {r['fold']}, threshold {r['threshold']:.3f}, "
             f"cohort {r['cohort']}, total {r['total_s']} s", "",
             "| set | variant | arithmetic | acc % | AUC | TAR@1e-2 % | TAR@1e-3 % | FAR % | FRR % |",
             "|---|---|---|---|---|---|---|---|---|"]
    for kind in ("float", "deployed"):
        for g, name, m in ((g, n, m) for g, rows in r[kind].items() for n, m in rows.items()):
            lines.append(f"| {g} | {name} | {kind} | {100 * m['accuracy']:.2f} ± {100 * m['accuracy_std']:.2f} | "
                         f"{m['auc']:.4f} | {100 * m['tar_1e2']:.1f} | {100 * m['tar_1e3']:.1f} | "
                         f"{100 * m['far']:.1f} | {100 * m['frr']:.1f} |")
    for name, c in r["curves"].items():
        lines.append(f"\ncurve {name}: " + "; ".join(
            f"{p['step']}: loss {p['loss']:.3f} pos {p['pos_margin']:+.2f} neg {p['neg_margin']:+.2f}" for p in c))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
