"""Refining θ at enrollment: fine-tune the personal tail of f on the enrolled photo against an impostor cohort.

f's layers up to the global pool are one prefix shared by every user (``personal_from = "pool"``); what h
generates per person is the linear tail fc1 → head, i.e. one linear function of the 96 pooled features
(``codegen.quantize.fold_linear_tail``). Refinement starts from θ₀ = h(e) and moves only those tail slots:

- positives: the pooled features of augmented views of the enrollment photo(s) (:func:`positive_views`:
  mirror, grayscale, small shifts and scale, blur, brightness/contrast — the camera conditions);
- negatives: the pooled features of an impostor cohort (faces of people who are neither the user nor,
  in an evaluation, anybody evaluated);
- loss: BCE of (logit − threshold) on each side, the two sides weighted equally, plus ``pull`` · ‖θ − θ₀‖²
  over the personal slots, so that θ stays where h put it unless the photo and the cohort say otherwise
  (and stays in the range the 16x8 quantizer was tuned on).

The prefix is frozen, so every feature is computed once and the optimisation is on 96-dim vectors: all users of
an evaluation are refined together, as a batch of independent problems.

Last, the refined tail gets a share (``LDA_WEIGHT``) of the within-person-whitened head Σ_w⁻¹(s(photo) − μ)
(:func:`lda_linear`, :func:`with_lda`): what varies between photos of one person (pose, light, the camera's
gray and low resolution) is learned from the cohort's people, whom the photo's views alone cannot show. Still one
linear function of the pooled features, so the board runs it unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from pvcore.spec import F_SPEC, ArchSpec, Dense
from training.data.variants import LUMA, apply_variant

log = logging.getLogger(__name__)

# The within-person-whitened head's share of the refined tail, in units of each head's spread on the refinement
# cohort, and the ridge on Σ_w (× its mean eigenvalue): chosen on LFW fold 1 and CFP fold 4 (research log,
# section 13). 0 turns it off.
LDA_WEIGHT = 0.25
LDA_RIDGE = 0.1


@dataclass(frozen=True)
class RefineConfig:
    steps: int = 300
    lr: float = 0.01
    pull: float = 1.0  # weight of ‖θ − θ₀‖² over the personal slots
    views: int = 16  # positive views of each enrollment photo
    neg_batch: int = 1024  # cohort faces per step (all of them when fewer)
    pos_weight: float = 1.0  # positives' share of the loss relative to the negatives'
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def tail_start(spec: ArchSpec = F_SPEC) -> int:
    """Offset in θ of the first personal slot: the first dense layer after the global pool."""
    names = [layer.name for layer in spec.layers]
    pool = spec.pool_index
    if not all(isinstance(layer, Dense) and not layer.relu for layer in spec.layers[pool + 1:]):
        raise ValueError(f"{spec.name}: the layers after the pool are not a linear dense tail")
    first = names[pool + 1]
    return next(s.offset for s in spec.layout if s.layer == first)


def linear_tail(theta: torch.Tensor, spec: ArchSpec = F_SPEC) -> tuple[torch.Tensor, torch.Tensor]:
    """θ (N, θ_size) → (w (N, 96), b (N,)): f's logit is ⟨w, pooled features⟩ + b (differentiable)."""
    from training.verifier.functional import standardize_rows, unflatten

    p = unflatten(theta, spec)
    pool = spec.pool_index
    w = b = None
    for layer in spec.layers[pool + 1:]:
        wl = standardize_rows(p[f"{layer.name}.weight"], layer.gain) * (1.0 + p[f"{layer.name}.gain"])[..., None]
        bl = p[f"{layer.name}.bias"]
        if w is None:
            w, b = wl, bl
        else:
            w, b = wl @ w, (wl @ b[..., None])[..., 0] + bl
    return w[..., 0, :], b[..., 0]


