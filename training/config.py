"""Training configuration: one dataclass with defaults, overridable from a TOML file and ``--set key=value``.

Precedence: defaults < TOML file (``--config``) < ``--set`` (in order). The TOML file is flat
(``lr = 0.001``); a table is allowed for grouping only (``[schedule]`` keys are read as top-level
keys), unknown keys are refused with the list of known ones.

Defaults follow the paper where it says something (SGD lr 1e-3, momentum 0.9, weight decay 1e-4,
3000 warm-up steps, β = 2, batch ×8 during warm-up, KCS after a uniform warm-up) and are scaled to
LFW and a CPU where it cannot apply as is (KCS K ≈ identities/35 instead of 150 on 85k identities,
KCS from step 3000 instead of 100k, pair subsampling on).
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from training.verifier.batched import DEFAULT_CHUNK


@dataclass
class TrainConfig:
    # -- data -----------------------------------------------------------------------------------------
    dataset: Literal["lfw", "random"] = "lfw"  # "random": synthetic crops/embeddings (smoke runs, tests)
    backbone: str = "mobilefacenet-y1"  # h_bb: the frozen embedding model (training.backbones registry)
    detector: str = "dlib"  # which aligned-crop cache (training.face.cache.lfw_cache)
    missing_embeddings: Literal["compute", "drop"] = "compute"  # not in the embedding cache: compute or skip
    fold: int = 0  # people.txt fold held out (0–9): its people are never trained on; its pairs evaluate
    val_fold: int = -1  # a second people.txt fold held out for model selection (−1: none): its pairs choose
    # the checkpoint (model_best_val.pt) and the operating threshold, so the test fold is only reported
    min_images_per_id: int = 2  # identities with fewer images are left out of training
    cfp_train_folds: str = ""  # CFP protocol folds ("0,1,2,3"; CFP's folds are people-disjoint, 50 people
    # each) whose people join the training people, frontal and profile photos; "" = LFW only. CFP people
    # named in the held-out LFW folds (fold, val_fold) stay out; those named in LFW's training folds are one
    # identity with their LFW photos. The benchmark scores CFP on the other folds only.
    cfp_val_folds: str = ""  # CFP folds kept out of training and out of the reported CFP figures: they choose
    # -- batch ----------------------------------------------------------------------------------------
    n_per_id: int = 4  # n: images per identity in a batch
    b0: int = 4  # initial identities per batch B0 (nB = B·n)
    batch_doublings: int = 3  # B doubles this many times during the batch warm-up (paper: ×8)
    batch_warmup_steps: int = 3000  # step at which B reaches b0·2^doublings
    # -- loss -----------------------------------------------------------------------------------------
    beta: float = 2.0  # λ = 1 − β/B (eq. 7)
    alpha_norm: float = 1e-5  # final α_norm (eq. 9); L_norm is Σθ² ≈ θ_size at init, so α·L_norm ≈ 0.2
    alpha_norm_start: float = 0.0
    alpha_norm_ramp_steps: int = 3000
    alpha_norm_shape: Literal["linear", "cosine"] = "linear"
    soft_target_mix: float = 0.0  # 0: hard targets (eq. 3); >0: mix with σ((cos(e_j,e_k) − thr)/temp)
    soft_target_threshold: float = 0.5
    soft_target_temperature: float = 0.05
    # -- pair subsampling -----------------------------------------------------------------------------
    pair_subsample_k: int = 16  # each verifier sees its n positives and k negatives; 0 = all nB columns
    pair_subsample_mode: Literal["hard", "random"] = "hard"  # hard: most similar in the backbone's space
    pair_subsample_reweight: bool = True  # weight kept negatives by (#negatives in the row)/k
    # -- KCS ------------------------------------------------------------------------------------------
    kcs_clusters: int = 0  # K; 0 = round(training identities / 35)
    kcs_start_step: int = 3000  # T: uniform sampling before
    # -- optimisation ---------------------------------------------------------------------------------
    optimizer: Literal["sgd", "adamw"] = "sgd"  # the paper: SGD; AdamW (momentum = β1) for experiments
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_steps: int = 3000  # linear LR warm-up, then cosine
    total_steps: int = 20000
    final_lr_factor: float = 0.0
    grad_clip: float = 0.0  # max global gradient norm; 0 = off (the paper does not clip)
    # -- model ----------------------------------------------------------------------------------------
    standardize_embeddings: bool = True  # h_gen sees (e − μ)/σ over the training set (see train.Generator)
    hgen_hidden: int = 512
    hgen_rank: int = 192
    # Two-stage training (beyond the paper, for a CPU and LFW's size; docs/training.md): the first
    # ``distill_pretrain_steps`` steps only distill the backbone into the shared prefix, on batches of
    # ``distill_batch`` random training images (people with one image count too); the pair stage's
    # schedules (LR warm-up and cosine, batch doubling, α_norm ramp, KCS start) count from its first step.
    distill_pretrain_steps: int = 0  # first steps: only the feature distillation of the shared prefix (no pairs)
    distill_batch: int = 128  # images per distillation-stage step
    distill_lr: float = 0.0  # peak LR of the distillation stage (own warm-up + cosine); 0 = lr
    # "standardized": (e − μ)/σ per dimension; "centered": e − μ, i.e. the teacher's own geometry without
    # the component all faces share (dlib: cosine ≈ 0.8 between strangers)
    distill_target: Literal["standardized", "centered"] = "standardized"
    feature_distill: float = 0.0  # >0 (needs personal_from): weight of the shared prefix's embedding regression
    freeze_shared_in_pairs: bool = False  # pair stage: the distilled prefix stays fixed, only h_gen learns
    shared_lr_factor: float = 1.0  # pair stage, prefix not frozen: the shared prefix's LR is lr × this (its
    # weight-standardized filters have norm ≈ 1, so Adam's steps at the pair stage's lr barely move them; AdamW's
    # decoupled weight decay, lr · weight_decay, scales with it). 1 and ≠ 1 make different optimizer groups: a run
    # resumes only with the same choice
    # a run (checkpoint or model_final.pt) whose shared θ starts this one: the layers shared here take its
    # values, layers it shared but this run generates start every person there (h_gen's θ₀ = its values)
    init_from: str = ""
    personal_from: str = ""  # "": all of θ generated per person (paper); "b5_dw": layers before it shared
    chunk: int = DEFAULT_CHUNK  # verifiers per folded call in pairwise_logits (speed only)
    # -- augmentation (of the images f sees; h always gets the un-augmented embedding) -----------------
    augment: bool = True
    aug_flip: bool = True
    aug_translate_px: float = 4.0
    aug_scale: float = 0.08  # random crop-and-resize: zoom in by up to this fraction
    aug_brightness: float = 0.15  # additive, in units of the [-1, 1) input range
    aug_contrast: float = 0.15  # multiplicative, around each image's mean
    aug_gray: float = 0.0  # probability of a grayscale (BT.601 luma) view: the boards' cameras are often gray
    # -- ablations ------------------------------------------------------------------------------------
    no_kcs: bool = False  # uniform sampling throughout
    no_lnorm: bool = False  # α_norm = 0
    direct_f: bool = False  # no h: one shared θ, pair score = s·cos(fc1(x_j), fc1(x_k)) + b
    # -- run ------------------------------------------------------------------------------------------
    seed: int = 0
    threads: int = 1  # torch intra-op threads per process
    log_every: int = 10
    eval_every: int = 500  # 0 = only at the end
    checkpoint_every: int = 500
    out_dir: str = "runs/train/default"
    random_identities: int = 64  # dataset = "random" only
    random_images_per_id: int = 4  # dataset = "random" only

    # ------------------------------------------------------------------------------------------------
    def validate(self) -> TrainConfig:
        hints = typing.get_type_hints(TrainConfig)
        for f in dataclasses.fields(self):
            choices = _literal_choices(hints[f.name])
            if choices and getattr(self, f.name) not in choices:
                raise ValueError(f"{f.name} = {getattr(self, f.name)!r}; choose one of {', '.join(map(str, choices))}")
        if not 0 <= self.fold <= 9:
            raise ValueError(f"fold = {self.fold}: LFW View 2 has folds 0–9")
        if self.val_fold != -1 and (not 0 <= self.val_fold <= 9 or self.val_fold == self.fold):
            raise ValueError(f"val_fold = {self.val_fold}: −1 (none) or a fold 0–9 other than fold {self.fold}")
        train_cfp, val_cfp = self.cfp_folds("cfp_train_folds"), self.cfp_folds("cfp_val_folds")
        if set(train_cfp) & set(val_cfp):
            raise ValueError(f"CFP fold(s) {sorted(set(train_cfp) & set(val_cfp))} both in cfp_train_folds and "
                             "cfp_val_folds")
        if len(train_cfp) + len(val_cfp) >= 10:
            raise ValueError("cfp_train_folds and cfp_val_folds take all 10 CFP folds: none is left to report")
        checks = [(self.n_per_id >= 1, "n_per_id >= 1"), (self.b0 >= 2, "b0 >= 2"),
                  (self.b0 > self.beta, "b0 > beta (λ = 1 − β/B must stay positive)"),
                  (self.total_steps >= 1, "total_steps >= 1"), (self.lr > 0, "lr > 0"),
                  (self.shared_lr_factor > 0, "shared_lr_factor > 0"),
                  (self.chunk >= 1, "chunk >= 1"), (self.threads >= 1, "threads >= 1"),
                  (self.pair_subsample_k >= 0, "pair_subsample_k >= 0"),
                  (0.0 <= self.soft_target_mix <= 1.0, "0 <= soft_target_mix <= 1"),
                  (self.soft_target_temperature > 0, "soft_target_temperature > 0"),
                  (self.log_every >= 1, "log_every >= 1"), (self.checkpoint_every >= 1, "checkpoint_every >= 1"),
                  (self.distill_batch >= 2, "distill_batch >= 2"),
                  (0 <= self.distill_pretrain_steps < self.total_steps,
                   "0 <= distill_pretrain_steps < total_steps (the pair stage needs steps)")]
        for ok, what in checks:
            if not ok:
                raise ValueError(f"invalid training config: need {what}")
        return self

    def cfp_folds(self, key: str = "cfp_train_folds") -> tuple[int, ...]:
        """``cfp_train_folds`` or ``cfp_val_folds`` as sorted fold numbers; ValueError for anything but 0–9."""
        return parse_cfp_folds(getattr(self, key), key)

    def alpha_norm_final(self) -> float:
        return 0.0 if self.no_lnorm else self.alpha_norm

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], strict: bool = True) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown and strict:
            raise ValueError(f"unknown config key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        hints = typing.get_type_hints(cls)
        return cls(**{k: _coerce(k, v, hints[k]) for k, v in d.items() if k in known}).validate()


def parse_cfp_folds(text: str | None, key: str = "cfp folds") -> tuple[int, ...]:
    """"0,1,2" → (0, 1, 2): CFP protocol folds (0–9, the Split folders 01–10); "" or None → ()."""
    if not text or not str(text).strip():
        return ()
    try:
        folds = sorted({int(v) for v in str(text).split(",") if v.strip()})
    except ValueError:
        raise ValueError(f"{key} = {text!r}: comma-separated CFP folds 0–9, e.g. \"0,1,2,3\"") from None
    if any(not 0 <= k <= 9 for k in folds):
        raise ValueError(f"{key} = {text!r}: CFP has folds 0–9")
    return tuple(folds)


def _literal_choices(tp: Any) -> tuple | None:
    return typing.get_args(tp) if typing.get_origin(tp) is Literal else None


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """A TOML or command-line value → the field's type; strings are parsed (``--set lr=3e-4``)."""
    choices = _literal_choices(tp)
    base = type(choices[0]) if choices else tp
    if base is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{key}: expected true/false, got {value!r}")
    try:
        if base is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(float(value)) if isinstance(value, str) and any(c in value for c in ".eE") else int(value)
        if base is float:
            return float(value)
        if base is str:
            return str(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key}: expected {base.__name__}, got {value!r}") from None
    return value


def _flatten_toml(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            for k2, v2 in _flatten_toml(v).items():
                if k2 in out:
                    raise ValueError(f"config key {k2} given twice (in table [{k}] and elsewhere)")
                out[k2] = v2
        else:
            if k in out:
                raise ValueError(f"config key {k} given twice")
            out[k] = v
    return out


def parse_set(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Defaults, then the TOML file, then ``key=value`` overrides."""
    d: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"config file {p} not found")
        with open(p, "rb") as f:
            try:
                d.update(_flatten_toml(tomllib.load(f)))
            except tomllib.TOMLDecodeError as e:
                raise ValueError(f"{p}: not valid TOML: {e}") from None
    d.update(parse_set(overrides or []))
    return TrainConfig.from_dict(d)


def config_diff(a: TrainConfig, b: TrainConfig) -> dict[str, tuple[Any, Any]]:
    da, db = a.to_dict(), b.to_dict()
    return {k: (da[k], db[k]) for k in da if da[k] != db[k]}


__all__ = ["TrainConfig", "load_config", "parse_set", "config_diff", "parse_cfp_folds"]
