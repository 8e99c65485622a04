"""Research: TFLite Micro's int8 L2_NORMALIZATION checked against TFLite's own reference kernel — the check that
``codegen.golden.l2norm_rows_int8`` (spec v5's "pool": ``reference_integer_ops::L2Normalization`` with gemmlowp's
Newton–Raphson ``GetInvSqrtQuantizedMultiplierExp``, research log section 14) is bit-exact.
Usage: python docs/research/scripts/l2norm_int8.py IO.npz   (int8 inputs ``x`` (N, C), their zero point ``zp`` and a
TFLite interpreter's outputs ``y``, written by l2norm_tflite_io.py: prints how many rows agree)"""
import sys

import numpy as np

from codegen.golden import l2norm_rows_int8

if __name__ == "__main__":
    z = np.load(sys.argv[1])
    got = l2norm_rows_int8(np.asarray(z["x"], np.int64) - int(z["zp"]))
    same = (got == z["y"]).all(axis=1)
    print(f"{same.sum()} of {len(same)} rows bit-exact; largest difference {np.abs(got.astype(int) - z['y']).max()}")
