"""Throughput of the face pipeline and the backbones on this CPU: ``python -m training.bench``.

Measures images/s for detection + landmarks + alignment (each detector, single process, on real LFW
images) and for each backbone's embedding (batched, on aligned crops from the cache, or on crops this
run aligns). Prints a table and writes JSON (default ``runs/bench/face_pipeline.json``).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from pvcore.atomic import atomic_write_json
from pvcore.cli import fail, setup_logging
from pvcore.paths import REPO_ROOT, SharedDataMissing
from training.backbones import backbone_info, load_backbone


def _rate(fn, n_items: int, repeats: int = 1) -> float:
    fn()  # warm-up (model loading, first-call allocations)
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return n_items * repeats / (time.perf_counter() - t)


def _try_process(pipe, image: np.ndarray):
    from training.face.errors import FaceError

    try:
        return pipe.process(image)
    except FaceError:  # a miss costs the same detector time; the benchmark measures throughput
        return None


def bench_pipeline(detector: str, images: list[np.ndarray]) -> float:
    from training.face.pipeline import FacePipeline

    pipe = FacePipeline(detector=detector, multi_face="center")
    return _rate(lambda: [_try_process(pipe, im) for im in images], len(images))


def bench_backbone(name: str, crops: dict[str, np.ndarray], batch: int) -> float:
    backbone = load_backbone(name)
    x = crops[backbone_info(name).input_kind][:batch]
    return _rate(lambda: backbone.embed(x), len(x), repeats=2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100, help="LFW images for the detection benchmark")
    ap.add_argument("--batch", type=int, default=128, help="crops per backbone batch")
    ap.add_argument("--backbones", nargs="+", default=["dlib-resnet", "mobilefacenet-y1"])
    ap.add_argument("--detectors", nargs="+", default=["dlib", "retinaface"])
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "bench" / "face_pipeline.json")
    args = ap.parse_args(argv)
    setup_logging()

    from training.data import lfw
    from training.face.pipeline import FacePipeline, read_image_rgb

    try:
        root = lfw.lfw_root()
        paths = lfw.all_images()[:: max(1, 13233 // args.images)][: args.images]
    except SharedDataMissing as e:
        fail(str(e))
    images = [read_image_rgb(root / p) for p in paths]
    result: dict = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "images": len(images), "detection_img_per_s": {}, "backbone_img_per_s": {}}
    for det in args.detectors:
        result["detection_img_per_s"][det] = round(bench_pipeline(det, images), 1)
        print(f"detect+landmarks+align [{det:10}] {result['detection_img_per_s'][det]:8.1f} img/s (1 process)")
    pipe = FacePipeline(multi_face="center")
    faces = [f for f in (_try_process(pipe, im) for im in images) if f is not None]
    reps = int(np.ceil(args.batch / len(faces)))
    crops = {"arcface112": np.stack([f.arcface112 for f in faces] * reps)[: args.batch],
             "dlib150": np.stack([f.dlib150 for f in faces] * reps)[: args.batch]}
    for name in args.backbones:
        result["backbone_img_per_s"][name] = round(bench_backbone(name, crops, args.batch), 1)
        print(f"embed [{name:16}] {result['backbone_img_per_s'][name]:8.1f} img/s (batch {args.batch})")
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
