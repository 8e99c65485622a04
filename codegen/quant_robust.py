"""Quantization-aware fine-tuning of a hypermodel's shared convolutional prefix — an experiment that did
NOT help; kept so that its figures can be reproduced and the next attempt starts from it.

Why it was tried: with ``personal_from = "pool"`` every convolution of f is ONE shared θ prefix and only
the linear tail (fc1, head) is personal. After equalization, GPTQ and percentile ranges
(``codegen.quantize``) what still separates the int8 f from the float f is mostly the rounding of the
prefix's per-tensor int8 activations (``python -m codegen.int8_layers``). Calibration cannot change that
(calibrating on LFW faces instead of the package faces gave the same error); the prefix's weights might.

What it does: the prefix θ_s is fine-tuned on training faces (people of the model's training folds only)
with

    L = E_x[ ‖p(x) − p₀(x)‖²_M ] + μ · E_x[ ‖p̃(x) − p(x)‖²_M ]

- p(x): pooled features (96) of the float prefix being tuned, p₀(x): of the original prefix (frozen), so
  the float f — h_gen's personal heads and the threshold with it — stays close to what it was;
- p̃(x): the same prefix with int8 emulated as codegen quantizes: every range (the ``percentile`` ×
  ``margin`` rule, the pool's ``pool_margin``) and every equalization scale from the FLOAT outputs on
  codegen's calibration images (package faces + augmentations), activations rounded with a
  straight-through gradient, the ranges differentiable (LSQ-style: the noise scales with the range, so
  scaling a layer up gains nothing, only the shape of its distribution matters); optionally
  round-to-nearest int8 weights (codegen's GPTQ errs far less, so off by default);
- ‖v‖²_M = vᵀ M v, M = E_u[w_u w_uᵀ] with w_u the folded linear tail (w_head · W_fc1) of the θ h_gen makes
  for training faces: the squared change of the LOGIT that users' verifiers see.

What it gave: the emulated noise and the real mean |Δlogit| fall, but not the near-threshold error —
what flips decisions (every variant's figures: docs/quantization.md, "Tried and not kept"). The shipped
model is not fine-tuned.

The result is a copy of the hypermodel file with the new shared prefix (a new model id; threshold kept:
the float logits move by ``rms_logit_change_last`` of the run's summary). Checkpoints every
``--checkpoint-every`` steps; ``--resume`` continues a run.
"""

from __future__ import annotations

import argparse
import io
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pvcore.atomic import atomic_write_bytes, atomic_write_json
from pvcore.cli import fail, setup_logging
from pvcore.spec import F_SPEC, ArchSpec, AvgPool, Conv, L2Norm, Layer
from training.data.train_set import AugmentConfig, augment
from training.verifier.batched import split_spec
from training.verifier.functional import effective_weights, l2_normalize, layer_outputs, to_input

log = logging.getLogger("codegen.quant_robust")


@dataclass
class QRConfig:
    steps: int = 400
    batch: int = 64
    lr: float = 1e-3
    mu: float = 4.0  # weight of the int8-consistency term against the preservation term
    noise_l1: bool = False  # the int8 term as (E|Δlogit|)² over (face, head): weighs the bulk, not the tails
    percentile: float = 99.99  # codegen's QuantConfig defaults
    margin: float = 1.2
    pool_margin: float = 2.0
    equalize_alpha: float = 0.6  # codegen's cross-layer equalization, emulated on the activations
    augment: bool = False  # training faces augmented as in h's training (flip, shift, zoom, brightness/contrast)
    quant_weights: bool = False  # also emulate int8 weights (round-to-nearest; codegen's GPTQ errs far less)
    n_heads: int = 256  # training faces whose generated heads define M
    seed: int = 0
    sample_elems: int = 1 << 20  # activation values sampled per layer for the percentile


# --------------------------------------------------------------------------------------------------
# int8 emulation with gradients


def _ste_round(u: torch.Tensor) -> torch.Tensor:
    return u + (torch.round(u) - u).detach()


def equalization_scales(acts: torch.Tensor, percentile: float, alpha: float) -> torch.Tensor:
    """codegen's k_c = clip(R / r_c, 1, 100)^alpha from per-channel percentiles r_c of ``acts`` (no gradient)."""
    from codegen.weight_rounding import EQ_MAX_RATIO

    c = acts.shape[1]
    r = torch.quantile(acts.detach().transpose(0, 1).reshape(c, -1), percentile / 100.0, dim=1)
    top = r.max()
    if top <= 0:
        return torch.ones(c)
    return torch.clamp(top / torch.clamp(r, min=float(top) / EQ_MAX_RATIO), 1.0, EQ_MAX_RATIO) ** alpha


