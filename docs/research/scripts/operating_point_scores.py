"""Research: float one-way scores of h's θ and of the refined θ on a model's sets, with each enrolled image's
scores on the cohort's calibration half — everything an operating-point rule needs, swept offline.
Usage: python docs/research/scripts/operating_point_scores.py MODEL OUT.npz SET[,SET...] [drawn]
(research log, section 10; ``drawn``: the cohort drawn from its statistics, as a machine without the file has it)"""
import sys
import time

import numpy as np
import torch
from cells import model_cells

from codegen.benchmark import refined_thetas
from training.backbones.base import ARCFACE112
from training.evaluate import pair_thetas
from training.hypermodel import HyperModel
from training.refine import Cohort, linear_tail, load_cohort, pooled_features


def main() -> None:  # guarded: aligning a set not cached yet starts worker processes (spawn)
    model_path, out, sets = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
    torch.set_num_threads(1)
    m = HyperModel.load(model_path)
    cohort = load_cohort(m)
    if sys.argv[4:] == ["drawn"]:
        cohort = Cohort.from_stats(cohort.stats(), m.model_id)
    prefix = m.theta(m.generator.emb_mean.numpy()[None])[0]
    res = {"threshold": m.threshold}
    for k, p in model_cells(m, sets):
        t0 = time.time()
        th = pair_thetas(p, m, False)
        ref = refined_thetas(p, m, th, cohort)
        feats = pooled_features(prefix, p.crops[ARCFACE112])
        lefts = np.unique(p.left)
        res[k + "/same"], res[k + "/left"], res[k + "/folds"] = p.same, p.left, p.folds
        res[k + "/lefts"] = lefts
        for tag, t in (("h", th), ("ref", ref)):
            w, b = (x.detach().numpy() for x in linear_tail(torch.as_tensor(np.asarray(t, np.float32))))
            res[f"{k}/s_{tag}"] = np.einsum("nc,nc->n", feats[p.right], w[p.left]) + b[p.left]
            res[f"{k}/calib_{tag}"] = (cohort.calib_feats @ w[lefts].T + b[lefts]).T.astype(np.float32)
        print(k, len(p.same), f"{time.time() - t0:.0f} s", flush=True)
    np.savez_compressed(out, **res)


if __name__ == "__main__":
    main()
