"""A user's own operating threshold, from an impostor cohort (cohort calibration, as speaker verification does).

The shipped threshold is one number for everybody, chosen on pairs of other people; a generated f scores
strangers higher for some enrolled people than for others, so at one global threshold their false-accept
rates differ by an order of magnitude. Here the user's own f(·; θ_user) scores a cohort of faces of other
people, and the threshold is set where the chosen share of them would be accepted:

- ``quantile``: the empirical (1 − FAR) quantile of the cohort's logits, when the cohort is large enough
  for it (at least ``MIN_TAIL`` faces above the threshold, i.e. ``MIN_TAIL / far`` faces);
- ``znorm``: otherwise μ + σ · Φ⁻¹(1 − FAR) of the cohort's logits (Z-norm), a Gaussian extrapolation of
  the tail that a small cohort cannot measure.

The threshold never goes below the global one (``floor``): calibration may only make a user stricter than the
model's global threshold.

The cohort must not hold the user: the calibration half of the model's cohort (pooled features of faces of
training people outside the evaluation folds and outside the refinement cohort, built into the cache from the
shared folder, or drawn from the statistics the model file carries: :func:`calibrate_features`), LFW's aligned
crops minus the people the caller excludes (the user's own name, or the people of an evaluation fold), or any
image folder. Without any of these, enrollment keeps the global threshold.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_COHORT_SIZE = 3000
# The shipped operating point: an enrollment that has the model's cohort at hand sets the user's own threshold
# for this false-accept rate (``training.enroll --far``; 0 keeps the global threshold). Chosen on the
# validation folds (LFW fold 1, CFP fold 4; docs/research/verifier_experiments_2026-12.md, section 10): the
# strictest rate at which the users' false-reject rate on LFW stays near 30 % in every camera variant;
# 0.02 rejects 39–52 % of genuine attempts there, the global threshold admits 16–24 % of strangers.
DEFAULT_FAR = 0.05
MIN_TAIL = 10  # cohort faces that must lie above an empirical threshold for it to be trusted
MIN_GROUP = 50  # faces a cohort source needs to set a threshold of its own (fewer: only the pooled one counts)


@dataclass(frozen=True)
class Calibration:
    threshold: float  # logit: accept iff f(x; θ) ≥ threshold
    far_target: float
    method: str  # "quantile" | "znorm" | "global" (no cohort, or the floor won)
    cohort: str
    cohort_size: int
    cohort_far: float  # the share of the cohort accepted at ``threshold``
    mean: float
    std: float
    group: str = ""  # a cohort of several groups (sources): the one whose threshold was the strictest

    def to_dict(self) -> dict:
        return asdict(self)


def threshold_for_far(scores: np.ndarray, far: float, floor: float | None = None) -> tuple[float, str]:
    """The logit threshold at which a share ``far`` of the impostor ``scores`` is accepted (see the module)."""
    if not 0.0 < far < 1.0:
        raise ValueError(f"false-accept rate must be in (0, 1), not {far}")
    s = np.sort(np.asarray(scores, np.float64))
    if s.size == 0:
        raise ValueError("empty cohort")
    if s.size * far >= MIN_TAIL:
        k = int(np.ceil(s.size * (1.0 - far)))  # accept the top ⌊size·far⌋ at most
        thr, method = float(np.nextafter(s[k - 1], np.inf)), "quantile"
    else:
        std = float(s.std()) or 1e-6
        thr, method = float(s.mean() + std * NormalDist().inv_cdf(1.0 - far)), "znorm"
    if floor is not None and thr < floor:
        return float(floor), "global"
    return thr, method


def threshold_for_far_groups(scores: np.ndarray, far: float, floor: float | None, groups: np.ndarray | None,
                              names: tuple[str, ...] = ()) -> tuple[float, str, str]:
    """:func:`threshold_for_far` kept on every group of the cohort (``groups`` (K,) int, one per score; None: one
    group): the strictest of the groups' thresholds, so that the promised rate holds on each kind of face the
    cohort holds (a cohort pooled over web photos and studio photos promises an average that neither keeps:
    research log, section 13). A source of fewer than ``MIN_GROUP`` faces sets no threshold of its own. Returns
    (threshold, method, the deciding group's name; "" when the pooled cohort or the floor decided)."""
    s = np.asarray(scores, np.float64)
    g = None if groups is None else np.asarray(groups)
    kept = [] if g is None else [int(k) for k in np.unique(g) if (g == k).sum() >= MIN_GROUP]
    if len(kept) < 2:  # one source (or one large enough): the pooled threshold
        thr, method = threshold_for_far(s, far, floor)
        return thr, method, ""
    thr, method, k = max(((*threshold_for_far(s[g == k], far), k) for k in kept), key=lambda t: t[0])
    if floor is not None and thr < floor:
        return float(floor), "global", ""
    return thr, method, names[k] if k < len(names) else str(k)


def calibrate(theta: np.ndarray, cohort_u8: np.ndarray, far: float, floor: float | None, cohort_name: str,
              views: int = 1) -> Calibration:
    """Score θ's f on the cohort's aligned 112×112 crops and place the threshold for ``far``."""
    from training.verifier.functional import f_logits_u8

    scores = f_logits_u8(theta, cohort_u8, views)
    thr, method = threshold_for_far(scores, far, floor)
    return Calibration(threshold=thr, far_target=far, method=method, cohort=cohort_name,
                       cohort_size=int(len(scores)), cohort_far=float((scores >= thr).mean()),
                       mean=float(scores.mean()), std=float(scores.std()))


def calibrate_features(theta: np.ndarray, feats: np.ndarray, far: float, floor: float | None, cohort_name: str,
                       groups: np.ndarray | None = None, group_names: tuple[str, ...] = ()) -> Calibration:
    """:func:`calibrate` on a cohort given as pooled features of f's shared prefix (``training.refine.Cohort``'s
    ``calib_feats``): f after the global pool is linear, so θ's logits on those faces are exact from them. With
    ``groups`` (the cohort's source per face), the rate is kept on each source (:func:`threshold_for_far_groups`)."""
    import torch

    from training.refine import linear_tail

    w, b = linear_tail(torch.as_tensor(np.asarray(theta, np.float32).reshape(1, -1)))
    scores = np.asarray(feats, np.float64) @ w[0].detach().numpy().astype(np.float64) + float(b[0])
    thr, method, group = threshold_for_far_groups(scores, far, floor, groups, group_names)
    return Calibration(threshold=thr, far_target=far, method=method, cohort=cohort_name,
                       cohort_size=int(len(scores)), cohort_far=float((scores >= thr).mean()),
                       mean=float(scores.mean()), std=float(scores.std()), group=group)


def lfw_cohort(detector: str = "dlib", size: int = DEFAULT_COHORT_SIZE, exclude_people: set[str] | None = None,
               seed: int = 0) -> np.ndarray:
    """``size`` aligned LFW crops (ArcFace 112), at most 4 per person, of people not in ``exclude_people``.
    Aligns LFW once into the cache if needed (minutes, the first time). Raises ``SharedDataMissing``."""
    from training.data import lfw
    from training.face.cache import lfw_cache

    cache = lfw_cache(detector)
    paths = lfw.all_images()
    exclude = exclude_people or set()
    by_person: dict[str, list[int]] = {}
    for i, p in enumerate(paths):
        name = lfw.identity_of(p)
        if name not in exclude:
            by_person.setdefault(name, []).append(i)
    rng = np.random.default_rng(seed)
    picked = np.array(sorted(j for idx in by_person.values()
                             for j in rng.permutation(idx)[:4]), np.int64)
    picked = picked[rng.permutation(len(picked))[:size]]
    cache.ensure(picked)
    ok = picked[cache.status[picked] > 0]
    return np.ascontiguousarray(cache.crops()[np.sort(ok)])
