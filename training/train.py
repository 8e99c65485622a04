"""Train h_gen: ``python -m training.train --config FILE [--set key=value ...] [--resume]``.

One step (paper §IV-C, Fig. 3):

1. B (scheduled) identities × n images from the sampler (uniform, then KCS after ``kcs_start_step``);
2. e = the cached backbone embeddings of the *un-augmented* images (h_bb is frozen and never runs here);
3. θ = h_gen(e): one verifier per image;
4. logits = f(x_k; θ_j) on the *augmented* images — all nB×nB pairs, or each verifier's n positives
   plus k negatives (pair subsampling, :func:`training.samplers.select_columns`);
5. L = L_bce (λ = 1 − β/B) + α_norm L_norm (eqs. 6–9); SGD with momentum, cosine LR after a warm-up.

Two stages (``distill_pretrain_steps`` > 0, the shipped configuration; beyond the paper, why and its
figures: docs/training.md, "The shipped recipe"): first the shared prefix of f alone regresses the frozen
backbone's embedding of random training images through a training-only linear map
(:meth:`Trainer._distill_only_step`); then the steps above, with the prefix frozen
(``freeze_shared_in_pairs``) so that only h_gen learns to generate the personal layers. Each stage has its
own LR warm-up and cosine; the pair stage's schedules count from its first step. Every evaluation then
also reports the distilled prefix alone (cosine of its embeddings) and the teacher·student dot product a
linear personal head can reach.

Outputs under ``out_dir``: ``checkpoints/last.pt`` (model, optimizer, next step, sampler state, config,
arch hash, history — written atomically every ``checkpoint_every`` steps and at the end),
``model_final.pt`` (h_gen weights + config + arch hash, for enrollment), ``metrics.csv`` (always),
TensorBoard scalars under ``tb/`` when the ``tensorboard`` package is installed, ``eval.jsonl`` and
``learning_curve.png`` (periodic evaluation on the held-out fold's View 2 pairs; score of a pair
(a, b) = ½·(f(b; h(a)) + f(a; h(b))), accuracy with thresholds from the other 9 tenths of those pairs).

Reproducibility: the sampler, the augmentation and the negative selection draw from generators
seeded by (seed, rank, step), and the schedules are functions of the step, so ``--resume`` continues
bit-for-bit: a run stopped and resumed ends with exactly the parameters of an uninterrupted one (on
the same machine and thread count; tested).

Several processes: ``torchrun --nproc_per_node=2 -m training.train ...`` (gloo backend, CPU). Each rank
draws its own batches (its rank is in the seed), gradients are averaged with one all-reduce per step,
so every rank holds the same parameters; only rank 0 evaluates and writes files.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from pvcore.atomic import atomic_write, atomic_write_json
from pvcore.cli import fail, setup_logging
from pvcore.spec import F_SPEC
from training.config import TrainConfig, config_diff, load_config
from training.data.train_set import (
    AugmentConfig,
    EvalPairs,
    TrainSet,
    augment,
    held_out_lfw_folds,
    load_lfw_split,
    random_split,
    with_cfp_people,
)
from training.direct import DirectF
from training.eval.metrics import VerificationReport, interleaved_folds
from training.hypermodel import Generator
from training.losses import bce_lambda, identity_targets, total_loss
from training.samplers import KCSSampler, UniformSampler, select_columns
from training.schedules import alpha_norm_at, batch_identities_at, lr_at
from training.verifier.batched import pairwise_logits, pairwise_logits_split, prefix_features, split_spec
from training.verifier.functional import to_input
from training.verifier.hypernet import HGen, HGenConfig

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
# training faces the pooled features are centred on (training.centering): a feature's spread about μ is ~1 (length
# ~10 over 96 dimensions), so μ's standard error is ~0.02 per dimension, against |μ| ~3
CENTER_FACES = 2000
CSV_FIELDS = ["step", "loss", "bce", "lnorm", "lr", "alpha_norm", "identities", "batch_images", "pairs",
              "pos_logit", "neg_logit", "kcs", "distill", "step_s"]


# --------------------------------------------------------------------------------------------------
# building blocks


def dist_info() -> tuple[int, int]:
    """(rank, world size); joins the gloo process group when started by torchrun (WORLD_SIZE > 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def build_data(cfg: TrainConfig, progress: bool = True) -> tuple:
    """(training set, test pairs[, validation pairs when cfg.val_fold >= 0])."""
    if cfg.dataset == "random":
        return random_split(cfg.random_identities, cfg.random_images_per_id, seed=cfg.seed)
    data = load_lfw_split(cfg.fold, cfg.backbone, cfg.detector, cfg.min_images_per_id, cfg.missing_embeddings,
                          progress=progress, val_fold=cfg.val_fold)
    if not cfg.cfp_folds():
        return data
    train = with_cfp_people(data[0], cfg.cfp_folds(), held_out_lfw_folds(cfg.to_dict()), cfg.backbone, cfg.detector,
                            cfg.missing_embeddings, progress, min_images_per_id=cfg.min_images_per_id)
    return (train, *data[1:])


def build_model(cfg: TrainConfig, embeddings: np.ndarray) -> nn.Module:
    torch.manual_seed(cfg.seed)
    if cfg.direct_f:
        return DirectF(F_SPEC, seed=cfg.seed)
    dim = embeddings.shape[1]
    hgen = HGen(HGenConfig(embedding_dim=dim, hidden=cfg.hgen_hidden, rank=cfg.hgen_rank,
                                 personal_from=cfg.personal_from), F_SPEC)
    if cfg.standardize_embeddings:
        e = torch.from_numpy(np.asarray(embeddings, np.float64))
        mean, std = e.mean(0), e.std(0).clamp_min(1e-6)
    else:
        mean, std = torch.zeros(dim), torch.ones(dim)
    return Generator(hgen, mean, std)


def init_from_run(model: nn.Module, distill_proj: nn.Linear | None, path: str | Path) -> None:
    """Start ``model`` from another run's shared θ (e.g. a distilled prefix, :attr:`TrainConfig.init_from`).

    θ's layout follows the layer order, so the source's shared values are θ[:n_src]. The first n of them
    (n = this model's shared part) become this model's shared θ; the rest, layers this model generates per
    person, become h_gen's output offset θ₀ for those slots, so that every generated f starts with the
    source's layers and h learns per-person deviations from them."""
    if not isinstance(model, Generator):
        raise ValueError("init_from needs a hypernetwork (not direct_f)")
    ck = torch.load(path, map_location="cpu", weights_only=False)
    if ck.get("arch_hash") != F_SPEC.arch_hash():
        raise ValueError(f"init_from {path}: made for arch hash {ck.get('arch_hash')}, this f is {F_SPEC.arch_hash()}")
    src = ck["model"].get("hgen.shared")
    if src is None:
        raise ValueError(f"init_from {path}: that run has no shared θ (personal_from was empty)")
    src = src.float()
    n = model.hgen.n_shared
    with torch.no_grad():
        if model.hgen.shared is not None:
            model.hgen.shared.copy_(src[:n])
        if len(src) > n:
            model.hgen.head.bias[:len(src) - n].copy_(src[n:])
    proj = ck.get("distill_proj")
    if distill_proj is not None and proj is not None and proj["weight"].shape == distill_proj.weight.shape:
        distill_proj.load_state_dict(proj)
    log.info("initialized from %s: %d shared θ values, %d as h_gen's θ₀", path, min(n, len(src)), max(0, len(src) - n))


def build_sampler(cfg: TrainConfig, data: TrainSet, rank: int,
                  cluster_of: np.ndarray | None = None) -> UniformSampler:
    if cfg.no_kcs:
        return UniformSampler(data.labels, cfg.n_per_id, cfg.seed, rank)
    k = cfg.kcs_clusters or max(1, round(data.n_identities / 35))
    # the pair stage's schedules count from its first step (after the distillation stage, if any)
    start = cfg.kcs_start_step + cfg.distill_pretrain_steps
    return KCSSampler(data.labels, data.embeddings, cfg.n_per_id, k, start, cfg.seed, rank, cluster_of)


def step_seed(seed: int, rank: int, step: int, stream: int) -> int:
    return int(np.random.default_rng([seed, rank, step, stream]).integers(2 ** 62))


def allreduce_grads(params: list[nn.Parameter], world: int) -> None:
    """Average gradients over ranks with one flat all-reduce (frozen parameters take no part)."""
    params = [p for p in params if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    off = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[off:off + n].view_as(p).clone()
        off += n


def model_logits(model: nn.Module, x: torch.Tensor, thetas: torch.Tensor, columns: torch.Tensor | None,
                 chunk: int) -> torch.Tensor:
    """The nB×nB (or subsampled) logits; with partial personalization the shared prefix runs once per image."""
    pf = model.hgen.cfg.personal_from if isinstance(model, Generator) else ""
    if pf:
        return pairwise_logits_split(x, thetas, pf, columns=columns, chunk=chunk)
    return pairwise_logits(x, thetas, columns=columns, chunk=chunk)


@torch.no_grad()
def pair_scores(model: nn.Module, ev: EvalPairs, chunk: int = 4, pairs_per_call: int = 100,
                one_way: bool = False) -> np.ndarray:
    """Score of every evaluation pair: ½(f(b; h(a)) + f(a; h(b))), or the direct-f similarity.

    ``one_way``: both directions as separate scores, (2P,) = [f(b; h(a)) for all pairs, f(a; h(b)) for all
    pairs] — what a device computes for one probe, so its threshold is the one that ships."""
    model.eval()
    out = []
    for s in range(0, len(ev.left), pairs_per_call):
        a, b = ev.left[s:s + pairs_per_call], ev.right[s:s + pairs_per_call]
        u, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
        x = to_input(ev.crops_of(u))
        ia, ib = torch.from_numpy(inv[:len(a)]), torch.from_numpy(inv[len(a):])
        if isinstance(model, DirectF):
            phi = model.features(x)
            out.append(model.score(phi[ia], phi[ib]))
            continue
        th = model(torch.from_numpy(ev.embeddings[u]))
        rows = torch.cat([ia, ib])
        cols = torch.cat([ib, ia])[:, None]
        logits = model_logits(model, x, th[rows], cols, chunk)[:, 0]
        out.append(logits if one_way else (logits[:len(a)] + logits[len(a):]) / 2)
    model.train()
    res = torch.cat(out).numpy().astype(np.float64)
    if one_way:  # per call [ab..., ba...] → all ab, then all ba
        parts = [o.numpy() for o in out]
        res = np.concatenate([np.concatenate([p[:len(p) // 2] for p in parts]),
                              np.concatenate([p[len(p) // 2:] for p in parts])]).astype(np.float64)
    return res


def device_threshold(model: nn.Module, pairs: EvalPairs, chunk: int = 4) -> tuple[float, float]:
    """The most accurate logit threshold for one-way scores (both directions) on ``pairs``, as the device decides,
    and the accuracy there."""
    from training.eval.metrics import best_threshold

    sc = pair_scores(model, pairs, chunk, one_way=True)
    thr, acc = best_threshold(sc, np.concatenate([pairs.same, pairs.same]))
    log.info("device threshold (%s, one-way scores, both directions): %.4f, accuracy there %.4f", pairs.name, thr, acc)
    return float(thr), float(acc)


def evaluate(model: nn.Module, ev: EvalPairs, chunk: int = 4) -> VerificationReport:
    scores = pair_scores(model, ev, chunk)
    return VerificationReport.from_scores(scores, ev.same, folds=interleaved_folds(len(scores)))


def save_learning_curve(path: Path, evals: list[dict], losses: list[tuple[int, float]]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    if losses:
        st, lo = np.array(losses).T
        ax1.plot(st, lo, color="0.7", lw=0.8, label="loss")
        w = max(1, len(lo) // 50)
        if len(lo) >= w > 1:
            ax1.plot(st[w - 1:], np.convolve(lo, np.ones(w) / w, "valid"), color="C0", label=f"mean of {w}")
        ax1.set_yscale("log")
        ax1.legend()
    ax1.set_xlabel("step")
    ax1.set_title("training loss")
    if evals:
        st = [e["step"] for e in evals]
        for key, label in [("accuracy_mean", "accuracy"), ("auc", "AUC"), ("tar_at_far_1e3", "TAR@FAR=1e-3"),
                           ("student_accuracy", "distilled prefix alone (cosine)")]:
            if all(key in e for e in evals):
                ax2.plot(st, [e[key] for e in evals], marker="o", label=label)
        ax2.legend()
    ax2.set_xlabel("step")
    ax2.set_title("held-out pairs")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))


# --------------------------------------------------------------------------------------------------
# the trainer


@dataclass
class History:
    evals: list[dict] = field(default_factory=list)
    losses: list[tuple[int, float]] = field(default_factory=list)


class Trainer:
    def __init__(self, cfg: TrainConfig, data: TrainSet, eval_pairs: EvalPairs | None = None,
                 progress: bool = True, val_pairs: EvalPairs | None = None) -> None:
        self.cfg = cfg.validate()
        self.data, self.eval_pairs, self.progress = data, eval_pairs, progress
        self.val_pairs = val_pairs  # model selection: model_best_val.pt and the threshold come from these
        self.rank, self.world = dist_info()
        self.out = Path(cfg.out_dir)
        self.ckpt_path = self.out / "checkpoints" / "last.pt"
        torch.set_num_threads(cfg.threads)
        self.model = build_model(cfg, data.embeddings)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        groups: list = self.params
        shared = getattr(getattr(self.model, "hgen", None), "shared", None)
        if cfg.shared_lr_factor != 1.0 and shared is not None:  # the pair stage scales this group's LR
            groups = [{"params": [p for p in self.params if p is not shared]},
                      {"params": [shared], "lr_factor": cfg.shared_lr_factor}]
        if cfg.optimizer == "sgd":
            self.opt: torch.optim.Optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                                                              weight_decay=cfg.weight_decay)
        else:
            self.opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999),
                                         weight_decay=cfg.weight_decay)
        self.sampler: UniformSampler | None = None
        self.history = History()
        self.next_step = 0
        self.aug = AugmentConfig(cfg.aug_flip, cfg.aug_translate_px, cfg.aug_scale, cfg.aug_brightness,
                                 cfg.aug_contrast, cfg.aug_gray)
        self.tb = None
        # Feature distillation (beyond the paper, measured as an ablation): the shared prefix's pooled features,
        # through a training-only linear map, regress the backbone's (standardized) embedding of the same image.
        # A dense target for every image, where the pair loss gives a few bits per pair: without it neither h
        # nor a directly trained f learns face features on LFW (docs/results.md, "The verifier on held-out LFW").
        self.distill_proj: nn.Linear | None = None
        if cfg.feature_distill > 0 and not cfg.direct_f:
            if not cfg.personal_from:
                raise ValueError("feature_distill needs personal_from (a shared prefix to distill into)")
            self.split = split_spec(F_SPEC, cfg.personal_from)
            self.distill_proj = nn.Linear(self.split[1].input_ch, data.embeddings.shape[1])
            self.opt.add_param_group({"params": list(self.distill_proj.parameters())})
            self.params += list(self.distill_proj.parameters())  # all-reduced with the rest under DDP
        if cfg.init_from:  # a resumed run then loads its own checkpoint over this
            init_from_run(self.model, self.distill_proj, cfg.init_from)

    # -- checkpoints ------------------------------------------------------------------------------
    def checkpoint(self) -> dict[str, Any]:
        assert self.sampler is not None
        return {"format": CHECKPOINT_FORMAT, "next_step": self.next_step, "model": self.model.state_dict(),
                "optimizer": self.opt.state_dict(), "config": self.cfg.to_dict(),
                "distill_proj": self.distill_proj.state_dict() if self.distill_proj is not None else None,
                "arch": F_SPEC.name,
                "arch_hash": F_SPEC.arch_hash(), "sampler": self.sampler.state(), "world_size": self.world,
                "history": {"evals": self.history.evals, "losses": self.history.losses},
                "torch": torch.__version__}

    def save_checkpoint(self) -> None:
        if self.rank != 0:
            return
        ck = self.checkpoint()
        atomic_write(self.ckpt_path, lambda f: torch.save(ck, f))
        log.debug("checkpoint at step %d → %s", self.next_step, self.ckpt_path)

    def load_checkpoint(self, path: Path) -> np.ndarray | None:
        ck = torch.load(path, map_location="cpu", weights_only=False)
        if ck.get("format") != CHECKPOINT_FORMAT:
            raise RuntimeError(f"{path}: checkpoint format {ck.get('format')}, this code reads {CHECKPOINT_FORMAT}")
        if ck["arch_hash"] != F_SPEC.arch_hash():
            raise RuntimeError(f"{path}: made for f {ck['arch']} (arch hash {ck['arch_hash']}); this code has "
                               f"{F_SPEC.name} ({F_SPEC.arch_hash()}). Start a new run (another out_dir).")
        old = TrainConfig.from_dict(ck["config"], strict=False)
        diff = config_diff(old, self.cfg)
        if diff:
            log.warning("resuming with a changed config (the run is no longer bit-for-bit reproducible): %s",
                        ", ".join(f"{k}: {a!r} → {b!r}" for k, (a, b) in diff.items()))
        if ck["world_size"] != self.world:
            log.warning("resuming with %d processes, the checkpoint was written by %d", self.world, ck["world_size"])
        self.model.load_state_dict(ck["model"])
        if len(ck["optimizer"]["param_groups"]) != len(self.opt.param_groups):
            raise RuntimeError(f"{path}: its optimizer has {len(ck['optimizer']['param_groups'])} parameter groups, "
                               f"this config makes {len(self.opt.param_groups)} (shared_lr_factor 1 vs ≠ 1 was "
                               "changed?); resume with the run's own setting or start a new run")
        factors = [g.get("lr_factor") for g in self.opt.param_groups]
        self.opt.load_state_dict(ck["optimizer"])
        for g, f in zip(self.opt.param_groups, factors):  # the config's factor, not the checkpoint's
            if f is not None:
                g["lr_factor"] = f
        if self.distill_proj is not None and ck.get("distill_proj") is not None:
            self.distill_proj.load_state_dict(ck["distill_proj"])
        self.next_step = int(ck["next_step"])
        self.history = History(list(ck["history"]["evals"]), [tuple(x) for x in ck["history"]["losses"]])
        co = ck["sampler"].get("cluster_of")
        log.info("resumed from %s at step %d", path, self.next_step)
        return None if co is None else np.asarray(co, np.int64)

    # -- logging ----------------------------------------------------------------------------------
    def _open_logs(self) -> None:
        if self.rank != 0:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.out / "config.json", self.cfg.to_dict())
        csv_path = self.out / "metrics.csv"
        rows = []
        if csv_path.exists() and self.next_step > 0:  # drop rows a crashed run wrote after its last checkpoint
            with open(csv_path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) < self.next_step]
        with open(csv_path, "w", newline="") as f:
            w = csv.DictWriter(f, CSV_FIELDS)
            w.writeheader()
            w.writerows(rows)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.info("tensorboard is not installed: scalars go to %s only", csv_path)
        else:
            self.tb = SummaryWriter(str(self.out / "tb"), purge_step=self.next_step or None)

    def _log(self, step: int, stats: dict[str, float]) -> None:
        if self.rank != 0:
            return
        with open(self.out / "metrics.csv", "a", newline="") as f:
            csv.DictWriter(f, CSV_FIELDS).writerow({k: stats.get(k, "") for k in CSV_FIELDS} | {"step": step})
        if self.tb is not None:
            for k in CSV_FIELDS[1:]:
                self.tb.add_scalar(f"train/{k}", stats[k], step)

    def _evaluate(self, step: int) -> dict | None:
        if self.rank != 0 or self.eval_pairs is None:
            return None
        t0 = time.perf_counter()
        rep = evaluate(self.model, self.eval_pairs, self.cfg.chunk)
        rec = {"step": step, **{k: v for k, v in rep.to_dict().items() if not isinstance(v, list)}}
        if self.distill_proj is not None:
            srep, drep = self._student_reports(self.eval_pairs)
            rec |= {"student_accuracy": srep.accuracy_mean, "student_auc": srep.auc,
                    "student_dot_accuracy": drep.accuracy_mean}
            log.info("step %d — teacher·student dot product (a linear head's reach): %s", step, drep.summary())
            log.info("step %d — distilled prefix alone (cosine): %s", step, srep.summary())
        if self.val_pairs is not None:
            vrep = evaluate(self.model, self.val_pairs, self.cfg.chunk)
            rec |= {"val_accuracy": vrep.accuracy_mean, "val_auc": vrep.auc}
            log.info("step %d — validation %s: %s", step, self.val_pairs.name, vrep.summary())
            best = max((e["val_accuracy"] for e in self.history.evals if "val_accuracy" in e), default=-1.0)
            if rec["val_accuracy"] > best:  # the first of equals is kept: fewer steps
                atomic_write(self.out / "model_best_val.pt", lambda f: torch.save(self._final(rec), f))
                log.info("step %d — best validation accuracy so far: model_best_val.pt", step)
        rec["eval_s"] = time.perf_counter() - t0
        self.history.evals.append(rec)
        with open(self.out / "eval.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        if self.tb is not None:
            for k in ("accuracy_mean", "auc", "tar_at_far_1e3", "tar_at_far_1e2"):
                self.tb.add_scalar(f"eval/{k}", rec[k], step)
        save_learning_curve(self.out / "learning_curve.png", self.history.evals, self.history.losses)
        log.info("step %d — %s: %s", step, self.eval_pairs.name, rep.summary())
        return rec

    def _device_threshold(self) -> float:
        """:func:`device_threshold` on the validation pairs if there are any, else on the held-out test pairs."""
        pairs = self.val_pairs if self.val_pairs is not None else self.eval_pairs
        if pairs is None or isinstance(self.model, DirectF):
            return 0.0
        return device_threshold(self.model, pairs, self.cfg.chunk)[0]

    def _final(self, last_eval: dict | None) -> dict[str, Any]:
        """What model_final.pt / model_best_val.pt hold: h_gen's weights, config, arch hash, threshold."""
        return {"model": self.model.state_dict(), "config": self.cfg.to_dict(), "arch": F_SPEC.name,
                "arch_hash": F_SPEC.arch_hash(), "embedding_dim": int(self.data.embeddings.shape[1]),
                "direct_f": self.cfg.direct_f,
                # operating threshold (logit): the most accurate one for ONE-WAY scores f(probe; θ_user)
                # (both directions), as the device decides
                "threshold": self._device_threshold(),
                "eval": last_eval}

    def _center_features(self) -> None:
        """When the pair stage begins: the mean of the shared prefix's features over up to ``CENTER_FACES``
        training faces folded into gdc's bias, so that f's normalization (spec v5) acts on s − μ
        (training.centering). Deterministic (a seeded choice of faces), so every process and a resumed run
        fold the same μ; a checkpoint written after this step holds the centred prefix."""
        from training.centering import center_slot, centered

        shared = getattr(getattr(self.model, "hgen", None), "shared", None)
        if shared is None or shared.numel() < center_slot().stop:
            return  # gdc is generated per person (or f is trained directly): no shared mean to fold
        n = len(self.data.embeddings)
        idx = np.sort(np.random.default_rng(self.cfg.seed).permutation(n)[:CENTER_FACES])
        new, info = centered(shared.detach(), self.data.batch_crops(idx).numpy())
        with torch.no_grad():
            shared.copy_(new)
        log.info("pooled features centred on %d training faces: |μ| %.3f, length about μ %.2f (5th–95th percentile "
                 "%.2f–%.2f)", info["faces"], info["mu_norm"], info["length_mean"], info["length_p5"],
                 info["length_p95"])

    # -- feature distillation ----------------------------------------------------------------------
    def _distill_target(self, e: torch.Tensor) -> torch.Tensor:
        assert isinstance(self.model, Generator)
        if self.cfg.distill_target == "centered":
            return e - self.model.emb_mean
        return (e - self.model.emb_mean) / self.model.emb_std

    def _student_embedding(self, feats: torch.Tensor) -> torch.Tensor:
        """The shared prefix's pooled features through the training-only map into the backbone's space."""
        assert self.distill_proj is not None
        return self.distill_proj(feats.mean(dim=(2, 3)))

    def _distill_loss(self, feats: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        cos = torch.nn.functional.cosine_similarity(self._student_embedding(feats), self._distill_target(e))
        return (1 - cos).mean()

    @torch.no_grad()
    def _student_embeddings(self, ev: EvalPairs, batch: int = 256) -> torch.Tensor:
        """The distilled prefix as an embedding model: s(x) for every evaluation image, unnormalized."""
        assert isinstance(self.model, Generator) and self.model.hgen.shared is not None
        out = []
        for s in range(0, len(ev.images), batch):
            x = to_input(ev.crops_of(np.arange(s, min(s + batch, len(ev.images)))))
            out.append(self._student_embedding(prefix_features(x, self.model.hgen.shared, self.split[0])))
        return torch.cat(out)

    def _student_reports(self, ev: EvalPairs) -> tuple[VerificationReport, VerificationReport]:
        """(cosine, dot): the student alone, score cos(s(a), s(b)); and what a linear personal head can
        compute from the prefix, ½(⟨t(a), s(b)⟩ + ⟨t(b), s(a)⟩) with t the distillation target of the
        backbone embedding."""
        z = self._student_embeddings(ev)
        t = self._distill_target(torch.from_numpy(np.ascontiguousarray(ev.embeddings)))
        zn = torch.nn.functional.normalize(z, dim=1)
        cos = (zn[ev.left] * zn[ev.right]).sum(1)
        dot = 0.5 * ((t[ev.left] * z[ev.right]).sum(1) + (t[ev.right] * z[ev.left]).sum(1))
        folds = interleaved_folds(len(cos))
        return tuple(VerificationReport.from_scores(sc.numpy().astype(np.float64), ev.same, folds=folds)
                     for sc in (cos, dot))

    def _distill_only_step(self, step: int, t0: float) -> dict[str, float]:
        """Stage 1: the shared prefix regresses the backbone embedding of random training images."""
        cfg, data = self.cfg, self.data
        assert isinstance(self.model, Generator) and self.model.hgen.shared is not None
        rng = np.random.default_rng(step_seed(cfg.seed, self.rank, step, 2))
        idx = rng.choice(len(data.images), size=min(cfg.distill_batch, len(data.images)), replace=False)
        gen = torch.Generator().manual_seed(step_seed(cfg.seed, self.rank, step, 1))
        crops = data.batch_crops(idx)
        x = augment(crops, self.aug, gen) if cfg.augment else to_input(crops)
        e = torch.from_numpy(np.ascontiguousarray(data.embeddings[idx]))
        aux = self._distill_loss(prefix_features(x, self.model.hgen.shared, self.split[0]), e)
        d = cfg.distill_pretrain_steps
        lr = lr_at(step, cfg.distill_lr or cfg.lr, d, min(cfg.warmup_steps, d // 10), cfg.final_lr_factor)
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        (cfg.feature_distill * aux).backward()
        if self.world > 1:
            allreduce_grads(self.params, self.world)
        self.opt.step()
        nan = float("nan")
        aux_v = float(aux.detach())
        return {"loss": cfg.feature_distill * aux_v, "bce": nan, "lnorm": nan, "lr": lr, "alpha_norm": 0.0,
                "identities": 0, "batch_images": len(idx), "pairs": 0, "pos_logit": nan, "neg_logit": nan,
                "kcs": 0.0, "distill": aux_v, "step_s": time.perf_counter() - t0}

    # -- one step ---------------------------------------------------------------------------------
    def train_step(self, step: int) -> dict[str, float]:
        cfg, data = self.cfg, self.data
        assert self.sampler is not None
        t0 = time.perf_counter()
        if self.distill_proj is not None and step < cfg.distill_pretrain_steps:
            return self._distill_only_step(step, t0)
        pstep = step - cfg.distill_pretrain_steps  # the pair stage's own step count
        if pstep == 0:
            self._center_features()
        frozen = self.distill_proj is not None and cfg.freeze_shared_in_pairs
        if frozen:  # not in the checkpoint: set again on every step (idempotent), so a resumed run freezes too
            self.model.hgen.shared.requires_grad_(False)
        b = min(batch_identities_at(pstep, cfg.b0, cfg.batch_doublings, cfg.batch_warmup_steps),
                self.sampler.n_identities)
        batch = self.sampler.sample(step, b)
        gen = torch.Generator().manual_seed(step_seed(cfg.seed, self.rank, step, 1))
        crops = data.batch_crops(batch.images)
        x = augment(crops, self.aug, gen) if cfg.augment else to_input(crops)
        e = torch.from_numpy(np.ascontiguousarray(data.embeddings[batch.images]))
        labels = torch.from_numpy(batch.labels)
        nb, n = len(labels), cfg.n_per_id
        cols = is_pos = None
        if cfg.pair_subsample_k > 0 and cfg.pair_subsample_k < nb - n:
            cols, is_pos = select_columns(labels, e, cfg.pair_subsample_k, cfg.pair_subsample_mode, gen)
        aux = torch.zeros(())
        if isinstance(self.model, DirectF):
            logits, thetas = self.model(x, cols)
        elif self.distill_proj is not None:
            thetas = self.model(e)
            prefix, suffix, n_pre = self.split
            with torch.set_grad_enabled(not frozen):  # frozen: a fixed feature extractor, no backward through it
                feats = prefix_features(x, thetas[0, :n_pre], prefix)
            if not frozen:
                aux = self._distill_loss(feats, e)
            logits = pairwise_logits(feats, thetas[:, n_pre:], suffix, columns=cols, chunk=cfg.chunk)
        else:
            thetas = self.model(e)
            logits = model_logits(self.model, x, thetas, cols, cfg.chunk)
        y = identity_targets(labels, columns=cols)
        if cfg.soft_target_mix > 0:
            sim = torch.sigmoid((e @ e.t() - cfg.soft_target_threshold) / cfg.soft_target_temperature)
            sim = sim if cols is None else torch.gather(sim, 1, cols)
            y = (1 - cfg.soft_target_mix) * y + cfg.soft_target_mix * sim
        weights = None
        if cols is not None and is_pos is not None and cfg.pair_subsample_reweight:
            k = cols.shape[1] - n
            weights = torch.where(is_pos, 1.0, (nb - n) / k)
        lam = bce_lambda(b, cfg.beta)
        alpha = alpha_norm_at(pstep, cfg.alpha_norm_final(), cfg.alpha_norm_start if not cfg.no_lnorm else 0.0,
                              cfg.alpha_norm_ramp_steps, cfg.alpha_norm_shape)
        # L_norm on what this step trains: a frozen shared prefix is a constant (it only inflated the logged
        # L_norm and loss, never a gradient)
        normed = thetas[:, self.split[2]:] if frozen else thetas
        loss, bce, lnorm = total_loss(logits, y, normed, lam, alpha, weights)
        if self.distill_proj is not None:
            loss = loss + cfg.feature_distill * aux
        lr = lr_at(pstep, cfg.lr, cfg.total_steps - cfg.distill_pretrain_steps, cfg.warmup_steps, cfg.final_lr_factor)
        for g in self.opt.param_groups:
            g["lr"] = lr * g.get("lr_factor", 1.0)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.world > 1:
            allreduce_grads(self.params, self.world)
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
        self.opt.step()
        with torch.no_grad():
            hard = identity_targets(labels, columns=cols).bool()
            pos = float(logits[hard].mean()) if hard.any() else float("nan")
            neg = float(logits[~hard].mean()) if (~hard).any() else float("nan")
        return {"loss": loss.item(), "bce": bce.item(), "lnorm": lnorm.item(), "lr": lr, "alpha_norm": alpha,
                "identities": b, "batch_images": nb, "pairs": logits.numel(), "pos_logit": pos, "neg_logit": neg,
                "kcs": float(batch.cluster >= 0), "distill": float(aux.detach()), "step_s": time.perf_counter() - t0}

    # -- the run ----------------------------------------------------------------------------------
    def run(self, resume: bool = False) -> dict[str, Any]:
        cfg = self.cfg
        cluster_of = None
        if resume:
            if self.ckpt_path.exists():
                cluster_of = self.load_checkpoint(self.ckpt_path)
            else:
                log.warning("--resume: no checkpoint at %s, starting from step 0", self.ckpt_path)
        elif self.rank == 0 and self.ckpt_path.exists():
            raise FileExistsError(f"{self.ckpt_path} exists: pass --resume to continue it, or choose another out_dir")
        self.sampler = build_sampler(cfg, self.data, self.rank, cluster_of)
        self._open_logs()
        if self.world > 1:  # same start everywhere even if a rank's init differed
            for p in self.model.state_dict().values():
                dist.broadcast(p, 0)
        bar = tqdm(total=cfg.total_steps, initial=self.next_step, desc="train", unit="step",
                   disable=not self.progress or self.rank != 0)
        last_eval = None
        stats: dict[str, float] = {}
        for step in range(self.next_step, cfg.total_steps):
            stats = self.train_step(step)
            if not np.isfinite(stats["loss"]):
                raise FloatingPointError(f"loss is {stats['loss']} at step {step}; lower lr or set grad_clip")
            self.next_step = step + 1
            if step % cfg.log_every == 0 or self.next_step == cfg.total_steps:
                self.history.losses.append((step, stats["loss"]))
                self._log(step, stats)
            if cfg.eval_every and self.next_step % cfg.eval_every == 0 and self.next_step < cfg.total_steps:
                last_eval = self._evaluate(self.next_step)
            if self.next_step % cfg.checkpoint_every == 0:
                self.save_checkpoint()
            bar.update(1)
            bar.set_postfix(loss=f"{stats['loss']:.3f}", B=int(stats["identities"]),
                            acc=f"{last_eval['accuracy_mean']:.3f}" if last_eval else "-")
        bar.close()
        if self.next_step == cfg.total_steps and (not self.history.evals
                                                  or self.history.evals[-1]["step"] != cfg.total_steps):
            last_eval = self._evaluate(cfg.total_steps)
        self.save_checkpoint()
        if last_eval is None and self.history.evals:  # resumed after the last evaluation
            last_eval = self.history.evals[-1]
        if self.rank == 0:
            final = self._final(last_eval)
            atomic_write(self.out / "model_final.pt", lambda f: torch.save(final, f))
            if self.tb is not None:
                self.tb.close()
        return {"step": self.next_step, "last": stats, "eval": last_eval}


def train(cfg: TrainConfig, data: tuple[TrainSet, EvalPairs | None] | None = None, resume: bool = False,
          progress: bool = True) -> dict[str, Any]:
    """Build (or take) the data, train, return a summary. ``data`` lets tests inject synthetic sets."""
    train_set, ev, *val = data if data is not None else build_data(cfg, progress)
    return Trainer(cfg, train_set, ev, progress, val[0] if val else None).run(resume)


def state_bytes(model: nn.Module) -> bytes:
    """The parameters as bytes (tests compare runs bit for bit)."""
    buf = io.BytesIO()
    for k, v in sorted(model.state_dict().items()):
        buf.write(k.encode())
        buf.write(v.detach().contiguous().numpy().tobytes())
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, help="TOML file of TrainConfig fields (see training/config.py)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override one config field (repeatable), e.g. --set lr=3e-4 --set no_kcs=true")
    ap.add_argument("--resume", action="store_true", help="continue from <out_dir>/checkpoints/last.pt")
    ap.add_argument("--print-config", action="store_true", help="print the effective config as JSON and exit")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    setup_logging(args.verbose)
    try:
        cfg = load_config(args.config, args.overrides)
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    try:
        res = train(cfg, resume=args.resume, progress=not args.no_progress)
    except (FileExistsError, RuntimeError, FloatingPointError) as e:
        fail(str(e))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if res["eval"]:
        log.info("final: accuracy %.4f, AUC %.4f", res["eval"]["accuracy_mean"], res["eval"]["auc"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
