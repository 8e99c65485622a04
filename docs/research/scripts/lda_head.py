"""Research: a within-person-whitened (LDA) linear head on f's pooled features, alone and added to the refined θ.
f after the pool is linear, so any per-user linear score ⟨w, s(probe)⟩ + b — and any sum of them — is a θ the board
runs unchanged. Σ_w and the head are the shipped ones (training.refine.within_covariance, lda_linear), Σ_w here from
the model's own training people.
Usage: python docs/research/scripts/lda_head.py MODEL SET[,SET...] OUT.json
(research log, section 13; float one way, θ refined as the benchmark's row (f) without the head screened here)"""
import sys

import numpy as np
import torch
from cells import model_cells, record, write_json

from codegen.benchmark import refined_thetas
from training import refine
from training.backbones.base import ARCFACE112
from training.config import TrainConfig
from training.data.variants import apply_variant
from training.eval.metrics import VerificationReport
from training.evaluate import pair_thetas
from training.hypermodel import HyperModel
from training.refine import linear_tail, load_cohort, pooled_features
from training.train import build_data


def report(scores: np.ndarray, p) -> dict:
    r = VerificationReport.from_scores(scores.astype(np.float64), p.same, p.folds)
    return {"acc": round(100 * r.accuracy_mean, 2), "auc": round(r.auc, 4)}


def main() -> None:
    model_path, sets, out = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
    torch.set_num_threads(2)
    m = HyperModel.load(model_path)
    cfg = TrainConfig.from_dict(m.meta["config"], strict=False)
    train = build_data(cfg, progress=False)[0]
    prefix = m.theta(m.generator.emb_mean.numpy()[None])[0]
    order = np.argsort(train.images)
    crops_tr = train.crops[train.images[order]]
    s_var = {}
    for v in ("clean", "gray", "lowres"):
        s_var[v] = np.empty((len(order), 96), np.float64)
        s_var[v][order] = pooled_features(prefix, apply_variant(crops_tr, v))
    del crops_tr
    mu = s_var["clean"].mean(0)
    covs = {"clean": refine.within_covariance(s_var["clean"], train.labels),
            "cam": refine.within_covariance(np.concatenate(list(s_var.values())), np.tile(train.labels, 3))}
    cohort = load_cohort(m)
    refine.LDA_WEIGHT = 0.0  # "refined" = the refinement without the head this script screens (shipped since)
    res = {}
    for k, p in model_cells(m, sets):
        th = pair_thetas(p, m, False)
        ref = refined_thetas(p, m, th, cohort)
        feats = pooled_features(prefix, p.crops[ARCFACE112]).astype(np.float64)
        w, b = (x.detach().numpy().astype(np.float64)
                for x in linear_tail(torch.as_tensor(np.asarray(ref, np.float32))))
        cal = cohort.feats.astype(np.float64)  # z-norm on the refinement half; the calibration half stays apart
        rows = {}

        def znormed(wu, bu, cal=cal):  # a per-user affine map of the score: still a linear head
            c = cal @ wu.T + bu
            return wu / c.std(0)[:, None], (bu - c.mean(0)) / c.std(0)

        def score(wu, bu, feats=feats, p=p):
            return np.einsum("nc,nc->n", feats[p.right], wu[p.left]) + bu[p.left]

        wr, br = znormed(w, b)
        s_ref = score(wr, br)
        rows["refined (raw)"] = report(score(w, b), p)
        rows["refined"] = report(s_ref, p)
        for cname, cov in covs.items():
            for ridge in (0.1,):
                wl, bl = refine.lda_linear(feats, mu, cov, ridge)  # per image: Σ_w⁻¹ (s − μ), zero-sum
                wl, bl = znormed(wl.astype(np.float64), bl.astype(np.float64))
                rows[f"lda {cname} r{ridge}"] = report(score(wl, bl), p)
                for alpha in (0.15, 0.25, 0.35):
                    rows[f"ref+{alpha}·lda {cname} r{ridge}"] = report(s_ref + alpha * score(wl, bl), p)
        record(res, k, rows)
    write_json(res, out)


if __name__ == "__main__":
    main()
