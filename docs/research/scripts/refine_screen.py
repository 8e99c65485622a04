"""Research: the enrollment refinement's recipe swept on a model's validation sets, in float (the deployed
decision equals the float one on ≥ 99.3 % of pairs). Everything refinement touches is linear in the shared
prefix's pooled features, so each cell's features are computed once and every recipe is a few seconds.
Usage: python docs/research/scripts/refine_screen.py MODEL OUT.json SET[,SET...] [shipped]
(``shipped``: only h's θ and the shipped recipe — a model compared against another)
(research log, section 12; rows: accuracy / AUC / TAR@1e-2 / TAR@1e-3, FAR / FRR at each user's own
threshold for F = 0.05 and 0.01 on the cohort's calibration half)"""
import json
import sys
import time
from dataclasses import replace

import numpy as np
import torch
from cells import model_cells

from training.backbones import backbone_info, load_backbone
from training.backbones.base import ARCFACE112
from training.backbones.embedding_cache import EmbeddingCache
from training.calibration import threshold_for_far
from training.eval.metrics import kfold_accuracy, roc_auc, tar_at_far
from training.evaluate import pair_thetas
from training.hypermodel import HyperModel
from training.refine import (
    SHIPPED,
    linear_tail,
    load_cohort,
    mixed_start,
    pooled_features,
    positive_views,
    refine_linear,
)

VIEWS = 32  # positive views computed per enrolled image; a recipe with fewer uses the first ones


def cell_data(m, prefix, pairs):
    lefts = np.unique(pairs.left)
    th = pair_thetas(pairs, m, False)[torch.from_numpy(lefts)].numpy()
    w0, b0 = (x.detach().numpy() for x in linear_tail(torch.from_numpy(th)))
    kind = backbone_info(m.backbone).input_kind
    emb = EmbeddingCache(load_backbone(m.backbone)).embed(pairs.crops[kind][lefts], progress=False)
    t = np.asarray(emb, np.float32) - m.generator.emb_mean.numpy()
    crops = pairs.crops[ARCFACE112]
    pos = np.stack([pooled_features(prefix, positive_views(c, VIEWS, seed=0)) for c in crops[lefts]])
    return {"lefts": lefts, "w0": w0, "b0": b0, "t": t, "pos": pos, "feats": pooled_features(prefix, crops)}


def heads(d, cohort, cfg, start, mix, threshold):
    pos = d["pos"][:, :cfg.views]
    if start == "h":
        ws, bs = d["w0"], d["b0"]
    else:
        wm, bm = mixed_start(d["w0"], d["b0"], d["t"], cohort.feats, cohort.tmap)  # ½ h + ½ map (rescaled)
        if start == "map":
            ws, bs = 2 * wm - d["w0"], 2 * bm - d["b0"]
        else:
            ws, bs = wm, bm
        if mix != 0.5:  # mix: the teacher map's share of the start
            wt, bt = 2 * wm - d["w0"], 2 * bm - d["b0"]
            ws, bs = (1 - mix) * d["w0"] + mix * wt, (1 - mix) * d["b0"] + mix * bt
    if cfg.steps == 0:
        return ws, bs
    w, b, _ = refine_linear(ws, bs, pos, cohort.feats, threshold, cfg)
    return w, b


def metrics(d, pairs, cohort, w, b, threshold):
    idx = np.searchsorted(d["lefts"], pairs.left)
    s = np.einsum("nc,nc->n", d["feats"][pairs.right], w[idx]) + b[idx]
    same = np.asarray(pairs.same, bool)
    out = {"acc": 100 * kfold_accuracy(s, same, pairs.folds)[0], "auc": roc_auc(s, same),
           "tar2": 100 * tar_at_far(s, same, 1e-2)[0], "tar3": 100 * tar_at_far(s, same, 1e-3)[0]}
    calib = cohort.calib_feats @ w.T + b  # (K, users)
    for far in (0.05, 0.01):
        thr = np.array([threshold_for_far(calib[:, u], far, threshold)[0] for u in range(w.shape[0])])[idx]
        acc = s >= thr
        out[f"far{far}"] = 100 * acc[~same].mean()
        out[f"frr{far}"] = 100 * (~acc[same]).mean()
    return out


RECIPES = [  # (name, cfg, start, teacher map's share of the start)
    ("h only, no refinement", replace(SHIPPED, steps=0), "h", 0.5),
    ("mixed start, no refinement", replace(SHIPPED, steps=0), "mixed", 0.5),
    ("shipped (mixed, pull 1, 150 steps, 16 views)", SHIPPED, "mixed", 0.5),
    ("h start", SHIPPED, "h", 0.5),
    ("map share 0.25", SHIPPED, "mixed", 0.25),
    ("map share 0.75", SHIPPED, "mixed", 0.75),
    ("pull 0.3", replace(SHIPPED, pull=0.3), "mixed", 0.5),
    ("pull 3", replace(SHIPPED, pull=3.0), "mixed", 0.5),
    ("pull 10", replace(SHIPPED, pull=10.0), "mixed", 0.5),
    ("32 views", replace(SHIPPED, views=32), "mixed", 0.5),
    ("pos weight 3", replace(SHIPPED, pos_weight=3.0), "mixed", 0.5),
    ("300 steps", replace(SHIPPED, steps=300), "mixed", 0.5),
]


def main() -> None:
    model_path, out, sets = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
    torch.set_num_threads(1)
    m = HyperModel.load(model_path)
    thr = float(m.threshold)
    cohort = load_cohort(m)
    prefix = m.theta(m.generator.emb_mean.numpy()[None])[0]
    recipes = RECIPES if sys.argv[4:] != ["shipped"] else [RECIPES[0], RECIPES[2]]
    res = {"model": model_path, "model_id": m.model_id, "recipes": [r[0] for r in recipes], "cells": {}}
    for cell, p in model_cells(m, sets):
        t0 = time.time()
        d = cell_data(m, prefix, p)
        rows = {}
        for rname, cfg, start, mix in recipes:
            w, b = heads(d, cohort, cfg, start, mix, thr)
            rows[rname] = metrics(d, p, cohort, w, b, thr)
        res["cells"][cell] = rows
        print(f"{cell}: {time.time() - t0:.0f} s", flush=True)
        for rname, r in rows.items():
            print(f"  {rname:46s} {r['acc']:6.2f} {r['auc']:.4f} {r['tar2']:5.1f} {r['tar3']:5.1f}  "
                  f"F.05 {r['far0.05']:5.2f}/{r['frr0.05']:5.1f}  F.01 {r['far0.01']:5.2f}/{r['frr0.01']:5.1f}",
                  flush=True)
        with open(out, "w") as fh:
            json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
