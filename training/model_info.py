"""Print the personal verifier f's architecture, θ layout, parameter and MAC counts:
``python -m training.model_info [--json]``.

MACs are counted twice: analytically from the spec, and by ptflops (aten backend) on the real
PyTorch graph. ptflops — like thop, which the paper used — reports multiply-accumulates under the name
"FLOPs"; the paper's "5.4 MFLOPs" is that convention. Real floating-point operations are ≈ 2× MACs.
"""

from __future__ import annotations

import argparse
import json

from pvcore.cli import setup_logging
from pvcore.spec import F_SPEC, AvgPool, Conv, L2Norm


def count_with_ptflops() -> tuple[int, int]:
    from ptflops import get_model_complexity_info

    from training.verifier.functional import VerifierModule, random_theta

    h, w = F_SPEC.input_hw
    macs, params = get_model_complexity_info(VerifierModule(random_theta()), (F_SPEC.input_ch, h, w),
                                             backend="aten", as_strings=False, print_per_layer_stat=False,
                                             verbose=False)
    return int(macs), int(params)


def info() -> dict:
    macs = F_SPEC.macs()
    pt_macs, pt_params = count_with_ptflops()
    layers = []
    for layer, shape, m in zip(F_SPEC.layers, F_SPEC.shapes[1:], macs):
        n = sum(s.size for s in F_SPEC.layout if s.layer == layer.name)
        desc = (f"conv {layer.kernel}x{layer.kernel}/{layer.stride} g{layer.groups} {layer.in_ch}->{layer.out_ch}"
                f"{' relu' if layer.relu else ''}" if isinstance(layer, Conv)
                else f"avgpool {layer.kernel}x{layer.kernel}" if isinstance(layer, AvgPool)
                else "l2 normalization" if isinstance(layer, L2Norm)
                else f"dense {layer.in_features}->{layer.out_features}{' relu' if layer.relu else ''}")
        layers.append({"name": layer.name, "op": desc, "out_hwc": list(shape), "params": n, "macs": m})
    gains = sum(s.size for s in F_SPEC.layout if s.tensor == "gain")
    return {"arch": F_SPEC.name, "arch_hash": F_SPEC.arch_hash(), "params": F_SPEC.theta_size,
            "deployed_params": F_SPEC.theta_size - gains,
            "macs_analytic": sum(macs), "ptflops_macs": pt_macs, "ptflops_params": pt_params,
            "layers": layers}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.model_info", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    setup_logging(quiet=True)
    d = info()
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    print(f"f = {d['arch']}  arch hash {d['arch_hash']}  input {F_SPEC.input_hw[0]}x{F_SPEC.input_hw[1]}x3")
    print(f"{'layer':10} {'op':34} {'out HxWxC':>12} {'params':>8} {'MACs':>10}")
    for row in d["layers"]:
        hwc = "x".join(map(str, row["out_hwc"]))
        print(f"{row['name']:10} {row['op']:34} {hwc:>12} {row['params']:>8} {row['macs']:>10,}")
    print(f"parameters: θ = {d['params']:,} generated values; deployed {d['deployed_params']:,} "
          f"(per-channel gains fold into the weights; ptflops counts {d['ptflops_params']:,})")
    print(f"MACs: {d['macs_analytic']:,} analytic; ptflops (aten, counts MACs as 'FLOPs', as thop "
          f"and the paper do): {d['ptflops_macs']:,} = {d['ptflops_macs'] / 1e6:.2f} M")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
