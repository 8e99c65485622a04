"""Derive f's fixed per-layer gains, LSUV-style: ``python -m training.verifier.calibrate_gains``.

Layer by layer, with the gains found so far, run f with θ from a freshly initialised h_gen on real
aligned faces (256 LFW crops of the dlib cache) and divide the layer's gain by the standard deviation of
its pre-activation output, so that every layer starts with unit variance. Prints the gains that
``pvcore.spec.F_SPEC`` holds (they are constants of the architecture and part of its hash;
re-running on other faces gives values within a few per cent).
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import torch

from pvcore.cli import setup_logging
from pvcore.spec import F_SPEC, ArchSpec
from training.verifier.functional import effective_weights, layer_outputs, to_input
from training.verifier.hypernet import HGen, HGenConfig


def _run(spec: ArchSpec, theta: torch.Tensor, x: torch.Tensor, upto: int) -> torch.Tensor:
    """Pre-activation output of layer ``upto``."""
    for i, (_layer, pre, _out) in enumerate(layer_outputs(x, effective_weights(theta, spec), spec)):
        if i == upto:
            return pre
    raise IndexError(f"{spec.name} has {len(spec.layers)} layers, no layer {upto}")


def calibrate(faces_u8: np.ndarray, spec: ArchSpec = F_SPEC, n_theta: int = 4, seed: int = 0) -> ArchSpec:
    torch.manual_seed(seed)
    x = to_input(np.ascontiguousarray(faces_u8))
    thetas = [HGen(HGenConfig(128, 64, 16), spec)(torch.randn(1, 128))[0].detach() for _ in range(n_theta)]
    # a conv that is not standardized (gdc) keeps its gain: there it scales the raw weights, not a filter norm
    def calibrated(layer: object) -> bool:
        return hasattr(layer, "gain") and getattr(layer, "standardize", True)

    layers = [dataclasses.replace(layer, gain=1.0) if calibrated(layer) else layer for layer in spec.layers]
    for i, layer in enumerate(layers):
        if not calibrated(layer):
            continue
        cur = dataclasses.replace(spec, layers=tuple(layers))
        with torch.no_grad():
            s = float(np.mean([float(_run(cur, th, x, i).std()) for th in thetas]))
        layers[i] = dataclasses.replace(layer, gain=round(layer.gain / s, 2))
    return dataclasses.replace(spec, layers=tuple(layers))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.verifier.calibrate_gains", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    setup_logging()
    from training.face.cache import lfw_cache

    crops = lfw_cache("dlib").crops("arcface112")
    idx = np.sort(np.random.default_rng(args.seed).choice(len(crops), args.faces, replace=False))
    spec = calibrate(np.asarray(crops[idx]), seed=args.seed)
    for layer, old in zip(spec.layers, F_SPEC.layers):
        if hasattr(layer, "gain"):
            print(f"{layer.name:8} gain {layer.gain:5.2f}   (F_SPEC: {old.gain})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
