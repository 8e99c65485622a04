"""Verification metrics: k-fold accuracy (LFW protocol), TAR@FAR, AUC, the report and the plots."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from sklearn.model_selection import KFold

from training.eval.metrics import (
    VerificationReport,
    accuracy_at,
    best_threshold,
    fold_ids,
    interleaved_folds,
    kfold_accuracy,
    roc_auc,
    tar_at_far,
)
from training.eval.plots import save_roc_png, save_score_histogram_png


def _random_pairs(n: int, seed: int = 0, sep: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.5
    return rng.normal(0, 1, n) + sep * labels, labels


def test_perfectly_separable_scores_give_100_percent() -> None:
    labels = np.array([True, False] * 50)
    scores = np.where(labels, 0.8, 0.2) + np.linspace(0, 0.1, 100)
    mean, std, per_fold, thr = kfold_accuracy(scores, labels)
    assert mean == 1.0 and std == 0.0
    assert per_fold.shape == thr.shape == (10,)
    assert np.all((thr > 0.3) & (thr <= 0.8))
    assert tar_at_far(scores, labels, 1e-3)[0] == 1.0
    assert roc_auc(scores, labels) == 1.0


def test_hand_computed_best_threshold() -> None:
    scores = np.array([0.4, 0.3, 0.7, 0.1, 0.6])
    # sorted 0.1 d, 0.3 d, 0.4 s, 0.6 s, 0.7 s: separable, threshold half-way between 0.3 and 0.4
    assert best_threshold(scores, np.array([1, 0, 1, 0, 1])) == (pytest.approx(0.35), 1.0)
    # sorted 0.1 d, 0.3 s, 0.4 d, 0.6 s, 0.7 s. Candidates (predict same iff score >= t):
    #   t < 0.1 → 3/5, t = 0.2 → 4/5, 0.35 → 3/5, 0.5 → 4/5, 0.65 → 3/5, t > 0.7 → 2/5
    # two tied at 4/5: the lower median of the tied candidates (0.2) is taken
    labels = np.array([0, 1, 1, 0, 1])
    thr, acc = best_threshold(scores, labels)
    assert thr == pytest.approx(0.2) and acc == pytest.approx(0.8)
    assert accuracy_at(scores, labels, 0.5) == pytest.approx(0.8)
    # sorted 0.1 s, 0.3 s, 0.4 d, 0.6 d, 0.7 s: t < 0.1 → 3/5, 0.2 → 2/5, 0.35 → 1/5, 0.5 → 2/5,
    #   0.65 → 3/5, t > 0.7 → 2/5; tied at 3/5: "everything same" (just below 0.1) and 0.65
    thr3, acc3 = best_threshold(scores, np.array([0, 1, 1, 1, 0]))
    assert acc3 == pytest.approx(0.6) and 0.09 < thr3 < 0.1


def test_threshold_comes_from_the_other_folds() -> None:
    # fold 0: same 0.9, 0.8 / different 0.3, 0.2   fold 1: same 0.5, 0.45 / different 0.4, 0.1
    scores = np.array([0.9, 0.8, 0.3, 0.2, 0.5, 0.45, 0.4, 0.1])
    labels = np.array([1, 1, 0, 0, 1, 1, 0, 0], dtype=bool)
    folds = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    mean, std, per_fold, thr = kfold_accuracy(scores, labels, folds=folds)
    # each fold alone is separable (own best threshold → 100 %), but fold 1 is judged with the threshold
    # learnt on fold 0 (0.55), which rejects both of its same pairs
    for f in (0, 1):
        assert best_threshold(scores[folds == f], labels[folds == f])[1] == 1.0
    np.testing.assert_allclose(thr, [0.425, 0.55])
    np.testing.assert_allclose(per_fold, [1.0, 0.5])
    assert mean == pytest.approx(0.75) and std == pytest.approx(0.25)


def test_explicit_fold_ids_need_not_be_consecutive() -> None:
    scores, labels = _random_pairs(300, seed=3)
    folds = np.tile(np.arange(10), 30)  # interleaved
    m1 = kfold_accuracy(scores, labels, folds=folds)
    order = np.argsort(folds, kind="stable")
    m2 = kfold_accuracy(scores[order], labels[order], folds=folds[order])
    assert m1[0] == pytest.approx(m2[0])
    np.testing.assert_allclose(m1[2], m2[2])


@pytest.mark.parametrize("n", [100, 103, 6000])
def test_default_folds_match_sklearn_kfold(n: int) -> None:
    ids = fold_ids(n, 10)
    for k, (_, test) in enumerate(KFold(n_splits=10, shuffle=False).split(np.arange(n))):
        np.testing.assert_array_equal(np.flatnonzero(ids == k), test)


def test_chosen_thresholds_are_optimal_on_training_folds() -> None:
    scores, labels = _random_pairs(200, seed=1, sep=1.0)
    scores = np.round(scores, 1)  # many ties
    _, _, per_fold, thr = kfold_accuracy(scores, labels, n_folds=5)
    ids = fold_ids(200, 5)
    for k in range(5):
        tr = ids != k
        brute = max(np.mean((scores[tr] >= t) == labels[tr]) for t in np.append(scores[tr], np.inf))
        assert np.mean((scores[tr] >= thr[k]) == labels[tr]) == pytest.approx(brute)
        assert per_fold[k] == pytest.approx(np.mean((scores[~tr] >= thr[k]) == labels[~tr]))


def test_tar_at_far_hand_computed() -> None:
    diff = np.arange(10) / 10.0  # 0.0 … 0.9
    same = np.array([0.95, 0.85, 0.5, 0.25, 0.05])
    scores = np.concatenate([diff, same])
    labels = np.concatenate([np.zeros(10, bool), np.ones(5, bool)])
    cases = [(0.0, 0.2, 0.9), (0.1, 0.4, 0.8), (0.2, 0.4, 0.7), (0.5, 0.6, 0.4), (1.0, 1.0, None)]
    for far, tar, above in cases:
        got_tar, thr = tar_at_far(scores, labels, far)
        assert got_tar == pytest.approx(tar), far
        assert np.mean(diff >= thr) <= far + 1e-12
        if above is not None:
            assert above < thr < above + 1e-9
    with pytest.raises(ValueError, match="both classes"):
        tar_at_far(diff, np.zeros(10, bool), 0.1)


def test_input_validation() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        kfold_accuracy(np.zeros(10), np.zeros(9))
    with pytest.raises(ValueError, match="NaN"):
        kfold_accuracy(np.array([np.nan] * 10), np.zeros(10))
    with pytest.raises(ValueError, match="0/1"):
        kfold_accuracy(np.zeros(10), np.full(10, 2))
    with pytest.raises(ValueError, match="cannot be split"):
        kfold_accuracy(np.zeros(5), np.zeros(5), n_folds=10)


def test_report_to_dict_is_json() -> None:
    scores, labels = _random_pairs(6000, seed=2, sep=4.0)
    folds = np.repeat(np.arange(10), 600)
    rep = VerificationReport.from_scores(scores, labels, folds=folds)
    d = rep.to_dict()
    json.dumps(d)
    assert d["n_pairs"] == 6000 and len(d["fold_accuracies"]) == 10
    assert 0.95 < rep.accuracy_mean <= 1.0 and rep.auc > 0.99
    assert rep.tar_at_far_1e3 <= rep.tar_at_far_1e2 <= 1.0
    assert rep.best_threshold_accuracy >= rep.accuracy_mean - 0.01
    assert "TAR@FAR=1e-3" in rep.summary()


def test_plots_write_png_atomically(tmp_path: Path) -> None:
    s1, l1 = _random_pairs(2000, seed=4, sep=3.0)
    s2, l2 = _random_pairs(2000, seed=5, sep=1.5)
    roc = save_roc_png(tmp_path / "plots" / "roc.png", {"strong": (s1, l1), "weak": (s2, l2)})
    hist = save_score_histogram_png(tmp_path / "plots" / "hist.png", s1, l1, threshold=1.5)
    for p in (roc, hist):
        img = cv2.imread(str(p))
        assert img is not None and img.shape[0] > 100
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["hist.png", "roc.png"]
    with pytest.raises(ValueError):
        save_roc_png(tmp_path / "empty.png", {})


def test_interleaved_folds_keep_both_kinds_of_an_ordered_pair_list_in_every_fold():
    same = np.r_[np.ones(300, bool), np.zeros(300, bool)]  # as a held-out LFW fold comes: same pairs first
    folds = interleaved_folds(len(same))
    assert sorted(set(folds.tolist())) == list(range(10))
    for k in range(10):
        assert same[folds == k].sum() == 30 and (~same[folds == k]).sum() == 30
