"""Measures the serial link of a virtual board: frames/s, bytes/s each way, θ install and INFER times.

    python -m host_tools.link_bench --target cortex-m-qemu --out runs/link_bench_qemu.json   # --json: print it

Figures are wall-clock on this machine (the emulated UART's speed is QEMU's, not a real UART's); the
INFER tick count is the board's own (on QEMU with -icount shift=0: 40 instructions per tick).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

from host_tools.qemu import HostBoard, QemuBoard
from host_tools.serial_link import SerialLink
from pvcore.atomic import atomic_write_json
from pvcore.cli import add_target_arg, fail, setup_logging
from pvcore.test_key import sign_if_bare

log = logging.getLogger(__name__)


def measure(url: str, *, n: int, blob: bytes | None) -> dict[str, float]:
    res: dict[str, float] = {}
    with SerialLink(url, timeout=10.0, signer=sign_if_bare) as link:  # the template builds trust the test key
        info = link.info()
        size = info.max_payload - 2
        t0 = time.perf_counter()
        for _ in range(n):
            link.ping(0, 4)
        dt = time.perf_counter() - t0
        res["small_frames_per_s"] = n / dt
        t0 = time.perf_counter()
        for _ in range(n):
            link.ping(size, 4)
        dt = time.perf_counter() - t0
        res["host_to_device_frames_per_s"] = n / dt
        res["host_to_device_bytes_per_s"] = n * (size + 2) / dt
        t0 = time.perf_counter()
        for _ in range(n):
            link.ping(0, info.max_payload)
        dt = time.perf_counter() - t0
        res["device_to_host_frames_per_s"] = n / dt
        res["device_to_host_bytes_per_s"] = n * info.max_payload / dt
        if blob is not None:
            t0 = time.perf_counter()
            link.install_theta(blob)
            res["theta_install_s"] = time.perf_counter() - t0
            res["theta_bytes"] = len(blob)
            img = np.random.default_rng(0).integers(-128, 128, (112, 112, 3), dtype=np.int8)
            t0 = time.perf_counter()
            r = link.infer(img)
            res["infer_wall_s"] = time.perf_counter() - t0
            res["infer_ticks"] = r.ticks
            res["infer_ms_board_clock"] = r.ticks / info.tick_hz * 1e3
        res["retries"] = link.stats.retries
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m host_tools.link_bench", description=__doc__.split("\n")[0])
    add_target_arg(ap, families=("cortex-m-qemu", "host"), default="cortex-m-qemu",
                   help="the virtual board (default cortex-m-qemu)")
    ap.add_argument("--n", type=int, default=30, help="frames per measurement")
    ap.add_argument("--no-theta", action="store_true", help="skip the θ install and INFER figures")
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON (instead of key: value lines)")
    args = ap.parse_args(argv)
    setup_logging()
    blob = None
    if not args.no_theta:
        from codegen.quantize import quantize
        from pvcore.blob import pack_blob
        from pvcore.spec import F_SPEC

        qf = quantize(torch.randn(F_SPEC.theta_size, generator=torch.Generator().manual_seed(0)))
        blob = pack_blob(qf, "bench", 0.0)
    board = QemuBoard() if args.target == "cortex-m-qemu" else HostBoard()
    try:
        t0 = time.perf_counter()
        with board as url:
            figures = {"target": args.target, "boot_to_ready_s": time.perf_counter() - t0}
            figures.update(measure(url, n=args.n, blob=blob))
    except (RuntimeError, OSError) as e:
        fail(str(e))
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for k, v in figures.items():
            print(f"{k}: {v:.1f}" if isinstance(v, float) else f"{k}: {v}")
    if args.out:
        atomic_write_json(args.out, figures)
        print(f"wrote {args.out}", file=sys.stderr if args.json else sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