def pooled_features(theta: np.ndarray | torch.Tensor, crops_u8: np.ndarray, batch: int = 256,
                    spec: ArchSpec = F_SPEC, at: int | None = None) -> np.ndarray:
    """The float pooled features (N, C) of f's prefix (θ's layers up to the pool) on uint8 crops: what the
    personal tail reads (spec v5: normalized, (s − μ)/‖s − μ‖). ``at``: another layer's output instead (a
    1×1 map, flattened; e.g. ``spec.pool_index − 1``, the features before the normalization); θ may then hold
    only the values of the layers up to it."""
    from training.verifier.functional import effective_weights, layer_outputs, to_input

    at = spec.pool_index if at is None else at
    th = torch.as_tensor(np.asarray(theta, np.float32))
    if th.shape[-1] < spec.theta_size:  # a shared prefix only: the layers after ``at`` are not run
        th = torch.cat([th, torch.zeros(spec.theta_size - th.shape[-1])])
    eff = effective_weights(th, spec)
    out = []
    with torch.no_grad():
        for s in range(0, len(crops_u8), batch):
            x = to_input(np.ascontiguousarray(crops_u8[s:s + batch]))
            for i, (_layer, _pre, y) in enumerate(layer_outputs(x, eff, spec)):
                if i == at:
                    out.append(y.flatten(1).numpy())
                    break
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def positive_views(crop: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` views (n, 112, 112, 3) uint8 of one aligned crop: the crop, its mirror, grayscale, grayscale
    mirror, then random ones — mirror (½), shift ≤ 4 px and zoom ≤ 8 % (as training augments), grayscale
    (¼), Gaussian blur σ 0.5–1.5 (⅓), brightness ± 15 %, contrast ± 15 %."""
    import cv2

    from training.hypermodel import enrollment_views

    c = np.asarray(crop, np.uint8)
    fixed = enrollment_views(c, min(n, 4))
    rng = np.random.default_rng(seed)
    out = [v for v in fixed]
    h, w = c.shape[:2]
    for _ in range(max(n - 4, 0)):
        x = c[:, ::-1] if rng.random() < 0.5 else c
        s = 1.0 + rng.uniform(0.0, 0.08)
        tx, ty = rng.uniform(-4, 4, size=2)
        m = np.array([[s, 0, (1 - s) * w / 2 + tx], [0, s, (1 - s) * h / 2 + ty]], np.float32)
        x = cv2.warpAffine(np.ascontiguousarray(x), m, (w, h), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        if rng.random() < 0.25:
            x = np.repeat((x @ np.array(LUMA, np.float32))[..., None], 3, axis=-1)
        if rng.random() < 1 / 3:
            x = cv2.GaussianBlur(x, (0, 0), float(rng.uniform(0.5, 1.5)))
        mean = x.mean()
        x = (x - mean) * (1 + rng.uniform(-0.15, 0.15)) + mean + 255 * rng.uniform(-0.15, 0.15) / 2
        out.append(np.clip(np.rint(x), 0, 255).astype(np.uint8))
    return np.stack(out[:n])


def _cohort_bce(pos: torch.Tensor, nb: torch.Tensor, w: torch.Tensor, b: torch.Tensor, threshold: float,
                cfg: RefineConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step's scores of N linear tails (w (N, C), b (N,)): positives (N, K, C) and the cohort batch
    (M, C) as logit − threshold, and each user's weighted BCE. Returns (bce (N,), zp (N, K), zn (M, N))."""
    zp = torch.einsum("nkc,nc->nk", pos, w) + b[:, None] - threshold
    zn = nb @ w.T + b[None, :] - threshold
    bce = (cfg.pos_weight * F.softplus(-zp).mean(dim=1) + F.softplus(zn).mean(dim=0)) / (1 + cfg.pos_weight)
    return bce, zp, zn


def _curve_point(step: int, bce: torch.Tensor, zp: torch.Tensor, zn: torch.Tensor) -> dict:
    return {"step": step, "loss": float(bce.mean().detach()), "pos_margin": float(zp.mean().detach()),
            "neg_margin": float(zn.mean().detach())}


def refine(theta0: np.ndarray | torch.Tensor, pos_feats: np.ndarray, neg_feats: np.ndarray, threshold: float,
           cfg: RefineConfig = RefineConfig(), spec: ArchSpec = F_SPEC,
           curve_every: int = 0) -> tuple[np.ndarray, list[dict]]:
    """Refine N θ together. theta0 (N, θ_size); pos_feats (N, K, C) each user's positive views' pooled
    features; neg_feats (M, C) the cohort's. Returns the refined θ (N, θ_size) float32 and, every
    ``curve_every`` steps (0: never), {step, loss, pos_margin, neg_margin}: the mean (logit − threshold) of
    positives and of negatives (the margins refinement widens)."""
    t0 = torch.as_tensor(np.asarray(theta0, np.float32))
    if t0.ndim == 1:
        t0 = t0[None]
    start = tail_start(spec)
    fixed, p0 = t0[:, :start], t0[:, start:].clone()
    pos = torch.as_tensor(np.asarray(pos_feats, np.float32))
    neg = torch.as_tensor(np.asarray(neg_feats, np.float32))
    if pos.ndim != 3 or pos.shape[0] != t0.shape[0]:
        raise ValueError(f"positive features must be (N, K, C) with N = {t0.shape[0]}, got {tuple(pos.shape)}")
    personal = p0.clone().requires_grad_(True)
    opt = torch.optim.Adam([personal], lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    curve = []
    for step in range(cfg.steps + 1):
        w, b = linear_tail(torch.cat([fixed, personal], dim=1), spec)
        nb = neg if len(neg) <= cfg.neg_batch else neg[torch.randperm(len(neg), generator=gen)[:cfg.neg_batch]]
        bce, zp, zn = _cohort_bce(pos, nb, w, b, threshold, cfg)
        loss = bce.sum() + cfg.pull * ((personal - p0) ** 2).sum()
        if curve_every and step % curve_every == 0:
            curve.append(_curve_point(step, bce, zp, zn))
        if step == cfg.steps:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    return torch.cat([fixed, personal.detach()], dim=1).numpy(), curve


def refine_linear(w0: np.ndarray, b0: np.ndarray, pos_feats: np.ndarray, neg_feats: np.ndarray, threshold: float,
                  cfg: RefineConfig = RefineConfig(), curve_every: int = 0,
                  ) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Refine N linear tails (w (N, C) zero-sum, b (N,)) — the functions every θ's tail computes — instead of
    θ's slots: a logistic regression per user on its positives (N, K, C) against the cohort (M, C), with the
    pull measured where it matters, on the cohort's scores: ``pull`` · mean over the cohort of
    ((w − w₀)·p + b − b₀)² / σ₀², σ₀ the spread of w₀'s cohort scores. Scale-free (units of each user's
    own score spread) and convex. Returns (w, b, curve); :func:`theta_with_linear` makes θ of them."""
    w0t = torch.as_tensor(np.asarray(w0, np.float32))
    b0t = torch.as_tensor(np.asarray(b0, np.float32))
    pos = torch.as_tensor(np.asarray(pos_feats, np.float32))
    neg = torch.as_tensor(np.asarray(neg_feats, np.float32))
    sigma2 = ((neg @ w0t.T).var(dim=0) + 1e-8)  # (N,)
    v = w0t.clone().requires_grad_(True)
    b = b0t.clone().requires_grad_(True)
    opt = torch.optim.Adam([v, b], lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    curve = []
    for step in range(cfg.steps + 1):
        w = v - v.mean(dim=1, keepdim=True)  # f's standardized dense layers express only zero-sum heads
        nb = neg if len(neg) <= cfg.neg_batch else neg[torch.randperm(len(neg), generator=gen)[:cfg.neg_batch]]
        bce, zp, zn = _cohort_bce(pos, nb, w, b, threshold, cfg)
        shift = nb @ (w - w0t).T + (b - b0t)[None, :]
        loss = bce.sum() + cfg.pull * ((shift ** 2).mean(dim=0) / sigma2).sum()
        if curve_every and step % curve_every == 0:
            curve.append(_curve_point(step, bce, zp, zn))
        if step == cfg.steps:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        w = v - v.mean(dim=1, keepdim=True)
    return w.numpy(), b.detach().numpy(), curve


def theta_with_linear(theta0: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """θ (N, θ_size) whose prefix is theta0's and whose linear tail is exactly ⟨w, ·⟩ + b (w zero-sum):
    fc1's row 0 carries w's direction, its other rows are muted (gain slot −1), head picks row 0 with |w|'s
    scale — the shape ``codegen.quantize.fold_linear_tail`` gives every θ before quantizing."""
    from pvcore.spec import F_SPEC

    th = np.array(theta0, np.float32, copy=True)
    slots = {(s.layer, s.tensor): s for s in F_SPEC.layout}
    fc1, head = (layer for layer in F_SPEC.layers[-2:])

    def sl(layer, tensor):
        s = slots[(layer.name, tensor)]
        return slice(s.offset, s.offset + s.size)

    n_out = fc1.out_features
    w1 = th[:, sl(fc1, "weight")].reshape(len(th), n_out, -1)
    w1[:, 0] = w
    th[:, sl(fc1, "weight")] = w1.reshape(len(th), -1)
    g1 = np.full((len(th), n_out), -1.0, np.float32)
    g1[:, 0] = 0.0
    th[:, sl(fc1, "gain")] = g1
    th[:, sl(fc1, "bias")] = 0.0
    hw = np.full(n_out, -1.0 / (n_out - 1), np.float32)
    hw[0] = 1.0
    c0 = float((hw - hw.mean())[0] / np.linalg.norm(hw - hw.mean()))
    th[:, sl(head, "weight")] = hw
    norm = np.linalg.norm(w, axis=1)
    th[:, sl(head, "gain")] = (norm / (fc1.gain * head.gain * c0) - 1.0)[:, None]
    th[:, sl(head, "bias")] = b[:, None]
    return th


def fit_teacher_map(cohort_feats: np.ndarray, cohort_t: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    """(C+1, D): the ridge least-squares map from pooled features (and a constant) to the centred teacher
    embeddings, over the cohort (people h was trained on; never an evaluated person)."""
    x = np.concatenate([cohort_feats, np.ones((len(cohort_feats), 1), np.float32)], axis=1).astype(np.float64)
    reg = ridge * np.trace(x.T @ x) / x.shape[1] * np.eye(x.shape[1])
    return np.linalg.solve(x.T @ x + reg, x.T @ np.asarray(cohort_t, np.float64))


def teacher_map_linear(t_enroll: np.ndarray, tmap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Heads w = P Mᵀ t(a), b = ⟨t(a), c⟩ with (M; c) = ``tmap`` (:func:`fit_teacher_map`), P the projection on
    zero-sum vectors: f's logit then approximates ⟨t(a), t(b)⟩ — what h is trained to do, as a fixed
    linear map (the distillation's training-only map, refitted)."""
    t = np.asarray(t_enroll, np.float64)
    w = t @ tmap[:-1].T
    w -= w.mean(axis=1, keepdims=True)
    return w.astype(np.float32), (t @ tmap[-1]).astype(np.float32)


def within_covariance(feats: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(C, C) the within-person covariance of ``feats`` (N, C): each row minus its person's mean, over the people
    (``labels`` (N,)) with at least 2 rows. The cohort build gives every face three rows (clean, gray, low
    resolution), so a person with one photo contributes how the camera changes it, one with several photos also how
    the photos differ (the screen of the research log, section 13, chose with exactly these rows)."""
    f = np.asarray(feats, np.float64)
    _, inv, counts = np.unique(labels, return_inverse=True, return_counts=True)
    sums = np.zeros((len(counts), f.shape[1]))
    np.add.at(sums, inv, f)
    keep = counts[inv] >= 2
    if keep.sum() <= f.shape[1]:
        raise ValueError(f"{int(keep.sum())} rows of people with several rows: too few for a {f.shape[1]}-dim "
                         "within-person covariance")
    d = (f - sums[inv] / counts[inv, None])[keep]
    return d.T @ d / len(d)


def lda_linear(s_enroll: np.ndarray, mean: np.ndarray, within_cov: np.ndarray,
               ridge: float = LDA_RIDGE) -> tuple[np.ndarray, np.ndarray]:
    """Heads w = (PΣ_wP + ridge·mean eigenvalue·I)⁻¹ P(s − μ), b = −⟨w, μ⟩ for the enrollment features ``s_enroll``
    (N, C), P the projection on zero-sum vectors (the only heads f's tail expresses; the solve keeps w there):
    the photo's pooled features with the directions in which one person's photos vary played down."""
    c = within_cov.shape[0]
    p = np.eye(c) - 1.0 / c
    cov = p @ np.asarray(within_cov, np.float64) @ p
    cov += ridge * np.trace(cov) / (c - 1) * np.eye(c)
    mu = np.asarray(mean, np.float64) @ p
    w = np.linalg.solve(cov, (np.asarray(s_enroll, np.float64) @ p - mu).T).T
    w -= w.mean(axis=1, keepdims=True)
    return w.astype(np.float32), (-(w @ mu)).astype(np.float32)


def with_lda(w: np.ndarray, b: np.ndarray, wl: np.ndarray, bl: np.ndarray, feats: np.ndarray,
             weight: float = LDA_WEIGHT) -> tuple[np.ndarray, np.ndarray]:
    """The head (w, b) plus ``weight`` × the head (wl, bl), each in units of its own spread on ``feats`` (the
    cohort), the sum mapped back to (w, b)'s mean and spread there — so the threshold keeps its meaning."""
    f = np.asarray(feats, np.float64)
    w, b, wl, bl = (np.asarray(x, np.float64) for x in (w, b, wl, bl))
    s0, sl = f @ w.T + b, f @ wl.T + bl
    m0, sd0, ml, sdl = s0.mean(0), np.maximum(s0.std(0), 1e-12), sl.mean(0), np.maximum(sl.std(0), 1e-12)
    wz = w / sd0[:, None] + weight * wl / sdl[:, None]
    bz = (b - m0) / sd0 + weight * (bl - ml) / sdl
    a = sd0 / np.maximum((f @ wz.T + bz).std(0), 1e-12)
    return (wz * a[:, None]).astype(np.float32), (bz * a + m0).astype(np.float32)


def _lda_added(w: np.ndarray, b: np.ndarray, s_enroll: np.ndarray, cohort: Cohort) -> tuple[np.ndarray, np.ndarray]:
    """(w, b) with the within-person-whitened head of ``s_enroll`` added (:func:`with_lda`); unchanged for a cohort
    without the within-person covariance (a file built before it) or with ``LDA_WEIGHT`` 0."""
    if cohort.within_cov is None or LDA_WEIGHT == 0:
        return w, b
    wl, bl = lda_linear(s_enroll, cohort.feats.mean(0), cohort.within_cov)
    return with_lda(w, b, wl, bl, cohort.feats)


def mixed_start(w0: np.ndarray, b0: np.ndarray, t_enroll: np.ndarray, cohort_feats: np.ndarray,
                tmap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The refinement's start: the mean of h's tail (w0, b0) and the teacher-map head, the latter rescaled to
    h's own cohort statistics (same spread and mean of the cohort's scores, so the threshold keeps its
    meaning)."""
    wt, bt = teacher_map_linear(t_enroll, tmap)
    s0 = cohort_feats @ w0.T + b0
    st = cohort_feats @ wt.T + bt
    a = s0.std(axis=0) / np.maximum(st.std(axis=0), 1e-12)
    wt, bt = wt * a[:, None], (bt - st.mean(axis=0)) * a + s0.mean(axis=0)
    return (0.5 * (w0 + wt)).astype(np.float32), (0.5 * (b0 + bt)).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Enrollment: the cohort file and one user's refinement
# --------------------------------------------------------------------------------------------------
# chosen on LFW fold 1 (docs/research/verifier_experiments_2026-12.md section 5); a weaker pull (0.3) lowers
# the users' FRR on LFW but moves their own-threshold FAR further above target on CFP (section 7)
SHIPPED = RefineConfig(steps=150, lr=0.05, pull=1.0, views=16)
COHORT_SIZE = 3000  # faces of the refinement cohort, and as many of the calibration cohort
# the cohort file's layout; 2: the within-person covariance and the calibration faces' sources. A cached file of an
# older layout is built again when the shared folder is at hand (and used as it is otherwise)
COHORT_FORMAT = 2
COHORT_EXCLUDED_FOLDS = (0, 1)  # LFW people.txt folds never in a cohort: the report and validation folds


class NoCohort(RuntimeError):
    """No impostor cohort at hand (no cohort file, no shared data folder to build one, and no cohort statistics in
    the model file)."""


@dataclass
class Cohort:
    """What enrollment needs of impostor faces, for one hypermodel, as pooled features through the model's
    shared prefix (f's layers up to the global pool, the same for every user): ``feats``, the cohort refinement
    pushes θ away from, with ``tmap`` the teacher map fitted on them; ``calib_feats``, faces of *other* people
    (disjoint from ``feats``' people), on which a user's own threshold is set (``training.calibration``) — a
    threshold set on the faces θ was refined against would promise a false-accept rate it does not keep.

    Features, not faces: f after the pool is linear (fc1 → head), so f(x; θ) = ⟨w_θ, features(x)⟩ + b_θ
    exactly, and once the file is built (float16, 1.0 MB, in the cache) enrollment refines and calibrates
    without touching a face of the cohort. The file is derived from the shared folder's LFW: it stays in the
    cache (or where ``--cohort-file`` points), never in the repository."""

    feats: np.ndarray  # (M, C) float32
    tmap: np.ndarray  # (C+1, D) float64
    model_id: str
    source: str
    calib_feats: np.ndarray | None = None  # (K, C) float32
    calib_source: str = ""
    # (C, C) the within-person covariance of the refinement half's pooled features (each face clean, gray and at low
    # resolution, about its person's mean: :func:`within_covariance`): the whitening of :func:`lda_linear`
    within_cov: np.ndarray | None = None
    # each calibration face's source (an index into calib_group_names, e.g. LFW, CFP): the user's threshold keeps
    # its rate on every source (training.calibration.threshold_for_far_groups); None: one source
    calib_group: np.ndarray | None = None
    calib_group_names: tuple[str, ...] = ()
    format: int = COHORT_FORMAT

    def save(self, path) -> None:
        import io

        from pvcore.atomic import atomic_write_bytes

        buf = io.BytesIO()
        calib = self.calib_feats if self.calib_feats is not None else np.zeros((0, self.feats.shape[1]))
        within = self.within_cov if self.within_cov is not None else np.zeros((0, 0))
        group = self.calib_group if self.calib_group is not None else np.zeros(0)
        np.savez_compressed(buf, feats=self.feats.astype(np.float16), tmap=self.tmap.astype(np.float32),
                            model_id=self.model_id, source=self.source, calib_feats=calib.astype(np.float16),
                            calib_source=self.calib_source, within_cov=within.astype(np.float32),
                            calib_group=group.astype(np.int8), calib_group_names=np.array(self.calib_group_names, str),
                            format=self.format)
        atomic_write_bytes(path, buf.getvalue())

    def stats(self) -> dict:
        """What a machine without the cohort file needs of it (:meth:`from_stats`): each half's mean and covariance
        of the pooled features, the teacher map, the sources — aggregate statistics like h's own embedding mean
        and spread, not faces or per-face features (the file is derived from the shared data and never ships)."""
        if self.calib_feats is None:
            raise ValueError("the cohort has no calibration half")
        f, c = (np.asarray(x, np.float64) for x in (self.feats, self.calib_feats))
        arrays = {"feats_mean": f.mean(0), "feats_cov": np.cov(f.T), "calib_mean": c.mean(0), "calib_cov": np.cov(c.T),
                  "tmap": np.asarray(self.tmap, np.float64)}
        if self.within_cov is not None:
            arrays["within_cov"] = np.asarray(self.within_cov, np.float64)
        extra = {}
        if self.calib_group is not None:  # each source's mean and covariance: the drawn cohort keeps the sources
            ks = range(len(self.calib_group_names))
            arrays["calib_group_means"] = np.stack([c[self.calib_group == k].mean(0) for k in ks])
            arrays["calib_group_covs"] = np.stack([np.cov(c[self.calib_group == k].T) for k in ks])
            extra = {"calib_group_names": list(self.calib_group_names),
                     "calib_group_sizes": [int((self.calib_group == k).sum()) for k in ks]}
        # tensors, not numpy arrays: the model file stays loadable with torch.load(weights_only=True)
        return {**{k: torch.from_numpy(v) for k, v in arrays.items()}, "size": [len(f), len(c)],
                "source": self.source, "calib_source": self.calib_source, **extra}

    def calibration_subset(self, size: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(features, sources) of at most ``size`` calibration faces, each source's share kept (the faces are
        stored source after source, so a plain [:size] could drop a source)."""
        if self.calib_feats is None:
            raise ValueError("the cohort has no calibration half")
        n = len(self.calib_feats)
        if size >= n or self.calib_group is None:
            return self.calib_feats[:size], None if self.calib_group is None else self.calib_group[:size]
        g = self.calib_group
        keep = np.concatenate([np.flatnonzero(g == k)[:int(round(size * (g == k).sum() / n))] for k in np.unique(g)])
        return self.calib_feats[keep], self.calib_group[keep]

    @classmethod
    def from_stats(cls, stats: dict, model_id: str, seed: int = 0) -> Cohort:
        """A cohort drawn from :meth:`stats`: as many faces' pooled features as the file held, from a Gaussian with
        each half's mean and covariance (f after the pool is linear, so a user's logits on them are Gaussian with
        the real cohort's mean and spread; on the validation folds refinement and the user's threshold on such a
        cohort gave the real one's FAR/FRR within a point or two: research log, section 10)."""
        rng = np.random.default_rng(seed)

        def draw(mean, cov, n):
            # eigh: a dead feature channel (a singular covariance) draws zeros there instead of failing
            return rng.multivariate_normal(np.asarray(mean, np.float64), np.asarray(cov, np.float64), size=int(n),
                                           method="eigh").astype(np.float32)

        n_ref, n_cal = stats["size"]
        how = "drawn from the mean and covariance, stored in the model file, of"
        within = stats.get("within_cov")
        feats = draw(stats["feats_mean"], stats["feats_cov"], n_ref)
        group, names = None, ()
        if "calib_group_sizes" in stats:
            sizes = stats["calib_group_sizes"]
            calib = np.concatenate([draw(m, c, n) for m, c, n in zip(stats["calib_group_means"],
                                                                      stats["calib_group_covs"], sizes)])
            group = np.repeat(np.arange(len(sizes)), sizes).astype(np.int8)
            names = tuple(stats["calib_group_names"])
        else:
            calib = draw(stats["calib_mean"], stats["calib_cov"], n_cal)
        return cls(feats, np.asarray(stats["tmap"], np.float64), model_id, f"{how} {stats['source']}", calib,
                   f"{how} {stats['calib_source']}", None if within is None else np.asarray(within, np.float64),
                   group, names)

    @classmethod
    def load(cls, path, model_id: str) -> Cohort:
        with np.load(path) as z:
            calib = z["calib_feats"].astype(np.float32) if "calib_feats" in z.files else None
            within = z["within_cov"].astype(np.float64) if "within_cov" in z.files else None
            group = z["calib_group"].astype(np.int8) if "calib_group" in z.files else None
            names = tuple(str(x) for x in z["calib_group_names"]) if "calib_group_names" in z.files else ()
            c = cls(z["feats"].astype(np.float32), z["tmap"].astype(np.float64), str(z["model_id"]), str(z["source"]),
                    calib if calib is not None and len(calib) else None,
                    str(z["calib_source"]) if "calib_source" in z.files else "",
                    within if within is not None and within.size else None,
                    group if group is not None and group.size else None, names,
                    int(z["format"]) if "format" in z.files else 1)
        if c.model_id != model_id:
            raise ValueError(f"{path}: a cohort for model {c.model_id}, not {model_id}")
        return c


def cohort_path(model):
    from pvcore.paths import cache_dir

    return cache_dir("cohort") / f"{model.model_id}.npz"


def cohort_people(seed: int = 0, extra: list[str] | tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """LFW's people outside ``COHORT_EXCLUDED_FOLDS`` and the ``extra`` identities (a model's CFP training
    people, :func:`training.data.train_set.cfp_training_people`), split at random into two disjoint halves:
    (refinement cohort's people, calibration cohort's people). Raises SharedDataMissing."""
    from training.data import lfw

    folds = lfw.load_people_folds()
    exclude = {name for k in COHORT_EXCLUDED_FOLDS for name in folds[k]}
    people = sorted(({lfw.identity_of(p) for p in lfw.all_images()} | set(extra)) - exclude)
    perm = np.random.default_rng(seed).permutation(len(people))
    half = len(people) // 2
    return [people[i] for i in sorted(perm[:half])], [people[i] for i in sorted(perm[half:])]


def _cohort_sources(model) -> list[tuple[object, dict[str, list[int]], object]]:
    """[(aligned cache, {identity: [cache index, …]}, align(indices))]: LFW's faces, then, for a model trained on
    CFP people (``cfp_train_folds``), their frontal and profile photos — the cohort then holds the poses the
    model is scored on, and only people it trained on. ``align`` is each set's own path (CFP's ends in its
    fiducials' box)."""
    from training.config import parse_cfp_folds
    from training.data import cfp, lfw
    from training.face.cache import lfw_cache

    lfw_faces: dict[str, list[int]] = {}
    for i, p in enumerate(lfw.all_images()):
        lfw_faces.setdefault(lfw.identity_of(p), []).append(i)
    lfw_aligned = lfw_cache(model.detector)
    sources: list[tuple[object, dict[str, list[int]], object]] = [(lfw_aligned, lfw_faces, lfw_aligned.ensure)]
    cfg = model.meta.get("config", {})
    folds = parse_cfp_folds(cfg.get("cfp_train_folds"))
    if folds:
        from training.data.train_set import cfp_training_people, held_out_lfw_folds

        identity, _ = cfp_training_people(folds, held_out_lfw_folds(cfg))
        cache = cfp.cfp_cache(model.detector)
        faces: dict[str, list[int]] = {}
        for i, p in enumerate(cache.paths):
            if (pid := cfp.identity_of(p)) in identity:
                faces.setdefault(identity[pid], []).append(i)
        sources.append((cache, faces, lambda idx, c=cache: cfp.align(c, idx, progress=False)))
    return sources


def _pick_faces(sources: list[tuple[object, dict[str, list[int]], object]], people: set[str], size: int,
                rng: np.random.Generator) -> list[tuple[np.ndarray, list[str]]]:
    """Up to 4 faces per person of ``people`` (pooled over the sources: a person in LFW and CFP draws from
    both), ``size`` in all → per source, its sorted cache indices and each one's person."""
    by_person: dict[str, list[tuple[int, int]]] = {}
    for k, (_, faces, _) in enumerate(sources):
        for name, idx in faces.items():
            if name in people:
                by_person.setdefault(name, []).extend((k, i) for i in idx)
    picked = [(*f, name) for name, faces in by_person.items()
              for f in (faces[j] for j in rng.permutation(len(faces))[:4])]
    keep = sorted(picked[j] for j in rng.permutation(len(picked))[:size])
    return [(np.array([i for k2, i, _ in keep if k2 == k], np.int64), [n for k2, _, n in keep if k2 == k])
            for k in range(len(sources))]


def cohort_faces(model, size: int = COHORT_SIZE, seed: int = 0) -> tuple[list[tuple], list, list, list]:
    """The cohort's faces, aligned (minutes the first time; cached): for the refinement half and the calibration
    half (n, crops, names, teacher-input crops per source, source of each face), the sources, and both halves'
    people. Raises SharedDataMissing."""
    from training.backbones import backbone_info

    sources = _cohort_sources(model)
    extra = [name for _, faces, _ in sources[1:] for name in faces]
    refine_people, calib_people = cohort_people(seed, extra)
    rng = np.random.default_rng(seed)
    kind = backbone_info(model.backbone).input_kind
    out = []
    for people in (refine_people, calib_people):
        crops, kind_crops, names, group, n = [], [], [], [], 0
        for k, ((cache, _, align), (picked, who)) in enumerate(zip(sources, _pick_faces(sources, set(people), size,
                                                                                          rng))):
            align(picked)
            ok = cache.status[picked] > 0
            picked = picked[ok]
            names += [name for name, good in zip(who, ok) if good]
            group += [k] * len(picked)
            crops.append(np.asarray(cache.crops()[picked]))
            if not out:  # the teacher embeds the refinement half only (its teacher map)
                kind_crops.append(np.asarray(cache.crops(kind)[picked]))
            n += len(picked)
        out.append((n, np.concatenate(crops), names, kind_crops, np.array(group, np.int8)))
    return out, sources, refine_people, calib_people


def build_cohort(model, size: int = COHORT_SIZE, seed: int = 0) -> Cohort:
    """Both cohorts from the shared folder (:func:`cohort_people`, :func:`_cohort_sources`): ``size`` faces of
    the refinement half, ``size`` of the calibration half. Raises SharedDataMissing. The first build aligns the
    faces and embeds the refinement cohort with the teacher (minutes; cached)."""
    from training.backbones import load_backbone
    from training.backbones.embedding_cache import EmbeddingCache

    out, sources, refine_people, calib_people = cohort_faces(model, size, seed)
    prefix = model.theta(model.generator.emb_mean.numpy()[None])[0]
    (n_ref, crops_ref, names_ref, kind_ref, _), (n_cal, crops_cal, _, _, calib_group) = out
    feats, calib_feats = pooled_features(prefix, crops_ref), pooled_features(prefix, crops_cal)
    person, counts = np.unique(names_ref, return_inverse=True, return_counts=True)[1:]
    within = within_covariance(
        np.concatenate([feats] + [pooled_features(prefix, apply_variant(crops_ref, v)) for v in ("gray", "lowres")]),
        np.tile(person, 3))
    log.info("within-person covariance: %d faces of the refinement half (%d of them of the %d people with several "
             "photos), each clean, gray and at low resolution", len(person), int((counts[person] >= 2).sum()),
             int((counts >= 2).sum()))
    emb = EmbeddingCache(load_backbone(model.backbone)).embed(np.concatenate(kind_ref))
    t = emb - model.generator.emb_mean.numpy()
    where = "people outside people.txt folds 0 and 1"
    label = "LFW"
    if len(sources) > 1:
        where += f" and CFP training people (folds {model.meta['config']['cfp_train_folds']})"
        label = "LFW and CFP"
    return Cohort(feats.astype(np.float32), fit_teacher_map(feats, t), model.model_id,
                  f"{label}, {n_ref} faces of {len(refine_people)} {where} (refinement half)",
                  calib_feats.astype(np.float32),
                  f"{label}, {n_cal} faces of the other {len(calib_people)} {where} (calibration half)", within,
                  calib_group if len(sources) > 1 else None,
                  tuple(getattr(c, "dataset", "").upper() or f"source {k}" for k, (c, _, _) in enumerate(sources))
                  if len(sources) > 1 else ())


def load_cohort(model, path=None) -> Cohort:
    """The model's cohort: ``path``, else the cache file (``.cache/cohort/<model id>.npz``), else built from
    the shared folder and cached, else drawn from the cohort statistics the model file carries
    (:meth:`Cohort.from_stats`; ``training.export_model --cohort-stats``). NoCohort when none of these is at
    hand."""
    from pvcore.paths import SharedDataMissing

    if path is not None:
        c = Cohort.load(path, model.model_id)
        if c.format < COHORT_FORMAT:
            log.warning("%s has an older layout (%d): no within-person head, one calibration source; build it again "
                        "with `python -m training.refine --build-cohort`", path, c.format)
        return c
    cached = cohort_path(model)
    if cached.is_file():
        c = Cohort.load(cached, model.model_id)
        if c.format >= COHORT_FORMAT:
            return c
        log.info("%s has an older layout (%d): building it again (minutes)", cached, c.format)
        try:
            fresh = build_cohort(model)
        except SharedDataMissing:
            stats = model.meta.get("cohort_stats")
            if stats is not None and "within_cov" in stats:  # the model's statistics are of the current layout
                log.warning("no shared folder to build %s again: the cohort drawn from the model's statistics", cached)
                return Cohort.from_stats(stats, model.model_id)
            log.warning("no shared folder to build %s again: used as it is", cached)
            return c
        fresh.save(cached)
        return fresh
    try:
        c = build_cohort(model)
    except SharedDataMissing as e:
        if model.meta.get("cohort_stats") is not None:
            log.info("no cohort file and no shared data folder (%s): the cohort drawn from the model's statistics", e)
            return Cohort.from_stats(model.meta["cohort_stats"], model.model_id)
        raise NoCohort(f"no impostor cohort for refinement ({e}); pass a cohort file built with "
                       "`python -m training.refine --build-cohort` on a machine with the shared data") from None
    c.save(cohort_path(model))
    return c


def refine_enrollment(model, theta0: np.ndarray, crops: np.ndarray, embedding: np.ndarray, cohort: Cohort,
                      cfg: RefineConfig = SHIPPED) -> tuple[np.ndarray, dict]:
    """One user's refined θ: start at :func:`mixed_start` of h's θ₀ and the teacher map of the enrollment
    embedding (the mean embedding θ₀ was made from), then :func:`refine_linear` on ``cfg.views`` views of each
    aligned 112×112 enrollment crop (``crops`` (k, 112, 112, 3)) against the cohort, then the within-person-whitened
    head of the crops' mean features added (:func:`with_lda`; a cohort without ``within_cov`` skips it). Returns
    (θ, record)."""
    import time

    t0 = time.perf_counter()
    theta0 = np.asarray(theta0, np.float32).reshape(1, -1)
    crops = np.asarray(crops, np.uint8).reshape(-1, 112, 112, 3)
    per = max(cfg.views // len(crops), 4)
    views = np.concatenate([positive_views(c, per, seed=cfg.seed + k) for k, c in enumerate(crops)])
    pos = pooled_features(theta0[0], views)[None]
    w0, b0 = (x.detach().numpy() for x in linear_tail(torch.from_numpy(theta0)))
    t = (np.asarray(embedding, np.float32) - model.generator.emb_mean.numpy())[None]
    ws, bs = mixed_start(w0, b0, t, cohort.feats, cohort.tmap)
    w, b, curve = refine_linear(ws, bs, pos, cohort.feats, model.threshold, cfg, curve_every=50)
    w, b = _lda_added(w, b, pooled_features(theta0[0], crops).mean(0, keepdims=True), cohort)
    theta = theta_with_linear(theta0, w, b)[0]
    # the record's margins: of the final head (the whitened head moves the views' mean, not the cohort's)
    margins = (float(np.mean(pos[0] @ w[0] + b[0]) - model.threshold),
               float(np.mean(cohort.feats @ w[0] + b[0]) - model.threshold))
    lda = LDA_WEIGHT if cohort.within_cov is not None else 0.0
    rec = {"method": "h+teacher-map, linear refinement" + (", within-person-whitened head added" if lda else ""),
           **cfg.to_dict(), "lda_weight": lda, "cohort": cohort.source,
           "cohort_size": int(len(cohort.feats)), "positives": int(len(views)),
           "pos_margin": margins[0], "neg_margin": margins[1],
           "pos_margin_h": float(np.mean(pos[0] @ w0[0] + b0[0]) - model.threshold),
           "neg_margin_h": float(np.mean(cohort.feats @ w0[0] + b0[0]) - model.threshold),
           "seconds": round(time.perf_counter() - t0, 3)}
    return theta, rec


def refine_batch(model, theta0: np.ndarray, crops: np.ndarray, embeddings: np.ndarray, cohort: Cohort,
                 cfg: RefineConfig = SHIPPED) -> tuple[np.ndarray, list[dict]]:
    """:func:`refine_enrollment` (the whitened head included) for N enrollments of one photo each, together
    (evaluations): theta0 (N, θ_size)
    = h of ``embeddings`` (N, D), ``crops`` (N, 112, 112, 3). Returns (θ (N, θ_size), the learning curve)."""
    theta0 = np.asarray(theta0, np.float32)
    pos = np.stack([pooled_features(theta0[0], positive_views(c, cfg.views, seed=cfg.seed)) for c in crops])
    w0, b0 = (x.detach().numpy() for x in linear_tail(torch.from_numpy(theta0)))
    t = np.asarray(embeddings, np.float32) - model.generator.emb_mean.numpy()
    ws, bs = mixed_start(w0, b0, t, cohort.feats, cohort.tmap)
    w, b, curve = refine_linear(ws, bs, pos, cohort.feats, model.threshold, cfg, curve_every=50)
    w, b = _lda_added(w, b, pooled_features(theta0[0], crops), cohort)
    return theta_with_linear(theta0, w, b), curve


def add_refine_args(ap) -> None:
    """The refinement options every command that enrolls shares: ``--no-refine`` and ``--cohort-file``."""
    import argparse
    from pathlib import Path

    ap.add_argument("--no-refine", dest="refine", action="store_false",
                    help="keep h's θ: do not refine it at enrollment against the model's impostor cohort "
                         "(training.refine; refined by default)")
    ap.add_argument("--refine", action="store_true", default=True, help=argparse.SUPPRESS)  # the default
    ap.add_argument("--cohort-file", type=Path, default=None,
                    help="the model's cohort file (python -m training.refine --build-cohort); default: "
                         ".cache/cohort/<model id>.npz, built from the shared data folder when missing")


def main(argv: list[str] | None = None) -> int:
    """``python -m training.refine --build-cohort [--model M] [--out FILE]``: the cohort file refinement reads."""
    import argparse

    from pvcore.cli import fail, setup_logging
    from pvcore.paths import SharedDataMissing
    from training.hypermodel import HyperModel

    ap = argparse.ArgumentParser(prog="python -m training.refine", description=main.__doc__)
    ap.add_argument("--build-cohort", action="store_true", required=True)
    ap.add_argument("--model", default=None, help="hypermodel file (default: the shipped one)")
    ap.add_argument("--out", default=None, help="cohort file (default .cache/cohort/<model id>.npz)")
    args = ap.parse_args(argv)
    setup_logging(False)
    model = HyperModel.load(args.model)
    try:
        c = build_cohort(model)
    except SharedDataMissing as e:
        fail(str(e))
    out = args.out or cohort_path(model)
    c.save(out)
    print(f"cohort for model {model.model_id} in {out}:\n  refinement: {c.source}\n  calibration: {c.calib_source}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
