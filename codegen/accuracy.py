"""``python -m codegen.accuracy``: how much int8 costs — the int8 model (the golden model, i.e. what every
device computes bit for bit) against the float f of a stored user, on aligned faces.

    python -m codegen.accuracy --user alice --dataset lfw --limit 1000 [--json FILE]

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
import sys
import time
from pathlib import Path

import numpy as np

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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m codegen.accuracy",
                                 description="Decision agreement and |Δlogit| of a user's int8 f vs the float f.")
    ap.add_argument("--user", required=True, help="user id in the user store")
    ap.add_argument("--users", type=Path, help="user store root (default: $FACEVERIF_USERS or ./users)")
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
    ap.add_argument("--json", type=Path, help="also write the report here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from codegen.faces import load_crops
    from training.paths import SharedDataMissing
    from training.user_store import UserStore, UserStoreError

    store = UserStore(args.users)
    try:
        theta, meta = store.load(args.user)
        crop = store.load_crop(args.user) if hasattr(store, "load_crop") else None
    except UserStoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        imgs, _ = load_crops(args.dataset, args.limit)
    except (ValueError, FileNotFoundError, SharedDataMissing) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    thr = meta.threshold if args.threshold is None else args.threshold
    rep = {"user": args.user, "dataset": args.dataset, "hypermodel_id": meta.hypermodel_id,
           **measure(theta, imgs, thr, crop, args.views, args.activations),
           "seconds": round(time.perf_counter() - t0, 1)}
    text = json.dumps(rep, indent=2)
    print(text)
    if args.json:
        from training.atomic import atomic_write_bytes

        atomic_write_bytes(args.json, (text + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
