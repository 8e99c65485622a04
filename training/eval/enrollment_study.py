"""How enrollment choices change the deployed decision: ``python -m training.eval.enrollment_study --model M``.

The protocol (people never trained on): the people of the model's held-out LFW fold with at least
``MIN_IMAGES`` photos are enrolled from their first k photos (k in ``--photos``, e.g. 1, 3, 5; each photo
with ``--enroll-views`` augmented views, ``training.hypermodel.enrollment_views``). Every enrolled f scores, one way
as the board does, the SAME probes for every k: the person's photos from number ``MIN_IMAGES`` on
(genuine) and every photo of the fold's other people (impostors). Reported per setting, pooled over the
enrolled people: AUC, TAR at FAR 1e-2 and 1e-3, and FAR / FRR at the hypermodel's global threshold and at
each user's own threshold for ``--far`` (``training.calibration`` on the calibration half of the model's
cohort file, the rate kept on each of its sources: LFW (and CFP) people outside folds 0 and 1 and outside the
refinement cohort, people the model was
trained on — their impostor scores may be lower than unseen people's, so the cohort-calibrated FAR on unseen
people is the figure to read, not the target).

θ as ``training.enroll`` makes it: refined at enrollment against the model's refinement cohort
(``training.refine``), or h's θ with ``--no-refine``. f is scored through its pooled features (f after the
pool is linear: exact, and the probes' prefix runs once).

Float f: the board's 16x8 decisions equal the float ones on all but a fraction of a percent of faces
(docs/results.md, "Device decisions vs float f").
Writes ``report.json`` and ``report.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from pvcore.atomic import atomic_write_bytes, atomic_write_json
from pvcore.cli import fail, setup_logging
from pvcore.paths import REPO_ROOT, SharedDataMissing

MIN_IMAGES = 6  # enrollment photos come from the first 5, probes from the 6th on: the same probes for every k


def _roc_points(genuine: np.ndarray, impostor: np.ndarray) -> dict:
    from sklearn.metrics import roc_auc_score, roc_curve

    y = np.r_[np.ones(len(genuine)), np.zeros(len(impostor))]
    s = np.r_[genuine, impostor]
    fpr, tpr, _ = roc_curve(y, s)
    tar = {f"tar_at_far_{f:g}": float(np.interp(f, fpr, tpr)) for f in (1e-2, 1e-3)}
    return {"auc": float(roc_auc_score(y, s)), **tar}


def run_study(model_path: Path | None, photos: list[int], views: list[int], far: float, cohort_size: int,
              progress: bool = True, refine: bool = True) -> dict:
    import torch

    from training import calibration
    from training import refine as rf
    from training.backbones import backbone_info, load_backbone
    from training.backbones.base import ARCFACE112
    from training.backbones.embedding_cache import EmbeddingCache
    from training.data import lfw
    from training.face.cache import lfw_cache
    from training.hypermodel import HyperModel, enrollment_views, mean_embedding

    m = HyperModel.load(model_path)
    fold = int(m.meta["config"]["fold"])
    if fold not in rf.COHORT_EXCLUDED_FOLDS:
        raise ValueError(f"the model's cohort holds LFW people of fold {fold}, this model's held-out fold")
    cohort = rf.load_cohort(m)
    if cohort.calib_feats is None:
        raise ValueError("the model's cohort file has no calibration half: python -m training.refine --build-cohort")
    fold_people = set(lfw.load_people_folds()[fold])
    paths = lfw.all_images()
    cache = lfw_cache(m.detector)
    idx_by_person: dict[str, list[int]] = {}
    for i, p in enumerate(paths):
        if lfw.identity_of(p) in fold_people:
            idx_by_person.setdefault(lfw.identity_of(p), []).append(i)
    all_idx = np.array(sorted(i for v in idx_by_person.values() for i in v), np.int64)
    cache.ensure(all_idx)
    ok = set(np.flatnonzero(cache.status > 0).tolist())
    idx_by_person = {k: [i for i in v if i in ok] for k, v in idx_by_person.items()}
    enrolled = sorted(k for k, v in idx_by_person.items() if len(v) >= MIN_IMAGES)
    probe_idx = np.array(sorted(i for v in idx_by_person.values() for i in v), np.int64)
    probe_owner = np.array([lfw.identity_of(paths[i]) for i in probe_idx])
    probe_pos = {int(i): j for j, i in enumerate(probe_idx)}
    crops112 = np.ascontiguousarray(cache.crops(ARCFACE112)[probe_idx])
    kind = backbone_info(m.backbone).input_kind
    emb_cache = EmbeddingCache(load_backbone(m.backbone))
    calib, calib_group = cohort.calibration_subset(cohort_size)
    calib = calib.astype(np.float64)
    feats = rf.pooled_features(m.theta(m.generator.emb_mean.numpy()[None])[0], crops112).astype(np.float64)
    n_probe = len(crops112)

    results = []
    for v in views:
        for k in photos:
            t0 = time.perf_counter()
            thetas = []
            for person in enrolled:
                first = np.array(idx_by_person[person][:k])
                src = cache.crops(kind)[first]
                emb = mean_embedding(emb_cache.embed(np.concatenate([enrollment_views(c, v) for c in src]),
                                                     progress=False))
                theta = m.theta(emb[None])[0]
                if refine:
                    theta, _ = rf.refine_enrollment(m, theta, cache.crops(ARCFACE112)[first], emb, cohort)
                thetas.append(theta)
            w, b = (t.detach().numpy().astype(np.float64) for t in rf.linear_tail(torch.from_numpy(np.stack(thetas))))
            lg = w @ np.concatenate([feats, calib]).T + b[:, None]  # (users, probes + calibration cohort)
            genuine, impostor, g_user, i_user = [], [], [], []
            for u, person in enumerate(enrolled):
                gen_cols = [probe_pos[i] for i in idx_by_person[person][MIN_IMAGES - 1:]]
                imp_cols = np.flatnonzero(probe_owner != person)
                genuine.append(lg[u, gen_cols])
                impostor.append(lg[u, imp_cols])
                g_user.append(np.full(len(gen_cols), u))
                i_user.append(np.full(len(imp_cols), u))
            g, i_ = np.concatenate(genuine), np.concatenate(impostor)
            gu, iu = np.concatenate(g_user), np.concatenate(i_user)
            user_thr = np.array([calibration.threshold_for_far_groups(lg[u, n_probe:], far, m.threshold, calib_group)[0]
                                 for u in range(len(enrolled))])
            row = {"photos": k, "views": v, "users": len(enrolled), "genuine": int(len(g)), "impostor": int(len(i_)),
                   **_roc_points(g, i_),
                   "global_threshold": m.threshold,
                   "far_global": float((i_ >= m.threshold).mean()), "frr_global": float((g < m.threshold).mean()),
                   "far_target": far,
                   "far_calibrated": float((i_ >= user_thr[iu]).mean()),
                   "frr_calibrated": float((g < user_thr[gu]).mean()),
                   "user_threshold_median": float(np.median(user_thr)),
                   "seconds": round(time.perf_counter() - t0, 1)}
            results.append(row)
            print(f"views {v} photos {k}: AUC {row['auc']:.4f}, TAR@1e-2 {100 * row['tar_at_far_0.01']:.1f} %, "
                  f"TAR@1e-3 {100 * row['tar_at_far_0.001']:.1f} %, global thr: FAR {100 * row['far_global']:.2f} % "
                  f"FRR {100 * row['frr_global']:.1f} %; own thr (FAR {far:g}): "
                  f"FAR {100 * row['far_calibrated']:.2f} % FRR {100 * row['frr_calibrated']:.1f} %", flush=True)
    return {"model": str(m.path), "model_id": m.model_id, "fold": fold, "enrolled_people": len(enrolled),
            "probes": int(n_probe), "cohort": f"{len(calib)} faces of the model's calibration cohort "
            f"({cohort.calib_source})", "refined": refine,
            "refinement": f"training.refine against {cohort.source}" if refine else "none (h's θ)",
            "results": results}


def render_markdown(rep: dict) -> str:
    lines = [f"# Enrollment study: model {rep['model_id']}, LFW fold {rep['fold']} (people never trained on)", "",
             f"{rep['enrolled_people']} people enrolled, {rep['probes']} probe photos; θ refinement: "
             f"{rep.get('refinement', 'none')}; threshold cohort: {rep['cohort']}.", "",
             "| photos | views | AUC | TAR@FAR 1e-2 | TAR@FAR 1e-3 | FAR / FRR, global threshold | "
             "FAR / FRR, own threshold (target FAR) |",
             "|---|---|---|---|---|---|---|"]
    for r in rep["results"]:
        lines.append(f"| {r['photos']} | {r['views']} | {r['auc']:.4f} | {100 * r['tar_at_far_0.01']:.1f} % | "
                     f"{100 * r['tar_at_far_0.001']:.1f} % | "
                     f"{100 * r['far_global']:.2f} % / {100 * r['frr_global']:.1f} % | "
                     f"{100 * r['far_calibrated']:.2f} % / {100 * r['frr_calibrated']:.1f} % ({r['far_target']:g}) |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.eval.enrollment_study", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None, help="hypermodel file (default: the shipped one)")
    ap.add_argument("--photos", default="1,3,5", help="enrollment photos per person, comma-separated (≤ 5)")
    ap.add_argument("--enroll-views", default="1", help="enrollment views per photo, comma-separated (1–4)")
    ap.add_argument("--far", type=float, default=1e-2, help="target false-accept rate of the users' own thresholds")
    ap.add_argument("--cohort-size", type=int, default=3000, help="faces of the calibration cohort (≤ 3000)")
    ap.add_argument("--no-refine", dest="refine", action="store_false", help="h's θ, not refined at enrollment")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "enroll_study", help="report folder")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    setup_logging(args.verbose)
    try:
        photos = [int(p) for p in args.photos.split(",")]
        views = [int(v) for v in args.enroll_views.split(",")]
    except ValueError:
        fail(f"--photos and --enroll-views take comma-separated integers, got {args.photos!r} / {args.enroll_views!r}")
    if not all(1 <= p < MIN_IMAGES for p in photos) or not all(1 <= v <= 4 for v in views):
        fail(f"--photos must be in 1..{MIN_IMAGES - 1} and --enroll-views in 1..4")
    from training.refine import NoCohort

    try:
        rep = run_study(args.model, photos, views, args.far, args.cohort_size, refine=args.refine)
    except (SharedDataMissing, FileNotFoundError, ValueError, NoCohort) as e:
        fail(str(e))
    atomic_write_json(args.out / "report.json", rep)
    atomic_write_bytes(args.out / "report.md", render_markdown(rep).encode())
    if args.json:
        print(json.dumps(rep, indent=2))
    print(f"report in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
