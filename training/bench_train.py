"""Step time of the nB×nB training step: ``python -m training.bench_train [--nb 32 64] [--threads 1 2]``.

Times forward + backward of eq. (6) through f for the same θ and images with each implementation of
:mod:`training.verifier.batched` — the NCHW loop over networks (baseline), the loop in channels_last,
the fast chunked ``pairwise_logits`` for several chunk sizes, optionally vmap — and the same with pair
subsampling (each verifier sees its n positives and k negatives). h_gen is left out: it costs the same
in every variant (a few ms). Rounds are interleaved (every variant once per round) and the minimum and
median over rounds are reported, so a neighbour's load on a shared machine hits all variants alike.
Prints a table and writes JSON (default ``runs/bench/bench_train.json``).

On a machine whose cores are busy with other work, run the 2-thread case as
``OMP_WAIT_POLICY=PASSIVE python -m training.bench_train --threads 2``: with the default (spinning)
policy an OpenMP thread that loses its core stalls every parallel region, and the run takes minutes.
"""

from __future__ import annotations

import argparse
import logging
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from pvcore.atomic import atomic_write_json
from pvcore.cli import setup_logging
from pvcore.spec import F_SPEC
from training.losses import bce_lambda, identity_targets, weighted_bce
from training.samplers import select_columns
from training.verifier.batched import (
    DEFAULT_CHUNK,
    pair_macs,
    pairwise_logits,
    pairwise_logits_loop,
    pairwise_logits_split,
    pairwise_logits_vmap,
    prefix_features,
    split_spec,
)
from training.verifier.functional import random_theta

log = logging.getLogger(__name__)


