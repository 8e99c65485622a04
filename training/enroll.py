"""Enroll a person: ``python -m training.enroll --user alice --image a.jpg [--image b.jpg …] [--far 1e-2]``.

Photos → face detection and alignment (the model's detector; a face it misses goes to YuNet) → frozen
backbone embeddings of each photo and of ``--enroll-views`` augmented views of it → their mean e → θ = h_gen(e)
→ a user-store entry (θ, arch hash, backbone and model ids, operating threshold, time). The entry is
written atomically; an existing user is only replaced with ``--force``.

θ is then refined (``training.refine``; ``--no-refine`` keeps h's θ): h's tail averaged with a teacher-map
head, then a short logistic regression of the tail on views of the photos against an impostor cohort (LFW
fold 1, the validation fold: one-way accuracy 88.3 → 91.3 %, AUC 0.940 → 0.963;
docs/research/verifier_experiments_2026-12.md). The cohort is the model's cohort file: ``--cohort-file``, the
cache (``.cache/cohort/<model id>.npz``), or built there from the shared data folder (minutes, once); without
them (a machine without the shared data) a cohort drawn from the statistics the model file carries
(``training.export_model --cohort-stats``; the shipped model has them), and for a model without those θ stays h's
and the tool says so.

The threshold: the user's own, set by scoring the user's f on an impostor cohort so that a share F of
strangers would be accepted (``--far F``, default ``training.calibration.DEFAULT_FAR`` = 0.05, the shipped
operating point), or with ``--far 0`` the hypermodel's global threshold (``training.calibration``). The
default cohort (``--cohort model``) is the calibration half of the model's cohort file: other people than
those θ was refined against, so the promised rate is measured on strangers θ has not seen; ``--cohort lfw``
takes LFW's aligned faces from the shared data folder, ``--cohort FOLDER`` an image folder. Without any cohort
the global threshold is kept and the tool says so.

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

from pvcore.cli import add_user_store_args, fail, setup_logging
from pvcore.user_store import UserMeta, UserStore, UserStoreError, check_user_id
from training import calibration
from training.hypermodel import Enroller, Enrollment, HyperModel, HyperModelError
from training.refine import add_refine_args


def enroll_image(user_id: str, image: np.ndarray | str | Path, model_path: str | Path | None = None,
                 store: UserStore | None = None, force: bool = False,
                 enroller: Enroller | None = None) -> tuple[UserMeta, Enrollment]:
    """Enroll ``user_id`` from one RGB uint8 image (or an image file) at the shipped operating point. Raises
    FaceError, HyperModelError, UserStoreError (UserExists without ``force``) with a message fit for the user."""
    return enroll_images(user_id, [image], model_path, store, force, enroller=enroller)


def enroll_images(user_id: str, images: list[np.ndarray | str | Path], model_path: str | Path | None = None,
                  store: UserStore | None = None, force: bool = False, views: int = 1,
                  far: float | None = calibration.DEFAULT_FAR,
                  cohort: str = "model", cohort_size: int = 3000,
                  enroller: Enroller | None = None, refine: bool = True,
                  cohort_file: str | Path | None = None) -> tuple[UserMeta, Enrollment]:
    """Enroll ``user_id`` from several photos (RGB uint8 arrays or files) and ``views`` views of each; with
    ``far``, the user's threshold from the cohort (``"model"``: the model's cohort file, ``"lfw"``, an image
    folder, or ``"none"``: global; ``far`` None: the global threshold); ``refine``: θ refined at enrollment
    (:func:`refined_theta`; before the threshold is calibrated)."""
    from training.face.pipeline import read_image_rgb

    far = far or None  # 0: the global threshold, as on the command line
    check_user_id(user_id)
    store = store or UserStore()
    if store.exists(user_id) and not force:  # refuse before the costly part
        raise UserStoreError(f"user {user_id!r} already enrolled at {store.path(user_id)}; pass --force to replace it")
    enroller = enroller or Enroller(HyperModel.load(model_path))
    rgbs = [read_image_rgb(im) if isinstance(im, str | Path) else im for im in images]
    res = enroller.from_images(rgbs, views)
    m = enroller.model
    threshold, calibration = m.threshold, {"method": "global"}
    refinement = None
    model_cohort = None
    if refine or (far is not None and cohort == "model"):
        model_cohort = load_model_cohort(m, cohort_file)
    if refine:
        res.theta, refinement = refined_theta(res, m, model_cohort)
    if far is not None:
        cal = user_calibration(res.theta, far, m, cohort, cohort_size, exclude=user_id,
                               model_cohort=model_cohort)
        if cal is not None:
            threshold, calibration = cal.threshold, cal.to_dict()
    source = ",".join(str(im) if isinstance(im, str | Path) else "<array>" for im in images)
    meta = store.save(user_id, res.theta, backbone=m.backbone, hypermodel_id=m.model_id, threshold=threshold,
                      source_image=source, force=force, crop=res.arcface112, n_photos=len(images),
                      calibration=calibration if refinement is None else {**calibration, "refine": refinement})
    return meta, res


def load_model_cohort(model: HyperModel, cohort_file: str | Path | None = None):
    """The model's cohort (``training.refine.load_cohort``), or the reason why there is none (a string)."""
    from training import refine

    try:
        return refine.load_cohort(model, cohort_file)
    except (refine.NoCohort, OSError, ValueError, KeyError) as e:
        return str(e)


