"""``python -m codegen.bench``: emission time per user (quantize, blob, C header, .tflite, TFLM arena probe,
project rendering, total), printed and written as JSON.

    python -m codegen.bench [--users ROOT] [--user alice ...] [--target esp32] [--out runs/bench/codegen.json] [--json]
    python -m codegen.bench --random 3      # no enrolled users yet: 3 random θ in a temporary store

Each user is emitted into a temporary folder (removed afterwards), exactly as ``codegen.emit`` does.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pvcore.atomic import atomic_write_json
from pvcore.cli import add_target_arg, add_user_store_args, fail, setup_logging
from pvcore.paths import REPO_ROOT

log = logging.getLogger(__name__)


def bench(users_root: Path, users: list[str], target: str | None, fmt: str = "all",
          activations: str | None = None) -> list[dict]:
    from codegen.emit import emit

    rows = []
    with tempfile.TemporaryDirectory(prefix="pv-bench-") as tmp:
        for u in users:
            res = emit(u, target, Path(tmp) / u, fmt, users_root=users_root, activations=activations)
            rows.append({"user": u, "target": target, "format": fmt, "activations": res.activations,
                         "seconds": {k: round(v, 4) for k, v in res.seconds.items()},
                         "bytes": sum(n for _, n in res.files), "n_files": len(res.files),
                         "theta_flash_bytes": res.theta_flash_bytes, "arena_bytes": res.arena_bytes,
                         "tflm_arena_bytes": res.tflm_arena_bytes})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m codegen.bench", description="Emission time per user (JSON).")
    add_user_store_args(ap)
    ap.add_argument("--user", action="append", help="user id (repeatable; default: every enrolled user)")
    add_target_arg(ap, default="esp32", allow_none=True,
                   help="firmware project to render (default esp32; none: the artifacts only)")
    ap.add_argument("--format", default="all", help="artifacts (default all)")
    ap.add_argument("--activations", choices=("int8", "int16"),
                    help="the θ emitted (codegen.emit --activations; default: the target's, esp32: int16)")
    ap.add_argument("--random", type=int, default=0, help="bench N random-θ users in a temporary store instead")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "bench" / "codegen.json",
                    help="JSON report (default runs/bench/codegen.json)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON (instead of the table)")
    args = ap.parse_args(argv)
    setup_logging(quiet=True)
    from codegen.emit import EmitError
    from pvcore.user_store import UserStore
    from training.verifier.functional import random_theta

    target = args.target
    with tempfile.TemporaryDirectory(prefix="pv-bench-users-") as tmp:
        if args.random:
            store = UserStore(Path(tmp))
            for i in range(args.random):
                store.save(f"random{i}", random_theta(i).numpy(), backbone="none", hypermodel_id="random-theta",
                           threshold=0.0)
        else:
            store = UserStore(args.users)
        users = args.user or store.list()
        if not users:
            fail(f"no users in {store.root}; enroll some (python -m training.enroll) or use --random N")
        try:
            rows = bench(store.root, users, target, args.format, args.activations)
        except EmitError as e:
            fail(str(e))
    for r in ([] if args.json else rows):
        s = r["seconds"]
        parts = "  ".join(f"{k[:-2]} {v:.3f}" for k, v in s.items() if k != "total_s")
        print(f"{r['user']:<16} total {s['total_s']:.3f} s  ({parts})  {r['n_files']} files, {r['bytes']:,} B")
    tot = np.array([r["seconds"]["total_s"] for r in rows])
    if not args.json:
        print(f"{len(rows)} users: mean {tot.mean():.3f} s, max {tot.max():.3f} s per user")
    report = {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
              "rows": rows, "mean_total_s": float(tot.mean()), "max_total_s": float(tot.max())}
    atomic_write_json(args.out, report)
    if args.json:
        print(json.dumps(report, indent=2))
    print(f"wrote {args.out}", file=sys.stderr if args.json else sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
