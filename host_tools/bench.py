"""Benchmark a board over its serial link: per-inference board ticks (BENCH) and the link's throughput.

    python -m host_tools.bench --port socket://127.0.0.1:4321 --out runs/bench/qemu.json   # --json: print it
    python -m host_tools.bench --port /dev/ttyUSB0 --user alice      # installs alice's θ first

The board times its own inferences (BENCH reruns the last image n times, from a tick edge). Ticks are
the board's clock (INFO ``tick_hz``). On QEMU (mps2-an386, or virt with the RV32IMC firmware, whose ticks
are minstret at a nominal 1 GHz) started with ``-icount shift=0`` (what ``host_tools.qemu`` does) one
instruction takes 1 ns of virtual time, so ticks × 10⁹ / tick_hz is an exact *instruction* count — not a
cycle count of a real core. On a real board, ticks are its timer's.

The link figures (``host_tools.link_bench.measure``) are wall-clock round trips of PING frames each way.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import serial

from codegen.golden import images_to_int8
from host_tools.enroll import EnrollError, UserBlob, blob_from_file, blob_from_store, enroll
from host_tools.link_bench import measure
from host_tools.serial_link import DeviceError, LinkError, SerialLink
from pvcore.atomic import atomic_write_json
from pvcore.blob import BlobError
from pvcore.cli import add_port_args, add_user_store_args, fail, setup_logging
from pvcore.spec import F_SPEC
from pvcore.user_store import UserStoreError

log = logging.getLogger(__name__)

QEMU_BOARDS = ("mps2386", "rv32virt")  # board names (INFO) whose ticks are instruction counts under -icount shift=0


def bench_image(path: Path | None) -> np.ndarray:
    """uint8 (112, 112, 3): the given aligned crop, else a package face (scikit-image's astronaut)."""
    if path is None:
        from codegen.quantize import package_faces

        return package_faces()[0]
    from training.face.pipeline import FacePipeline, read_image_rgb

    img = read_image_rgb(path)
    return img if img.shape == (112, 112, 3) else FacePipeline(multi_face="largest").process(img).arcface112


def run_bench(
    url: str,
    *,
    n: int = 20,
    link_n: int = 30,
    image_u8: np.ndarray | None = None,
    timeout: float = 5.0,
    baudrate: int = 115200,
    install: UserBlob | None = None,
) -> dict[str, object]:
    """Board ticks per inference and link throughput; ``install``: a UserBlob to enroll first."""
    img = images_to_int8(bench_image(None) if image_u8 is None else image_u8)
    res: dict[str, object] = {"port": url}
    with SerialLink(url, baudrate=baudrate, timeout=timeout) as link:
        info = link.info()
        res.update(board=info.board, firmware=info.fw_version, arch_hash=info.arch_hash, tick_hz=info.tick_hz,
                   arena_bytes=info.arena_bytes, free_ram=info.free_ram)  # fmt: skip
        if install is not None:
            er = enroll(link, install)
            res["theta_install_s"] = er.seconds
            res["theta_bytes"] = er.blob_bytes
            info = er.info
        if info.active_slot is None:
            raise EnrollError("the board holds no θ: pass --user or --blob to install one (or enroll first)")
        res["user"] = info.user_id
        t0 = time.perf_counter()
        first = link.infer(img)
        res["infer_wall_s"] = time.perf_counter() - t0
        b = link.bench(n)
        rerun = b.logit16 if first.logit16 else b.logit  # a 16x8 θ: BENCH's int16 logit
        if rerun != first.logit:
            raise LinkError(f"BENCH reran the image to logit {rerun}, INFER gave {first.logit}")
        res.update(n=b.n, ticks_min=b.min_ticks, ticks_max=b.max_ticks, ticks_mean=b.mean_ticks,
                   infer_ticks=first.ticks)  # fmt: skip
        if info.tick_hz:
            res["ms_mean"] = b.mean_ticks / info.tick_hz * 1e3
        macs = sum(F_SPEC.macs())
        res["macs"] = macs
        if info.board in QEMU_BOARDS and info.tick_hz:
            instr = b.mean_ticks * 1e9 / info.tick_hz
            res["instructions_mean"] = instr
            res["instructions_per_mac"] = instr / macs
            res["instructions_note"] = "QEMU -icount shift=0: 1 instruction = 1 ns; not cycles of a real core"
    if link_n > 0:
        res["link"] = measure(url, n=link_n, blob=None)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m host_tools.bench",
        description="Board ticks per inference (BENCH) and serial link throughput; prints and writes JSON.",
    )
    add_port_args(ap, timeout=5.0)
    ap.add_argument("--n", type=int, default=20, help="inferences timed by the board (1..100000)")
    ap.add_argument("--link-n", type=int, default=30, help="PING frames per link figure (0: skip)")
    who = ap.add_mutually_exclusive_group()
    who.add_argument("--user", help="install this user's θ (from the user store) first")
    who.add_argument("--blob", type=Path, help="install this θ blob first")
    add_user_store_args(ap)
    ap.add_argument("--image", type=Path, help="image to time (default: a package face crop)")
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON (instead of key: value lines)")
    args = ap.parse_args(argv)
    setup_logging()
    if not 1 <= args.n <= 100000:
        ap.error("--n must be in 1..100000")
    try:
        install = None
        if args.user:
            install = blob_from_store(args.user, args.users)[0]
        elif args.blob:
            install = blob_from_file(args.blob)
        img = bench_image(args.image) if args.image else None
        res = run_bench(args.port, n=args.n, link_n=args.link_n, image_u8=img, timeout=args.timeout,
                        baudrate=args.baud, install=install)
    except (EnrollError, UserStoreError, LinkError, DeviceError, BlobError, ValueError, serial.SerialException) as e:
        fail(str(e))
    if args.json:
        print(json.dumps(res, indent=2))
    for k, v in ([] if args.json else res.items()):
        if isinstance(v, dict):
            for k2, v2 in v.items():
                print(f"{k}.{k2}: {v2:.1f}" if isinstance(v2, float) else f"{k}.{k2}: {v2}")
        else:
            print(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}")
    if args.out:
        atomic_write_json(args.out, res)
        print(f"wrote {args.out}", file=sys.stderr if args.json else sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
