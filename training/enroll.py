"""Enroll a person: ``python -m training.enroll --user alice --image alice.jpg [--model FILE] [--force]``.

One photo → face detection and alignment → frozen backbone embedding e → θ = h_gen(e) → a user-store
entry (θ, arch hash, backbone and model ids, operating threshold, time). The entry is written
atomically; an existing user is only replaced with ``--force``.

Without ``--model`` the hypernetwork shipped in the repository is used (dlib-resnet backbone, dlib
detector: no shared data folder needed). ``--aligned`` takes an already aligned 112×112 crop (the
ArcFace layout), e.g. from the LFW crop cache, and skips detection.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from pvcore.cli import fail, setup_logging
from pvcore.user_store import UserMeta, UserStore, UserStoreError, check_user_id
from training.hypermodel import Enroller, Enrollment, HyperModel, HyperModelError


def enroll_image(user_id: str, image: np.ndarray | str | Path, model_path: str | Path | None = None,
                 store: UserStore | None = None, force: bool = False,
                 enroller: Enroller | None = None) -> tuple[UserMeta, Enrollment]:
    """Enroll ``user_id`` from an RGB uint8 image (or an image file). Raises FaceError, HyperModelError,
    UserStoreError (UserExists without ``force``) with a message fit for the user."""
    from training.face.pipeline import read_image_rgb

    check_user_id(user_id)
    store = store or UserStore()
    if store.exists(user_id) and not force:  # refuse before the costly part
        raise UserStoreError(f"user {user_id!r} already enrolled at {store.path(user_id)}; pass --force to replace it")
    enroller = enroller or Enroller(HyperModel.load(model_path))
    source = str(image) if isinstance(image, str | Path) else "<array>"
    rgb = read_image_rgb(image) if isinstance(image, str | Path) else image
    res = enroller.from_image(rgb)
    m = enroller.model
    meta = store.save(user_id, res.theta, backbone=m.backbone, hypermodel_id=m.model_id, threshold=m.threshold,
                      source_image=source, force=force, crop=res.arcface112)
    return meta, res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.enroll", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--user", required=True, help="user id (letters, digits, _ and -)")
    ap.add_argument("--image", required=True, type=Path, help="a photo with one face")
    ap.add_argument("--model", type=Path, default=None, help="hypermodel file (default: the shipped one)")
    ap.add_argument("--users", type=Path, default=None, help="user-store folder (default: $FACEVERIF_USERS or ./users)")
    ap.add_argument("--force", action="store_true", help="replace an existing user")
    ap.add_argument("--json", action="store_true", help="print the entry as JSON")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    setup_logging(args.verbose)
    from training.face.errors import FaceError

    if not args.image.is_file():
        fail(f"image not found: {args.image}")
    try:
        meta, res = enroll_image(args.user, args.image, args.model, UserStore(args.users), args.force)
    except (FaceError, HyperModelError, UserStoreError) as e:
        fail(str(e))
    if args.json:
        print(json.dumps({**asdict(meta), "timings_ms": res.timings_ms}, indent=2))
    else:
        t = ", ".join(f"{k} {v:.1f} ms" for k, v in res.timings_ms.items())
        print(f"enrolled {meta.user_id!r}: θ {meta.theta_size} values, arch {meta.arch} ({meta.arch_hash}), "
              f"backbone {meta.backbone}, model {meta.hypermodel_id}, threshold {meta.threshold:+.3f} ({t})",
              file=sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
