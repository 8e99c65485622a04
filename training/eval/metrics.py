"""Verification metrics on pair scores (higher score = more likely the same person).

Decision rule everywhere: a pair is predicted *same* iff ``score >= threshold``.

* :func:`kfold_accuracy` — the LFW protocol: for each fold, the threshold that maximises accuracy on
  the *other* folds is applied to the held-out fold; mean and std (population, as InsightFace reports)
  over folds. Candidate thresholds are all midpoints between consecutive distinct training scores plus
  one below the minimum and one above the maximum, so the search is exact (not a grid).
* :func:`tar_at_far` — true accept rate at the lowest threshold whose false accept rate on all pairs
  is at most ``far`` (no interpolation, so the FAR is never exceeded).
* :func:`roc_auc` — area under the ROC curve (scikit-learn).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from sklearn.metrics import roc_auc_score


def check_scores_labels(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate and flatten → ``(float64 scores, bool labels)``; raises ValueError naming the problem."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    lab = np.asarray(labels)
    if lab.ndim != 1 and lab.size == s.size:
        lab = lab.reshape(-1)
    if lab.shape != s.shape:
        raise ValueError(f"scores ({s.size}) and labels ({lab.size}) differ in length")
    if s.size == 0:
        raise ValueError("no pairs: scores and labels are empty")
    if not np.isfinite(s).all():
        raise ValueError(f"scores contain {int((~np.isfinite(s)).sum())} NaN/inf value(s)")
    if lab.dtype != bool:
        if not np.isin(lab, (0, 1)).all():
            raise ValueError("labels must be booleans or 0/1 (1 = same identity)")
        lab = lab.astype(bool)
    return s, lab


def _candidates(s: np.ndarray, lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All distinct decision thresholds on ``s`` and the accuracy of each (vectorised, O(n log n))."""
    uniq, inv = np.unique(s, return_inverse=True)
    n_same_at = np.bincount(inv, weights=lab, minlength=uniq.size)
    n_diff_at = np.bincount(inv, weights=~lab, minlength=uniq.size)
    # candidate k (0..m): threshold between uniq[k-1] and uniq[k]; predicted same = score >= uniq[k]
    diff_below = np.concatenate(([0.0], np.cumsum(n_diff_at)))  # true negatives for candidate k
    same_below = np.concatenate(([0.0], np.cumsum(n_same_at)))
    true_pos = same_below[-1] - same_below
    acc = (true_pos + diff_below) / s.size
    lo, hi = uniq[:-1], uniq[1:]
    mid = lo + (hi - lo) / 2
    mid = np.where(mid <= lo, hi, mid)  # adjacent floats: keep ">= hi" meaning exact
    below = np.nextafter(uniq[0], -np.inf)
    above = np.nextafter(uniq[-1], np.inf)
    thr = np.concatenate(([below], mid, [above]))
    return thr, acc


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The threshold with the highest accuracy on these pairs, and that accuracy.

    Ties between equally accurate thresholds go to the median one of them.
    """
    s, lab = check_scores_labels(scores, labels)
    thr, acc = _candidates(s, lab)
    best = np.flatnonzero(acc == acc.max())
    k = best[(len(best) - 1) // 2]
    return float(thr[k]), float(acc[k])


def accuracy_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    """Fraction of pairs decided correctly by ``score >= threshold``."""
    s, lab = check_scores_labels(scores, labels)
    return float(np.mean((s >= threshold) == lab))


def fold_ids(n: int, n_folds: int = 10) -> np.ndarray:
    """Consecutive, nearly equal folds, as ``sklearn.model_selection.KFold(n_folds, shuffle=False)``."""
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    if n < n_folds:
        raise ValueError(f"{n} pairs cannot be split into {n_folds} folds")
    sizes = np.full(n_folds, n // n_folds)
    sizes[: n % n_folds] += 1
    return np.repeat(np.arange(n_folds), sizes)


def interleaved_folds(n: int, n_folds: int = 10) -> np.ndarray:
    """Pair i in fold i mod ``n_folds``: for pair lists ordered by label (all same pairs, then all different
    ones, as LFW's held-out fold and every single protocol fold come), every fold keeps both kinds."""
    return np.arange(n) % n_folds


def kfold_accuracy(
    scores: np.ndarray,
    labels: np.ndarray,
    folds: np.ndarray | None = None,
    n_folds: int = 10,
) -> tuple[float, float, np.ndarray, np.ndarray]:
    """K-fold verification accuracy → ``(mean, std, per_fold_accuracy, per_fold_threshold)``.

    ``folds``: a fold id per pair (e.g. :attr:`training.data.lfw.Pair.fold`); folds are taken in sorted
    id order and ``n_folds`` is ignored. Without it, consecutive equal splits as InsightFace's KFold.
    """
    s, lab = check_scores_labels(scores, labels)
    if folds is None:
        f = fold_ids(s.size, n_folds)
    else:
        f = np.asarray(folds).reshape(-1)
        if f.shape != s.shape:
            raise ValueError(f"folds ({f.size}) and scores ({s.size}) differ in length")
    ids = np.unique(f)
    if ids.size < 2:
        raise ValueError(f"k-fold accuracy needs at least 2 folds, got {ids.size}")
    accs = np.empty(ids.size)
    thrs = np.empty(ids.size)
    for i, fid in enumerate(ids):
        test = f == fid
        thrs[i], _ = best_threshold(s[~test], lab[~test])
        accs[i] = np.mean((s[test] >= thrs[i]) == lab[test])
    return float(accs.mean()), float(accs.std()), accs, thrs


def tar_at_far(scores: np.ndarray, labels: np.ndarray, far: float) -> tuple[float, float]:
    """``(TAR, threshold)`` at the lowest threshold with false accept rate <= ``far`` on these pairs."""
    s, lab = check_scores_labels(scores, labels)
    if not 0.0 <= far <= 1.0:
        raise ValueError(f"far must be in [0, 1], got {far}")
    same, diff = s[lab], s[~lab]
    if same.size == 0 or diff.size == 0:
        raise ValueError(f"TAR@FAR needs both classes; got {same.size} same and {diff.size} different pairs")
    allowed = math.floor(far * diff.size + 1e-9)  # false accepts allowed
    d = np.sort(diff)[::-1]
    if allowed >= d.size:
        threshold = float(s.min())  # every pair accepted
    else:
        threshold = float(np.nextafter(d[allowed], np.inf))  # just above the (allowed+1)-th largest
    return float(np.mean(same >= threshold)), threshold


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    s, lab = check_scores_labels(scores, labels)
    if lab.all() or not lab.any():
        raise ValueError("ROC AUC needs both same and different pairs")
    return float(roc_auc_score(lab, s))


@dataclass(frozen=True)
class VerificationReport:
    """Summary of a verification run. Accuracies and rates are fractions in [0, 1]."""

    accuracy_mean: float
    accuracy_std: float
    tar_at_far_1e3: float
    tar_at_far_1e2: float
    auc: float
    n_pairs: int
    best_threshold: float  # maximises accuracy over all pairs together
    best_threshold_accuracy: float
    threshold_far_1e3: float
    threshold_far_1e2: float
    fold_accuracies: list[float] = field(default_factory=list)
    fold_thresholds: list[float] = field(default_factory=list)

    @classmethod
    def from_scores(
        cls,
        scores: np.ndarray,
        labels: np.ndarray,
        folds: np.ndarray | None = None,
        n_folds: int = 10,
    ) -> VerificationReport:
        s, lab = check_scores_labels(scores, labels)
        mean, std, accs, thrs = kfold_accuracy(s, lab, folds, n_folds)
        tar3, thr3 = tar_at_far(s, lab, 1e-3)
        tar2, thr2 = tar_at_far(s, lab, 1e-2)
        best_thr, best_acc = best_threshold(s, lab)
        return cls(
            accuracy_mean=mean,
            accuracy_std=std,
            tar_at_far_1e3=tar3,
            tar_at_far_1e2=tar2,
            auc=roc_auc(s, lab),
            n_pairs=int(s.size),
            best_threshold=best_thr,
            best_threshold_accuracy=best_acc,
            threshold_far_1e3=thr3,
            threshold_far_1e2=thr2,
            fold_accuracies=[float(a) for a in accs],
            fold_thresholds=[float(t) for t in thrs],
        )

    def to_dict(self) -> dict[str, float | int | list[float]]:
        """Plain JSON-serialisable dict."""
        return asdict(self)

    def summary(self) -> str:
        return (
            f"acc {100 * self.accuracy_mean:.2f} ± {100 * self.accuracy_std:.2f} % "
            f"| TAR@FAR=1e-3 {100 * self.tar_at_far_1e3:.2f} % "
            f"| TAR@FAR=1e-2 {100 * self.tar_at_far_1e2:.2f} % "
            f"| AUC {self.auc:.4f} | {self.n_pairs} pairs"
        )
