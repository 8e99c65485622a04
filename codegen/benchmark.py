"""The yardstick: ``python -m codegen.benchmark --model M`` scores a hypermodel on every set it was not
trained on, as the board decides and beside the baselines a user would otherwise pick.

Sets (``--sets``, comma-separated): ``lfw`` (the model's held-out View 2 fold only, 600 pairs; ``lfw-val``:
its validation fold instead, for a model trained with one — the fold choices are made on), ``cfp-ff``
and ``cfp-fp`` (CFP's frontal-frontal and frontal-profile 10-fold protocols, 7,000 pairs each, without the
people whose names are in the LFW folds the model saw, and without the CFP folds it trained on when its
config names ``cfp_train_folds``; ``cfp-ff-val`` / ``cfp-fp-val``: its ``cfp_val_folds`` instead), an image
folder (one sub-folder per person, any format OpenCV reads; 10 people-disjoint folds of pairs drawn from
it) or an InsightFace ``.bin`` file.
Each in every ``--variants`` (``clean``, ``gray``: BT.601 luminance in 3 channels, ``lowres``: the face at
40×40 pixels, scaled back up; ``training.data.variants`` names the exact operations).

Rows, on the same pairs (a, b), a the enrolled photo and b the probe:

  (a) deployed     f(b; θ_a) one way in the board's integer arithmetic: θ_a = h(a) quantized with a's crop
                   as the enrollment image (``codegen.quantize``), run by the golden model (bit-exact with
                   the C kernel and TFLM); ``--activations int16`` (default: the 16x8 scheme every
                   fixed-kernel build runs) or ``int8``;
  (b) float        the same f(b; θ_a) in float32;
  (c) float sym.   ½ (f(b; θ_a) + f(a; θ_b)), the training-time score: a reference, no device computes it;
  (d) teacher      the cosine of the backbone's embeddings of a and b (what h reads);
  (e) non-personal the model's shared prefix of f (every layer before ``personal_from``) up to the global
                   pool as a face embedding — the same deployed network, no personal weights — with a's
                   pooled features as the stored template, cosine against b's; in the deployed integer
                   arithmetic (the prefix quantized on the package faces, as the shared base blob is).
  (f) refined      (a) with θ_a refined at enrollment against the model's impostor cohort (``training.refine``;
                   what ``training.enroll`` ships by default); ``--no-refine`` leaves (f), (g) out;
  (g) refined float the same in float32.

Metrics per row: 10-fold accuracy ± std (each fold's threshold chosen on the other 9), ROC AUC, TAR at
FAR 1e-2 and 1e-3 (``training.eval.metrics``), and FAR and FRR at two operating points: the model's global
threshold for (a)–(c), (f), (g) (what `training.enroll --far 0` gives), and for the baselines (d), (e),
which ship no threshold, each fold's threshold chosen on the other 9 folds; and for (a), (b), (f), (g) at each
enrolled user's own threshold for ``--far`` (default ``training.calibration.DEFAULT_FAR``: the shipped operating
point, (f) at it is what ``training.enroll`` ships), calibrated as ``training.enroll --far`` does on the
calibration half of the model's cohort file (people disjoint from the refinement cohort and the evaluated sets),
the rate kept on each of its sources (LFW, CFP).

Writes ``report.md``, ``report.json`` (everything, with the command line, model id, timings and how each
set's images were aligned) and PNG plots (one ROC figure per set and variant with every row, the score
histogram of the deployed row) to ``--out`` (default ``runs/benchmark/<model id>/``). ``--json`` prints
the JSON on stdout. ``--limit-pairs N`` scores N pairs of each set, spread over its folds (smoke runs, CI).

Cost: the quantizer runs once per enrollment image and variant (about 0.13 s on one core; a photo that
enrolls in several sets, as CFP's frontal photos do in FF and FP, is quantized once), the golden model once
per pair (16x8: about 8 ms); aligned crops and backbone embeddings are cached on disk (``.cache/``), so a
second model with the same backbone skips both. The full default run (3 sets × 3 variants) is dominated by
the quantizer: 3 × 3,645 enrollments (1,814 of each 3,645 enroll in FF and FP alike).

Exit status: 0 done; 1 an error (missing shared data or model file: the message says which); 2 a bad
command line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pvcore.cli import EXIT_ERROR, EXIT_OK, setup_logging
from training import calibration

log = logging.getLogger(__name__)

DEFAULT_SETS = ("lfw", "cfp-ff", "cfp-fp")
NAMED_SETS = (*DEFAULT_SETS, "lfw-val", "cfp-ff-val", "cfp-fp-val")  # sets named by a word, not a path
DEFAULT_VARIANTS = ("clean", "gray", "lowres")
ROWS = {  # key → (label in tables and plots, how its threshold is chosen)
    "deployed": ("(a) deployed, one-way", "model"),
    "float": ("(b) float, one-way", "model"),
    "float_sym": ("(c) float, symmetric (not deployable)", "model"),
    "teacher": ("(d) teacher backbone, cosine", "kfold"),
    "nonpersonal": ("(e) non-personal f, cosine to template", "kfold"),
}
REFINED_ROWS = {  # the same rows with θ refined at enrollment (training.refine), what enrollment ships
    "deployed_refined": ("(f) deployed, θ refined at enrollment (the default enrollment)", "model"),
    "float_refined": ("(g) float, θ refined at enrollment", "model"),
}
USER_THRESHOLD_ROWS = {"deployed": "float", "float": "float", "deployed_refined": "float_refined",
                       "float_refined": "float_refined"}  # row → the float row whose θ the user's threshold is for
ALL_ROWS = {**ROWS, **REFINED_ROWS}
# --far: each enrolled user's own threshold for this false-accept rate (default: the shipped operating point)
DEFAULT_FAR = calibration.DEFAULT_FAR


@dataclass
class Scored:
    """Scores of every row on one set in one variant, and the seconds each part took."""

    scores: dict[str, np.ndarray]
    timings: dict[str, float]
    deployed_vs_float: dict
    user_thr: dict[str, np.ndarray] = field(default_factory=dict)  # row → each pair's user threshold (--far)


# --------------------------------------------------------------------------------------------------
# Pairs
# --------------------------------------------------------------------------------------------------
def with_folds(pairs):
    """``pairs`` with a fold id for every pair: the set's own folds, or (a ``.bin`` set) InsightFace's
    consecutive equal splits."""
    from training.eval.metrics import fold_ids

    if pairs.folds is None:
        pairs.folds = fold_ids(len(pairs.same))
    return pairs


# --------------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------------
def _split_layer(model) -> str:
    return str(model.meta["config"].get("personal_from", ""))


def shared_prefix_qf(model, thetas, activations: str):
    """The shared prefix in the deployed arithmetic: θ quantized on the package faces only (no user's
    image), as ``codegen.shared_prefix.make_base`` quantizes the base every user shares. None for a model
    without a shared convolutional prefix ending at the pool."""
    from codegen.quantize import QuantConfig, quantize
    from pvcore.spec import F_SPEC

    split = _split_layer(model)
    names = [layer.name for layer in F_SPEC.layers]
    pool_at = F_SPEC.pool_index
    if split not in names or names.index(split) < pool_at:  # "" (all personal) or personal convs
        return None
    return quantize(thetas[0].numpy(), enroll_u8=None, cfg=QuantConfig(activations=activations))


def pooled_features(qf, crops: np.ndarray, batch: int = 128) -> np.ndarray:
    """The pooled features (N, C) of ``qf`` on uint8 crops, dequantized: the integer network's face embedding
    (its personal layers are not run; spec v5: centred and normalized)."""
    from codegen.golden import avgpool_int8, conv_int8, images_to_int8, l2norm_int8
    from pvcore.spec import F_SPEC, AvgPool, Conv

    out = []
    for s in range(0, len(crops), batch):
        x = images_to_int8(np.asarray(crops[s:s + batch]), qf.act_dtype)
        for i, (layer, q) in enumerate(zip(F_SPEC.layers, qf.layers)):
            if isinstance(layer, Conv):
                x = conv_int8(x, q, layer)
            elif isinstance(layer, AvgPool):
                x = avgpool_int8(x, q, layer)
            else:
                x = l2norm_int8(x, q)
            if i == F_SPEC.pool_index:
                out.append((x.reshape(len(x), -1).astype(np.float64) - q.out_zp) * q.out_scale)
                break
    return np.concatenate(out) if out else np.zeros((0, 0))


def cosine_scores(emb: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    e = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    return np.sum(e[left] * e[right], axis=1)


def deployed_logits(jobs: list[tuple], activations: str, progress: bool = True) -> tuple[list[np.ndarray], dict]:
    """For each job ``(thetas, rows, cols, crops)``: f(crops[cols[i]]; θ[rows[i]]) in the deployed arithmetic,
    dequantized — what ``codegen.accuracy.int8_pair_logits`` computes (θ quantized with its own image's crop
    as the enrollment image, the golden model on the probes) — for all jobs at once, so that an enrollment
    (the same θ and crop) in several sets (CFP's frontal photos enroll in FF and FP alike) is quantized once.
    No quantized θ outlives its probes: thousands kept alive pin the quantizer's freed temporaries (measured:
    ~16 MB of resident memory each). Returns the logits per job and {"quantized", "in_several_sets"}."""
    from tqdm import tqdm

    from codegen.golden import run_int8
    from codegen.quantize import QuantConfig, quantize
    from training.backbones.embedding_cache import content_key

    groups: dict[tuple[bytes, bytes], list[tuple[int, int]]] = {}  # enrollment → [(job, directed pair)]
    for j, (thetas, rows, _cols, crops) in enumerate(jobs):
        keys = {r: (content_key(thetas[r].numpy()), content_key(crops[r])) for r in np.unique(rows).tolist()}
        for i, r in enumerate(rows.tolist()):
            groups.setdefault(keys[r], []).append((j, i))
    outs = [np.empty(len(rows), np.float64) for _, rows, _, _ in jobs]
    several = 0
    for members in tqdm(groups.values(), desc=f"deployed ({activations})", unit="θ", disable=not progress):
        j0, i0 = members[0]
        thetas, rows, _, crops = jobs[j0]
        r = int(rows[i0])
        qf = quantize(thetas[r].numpy(), enroll_u8=crops[r], cfg=QuantConfig(activations=activations))
        several += len({j for j, _ in members}) > 1
        probes = np.stack([jobs[j][3][jobs[j][2][i]] for j, i in members])
        for (j, i), v in zip(members, qf.dequantize_logit(run_int8(qf, probes))):
            outs[j][i] = v
    return outs, {"quantized": len(groups), "in_several_sets": several}


def refined_thetas(pairs, model, thetas, cohort):
    """θ of every image of ``pairs``, those of the enrolled images (pairs.left) refined at enrollment
    (``training.refine.refine_batch``: h's tail and the teacher map, refined against ``cohort``)."""
    import torch

    from training.backbones import backbone_info, load_backbone
    from training.backbones.base import ARCFACE112
    from training.backbones.embedding_cache import EmbeddingCache
    from training.refine import refine_batch

    lefts = np.unique(pairs.left)
    kind = backbone_info(model.backbone).input_kind
    emb = EmbeddingCache(load_backbone(model.backbone)).embed(pairs.crops[kind][lefts], progress=False)
    out = thetas.clone()
    out[torch.from_numpy(lefts)] = torch.from_numpy(
        refine_batch(model, thetas[torch.from_numpy(lefts)].numpy(), pairs.crops[ARCFACE112][lefts], emb, cohort)[0])
    return out


def user_thresholds(model, thetas, lefts: np.ndarray, cohort, far: float) -> np.ndarray:
    """Each pair's enrolled user's own threshold (``training.calibration.calibrate_features`` on the cohort's
    calibration half, kept on each of its sources, never below the model's threshold), for the θ of its enrolled
    image ``lefts``."""
    from training.calibration import calibrate_features

    ids, inverse = np.unique(lefts, return_inverse=True)
    thr = np.array([calibrate_features(np.asarray(thetas[i]), cohort.calib_feats, far, model.threshold, "",
                                       cohort.calib_group, cohort.calib_group_names).threshold for i in ids])
    return thr[inverse]


def score_sets(sets: dict, model, activations: str, progress: bool, cohort=None, refine: bool = True,
               far: float | None = None) -> tuple[dict[str, Scored], dict]:
    """Every row's scores on each PairSet of ``sets`` (one variant), the deployed row of all sets together;
    with an impostor ``cohort`` (``training.refine.Cohort``) and ``refine`` also rows (f), (g): θ refined at
    enrollment; with ``far`` each pair's user threshold for rows (a), (b), (f), (g) (``Scored.user_thr``)."""
    from codegen.accuracy import int8_agreement
    from training.backbones.base import ARCFACE112
    from training.evaluate import backbone_scores, directed_logits, directions, pair_thetas

    thetas, scored = {}, {}
    for key, pairs in sets.items():
        t: dict[str, float] = {}
        n = len(pairs.same)
        t0 = time.perf_counter()
        thetas[key] = pair_thetas(pairs, model, progress)  # h once per image, for every row that needs θ
        t["h_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        rows, cols = directions(pairs, one_way=False)  # (a → b) then (b → a)
        lg = directed_logits(pairs, model, rows, cols, progress, thetas=thetas[key])
        t["float_f_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        teacher, _ = backbone_scores(pairs, model.backbone, progress)
        t["teacher_s"] = time.perf_counter() - t0
        scores = {"float": lg[:n], "float_sym": (lg[:n] + lg[n:]) / 2, "teacher": teacher}
        t0 = time.perf_counter()
        base = shared_prefix_qf(model, thetas[key], activations)
        if base is not None:
            feats = pooled_features(base, pairs.crops[ARCFACE112])
            scores["nonpersonal"] = cosine_scores(feats, pairs.left, pairs.right)
        t["nonpersonal_s"] = time.perf_counter() - t0
        if cohort is not None and refine:
            t0 = time.perf_counter()
            thetas[key, "refined"] = refined_thetas(pairs, model, thetas[key], cohort)
            scores["float_refined"] = directed_logits(pairs, model, pairs.left, pairs.right, progress,
                                                      thetas=thetas[key, "refined"])
            t["refine_s"] = time.perf_counter() - t0
        scored[key] = Scored(scores, t, {})
        if cohort is not None and far is not None:
            t0 = time.perf_counter()
            for row, frow in USER_THRESHOLD_ROWS.items():
                th = thetas[key, "refined"] if frow == "float_refined" else thetas[key]
                if frow in scores:
                    scored[key].user_thr[row] = user_thresholds(model, th, pairs.left, cohort, far)
            t["user_threshold_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    jobs = [(thetas[k], p.left, p.right, p.crops[ARCFACE112]) for k, p in sets.items()]
    if cohort is not None and refine:
        jobs += [(thetas[k, "refined"], p.left, p.right, p.crops[ARCFACE112]) for k, p in sets.items()]
    logits, counts = deployed_logits(jobs, activations, progress)
    if cohort is not None and refine:
        for sc, lg in zip(scored.values(), logits[len(sets):]):
            sc.scores["deployed_refined"] = lg
    deployed = {"seconds": round(time.perf_counter() - t0, 2), "pairs": int(sum(len(p.same) for p in sets.values())),
                **counts}
    for sc, lg in zip(scored.values(), logits):
        sc.scores = {"deployed": lg, **sc.scores}
        sc.deployed_vs_float = int8_agreement(sc.scores["float"], lg, model.threshold)
        sc.timings = {k: round(v, 2) for k, v in sc.timings.items()}
    return scored, deployed


# --------------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------------
def rates(accept: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """(FAR, FRR) of accept decisions: accepted different pairs / different, rejected same / same."""
    return float(accept[~same].mean()), float((~accept[same]).mean())


def row_metrics(scores: np.ndarray, same: np.ndarray, folds: np.ndarray, threshold: float | None,
                user_thr: np.ndarray | None = None) -> dict:
    """VerificationReport's figures, and FAR/FRR at ``threshold`` (the device's rule: accept iff the
    float32 score >= the float32 threshold) or, with None, at each fold's threshold from the other 9; with
    ``user_thr`` (each pair's enrolled user's own threshold) also ``far_user``, ``frr_user`` at those."""
    from training.eval.metrics import VerificationReport

    rep = VerificationReport.from_scores(scores, same, folds)
    if threshold is not None:
        accept = np.asarray(scores, np.float32) >= np.float32(threshold)
        rule = "model threshold"
    else:
        ids = np.unique(folds)
        thr = np.asarray(rep.fold_thresholds)[np.searchsorted(ids, folds)]
        accept = scores >= thr
        rule = "each fold's threshold from the other 9 folds"
    far, frr = rates(accept, same)
    out = {**rep.to_dict(), "far": far, "frr": frr, "operating_threshold": threshold, "threshold_rule": rule}
    if user_thr is not None:
        out["far_user"], out["frr_user"] = rates(np.asarray(scores, np.float32) >= user_thr.astype(np.float32), same)
    return out


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------
def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def markdown(result: dict) -> str:
    from training.data.variants import describe

    m = result["model"]
    lines = [
        f"# Benchmark of `{m['path']}` (model id `{m['model_id']}`)", "",
        f"Command: `{' '.join(result['command'])}`  ",
        f"Backbone {m['backbone']}, detector {m['detector']}, f's shared prefix up to `{m['personal_from'] or '-'}`, "
        f"operating threshold {m['threshold']:.4f} (logit), deployed arithmetic **{result['arithmetic']}**.  ",
        f"Wall time {result['timings']['total_s']:.0f} s on {result['machine']}.", "",
        "Rows: (a) f(b; θ_a) one way as the board computes it (θ_a quantized with a's crop, golden model); "
        "(b) the same in float; (c) ½(f(b; θ_a) + f(a; θ_b)) in float, the training-time score, not what a "
        "device computes; (d) the teacher backbone's cosine; (e) the model's shared prefix up to the pool as "
        "an embedding (deployed arithmetic, quantized on the package faces), cosine of b against a's template. "
        "(f), (g): (a), (b) with θ_a refined at enrollment against the model's impostor cohort (what "
        "`training.enroll` does by default). "
        "Accuracy: 10-fold, each fold's threshold chosen on the other 9 (a set's own line names other folds). "
        "FAR/FRR: at the model's global threshold (what `training.enroll --far 0` gives) for "
        "(a)–(c), (f), (g); for (d), (e), which ship no threshold, at each fold's threshold chosen on the other 9 "
        "folds. At the user's threshold: each enrolled image's θ calibrated for the target FAR on the calibration "
        "half of the model's cohort (people outside the evaluated folds and the refinement cohort; "
        "`training.enroll --far`), the rate kept on each of its sources (the strictest source's threshold), never "
        "below the model's threshold; with the default target, row (f) there is "
        "the shipped operating point.", "",
        "Variants: " + "; ".join(f"**{v}**: {describe(v)}" for v in result["variants"]) + ".", "",
        "## Assumptions", "",
    ]
    lines += [f"- {a}" for a in result["assumptions"]]
    lines += ["", "## Time", "", f"Wall time {result['timings']['total_s']:.0f} s. The deployed row, all sets of a "
              "variant together (an enrollment photo in several sets is quantized once):", ""]
    lines += [f"- {v}: {d['seconds']:.0f} s for {d['pairs']} pairs, {d['quantized']} enrollments quantized "
              f"({d['in_several_sets']} of them in several sets); the variant's total {d['total_s']:.0f} s"
              for v, d in ((v, result["deployed"][v]) for v in result["variants"])]
    for name in result.get("set_order", result["sets"]):  # report.json's keys are sorted
        s = result["sets"][name]
        info = s["info"]
        lines += ["", f"## {name}", ""]
        lines.append(f"{s['pairs']} pairs ({s['same']} same), {info.get('images', '?')} images; alignment: "
                     + ", ".join(f"{k} {v}" for k, v in info.get("alignment", {}).items() if v) + ".")
        if "cfp_folds" in info:
            why = ("the model's CFP validation folds" if name.endswith("-val") else
                   "the folds the model neither trained nor chose on")
            k = len(info["cfp_folds"])  # training.evaluate.cfp_pairs: official folds, a single one dealt into 10
            lines.append(f"CFP folds {', '.join(map(str, info['cfp_folds']))} only ({info['fold_pairs']} of the "
                         f"{info['protocol_pairs']} protocol pairs), {why}; "
                         + (f"the k-fold figures use these {k} official folds (each threshold chosen on the other "
                            f"{k - 1})." if k > 1 else "its pairs are dealt into 10 interleaved folds."))
        if "excluded_pairs" in info:
            lines.append(f"CFP people also in LFW (by name): {info['lfw_name_overlap_people']}; of them in the LFW "
                         f"folds the model saw ({', '.join(map(str, info['excluded_lfw_folds']))}): "
                         f"{info['excluded_people']}, whose {info['excluded_pairs']} of "
                         f"{info.get('fold_pairs', info['protocol_pairs'])} pairs are left out.")
        if "limited_to_pairs" in info:
            lines.append(f"Limited to {info['limited_to_pairs']} pairs spread over the folds (`--limit-pairs`).")
        far_t = result.get("user_threshold", {}).get("far")
        user_cols = f" FAR % at the user's threshold (target {far_t:g}) | FRR % there |" if far_t else ""
        lines += ["", "| variant | row | 10-fold acc. % | AUC | TAR@FAR=1e-2 % | TAR@FAR=1e-3 % | FAR % | FRR % |"
                  + user_cols, "|---|---|---|---|---|---|---|---|" + ("---|---|" if far_t else "")]
        for variant in result["variants"]:
            v = s["variants"][variant]
            for key, r in ((k, v["rows"][k]) for k in ALL_ROWS if k in v["rows"]):
                user = (f" {_pct(r['far_user'])} | {_pct(r['frr_user'])} |" if "far_user" in r else " – | – |"
                        ) if far_t else ""
                lines.append(f"| {variant} | {ALL_ROWS[key][0]} | {_pct(r['accuracy_mean'])} ± "
                             f"{_pct(r['accuracy_std'])} "
                             f"| {r['auc']:.4f} | {_pct(r['tar_at_far_1e2'])} | {_pct(r['tar_at_far_1e3'])} "
                             f"| {_pct(r['far'])} | {_pct(r['frr'])} |" + user)
        lines.append("")
        for variant in result["variants"]:
            v = s["variants"][variant]
            a = v["deployed_vs_float"]
            lines.append(f"- {variant}: deployed vs float one-way decisions agree on {_pct(a['decision_agreement'])} % "
                         f"of the pairs ({a['n_disagree']} differ), mean |Δlogit| {a['mean_abs_dlogit']:.4f}; "
                         "seconds: " + ", ".join(f"{k[:-2]} {x:.0f}" for k, x in v["timings"].items())
                         + f"; ROC `{v['plots']['roc']}`, deployed scores `{v['plots']['scores']}`.")
        for variant in result["variants"]:
            v = s["variants"][variant]
            lines += ["", f"![ROC {name} {variant}]({v['plots']['roc']}) "
                      f"![deployed scores {name} {variant}]({v['plots']['scores']})"]
    return "\n".join(lines) + "\n"


def assumptions(model, sets: list[str]) -> list[str]:
    cfg = model.meta["config"]
    fold = int(cfg["fold"])
    out = []
    val = cfg.get("val_fold", -1)
    if "lfw" in sets:
        seen = ", ".join(str(k) for k in range(10) if k not in (fold, val))
        out.append(f"LFW: only the pairs of View 2 fold {fold}, the people.txt fold the model was not trained on "
                   f"(the folds are people-disjoint); it saw folds {seen}.")
    if "lfw-val" in sets:
        out.append(f"LFW validation: the pairs of View 2 fold {val}, which the model was not trained on either; its "
                   "checkpoint and threshold were chosen on them, so these figures choose, they do not report.")
    if "lfw" in sets and "val_fold" not in cfg:
        out.append(f"This model had no validation fold: its threshold was chosen on the LFW fold {fold} pairs "
                   "themselves, so its LFW FAR/FRR at the model threshold are not unseen figures (CFP's are).")
    from training.evaluate import CFP_SETS, cfp_report_folds

    if any(s in CFP_SETS for s in sets):  # by name: a .bin file may be called cfp_fp.bin

        report, val = cfp_report_folds(model)
        trained = ", ".join(str(k) for k in range(10) if k not in set(report) | set(val))
        if trained:
            out.append(f"CFP: the model trained on the people of CFP folds {trained}; cfp-ff and cfp-fp score only "
                       f"folds {', '.join(map(str, report))} (CFP's folds are people-disjoint).")
        else:
            out.append("CFP: its people are assumed absent from the model's training data, which is LFW only "
                       f"(config dataset '{cfg.get('dataset')}').")
        if val and any(s in ("cfp-ff-val", "cfp-fp-val") for s in sets):
            out.append(f"CFP validation: folds {', '.join(map(str, val))}, neither trained on nor reported; "
                       "these figures choose, they do not report.")
        out.append("CFP people whose names are also in an LFW fold the model saw are left out (names matched "
                   "case-insensitively, spaces as underscores).")
    out.append(f"The teacher ({model.backbone}) was trained by its authors on data this project does not "
               "control; it may include people of these sets, which would favour row (d) and, through h, (a)–(c).")
    return out


# --------------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------------
def run(model_path: Path | None, sets: list[str], variants: list[str], activations: str, limit: int | None,
        out: Path | None, progress: bool = True, workers: int = 2, command: list[str] | None = None,
        refine: bool = True, cohort_file: Path | None = None, far: float | None = DEFAULT_FAR) -> dict:
    """Score every set × variant, write the report files, return the JSON report."""
    import torch

    from pvcore.atomic import atomic_write_bytes, atomic_write_json
    from pvcore.paths import REPO_ROOT
    from training.eval.plots import save_roc_png, save_score_histogram_png
    from training.evaluate import model_pairs, with_variant
    from training.hypermodel import HyperModel

    t_start = time.perf_counter()
    m = HyperModel.load(model_path)
    out = out or REPO_ROOT / "runs" / "benchmark" / m.model_id
    result: dict = {
        "command": command or ["python", "-m", "codegen.benchmark"],
        "model": {"path": str(m.path), "model_id": m.model_id, "backbone": m.backbone, "detector": m.detector,
                  "threshold": m.threshold, "held_out_lfw_fold": int(m.meta["config"]["fold"]),
                  "val_fold": m.meta["config"].get("val_fold"), "personal_from": _split_layer(m)},
        "arithmetic": "16x8 (int16 activations, int8 weights)" if activations == "int16" else "int8",
        "activations": activations, "variants": variants, "limit_pairs": limit,
        "machine": f"{os.cpu_count()} CPUs ({platform.machine()}, {platform.system()}), {torch.get_num_threads()} "
                   "torch thread(s)",
        "assumptions": assumptions(m, sets), "set_order": [], "sets": {}, "timings": {},
    }
    cohort = None
    if refine or far is not None:
        from training.refine import COHORT_EXCLUDED_FOLDS, load_cohort

        for name, key in (("lfw", "fold"), ("lfw-val", "val_fold")):
            scored = m.meta["config"].get(key)  # no val_fold: model_pairs says so below
            if name in sets and scored is not None and scored not in COHORT_EXCLUDED_FOLDS:
                raise ValueError(f"the impostor cohort holds LFW people of fold {scored}, the fold {name} scores "
                                 "(--no-refine and --far 0 score without it)")
        cohort = load_cohort(m, cohort_file)
        if refine:
            result["refine"] = {"cohort": cohort.source, "cohort_size": int(len(cohort.feats))}
        if far is not None:
            if cohort.calib_feats is None:
                raise ValueError("the model's cohort file has no calibration half: rebuild it with "
                                 "`python -m training.refine --build-cohort` (or --far 0)")
            result["user_threshold"] = {"far": far, "cohort": cohort.calib_source,
                                        "cohort_size": int(len(cohort.calib_feats))}
    bases = {}
    for name in sets:
        t0 = time.perf_counter()
        log.info("set %s: loading and aligning", name)
        base = with_folds(model_pairs(name, m, workers, progress, limit=limit))
        key = name if name in NAMED_SETS else base.name
        bases[key] = base
        result["set_order"].append(key)
        result["sets"][key] = {"dataset": name, "info": base.info, "pairs": int(len(base.same)),
                               "same": int(base.same.sum()), "data_s": round(time.perf_counter() - t0, 2),
                               "variants": {}}
    result["deployed"] = {}
    for variant in variants:
        t0 = time.perf_counter()
        views = {key: with_variant(base, variant) for key, base in bases.items()}
        t_var = time.perf_counter() - t0
        log.info("variant %s: %s", variant, ", ".join(f"{k} {len(p.same)} pairs" for k, p in views.items()))
        scored, result["deployed"][variant] = score_sets(views, m, activations, progress, cohort, refine, far)
        for key, pairs in views.items():
            sc = scored[key]
            rows = {k: row_metrics(sc.scores[k], pairs.same, pairs.folds,
                                   m.threshold if ALL_ROWS[k][1] == "model" else None, sc.user_thr.get(k))
                    for k in ALL_ROWS if k in sc.scores}
            stem = f"{key}-{variant}"
            save_roc_png(out / f"roc-{stem}.png", {ALL_ROWS[k][0]: (s, pairs.same) for k, s in sc.scores.items()},
                         title=f"{key}, {variant}: {m.model_id}")
            save_score_histogram_png(out / f"scores-{stem}.png", sc.scores["deployed"], pairs.same, m.threshold,
                                     title=f"{key}, {variant}: deployed one-way scores ({activations})")
            result["sets"][key]["variants"][variant] = {
                "rows": rows, "deployed_vs_float": sc.deployed_vs_float, "timings": sc.timings,
                "plots": {"roc": f"roc-{stem}.png", "scores": f"scores-{stem}.png"},
            }
            d = rows["deployed"]
            log.info("%s %s deployed: acc %.2f %%, AUC %.4f, FAR %.2f %%, FRR %.2f %%", key, variant,
                     100 * d["accuracy_mean"], d["auc"], 100 * d["far"], 100 * d["frr"])
        result["deployed"][variant]["variant_s"] = round(t_var, 2)
        result["deployed"][variant]["total_s"] = round(time.perf_counter() - t0, 2)
    result["timings"] = {"total_s": round(time.perf_counter() - t_start, 2)}
    atomic_write_json(out / "report.json", result)
    atomic_write_bytes(out / "report.md", markdown(result).encode())
    result["out"] = str(out)
    return result


def _sets(text: str) -> list[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise argparse.ArgumentTypeError("no set named")
    for s in items:
        if s not in NAMED_SETS and not Path(s).is_dir() and not (Path(s).is_file() and s.endswith(".bin")):
            raise argparse.ArgumentTypeError(f"{s!r} is not {', '.join(NAMED_SETS)}, an image folder or a .bin "
                                             "file")
    return items


def _variants(text: str) -> list[str]:
    from training.data.variants import VARIANTS

    items = [s.strip() for s in text.split(",") if s.strip()]
    bad = [v for v in items if v not in VARIANTS]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"variants are {', '.join(VARIANTS)}; got {text!r}")
    return items


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m codegen.benchmark", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_argument_group("what to score")
    g.add_argument("--model", type=Path, default=None,
                   help="hypermodel file (default: the shipped training/pretrained/hgen_dlib_lfw.pt)")
    g.add_argument("--sets", type=_sets, default=list(DEFAULT_SETS), metavar="SET[,SET...]",
                   help="lfw, lfw-val, cfp-ff, cfp-fp, cfp-ff-val, cfp-fp-val, an image folder, a .bin file "
                        "(default lfw,cfp-ff,cfp-fp)")
    g.add_argument("--variants", type=_variants, default=list(DEFAULT_VARIANTS), metavar="V[,V...]",
                   help="clean, gray, lowres (default: all three)")
    g.add_argument("--limit-pairs", type=int, default=None, metavar="N",
                   help="score N pairs of each set, spread over its folds (default: every pair)")
    g.add_argument("--activations", choices=("int16", "int8"), default="int16",
                   help="the deployed arithmetic: int16 = TFLM 16x8, what every fixed-kernel build runs "
                        "(default); int8 = full int8 (the -tflm targets)")
    o = ap.add_argument_group("output")
    o.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="report folder: report.md, report.json, PNG plots (default runs/benchmark/<model id>/)")
    o.add_argument("--json", action="store_true", help="print the JSON report on stdout")
    o.add_argument("--no-progress", action="store_true", help="no progress bars")
    o.add_argument("-v", "--verbose", action="store_true")
    r = ap.add_argument_group("resources")
    from training.refine import add_refine_args

    add_refine_args(g)  # --no-refine leaves out rows (f), (g)
    g.add_argument("--far", type=float, default=DEFAULT_FAR,
                   help="FAR and FRR also at each enrolled user's own threshold for this false-accept rate, "
                        f"calibrated on the cohort file's calibration half (default {DEFAULT_FAR:g}; 0: not)")
    r.add_argument("--workers", type=int, default=2, help="alignment worker processes (default 2)")
    r.add_argument("--threads", type=int, default=1,
                   help="torch and BLAS threads (default 1: the quantizer and the golden model ran 3.6x faster "
                        "on one thread than on two with the second core busy)")
    args = ap.parse_args(argv)
    if args.limit_pairs is not None and args.limit_pairs < 20:
        ap.error("--limit-pairs must be at least 20 (10 folds, both kinds of pair)")
    if args.threads < 1 or args.workers < 1:
        ap.error("--threads and --workers must be >= 1")
    if not 0.0 <= args.far < 1.0:
        ap.error(f"--far must be a rate in (0, 1), or 0 for none; got {args.far}")
    setup_logging(args.verbose, quiet=args.json)

    import torch
    from threadpoolctl import threadpool_limits

    from pvcore.paths import SharedDataMissing
    from training.hypermodel import HyperModelError
    from training.refine import NoCohort

    torch.set_num_threads(args.threads)
    try:
        with threadpool_limits(args.threads):
            result = run(args.model, args.sets, args.variants, args.activations, args.limit_pairs, args.out,
                         not args.no_progress, args.workers, ["python", "-m", "codegen.benchmark", *(
                             sys.argv[1:] if argv is None else argv)], args.refine, args.cohort_file,
                         args.far or None)
    except (HyperModelError, SharedDataMissing, FileNotFoundError, ValueError, NoCohort) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(markdown(result))
        print(f"report in {result['out']}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
