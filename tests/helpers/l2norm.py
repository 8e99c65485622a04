"""The L2 normalization's C port against the golden model: edge rows and the operator modes of the host test
driver (tests/codegen/c/pv_test_main.c: invsqrt, qratio, l2norm8, l2norm16), for tests/codegen/test_c_kernel.py
and test_c_kernel16.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pvcore.spec import F_SPEC
from tests.helpers.cbuild import run

DEPTH = F_SPEC.shapes[F_SPEC.pool_index][2]  # the channels it normalizes over (pv-gconv-s: gdc's 96)


def edge_rows(lo: int, hi: int, n_random: int, seed: int = 0) -> np.ndarray:
    """Rows of DEPTH values in [lo, hi] (int64): all zero (acc 0: TFLM's special case, as 1/sqrt(0) is none),
    one ±1 (acc 1, the other special case), ±1 twice (acc 2: the general path's smallest, where its
    multiplier is shifted left), tiny values, one spike at either bound, every value at a bound (the
    largest acc), alternating bounds, then ``n_random`` random rows over the whole range and as many
    within ±3."""
    rng = np.random.default_rng(seed)
    z = np.zeros(DEPTH, np.int64)
    rows = [z]
    for pos, vals in ((5, (1,)), (7, (-1,)), (0, (1, -1)), (94, (1, 1)), (10, (2, -3, 1))):
        r = z.copy()
        r[pos : pos + len(vals)] = vals
        rows.append(r)
    for v in (lo, hi):
        r = z.copy()
        r[DEPTH // 2] = v
        rows += [r, np.full(DEPTH, v, np.int64)]
    rows.append(np.where(np.arange(DEPTH) % 2 == 1, hi, lo))
    rows += list(rng.integers(lo, hi + 1, (n_random, DEPTH)))
    rows += list(rng.integers(max(lo, -3), min(hi, 3) + 1, (n_random, DEPTH)))
    return np.stack(rows)


def run_op(binary: Path, tmp: Path, mode: str, data: np.ndarray, out_dtype: str, *args: object) -> np.ndarray:
    """One operator mode of pv_test on ``data`` (written as it is): its output as ``out_dtype``."""
    data.tofile(tmp / f"{mode}.in")
    res = run(binary, mode, tmp / f"{mode}.in", tmp / f"{mode}.out", *map(str, args))
    assert res.returncode == 0, res.stderr
    return np.fromfile(tmp / f"{mode}.out", out_dtype)
