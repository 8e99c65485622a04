"""Check a probe photo against an enrolled user: ``python -m training.verify --user alice --image probe.jpg``.

Runs what the device runs, in float: the probe is detected and aligned (the same detector the user's
hypermodel was trained with), then f(probe; θ_alice). Prints the logit, the score σ(logit) and the
decision (logit ≥ the user's threshold). Exit status (``pvcore.cli``) 0 for "match", 3 for "no match" (the
check failed), 1 for errors, 2 for a wrong command line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from pvcore.cli import EXIT_CHECK_FAILED, EXIT_OK, add_user_store_args, fail, setup_logging
from pvcore.user_store import UserStore, UserStoreError
from training.verifier.functional import f_apply, to_input

NO_MATCH_EXIT = EXIT_CHECK_FAILED


def verify_aligned(theta: np.ndarray, crops112: np.ndarray) -> np.ndarray:
    """f(x; θ) for (N, 112, 112, 3) uint8 aligned crops → (N,) float logits."""
    with torch.no_grad():
        return f_apply(to_input(np.ascontiguousarray(crops112)), torch.from_numpy(theta)).numpy()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.verify", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--user", required=True)
    ap.add_argument("--image", required=True, type=Path, help="probe photo with one face")
    add_user_store_args(ap)
    ap.add_argument("--detector", default=None, choices=["dlib", "retinaface"],
                    help="face detector (default: the one the user's hypermodel was trained with)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    setup_logging(args.verbose)
    from training.face.errors import FaceError
    from training.face.pipeline import FacePipeline

    if not args.image.is_file():
        fail(f"image not found: {args.image}")
    try:
        theta, meta = UserStore(args.users).load(args.user)
    except UserStoreError as e:
        fail(str(e))
    detector = args.detector or ("retinaface" if meta.backbone in ("mobilefacenet-y1", "iresnet") else "dlib")
    try:
        face = FacePipeline(detector, multi_face="error").process_file(args.image)
    except FaceError as e:
        fail(str(e))
    logit = float(verify_aligned(theta, face.arcface112[None])[0])
    match = logit >= meta.threshold
    res = {"user": args.user, "image": str(args.image), "logit": logit, "score": float(1 / (1 + np.exp(-logit))),
           "threshold": meta.threshold, "match": bool(match)}
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"{args.user}: logit {logit:+.3f} (score {res['score']:.3f}, threshold {meta.threshold:+.3f}) → "
              f"{'MATCH' if match else 'no match'}")
    return EXIT_OK if match else NO_MATCH_EXIT


if __name__ == "__main__":
    raise SystemExit(main())
