"""``python -m codegen.int8_layers``: which quantization step costs the int8 decisions, layer by layer.

    python -m codegen.int8_layers [--model FILE] [--pairs 150] [--out FILE] [--json]

On held-out LFW View 2 pairs of the model's fold, one-way in both directions (θ = h(a), probe b, and
back): every θ is quantized as ``codegen.emit`` does (its own crop as the enrollment image), then the
FLOAT f is run with exactly ONE step replaced by what the golden int8 model does — one layer's weights
by their int8 values × scales (``wq:<layer>``), or one layer's output fake-quantized with its int8 scale,
zero point and clamp (``aq:<layer>``). Reports, per step, the decision agreement with the float f at the
model's threshold and the mean |Δlogit|. The step whose agreement drops most is what limits int8.
Needs the shared folder (LFW).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from codegen.quantize import deployed_weights, quantize
from pvcore.atomic import atomic_write_json
from pvcore.cli import fail, setup_logging
from pvcore.qtheta import QuantizedF
from pvcore.spec import F_SPEC, Conv, Dense
from training.verifier.functional import layer_outputs, to_input


def _int8_weights(qf: QuantizedF, name: str) -> torch.Tensor:
    """The layer's int8 weights × scales in PyTorch layout (conv OIHW, dense (out, in))."""
    ql = qf.layer(name)
    if ql.weights.ndim == 4:  # OHWI → OIHW
        return torch.from_numpy(ql.weights.transpose(0, 3, 1, 2) * ql.w_scales[:, None, None, None]).float()
    i = [q.name for q in qf.layers].index(name)
    k2 = F_SPEC.layers[i - 1].kernel ** 2 if i > 0 and qf.layers[i - 1].exact_sum else 1  # it reads sums
    return torch.from_numpy(ql.weights * ql.w_scales.reshape(-1, 1) * k2).float()


def _fake_quant(qf: QuantizedF, name: str):
    ql = qf.layer(name)

    def after(layer, x: torch.Tensor) -> torch.Tensor:
        if layer.name != name or ql.exact_sum:  # an exact-sum pool does not round
            return x
        q = torch.clamp(torch.round(x / ql.out_scale) + ql.out_zp, ql.act_min, ql.act_max)
        return (q - ql.out_zp) * ql.out_scale
    return after


def logits_with_one_step(theta: np.ndarray, qf: QuantizedF, probes_u8: np.ndarray, step: str | None) -> np.ndarray:
    """Float f(probes; θ) with one step (``"wq:<layer>"``, ``"aq:<layer>"``, None = none) as in int8."""
    params = deployed_weights(torch.as_tensor(theta))  # what quantize() quantized (tail folded)
    after = None
    if step is not None:
        kind, name = step.split(":")
        if kind == "wq":
            params = {**params, f"{name}.weight": _int8_weights(qf, name)}
        else:
            after = _fake_quant(qf, name)
    with torch.no_grad():
        *_, (_layer, _pre, out) = layer_outputs(to_input(probes_u8), params, F_SPEC, after)
    return out.reshape(-1).numpy().astype(np.float64)


def steps() -> list[str]:
    out = []
    for layer in F_SPEC.layers:
        if isinstance(layer, Conv | Dense):
            out.append(f"wq:{layer.name}")
        out.append(f"aq:{layer.name}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m codegen.int8_layers", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="hypermodel file (default: the shipped one)")
    ap.add_argument("--pairs", type=int, default=150, help="held-out pairs, drawn at random (seed 0); ×2 directions")
    ap.add_argument("--out", type=Path, help="write the table as JSON here")
    ap.add_argument("--json", action="store_true", help="print the table as JSON (instead of text)")
    args = ap.parse_args(argv)
    setup_logging(quiet=True)
    from pvcore.paths import SharedDataMissing
    from training.backbones import backbone_info, load_backbone
    from training.backbones.base import ARCFACE112
    from training.backbones.embedding_cache import EmbeddingCache
    from training.evaluate import PairSet, directions, fold_subset, lfw_pairs
    from training.hypermodel import HyperModel, HyperModelError

    torch.set_num_threads(1)
    try:
        m = HyperModel.load(args.model)
        pairs = lfw_pairs("view2", m.detector, None, 2, False)
    except (HyperModelError, SharedDataMissing, FileNotFoundError) as e:
        fail(str(e))
    fold = int(m.meta["config"]["fold"])
    sub = fold_subset(pairs, fold)
    sel = np.random.default_rng(0).choice(len(sub.left), min(args.pairs, len(sub.left)), replace=False)
    sub = PairSet(sub.name, sub.crops, sub.left[sel], sub.right[sel], sub.same[sel], None)
    rows, cols = directions(sub, one_way=False)
    crops = pairs.crops[ARCFACE112]
    u = np.unique(rows)
    emb = EmbeddingCache(load_backbone(m.backbone)).embed(pairs.crops[backbone_info(m.backbone).input_kind][u],
                                                           progress=False)
    thetas = dict(zip(u, m.theta(emb)))
    qfs = {r: quantize(thetas[r], enroll_u8=crops[r]) for r in u}

    def all_logits(step: str | None) -> np.ndarray:
        out = np.empty(len(rows))
        for r in u:
            idx = np.flatnonzero(rows == r)
            out[idx] = logits_with_one_step(thetas[r], qfs[r], crops[cols[idx]], step)
        return out

    fl, thr = all_logits(None), m.threshold
    table = {}
    text = sys.stderr if args.json else sys.stdout  # --json: stdout is the JSON alone, the table goes to stderr
    print(f"{len(rows)} one-way pairs of LFW fold {fold}, threshold {thr:.4f}", file=text)
    print(f"{'step':<14} {'agreement':>9} {'mean |Δlogit|':>13}", file=text)
    for st in steps():
        q = all_logits(st)
        table[st] = {"agreement": float(((q >= thr) == (fl >= thr)).mean()),
                     "mean_abs_dlogit": float(np.abs(q - fl).mean())}
        print(f"{st:<14} {100 * table[st]['agreement']:>8.2f}% {table[st]['mean_abs_dlogit']:>13.4f}", file=text,
              flush=True)
    rep = {"model_id": m.model_id, "pairs": int(len(rows)), "threshold": thr, "steps": table}
    if args.out:
        atomic_write_json(args.out, rep)
    if args.json:
        print(json.dumps(rep, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