def refined_theta(res: Enrollment, model: HyperModel, cohort) -> tuple[np.ndarray, dict]:
    """(θ, record): θ refined at enrollment (``training.refine.refine_enrollment``) against ``cohort`` (a
    ``training.refine.Cohort``), or h's θ unchanged with ``{"skipped": why}`` when ``cohort`` is the reason
    why there is none (a warning says so)."""
    import logging

    from training import refine

    if isinstance(cohort, str):
        logging.getLogger(__name__).warning("θ not refined, h's θ kept: %s", cohort)
        return res.theta, {"skipped": cohort}
    crops = res.crops if res.crops is not None else res.arcface112[None]
    return refine.refine_enrollment(model, res.theta, crops, res.embedding, cohort)


def user_calibration(theta: np.ndarray, far: float, model: HyperModel, cohort: str, size: int,
                     exclude: str = "", model_cohort=None):
    """The cohort calibration of one θ (``training.calibration``), or None when no cohort is at hand.
    ``cohort`` "model": the calibration half of ``model_cohort`` (a ``training.refine.Cohort``, or the reason
    why there is none; loaded here when not given)."""
    import logging

    from pvcore.paths import SharedDataMissing

    log = logging.getLogger(__name__)
    if cohort == "none":
        return None
    if cohort == "model":
        mc = model_cohort if model_cohort is not None else load_model_cohort(model)
        if isinstance(mc, str) or mc.calib_feats is None:
            why = mc if isinstance(mc, str) else "the model's cohort file has no calibration half"
            log.warning("no impostor cohort (%s): keeping the global threshold %+.3f", why, model.threshold)
            return None
        feats, group = mc.calibration_subset(size)
        return calibration.calibrate_features(theta, feats, far, model.threshold, mc.calib_source, group,
                                              mc.calib_group_names)
    try:
        if cohort == "lfw":
            crops = calibration.lfw_cohort(model.detector, size, exclude_people={exclude})
        else:
            from training.face.cache import folder_cache

            cache = folder_cache(cohort, model.detector)
            cache.ensure()
            crops = np.ascontiguousarray(cache.crops()[np.flatnonzero(cache.status > 0)[:size]])
    except SharedDataMissing as e:
        log.warning("no impostor cohort (%s): keeping the global threshold %+.3f", e, model.threshold)
        return None
    if len(crops) == 0:
        raise UserStoreError(f"the cohort {cohort!r} holds no aligned face")
    return calibration.calibrate(theta, crops, far, model.threshold, cohort)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.enroll", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--user", required=True, help="user id (letters, digits, _ and -)")
    ap.add_argument("--image", required=True, type=Path, action="append",
                    help="a photo with one face; repeat for several photos of the person (their mean enrolls)")
    ap.add_argument("--enroll-views", type=int, default=1, choices=range(1, 5), metavar="{1..4}",
                    help="views of each photo: 1 the photo, 2 + its mirror, 3 + grayscale, 4 + grayscale mirror")
    ap.add_argument("--far", type=float, default=calibration.DEFAULT_FAR,
                    help="the user's own threshold for this false-accept rate (e.g. 1e-2), from an impostor "
                         f"cohort (default {calibration.DEFAULT_FAR:g}, the shipped operating point; without a "
                         "cohort at hand, and with 0, the hypermodel's global threshold)")
    ap.add_argument("--cohort", default="model",
                    help="impostor cohort for --far: 'model' (the calibration half of the model's cohort file; "
                         "default), 'lfw' (the shared folder's LFW), an image folder "
                         "(one sub-folder per person), or 'none'")
    ap.add_argument("--cohort-size", type=int, default=3000, help="faces of the cohort to score (default 3000)")
    add_refine_args(ap)
    ap.add_argument("--model", type=Path, default=None, help="hypermodel file (default: the shipped one)")
    add_user_store_args(ap)
    ap.add_argument("--force", action="store_true", help="replace an existing user")
    ap.add_argument("--json", action="store_true", help="print the entry as JSON")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    setup_logging(args.verbose)
    from training.face.errors import FaceError

    for image in args.image:
        if not image.is_file():
            fail(f"image not found: {image}")
    if not 0.0 <= args.far < 1.0:
        fail(f"--far must be a rate in [0, 1) (0: the global threshold), e.g. 1e-2; got {args.far}")
    try:
        meta, res = enroll_images(args.user, args.image, args.model, UserStore(args.users), args.force,
                                  args.enroll_views, args.far, args.cohort, args.cohort_size,
                                  refine=args.refine, cohort_file=args.cohort_file)
    except (FaceError, HyperModelError, UserStoreError) as e:
        fail(str(e))
    if args.json:
        print(json.dumps({**asdict(meta), "timings_ms": res.timings_ms}, indent=2))
    else:
        t = ", ".join(f"{k} {v:.1f} ms" for k, v in res.timings_ms.items())
        print(f"enrolled {meta.user_id!r}: θ {meta.theta_size} values, arch {meta.arch} ({meta.arch_hash}), "
              f"backbone {meta.backbone}, model {meta.hypermodel_id}, {meta.n_photos} photo(s), "
              f"threshold {meta.threshold:+.3f} ({threshold_origin(meta)}) ({t})",
              file=sys.stdout)
        ref = (meta.calibration or {}).get("refine")
        if ref is not None:
            print("θ not refined (h's θ kept): " + ref["skipped"] if "skipped" in ref else
                  f"θ refined in {ref['seconds']:.2f} s on {ref['positives']} views against {ref['cohort_size']} "
                  f"cohort faces: mean margin of the views {ref['pos_margin_h']:+.2f} → {ref['pos_margin']:+.2f}, "
                  f"of the cohort {ref['neg_margin_h']:+.2f} → {ref['neg_margin']:+.2f}")
    return 0


def threshold_origin(meta: UserMeta) -> str:
    """How the entry's threshold was set, in words (for reports)."""
    cal = meta.calibration or {"method": "global"}
    if cal.get("far_target") is None:
        return "the model's global threshold"
    how = "the global threshold was stricter" if cal["method"] == "global" else cal["method"]
    if cal.get("group"):  # a cohort of several sources: the rate is kept on each, the strictest decides
        how += f"; kept on each source, {cal['group']}'s the strictest"
    return (f"for FAR {cal['far_target']:g} on {cal['cohort_size']} {cal['cohort']} cohort faces: "
            f"{100 * cal['cohort_far']:.2f} % accepted; {how}")


if __name__ == "__main__":
    raise SystemExit(main())