def _problem(nb: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    h, w = F_SPEC.input_hw
    x = torch.rand(nb, F_SPEC.input_ch, h, w, generator=g) * 2 - 1
    thetas = torch.stack([random_theta(seed + j) for j in range(nb)])
    labels = torch.arange(nb // n).repeat_interleave(n)
    emb = torch.nn.functional.normalize(torch.randn(nb, 128, generator=g), dim=1)
    return x, thetas, labels, emb


def _step(fn: Callable[[torch.Tensor], torch.Tensor], thetas: torch.Tensor, targets: torch.Tensor,
          lam: float) -> float:
    th = thetas.detach().clone().requires_grad_()
    t0 = time.perf_counter()
    weighted_bce(fn(th), targets, lam).backward()
    return time.perf_counter() - t0


def bench(nb: int, threads: int, n: int, k: int, chunks: list[int], rounds: int, with_vmap: bool,
          seed: int = 0, personal_from: str = "") -> dict:
    torch.set_num_threads(threads)
    x, thetas, labels, emb = _problem(nb, n, seed)
    lam = bce_lambda(nb // n)
    full_t = identity_targets(labels)
    cols, _ = select_columns(labels, emb, k, "hard")
    sub_t = identity_targets(labels, columns=cols)
    cl = torch.channels_last
    variants: dict[str, tuple[Callable, torch.Tensor, int]] = {
        "loop": (lambda th: pairwise_logits_loop(x, th), full_t, nb * nb),
        "loop_channels_last": (lambda th: pairwise_logits_loop(x, th, memory_format=cl), full_t, nb * nb),
    }
    def chunked(c: int) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda th: pairwise_logits(x, th, chunk=c)

    for c in chunks:
        variants[f"batched_chunk{c}"] = (chunked(c), full_t, nb * nb)
    if with_vmap:
        variants["vmap"] = (lambda th: pairwise_logits_vmap(x, th), full_t, nb * nb)
    m = cols.shape[1]
    variants["loop_subsampled"] = (lambda th: pairwise_logits_loop(x, th, columns=cols), sub_t, nb * m)
    variants["batched_subsampled"] = (lambda th: pairwise_logits(x, th, columns=cols), sub_t, nb * m)
    if personal_from:  # partial personalization: every row shares the prefix θ (as h generates it)
        prefix, suffix, n_pre = split_spec(F_SPEC, personal_from)
        thetas[:, :n_pre] = thetas[0, :n_pre]

        def loop_suffix(th: torch.Tensor) -> torch.Tensor:  # a smarter loop: prefix once, suffix per network
            feats = prefix_features(x, th[0, :n_pre], prefix)
            return pairwise_logits_loop(feats, th[:, n_pre:], suffix, columns=cols)

        variants["loop_suffix_subsampled"] = (loop_suffix, sub_t, nb * m)
        variants["batched_split"] = (lambda th: pairwise_logits_split(x, th, personal_from), full_t, nb * nb)
        variants["batched_split_subsampled"] = (
            lambda th: pairwise_logits_split(x, th, personal_from, columns=cols), sub_t, nb * m)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for fn, tgt, _ in variants.values():  # warm-up: oneDNN builds its kernels on first use
        _step(fn, thetas, tgt, lam)
    for _ in range(rounds):
        for name, (fn, tgt, _) in variants.items():
            times[name].append(_step(fn, thetas, tgt, lam))
    macs = pair_macs()
    res = {}
    for name, (_, _, pairs) in variants.items():
        best, med = min(times[name]), statistics.median(times[name])
        res[name] = {"pairs": pairs, "min_s": best, "median_s": med, "us_per_pair": 1e6 * best / pairs,
                     # forward + backward ≈ 3× the forward MACs (backward = grad wrt input + wrt weights)
                     "gmac_per_s": 3 * macs * pairs / best / 1e9}
    default = f"batched_chunk{DEFAULT_CHUNK}" if f"batched_chunk{DEFAULT_CHUNK}" in res else f"batched_chunk{chunks[0]}"
    ratios = {
        "loop_over_batched": res["loop"]["min_s"] / res[default]["min_s"],
        "loop_channels_last_over_batched": res["loop_channels_last"]["min_s"] / res[default]["min_s"],
        "batched_over_batched_subsampled": res[default]["min_s"] / res["batched_subsampled"]["min_s"],
        "loop_over_batched_subsampled": res["loop"]["min_s"] / res["batched_subsampled"]["min_s"],
    }
    if personal_from:
        split = res["batched_split_subsampled"]["min_s"]
        ratios["loop_over_batched_split"] = res["loop"]["min_s"] / res["batched_split"]["min_s"]
        ratios["loop_subsampled_over_batched_split"] = res["loop_subsampled"]["min_s"] / split
        ratios["loop_suffix_subsampled_over_batched_split"] = res["loop_suffix_subsampled"]["min_s"] / split
    return {"nB": nb, "n": n, "B": nb // n, "k": k, "personal_from": personal_from, "columns_per_row": m,
            "threads": threads,
            "default_variant": default, "results": res, "ratios": ratios}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.bench_train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nb", type=int, nargs="+", default=[32, 64], help="images (= verifiers) per batch")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch intra-op threads")
    ap.add_argument("--n", type=int, default=4, help="images per identity (B = nB / n)")
    ap.add_argument("--k", type=int, default=12, help="negatives per verifier with pair subsampling")
    ap.add_argument("--chunks", type=int, nargs="+", default=[1, DEFAULT_CHUNK, 8], help="chunk sizes to time")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds (after one warm-up round)")
    ap.add_argument("--vmap", action="store_true", help="also time the vmap version (slow)")
    ap.add_argument("--personal-from", default="pool",
                    help="also time partial personalization from this layer ('' to skip)")
    ap.add_argument("--out", type=Path, default=Path("runs/bench/bench_train.json"), help="JSON output")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    setup_logging(args.verbose)
    for nb in args.nb:
        if nb % args.n or nb // args.n < 3:
            ap.error(f"--nb {nb} must be a multiple of --n {args.n} with at least 3 identities")
    runs = []
    print(f"{'nB':>4} {'thr':>3} {'variant':<22} {'pairs':>6} {'min ms':>9} {'median ms':>9} {'µs/pair':>8} "
          f"{'GMAC/s':>7}")
    for threads in args.threads:
        for nb in args.nb:
            r = bench(nb, threads, args.n, args.k, sorted(set(args.chunks)), args.rounds, args.vmap,
                      personal_from=args.personal_from)
            runs.append(r)
            for name, v in r["results"].items():
                print(f"{nb:>4} {threads:>3} {name:<22} {v['pairs']:>6} {1e3 * v['min_s']:>9.1f} "
                      f"{1e3 * v['median_s']:>9.1f} {v['us_per_pair']:>8.1f} {v['gmac_per_s']:>7.1f}", flush=True)
            print("     ratios: " + ", ".join(f"{k} {v:.2f}×" for k, v in r["ratios"].items()), flush=True)
    atomic_write_json(args.out, {"arch": F_SPEC.name, "arch_hash": F_SPEC.arch_hash(), "pair_macs": pair_macs(),
                                 "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
                                 "runs": runs})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
