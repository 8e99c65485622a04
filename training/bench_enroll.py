"""Enrollment latency: ``python -m training.bench_enroll [--model FILE] [--backbones ...]``.

What the issue measures: an already aligned image → backbone embedding → θ = h_gen(e) → user-store
entry on disk (atomic write), one image at a time, as a user enrolls. Detection and alignment are
timed separately (they depend on the photo's size, not on the model). For each backbone the h_gen is
the given trained model when its backbone matches, else a freshly initialised h_gen of the same size
(latency does not depend on the weights' values). Median and p90 of ``--repeats`` runs; JSON out.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pvcore.atomic import atomic_write_json
from pvcore.cli import setup_logging
from pvcore.paths import REPO_ROOT
from pvcore.spec import F_SPEC
from pvcore.user_store import UserStore
from training.backbones import backbone_info, load_backbone
from training.backbones.base import ARCFACE112
from training.hypermodel import DEFAULT_MODEL, Generator, HyperModel
from training.verifier.hypernet import HGen, HGenConfig


def sample_face() -> tuple[np.ndarray, np.ndarray]:
    """Aligned crops (ArcFace 112, dlib 150) of scikit-image's astronaut, via the real pipeline."""
    from skimage import data

    from training.face.pipeline import FacePipeline

    f = FacePipeline("dlib").process(data.astronaut())
    return f.arcface112, f.dlib150


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.bench_enroll", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL if DEFAULT_MODEL.is_file() else None)
    ap.add_argument("--backbones", nargs="+", default=["mobilefacenet-y1", "dlib-resnet"])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (a host enrolls one image at a time)")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "bench" / "enroll.json")
    args = ap.parse_args(argv)
    setup_logging()
    torch.set_num_threads(args.threads)
    trained = HyperModel.load(args.model) if args.model else None
    a112, d150 = sample_face()
    res: dict = {"threads": args.threads, "repeats": args.repeats, "model": str(args.model), "backbones": {}}
    for name in args.backbones:
        info = backbone_info(name)
        try:
            backbone = load_backbone(name)
        except Exception as e:  # noqa: BLE001 - e.g. shared weights missing: report, go on
            print(f"{name}: skipped ({e})")
            res["backbones"][name] = {"skipped": str(e)}
            continue
        if trained is not None and trained.backbone == name:
            gen, which = trained.generator, f"trained {trained.model_id}"
        else:
            cfg = trained.meta["config"] if trained else {"hgen_hidden": 512, "hgen_rank": 160,
                                                          "personal_from": "b5_dw"}
            hg = HGen(HGenConfig(info.embedding_dim, int(cfg["hgen_hidden"]), int(cfg["hgen_rank"]),
                                 personal_from=str(cfg.get("personal_from", ""))), F_SPEC)
            gen, which = Generator(hg, torch.zeros(info.embedding_dim), torch.ones(info.embedding_dim)).eval(), \
                "untrained, same size"
        crop = a112 if info.input_kind == ARCFACE112 else d150
        times: dict[str, list[float]] = {"backbone": [], "h_gen": [], "store": [], "total": []}
        with tempfile.TemporaryDirectory() as d:
            store = UserStore(Path(d))
            for i in range(args.repeats + 2):
                t0 = time.perf_counter()
                e = backbone.embed(crop[None])
                t1 = time.perf_counter()
                with torch.no_grad():
                    theta = gen(torch.from_numpy(e)).numpy()[0]
                t2 = time.perf_counter()
                store.save("bench", theta, backbone=name, hypermodel_id="bench", threshold=0.0, force=True, crop=a112)
                t3 = time.perf_counter()
                if i >= 2:  # two warm-up runs
                    for k, v in zip(times, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
                        v_ms = v * 1e3
                        times[k].append(v_ms)
        row = {"h_gen": which, **{f"{k}_ms_median": round(statistics.median(v), 2) for k, v in times.items()},
               "total_ms_p90": round(float(np.percentile(times["total"], 90)), 2)}
        res["backbones"][name] = row
        print(f"enroll [{name:16}] total {row['total_ms_median']:7.1f} ms median (p90 {row['total_ms_p90']:.1f}): "
              f"backbone {row['backbone_ms_median']:.1f}, h_gen {row['h_gen_ms_median']:.1f}, "
              f"store {row['store_ms_median']:.1f} ms  [h_gen {which}]")
    atomic_write_json(args.out, res)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
