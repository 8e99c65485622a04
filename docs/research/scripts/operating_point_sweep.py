"""Operating-point rules (global thresholds, each user's own for a FAR, Z-norm) swept on the output of
operating_point_scores.py: FAR / FRR % per set and variant.
Usage: python docs/research/scripts/operating_point_sweep.py OPS.npz"""
import sys

import numpy as np

from training.calibration import threshold_for_far

z = np.load(sys.argv[1])
cells = sorted({k.rsplit("/", 1)[0] for k in z.files if k.count("/") == 2})
T = float(z["threshold"])
print("model threshold", T)


def rates(acc, same):
    return 100 * acc[~same].mean(), 100 * (~acc[same]).mean()


def user_rule(cell, tag, far, floor):
    calib = z[f"{cell}/calib_{tag}"]
    thr = np.array([threshold_for_far(c, far, floor)[0] for c in calib])
    return thr[np.searchsorted(z[f"{cell}/lefts"], z[f"{cell}/left"])]


def znorm_rule(cell, tag, k):
    calib = z[f"{cell}/calib_{tag}"].astype(np.float64)
    thr = calib.mean(1) + k * calib.std(1)
    return thr[np.searchsorted(z[f"{cell}/lefts"], z[f"{cell}/left"])]


rules = [("global T", lambda c, t: T)] + [(f"global {g:+.1f}", lambda c, t, g=g: g) for g in (1.0, 1.5, 2.0)]
rules += [(f"user F={f}", lambda c, t, f=f: user_rule(c, t, f, None)) for f in (0.01, 0.02, 0.05, 0.1)]
rules += [(f"user F={f} floorT", lambda c, t, f=f: user_rule(c, t, f, T)) for f in (0.02, 0.05)]
rules += [(f"znorm k={k}", lambda c, t, k=k: znorm_rule(c, t, k)) for k in (1.5, 2.0, 2.5, 3.0)]
for tag in ("ref", "h"):
    print(f"\n=== θ {tag}: FAR / FRR % per cell")
    print(f"{'rule':22s}" + "".join(f"{c.replace('-val', ''):>17s}" for c in cells))
    for name, rule in rules:
        line = f"{name:22s}"
        for c in cells:
            s, same = z[f"{c}/s_{tag}"], z[f"{c}/same"]
            far, frr = rates(s >= rule(c, tag), same)
            line += f"   {far:5.1f} / {frr:5.1f}"
        print(line)
