"""Export a trained hypernetwork for shipping: ``python -m training.export_model RUN_DIR/model_final.pt OUT.pt``.

Keeps what enrollment needs (h_gen's weights, the embedding standardization, the config, the arch
hash, the operating threshold, the final held-out evaluation; with ``--cohort-stats`` the impostor cohort's
statistics for machines without the cohort file; with ``--center`` f's pooled features centred on the cohort,
which also turns a model made for spec v4 into a spec-v5 one, see training/centering.py) and stores the
weights in float16, which halves the file (the repository ships ≤ 10 MB). θ computed from the float16
weights differs from the float32 one by ~1e-3 relative; every θ is generated from the exported file, so
training-time and shipped behaviour are measured separately (the export prints the held-out accuracy of both).
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import torch

from pvcore.atomic import atomic_write
from pvcore.cli import fail, setup_logging


def export(src: Path, dst: Path, cohort_stats: bool = False, center: bool = False) -> int:
    """Write ``dst`` from ``src``; with ``cohort_stats``, also the statistics of the model's impostor cohort
    (``training.refine.Cohort.stats``: each half's feature mean and covariance and the teacher map, 0.25 MB), so that
    enrollment refines θ and sets the user's threshold on a machine without the cohort file. Needs the shared data
    folder then (the cohort is built from it). ``center``: the shared prefix's features centred on the cohort's
    refinement half (:func:`_center`; needs the shared folder too). Returns the file's size."""
    from pvcore.spec import F_SPEC
    from training.centering import V4_ARCH_HASH

    ck = torch.load(src, map_location="cpu", weights_only=False)
    if not isinstance(ck, dict) or "model" not in ck:
        raise ValueError(f"{src}: not a model_final.pt of training.train")
    if ck.get("direct_f"):
        raise ValueError(f"{src}: a directly trained f (ablation) is not a hypernetwork")
    if "optimizer" in ck:  # a training checkpoint (a run stopped before its end): keep what enrollment needs
        evals = ck.get("history", {}).get("evals", [])
        ck = {"model": ck["model"], "config": ck["config"], "arch": ck["arch"], "arch_hash": ck["arch_hash"],
              "embedding_dim": int(ck["model"]["emb_mean"].numel()), "direct_f": ck["config"].get("direct_f", False),
              # no one-way threshold was measured: the last evaluation's (symmetric-score) best threshold
              "threshold": float(evals[-1]["best_threshold"]) if evals else 0.0,
              "eval": evals[-1] if evals else None, "stopped_at_step": int(ck["next_step"])}
    # cohort statistics are recomputed or left out: inherited ones may describe another prefix's features
    out = {k: v for k, v in ck.items() if k not in ("model", "cohort_stats")}
    # the standardization buffers stay float32: they are tiny and the input scale matters
    out["model"] = {k: (v if "emb_" in k else v.half()) for k, v in ck["model"].items()}
    out["exported_from"] = str(src)
    if out.get("arch_hash") == V4_ARCH_HASH and F_SPEC.arch_hash() != V4_ARCH_HASH:
        if not center:
            raise ValueError(f"{src}: made for spec v4 (features not normalized): export it with --center")
        out["arch"], out["arch_hash"] = F_SPEC.name, F_SPEC.arch_hash()
    if center:
        _center(out)
    if cohort_stats:
        out["cohort_stats"] = _cohort_stats(out)
    buf = io.BytesIO()
    torch.save(out, buf)
    data = buf.getvalue()
    atomic_write(dst, lambda f: f.write(data))
    return len(data)


def _center(out: dict) -> None:
    """Fold the cohort's mean feature into the shared prefix of ``out`` (training.centering), record what was
    measured, and set the operating threshold again: the logits of a centred, normalized f are not the old
    ones. The threshold as training sets it (``Trainer._device_threshold``): the most accurate one for one-way
    scores on the config's validation pairs (its test pairs when it has none)."""
    from training.centering import centered
    from training.config import TrainConfig
    from training.hypermodel import HyperModel
    from training.refine import cohort_faces
    from training.train import build_data, device_threshold

    model = HyperModel.from_checkpoint(out, Path(out["exported_from"]), model_id="export")
    if model.generator.hgen.shared is None:
        raise ValueError("--center needs a model with a shared prefix (personal_from)")
    (_n, crops, *_), *_ = cohort_faces(model)[0]
    shared, info = centered(model.generator.hgen.shared, crops)
    out["model"]["hgen.shared"] = shared.half()
    out["feature_center"] = {**info, "on": "the impostor cohort's refinement half (training.refine.cohort_faces)"}
    cfg = TrainConfig.from_dict(out["config"], strict=False)
    data = build_data(cfg, progress=False)
    pairs = data[2] if len(data) > 2 and data[2] is not None else data[1]
    gen = HyperModel.from_checkpoint(out, Path(out["exported_from"]), model_id="export").generator
    with torch.no_grad():
        thr, acc = device_threshold(gen, pairs, cfg.chunk)
    out["threshold"] = thr
    out["feature_center"]["threshold_pairs"] = f"{pairs.name}: one-way accuracy {acc:.4f} at {thr:+.4f}"


def _cohort_stats(out: dict) -> dict:
    """``training.refine.build_cohort(model).stats()`` of the model ``out`` (the cohort's features depend on the
    weights only, not on the file's id)."""
    from training.hypermodel import HyperModel
    from training.refine import build_cohort

    return build_cohort(HyperModel.from_checkpoint(out, Path(out["exported_from"]), model_id="export")).stats()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.export_model", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path, help="model_final.pt written by training.train (or a checkpoints/last.pt)")
    ap.add_argument("dst", type=Path, help="output file (e.g. training/pretrained/hgen_dlib_lfw.pt)")
    ap.add_argument("--cohort-stats", action="store_true",
                    help="also store the impostor cohort's statistics (feature mean and covariance of each half, the "
                         "teacher map), so that enrollment refines θ and calibrates without the cohort file (needs the "
                         "shared data folder; the shipped model has them)")
    ap.add_argument("--center", action="store_true",
                    help="centre f's pooled features on the impostor cohort (the mean folded into gdc's bias) and set "
                         "the threshold again; turns a model made for spec v4 into a spec-v5 one (needs the shared "
                         "data folder)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    setup_logging(args.verbose)
    if not args.src.is_file():
        fail(f"not found: {args.src}")
    from pvcore.paths import SharedDataMissing

    try:
        n = export(args.src, args.dst, args.cohort_stats, args.center)
    except (ValueError, SharedDataMissing) as e:
        fail(str(e))
    print(f"wrote {args.dst}: {n / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
