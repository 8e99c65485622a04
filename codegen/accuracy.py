"""``python -m codegen.accuracy``: how much int8 costs — the int8 model (the golden model, i.e. what every
device computes bit for bit) against the float f, for a stored user on aligned faces, or for a hypermodel
on its held-out LFW pairs.

    python -m codegen.accuracy --user alice --dataset lfw --limit 1000 [--json] [--out FILE]
    python -m codegen.accuracy --model training/pretrained/hgen_dlib_lfw.pt [--one-way] [--views 2]

``--json`` prints the report as JSON (else a summary); ``--out FILE`` writes it (``--model``: by default to
runs/eval/int8-pairs-<scheme>-v<views>/report.json).

``--model``: every pair (a, b) of the model's held-out LFW fold, θ_a = h(a) quantized by ``codegen.quantize``
with a's crop as the enrollment image, f_int8(b; θ_a) dequantized; the pairs' accuracy in integer arithmetic
and the decision agreement with the float f over the 1,200 directed pairs, at the model's threshold.

Reports, at the user's operating threshold (meta.threshold, on f's logit): decision agreement (float
accept == int8 accept, where int8 accepts when its dequantized logit >= threshold, the device's rule),
the accept rates of both, mean / max |Δlogit| (dequantized int8 − float) in logit units and in int8
steps of the logit (LSB), and the float logits' spread for scale. Works for any user-store entry.
``--views 2`` scores as the two-view firmware does (the ESP32 projects' default): f(b) is the mean over the
image and its mirror image, in int8 (``QuantizedF.dequantize_mean2`` / ``decide_mean2``, bit for bit the
device's rule) and in float alike.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from pvcore.atomic import atomic_write_json
from pvcore.cli import add_user_store_args, fail, setup_logging

log = logging.getLogger(__name__)


def measure(theta: np.ndarray, images_u8: np.ndarray, threshold: float, enroll_u8: np.ndarray | None = None,
            views: int = 1, activations: str = "int8") -> dict:
    """Agreement and |Δlogit| of int8 vs float f for one θ on uint8 (N, 112, 112, 3) images; ``views`` 2:
    both scored as the mean over each image and its mirror image (the two-view firmware's rule);
    ``activations`` "int16": the 16x8 model (int16 activations, int8 weights) instead of full int8."""
    from codegen.golden import run_int8, run_int8_views
    from codegen.quantize import QuantConfig, quantize
    from training.verifier.functional import f_logits_u8

    if views not in (1, 2):
        raise ValueError(f"views must be 1 or 2, not {views}")
    qf = quantize(theta, enroll_u8=enroll_u8, cfg=QuantConfig(activations=activations))
    if views == 1:
        q = run_int8(qf, images_u8)
        dq = qf.dequantize_logit(q).astype(np.float64)
        acc_q = qf.decide(q, threshold)
    else:
        qv = run_int8_views(qf, images_u8, views=2)
        dq = qf.dequantize_mean2(qv[:, 0], qv[:, 1]).astype(np.float64)
        acc_q = qf.decide_mean2(qv[:, 0], qv[:, 1], threshold)
    fl = f_logits_u8(theta, images_u8, views)
    d = np.abs(dq - fl)
    acc_f = fl >= threshold
    near = np.abs(fl - threshold) <= qf.logit_scale
    return {
        "n_images": int(len(images_u8)),
        "views": views,
        "activations": activations,
        "threshold": float(threshold),
        "decision_agreement": float((acc_f == acc_q).mean()),
        "n_disagree": int((acc_f != acc_q).sum()),
        "n_within_1lsb_of_threshold": int(near.sum()),
        "accept_rate_float": float(acc_f.mean()),
        "accept_rate_int8": float(acc_q.mean()),
        "mean_abs_dlogit": float(d.mean()),
        "max_abs_dlogit": float(d.max()),
        "mean_abs_dlogit_lsb": float(d.mean() / qf.logit_scale),
        "max_abs_dlogit_lsb": float(d.max() / qf.logit_scale),
        "logit_lsb": float(qf.logit_scale),
        "float_logit_mean": float(fl.mean()),
        "float_logit_std": float(fl.std()),
    }


def int8_pair_logits(thetas, rows: np.ndarray, cols: np.ndarray, crops: np.ndarray, progress: bool,
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


def main_pairs(args: argparse.Namespace) -> int:
    """--model: the held-out LFW pairs of each model in the integer arithmetic (and the float f beside)."""
    from pvcore.paths import REPO_ROOT, SharedDataMissing
    from training.backbones.base import ARCFACE112
    from training.eval.metrics import VerificationReport, interleaved_folds
    from training.evaluate import directed_logits, directions, fold_subset, lfw_pairs, pair_scores, pair_thetas
    from training.hypermodel import HyperModel, HyperModelError

    t0 = time.perf_counter()
    progress = not args.no_progress
    kind = "int8" if args.activations == "int8" else "16x8"
    results = []
    try:
        for path in args.model:
            m = HyperModel.load(path)
            fold = int(m.meta["config"]["fold"])
            sub = fold_subset(lfw_pairs("view2", m.detector, None, 2, progress), fold)
            rows, cols = directions(sub, False)
            thetas = pair_thetas(sub, m, progress)  # h once for both arithmetics
            lg_q = int8_pair_logits(thetas, rows, cols, sub.crops[ARCFACE112], progress, args.views == 2,
                                    args.activations)
            lg_f = directed_logits(sub, m, rows, cols, progress, thetas=thetas, mirror=args.views == 2)
            n = len(sub.left)
            sc = pair_scores(lg_q[:n] if args.one_way else lg_q, n, args.one_way)
            report = VerificationReport.from_scores(sc, sub.same, interleaved_folds(len(sc)))
            a = int8_agreement(lg_f, lg_q, m.threshold)
            results.append({"model": str(path), "model_id": m.model_id, "fold": fold, "scheme": kind,
                            "views": args.views, "one_way": args.one_way, **report.to_dict(), "int8_vs_float": a})
            if args.json:
                continue
            print(f"{m.model_id} on LFW fold {fold} [{kind}, {'one-way' if args.one_way else 'symmetric'}, "
                  f"{args.views} view(s)]: {report.summary()}")
            print(f"{kind} vs float, {a['directed_pairs']} directed pairs at threshold {a['threshold']:.4f}: decisions "
                  f"agree {100 * a['decision_agreement']:.2f} % ({a['n_disagree']} differ), |Δlogit| mean "
                  f"{a['mean_abs_dlogit']:.4f} max {a['max_abs_dlogit']:.4f}, within 1 of the threshold "
                  f"{a['near_threshold_mean_abs_dlogit']:.4f} ({a['near_threshold_pairs']} pairs; float logit std "
                  f"{a['float_logit_std']:.3f}); expected agreement {100 * a['expected_agreement']:.2f} %")
    except (HyperModelError, SharedDataMissing, FileNotFoundError, ValueError) as e:
        fail(str(e))
    out = args.out or REPO_ROOT / "runs" / "eval" / f"int8-pairs-{kind}-v{args.views}" / "report.json"
    rep = {"results": results, "total_s": round(time.perf_counter() - t0, 1)}
    atomic_write_json(out, rep)
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        print(f"report: {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m codegen.accuracy",
                                 description="Decision agreement and |Δlogit| of a user's int8 f vs the float f.")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--user", help="user id in the user store: its θ on --limit aligned faces")
    src.add_argument("--model", type=Path, nargs="+",
                     help="hypermodel file(s): every θ of the held-out LFW pairs, quantized (pair protocol)")
    ap.add_argument("--one-way", action="store_true", help="--model: score f(b; θ_a) only, as a device does")
    ap.add_argument("--json", action="store_true", help="print the report as JSON (instead of a summary)")
    ap.add_argument("--out", type=Path, help="write the JSON report here (--model: by default "
                                             "runs/eval/int8-pairs-<scheme>-v<views>/report.json)")
    ap.add_argument("--no-progress", action="store_true")
    add_user_store_args(ap)
    ap.add_argument("--dataset", default="lfw", help="lfw, or an image folder (one sub-folder per person)")
    ap.add_argument("--limit", type=int, default=1000, help="number of images, spread over the dataset")
    ap.add_argument("--threshold", type=float, help="override the stored operating threshold")
    ap.add_argument("--views", type=int, choices=(1, 2), default=1,
                    help="1: one pass of f per image; 2: the mean over the image and its mirror, as the "
                         "two-view firmware (the ESP32 projects) scores (default 1)")
    ap.add_argument("--activations", choices=("int8", "int16"), default="int8",
                    help="int8 (default): the full-int8 model (the -tflm targets, and --activations int8 "
                         "builds); int16: TFLM's 16x8 model (int16 activations, int8 weights), which every "
                         "fixed-kernel project runs by default")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    setup_logging(args.verbose)
    if args.model:
        return main_pairs(args)
    from codegen.faces import load_crops
    from pvcore.paths import SharedDataMissing
    from pvcore.user_store import UserStore, UserStoreError

    store = UserStore(args.users)
    try:
        theta, meta = store.load(args.user)
        crop = store.load_crop(args.user) if hasattr(store, "load_crop") else None
    except UserStoreError as e:
        fail(str(e))
    t0 = time.perf_counter()
    try:
        imgs, _ = load_crops(args.dataset, args.limit)
    except (ValueError, FileNotFoundError, SharedDataMissing) as e:
        fail(str(e))
    thr = meta.threshold if args.threshold is None else args.threshold
    rep = {"user": args.user, "dataset": args.dataset, "hypermodel_id": meta.hypermodel_id,
           **measure(theta, imgs, thr, crop, args.views, args.activations),
           "seconds": round(time.perf_counter() - t0, 1)}
    if args.out:
        atomic_write_json(args.out, rep)
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        kind = "int8" if args.activations == "int8" else "16x8"
        print(f"{args.user} on {rep['n_images']} {args.dataset} images [{kind}, {args.views} view(s)], threshold "
              f"{thr:.4f}: {kind} vs float decisions agree {100 * rep['decision_agreement']:.2f} % "
              f"({rep['n_disagree']} differ; {rep['n_within_1lsb_of_threshold']} within 1 LSB of the threshold), "
              f"accept rate float {100 * rep['accept_rate_float']:.2f} % / {kind} {100 * rep['accept_rate_int8']:.2f} "
              f"%, |Δlogit| mean {rep['mean_abs_dlogit']:.4f} max {rep['max_abs_dlogit']:.4f} "
              f"({rep['mean_abs_dlogit_lsb']:.2f} / {rep['max_abs_dlogit_lsb']:.2f} LSB)"
              + (f"; report: {args.out}" if args.out else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