def activation_range(acts: torch.Tensor, relu: bool, percentile: float, margin: float,
                     sample: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """codegen's range of a layer output from its calibration values, differentiable: (lo, hi)."""
    flat = acts.reshape(-1)
    if flat.numel() > sample:
        flat = flat[torch.randint(flat.numel(), (sample,), generator=gen)]
    q = percentile / 100.0
    hi = torch.clamp(torch.quantile(flat, q) * margin, min=1e-6)
    lo = torch.zeros((), dtype=acts.dtype) if relu else torch.clamp(torch.quantile(flat, 1.0 - q) * margin, max=0.0)
    return lo, hi


def fake_quant(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Asymmetric int8 of ``x`` in [lo, hi], rounding straight-through, differentiable in the range
    (the rounding noise scales with it)."""
    scale = (hi - lo) / 255.0
    zp = torch.round(-128.0 - lo.detach() / scale.detach())
    u = torch.clamp(x / scale + zp, -128.0, 127.0)
    return (_ste_round(u) - zp) * scale


def fake_quant_weight(w: torch.Tensor) -> torch.Tensor:
    """Per-output-channel symmetric int8 (codegen's rule: scale = max|w| / 127), straight-through."""
    s = w.detach().abs().reshape(w.shape[0], -1).amax(dim=1).clamp(min=1e-12) / 127.0
    s = s.reshape(-1, *([1] * (w.ndim - 1)))
    return w + (torch.round(w / s) * s - w).detach()


def _pool(h: torch.Tensor, pool: AvgPool | L2Norm) -> torch.Tensor:
    """The pool on the prefix's last map (N, C, k, k) → (N, C): the mean, or (spec v5) the normalized 1×1 map."""
    return l2_normalize(h.flatten(1)) if isinstance(pool, L2Norm) else F.avg_pool2d(h, pool.kernel).flatten(1)


def pooled_features(x: torch.Tensor, theta_prefix: torch.Tensor, prefix: ArchSpec, pool: AvgPool | L2Norm,
                    cfg: QRConfig | None = None, gen: torch.Generator | None = None,
                    x_cal: torch.Tensor | None = None) -> torch.Tensor:
    """The prefix and the global pool on x (N, 3, H, W) → (N, C). ``cfg`` given: int8 emulated as codegen
    quantizes — every range (and equalization scale) from the FLOAT outputs on the calibration images
    ``x_cal`` (the package faces and their augmentations), the activations of x fake-quantized in them."""
    from codegen.weight_rounding import equalization_pairs

    params = effective_weights(theta_prefix, prefix)
    if cfg is None:
        *_, (_l, _pre, h) = layer_outputs(x, params, prefix)
        return _pool(h, pool)
    assert x_cal is not None and gen is not None
    equalized = {a.name for a, _b in equalization_pairs(prefix)} if cfg.equalize_alpha > 0 else set()
    wq = {k: fake_quant_weight(v) if k.endswith(".weight") else v for k, v in params.items()} \
        if cfg.quant_weights else params
    cal = layer_outputs(x_cal, params, prefix)  # float calibration forward, one layer ahead of x's
    cal_outputs: dict[str, torch.Tensor] = {}  # each layer's float output on the calibration images

    def after(layer: Layer, out: torch.Tensor) -> torch.Tensor:  # layer_outputs' hook: x's output of this layer
        _l, _pre, c = next(cal)
        relu = getattr(layer, "relu", False)
        k = equalization_scales(c, cfg.percentile, cfg.equalize_alpha).view(1, -1, 1, 1) \
            if layer.name in equalized else None
        lo, hi = activation_range(c * k if k is not None else c, relu, cfg.percentile, cfg.margin,
                                  cfg.sample_elems, gen)
        cal_outputs[layer.name] = c
        return fake_quant(out * k, lo, hi) / k if k is not None else fake_quant(out, lo, hi)

    *_, (_l, _pre, h) = layer_outputs(x, wq, prefix, after=after)
    if isinstance(pool, L2Norm):  # TFLM's fixed int8 output grid: 1/128, zero point 0
        return fake_quant(_pool(h, pool), torch.tensor(-1.0), torch.tensor(127 / 128))
    p_cal = F.avg_pool2d(cal_outputs[prefix.layers[-1].name], pool.kernel).flatten(1)
    lo, hi = activation_range(p_cal, True, cfg.percentile, cfg.pool_margin, cfg.sample_elems, gen)
    return fake_quant(F.avg_pool2d(h, pool.kernel).flatten(1), lo, hi)


def folded_heads(thetas: torch.Tensor, spec: ArchSpec = F_SPEC) -> torch.Tensor:
    """(N, θ) → (N, C): w_head · W_fc1 of each θ's effective weights (the logit is linear in the pool)."""
    rows = []
    for th in thetas:
        eff = effective_weights(th, spec)
        rows.append((eff["head.weight"] @ eff["fc1.weight"])[0])
    return torch.stack(rows)


# --------------------------------------------------------------------------------------------------
# data


def _val_fold(cfg: dict) -> int:
    v = cfg.get("val_fold")  # older configs have none
    return -1 if v is None else int(v)


def training_rows(model_meta: dict, detector: str) -> np.ndarray:
    """Crop-cache rows of the model's training people (its held-out fold, and validation fold, excluded)."""
    from training.data import lfw
    from training.face.cache import lfw_cache

    cfg = model_meta["config"]
    held = {int(cfg.get("fold", 0)), _val_fold(cfg)} - {-1}
    folds = lfw.load_people_folds()
    people = {p for i, f in enumerate(folds) if i not in held for p in f}
    cache = lfw_cache(detector)
    if int((cache.status == 0).sum()):
        raise RuntimeError("LFW is not aligned yet; run python -m training.align --dataset lfw")
    rows = [i for i, rel in enumerate(cache.paths) if cache.status[i] > 0 and lfw.identity_of(rel) in people]
    log.info("training faces: %d images of the people outside folds %s", len(rows), sorted(held))
    return np.asarray(rows, np.int64)


# --------------------------------------------------------------------------------------------------


def run(model_path: Path, out: Path, cfg: QRConfig, resume: bool, checkpoint_every: int) -> dict:
    from tqdm import tqdm

    from training.backbones import backbone_info, load_backbone
    from training.backbones.base import ARCFACE112
    from training.backbones.embedding_cache import EmbeddingCache
    from training.face.cache import lfw_cache
    from training.hypermodel import HyperModel

    torch.manual_seed(cfg.seed)
    m = HyperModel.load(model_path)
    first = str(m.meta["config"].get("personal_from", ""))
    if first != "pool":
        raise ValueError(f"{model_path}: personal_from is {first!r}; this fine-tune needs a shared prefix up to "
                         "the pool (personal_from = 'pool')")
    prefix, _suffix, n_shared = split_spec(F_SPEC, first)
    pool = F_SPEC.layers[len(prefix.layers)]
    assert isinstance(pool, AvgPool | L2Norm) and all(isinstance(la, Conv) for la in prefix.layers)

    cache = lfw_cache(m.detector)
    rows = training_rows(m.meta, m.detector)
    crops = cache.crops(ARCFACE112)
    rng = np.random.default_rng(cfg.seed)

    # M = E_u[w_u w_uᵀ] over the heads h_gen makes for training faces
    head_rows = np.sort(rng.choice(rows, size=min(cfg.n_heads, len(rows)), replace=False))
    kind = backbone_info(m.backbone).input_kind
    emb = EmbeddingCache(load_backbone(m.backbone)).embed(np.asarray(cache.crops(kind)[head_rows]), progress=True)
    with torch.no_grad():
        w = folded_heads(torch.from_numpy(m.theta(emb)))
    metric = w.t() @ w / len(w)

    theta0 = m.generator.hgen.shared.detach().clone()
    theta = torch.nn.Parameter(theta0.clone())
    opt = torch.optim.Adam([theta], lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps)))
    out.mkdir(parents=True, exist_ok=True)
    ck_path = out / "checkpoint.pt"
    start, history = 0, []
    if resume and ck_path.is_file():
        ck = torch.load(ck_path, map_location="cpu", weights_only=False)
        if ck["config"] != asdict(cfg) or ck["model_path"] != str(model_path):
            raise ValueError(f"{ck_path} was made with another config or model; start a new --out or drop --resume")
        theta.data.copy_(ck["theta"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        start, history = int(ck["step"]), list(ck["history"])
        log.info("resumed at step %d", start)

    def save_checkpoint(step: int) -> None:
        buf = io.BytesIO()
        torch.save({"theta": theta.detach(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "step": step, "history": history, "config": asdict(cfg), "model_path": str(model_path)}, buf)
        atomic_write_bytes(ck_path, buf.getvalue())

    def quad(v: torch.Tensor) -> torch.Tensor:
        return ((v @ metric) * v).sum(dim=1).mean()

    from codegen.quantize import QuantConfig, package_calibration

    x_cal = to_input(package_calibration(QuantConfig()))
    aug = AugmentConfig() if cfg.augment else AugmentConfig(flip=False, translate_px=0, scale=0, brightness=0,
                                                             contrast=0)
    t0 = time.perf_counter()
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="quant-robust", unit="step")
    for step in bar:
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        pick = np.sort(rows[torch.randint(len(rows), (cfg.batch,), generator=g).numpy()])
        x = augment(torch.from_numpy(np.ascontiguousarray(crops[pick])), aug, g)
        with torch.no_grad():
            p0 = pooled_features(x, theta0, prefix, pool)
        p = pooled_features(x, theta, prefix, pool)
        pq = pooled_features(x, theta, prefix, pool, cfg, g, x_cal)
        keep = quad(p - p0)
        noise = ((pq - p) @ w.t()).abs().mean().square() if cfg.noise_l1 else quad(pq - p)
        loss = keep + cfg.mu * noise
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        rec = {"step": step + 1, "preserve": keep.item(), "noise": noise.item()}
        history.append(rec)
        if step % 10 == 0:
            bar.set_postfix(keep=f"{math.sqrt(max(rec['preserve'], 0)):.4f}", noise=f"{math.sqrt(rec['noise']):.4f}")
        if (step + 1) % checkpoint_every == 0 or step + 1 == cfg.steps:
            save_checkpoint(step + 1)
    elapsed = time.perf_counter() - t0
    first10 = history[:10] if history else []
    last50 = history[-50:]
    summary = {
        "model": str(model_path), "config": asdict(cfg), "seconds": elapsed,
        "rms_logit_noise_first": math.sqrt(np.mean([h["noise"] for h in first10])) if first10 else None,
        "rms_logit_noise_last": math.sqrt(np.mean([h["noise"] for h in last50])),
        "rms_logit_change_last": math.sqrt(max(np.mean([h["preserve"] for h in last50]), 0.0)),
    }
    log.info("rms logit noise (training batches): %s → %.4f; rms logit change vs the original: %.4f",
             f"{summary['rms_logit_noise_first']:.4f}" if first10 else "?", summary["rms_logit_noise_last"],
             summary["rms_logit_change_last"])
    torch.save(theta.detach(), out / "shared_theta.pt")
    atomic_write_json(out / "summary.json", summary)
    return {"theta": theta.detach(), "summary": summary, "n_shared": n_shared}


def write_model(model_path: Path, theta: torch.Tensor, dest: Path, summary: dict) -> None:
    """A copy of the hypermodel file with ``theta`` as its shared prefix (dtype of the original kept; the
    threshold too: the float logits move by the ``rms_logit_change_last`` of the summary only)."""
    ck = torch.load(model_path, map_location="cpu", weights_only=False)
    key = "hgen.shared"
    if key not in ck["model"]:
        raise ValueError(f"{model_path}: no {key} in the state dict")
    ck["model"][key] = theta.to(ck["model"][key].dtype).clone()
    ck["quant_robust"] = {"from": model_path.name, **summary}
    # the cohort statistics describe the old prefix's features: training.export_model --cohort-stats rebuilds them
    ck.pop("cohort_stats", None)
    buf = io.BytesIO()
    torch.save(ck, buf)
    atomic_write_bytes(dest, buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m codegen.quant_robust", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path, help="hypermodel file (personal_from = 'pool')")
    ap.add_argument("dest", type=Path, help="where the fine-tuned hypermodel file goes")
    ap.add_argument("--out", type=Path, default=Path("runs/quant_robust"), help="run folder (checkpoints, summary)")
    ap.add_argument("--resume", action="store_true", help="continue the run in --out")
    ap.add_argument("--checkpoint-every", type=int, default=100)
    for f, v in asdict(QRConfig()).items():
        if isinstance(v, bool):
            ap.add_argument(f"--{f.replace('_', '-')}", action=argparse.BooleanOptionalAction, default=v)
        else:
            ap.add_argument(f"--{f.replace('_', '-')}", type=type(v), default=v)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    setup_logging(args.verbose)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.model.is_file():
        fail(f"model file not found: {args.model}")
    cfg = QRConfig(**{f: getattr(args, f) for f in asdict(QRConfig())})
    try:
        res = run(args.model, args.out, cfg, args.resume, args.checkpoint_every)
        write_model(args.model, res["theta"], args.dest, res["summary"])
    except (ValueError, RuntimeError) as e:
        fail(str(e))
    print(f"wrote {args.dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
