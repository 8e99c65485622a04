"""Research: does normalizing the probe's pooled features pay? f's tail is linear, so the board's score is
⟨w_u, s(probe)⟩ + b_u; a cosine-like score ⟨w_u, s − μ⟩ / ‖A(s − μ)‖ (μ, A shared constants of the base blob) would
need one new op before fc1. Screened with the shipped heads (refined + whitened, training.refine), each score
z-normed per user on the cohort's refinement half, float one way.
Usage: python docs/research/scripts/probe_norm.py MODEL SET[,SET...] OUT.json [h]   (research log, section 14;
``h``: the heads of h's θ, unrefined, instead of the refined ones). Written for spec v4, whose pooled features were
not normalized: its figures reproduce at commit fd41b38; spec v5 ships the normalization it screened.)"""
import sys

import numpy as np
import torch
from cells import model_cells, record, write_json

from codegen.benchmark import refined_thetas
from codegen.golden import l2norm_rows_int8
from training.backbones.base import ARCFACE112
from training.calibration import threshold_for_far_groups
from training.eval.metrics import VerificationReport
from training.evaluate import pair_thetas
from training.hypermodel import HyperModel
from training.refine import SHIPPED, linear_tail, load_cohort, pooled_features, positive_views, refine_linear


def report(scores: np.ndarray, p) -> dict:
    r = VerificationReport.from_scores(scores.astype(np.float64), p.same, p.folds)
    return {"acc": round(100 * r.accuracy_mean, 2), "auc": round(r.auc, 4),
            "tar1e-2": round(100 * r.tar_at_far_1e2, 1), "tar1e-3": round(100 * r.tar_at_far_1e3, 1)}


def inv_sqrt(cov: np.ndarray, ridge: float) -> np.ndarray:
    lam, vec = np.linalg.eigh(cov)
    lam = np.maximum(lam, 0) + ridge * lam.mean()
    return (vec / np.sqrt(lam)) @ vec.T


def z_report(cal: np.ndarray, feats: np.ndarray, w: np.ndarray, b: np.ndarray, p) -> dict:
    """Each pair's one-way score ⟨w, feats(probe)⟩ + b of its enrolled user, z-normed per user on the cohort ``cal``."""
    c = cal @ w.T + b
    s = np.einsum("nc,nc->n", feats[p.right], w[p.left]) + b[p.left]
    return report((s - c.mean(0)[p.left]) / c.std(0)[p.left], p)


def main() -> None:
    model_path, sets, out = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
    torch.set_num_threads(2)
    m = HyperModel.load(model_path)
    prefix = m.theta(m.generator.emb_mean.numpy()[None])[0]
    cohort = load_cohort(m)
    cal = cohort.feats.astype(np.float64)
    mu = cal.mean(0)
    norms = {"lin": None, "cos": np.eye(len(mu)),
             "cos-white r0.1": inv_sqrt(np.cov(cal.T), 0.1), "cos-white r1": inv_sqrt(np.cov(cal.T), 1.0)}

    def unit(s):  # the probe's pooled features about the cohort mean, of length 1
        c = s - mu
        return (c / np.linalg.norm(c, axis=1, keepdims=True)).astype(np.float32)
    res = {}
    for k, p in model_cells(m, sets):
        th = pair_thetas(p, m, False)
        ref = th if sys.argv[4:] == ["h"] else refined_thetas(p, m, th, cohort)
        feats = pooled_features(prefix, p.crops[ARCFACE112]).astype(np.float64)
        w, b = (x.detach().numpy().astype(np.float64)
                for x in linear_tail(torch.as_tensor(np.asarray(ref, np.float32))))
        rows = {}
        for name, a in norms.items():
            for gamma in ((1.0,) if a is None else (0.5, 1.0)):
                def tr(s, a=a, gamma=gamma):
                    if a is None:
                        return s, np.ones(len(s))  # the raw score: bias included
                    c = s - mu
                    return c / np.linalg.norm(c @ a, axis=1, keepdims=True) ** gamma, np.zeros(len(s))  # z-norm drops b
                fc, on = tr(cal)
                c = fc @ w.T + on[:, None] * b  # cohort × users
                mean, std = c.mean(0), c.std(0)
                fp, onp = tr(feats)
                s = np.einsum("nc,nc->n", fp[p.right], w[p.left]) + onp[p.right] * b[p.left]
                row = rows[name if a is None else f"{name} γ{gamma}"] = report((s - mean[p.left]) / std[p.left], p)
                if name in ("lin", "cos") and gamma == 1.0:  # each user's own threshold on the calibration half
                    fk, on = tr(cohort.calib_feats.astype(np.float64))
                    ck = fk @ w.T + on[:, None] * b
                    for far in (0.05, 0.01):
                        thr = np.array([threshold_for_far_groups(ck[:, u], far, None, cohort.calib_group,
                                                                 cohort.calib_group_names)[0]
                                        for u in range(len(w))])
                        acc = s >= thr[p.left]
                        row[f"F{far} FAR/FRR"] = (round(100 * acc[~p.same].mean(), 2),
                                                   round(100 * (~acc[p.same]).mean(), 1))
        # the normalized vector in TFLM's int8 L2_NORMALIZATION output (scale 1/128, zero point 0), heads in float
        def q8(s):
            return np.clip(np.round(unit(s) * 128), -128, 127) / 128
        zero = np.zeros_like(b)  # the z-norm drops a constant bias
        rows["cos γ1.0 int8"] = z_report(q8(cal), q8(feats), w, zero, p)
        # the board's arithmetic for the op: s − μ in int8 (one scale: the cohort's largest |value|, zero point 0),
        # then TFLM's int8 L2_NORMALIZATION exactly (l2norm_int8.py, bit-exact with TFLite's reference kernel)
        def exact(s, qscale=np.abs(cal - mu).max() / 127):
            q = np.clip(np.round((s - mu) / qscale), -128, 127).astype(np.int8)
            return l2norm_rows_int8(q) / 128.0
        rows["cos int8 exact"] = z_report(exact(cal), exact(feats), w, zero, p)
        # the heads refined again on the normalized features (start: the shipped head in the normalized units)
        lefts = np.unique(p.left)
        scale = np.median(np.linalg.norm(cal - mu, axis=1))
        wn, bn = w[lefts] * scale, b[lefts] + w[lefts] @ mu
        pos = np.stack([unit(pooled_features(prefix, positive_views(c, SHIPPED.views, seed=SHIPPED.seed)))
                        for c in p.crops[ARCFACE112][lefts]])
        wr, br, _ = refine_linear(wn.astype(np.float32), bn.astype(np.float32), pos, unit(cal), m.threshold, SHIPPED)
        w2, b2 = np.zeros_like(w), np.zeros_like(b)
        w2[lefts], b2[lefts] = wr, br
        rows["cos γ1.0 re-refined"] = z_report(unit(cal), unit(feats), w2, b2, p)
        record(res, k, rows)
    write_json(res, out)


if __name__ == "__main__":
    main()
