"""training.eval.enrollment_study on LFW fold 0 (people never trained on), one photo per person: refined θ (the
default enrollment) separate the enrolled people's other photos from strangers better than h's θ, and each
user's own threshold, set on the cohort file's calibration half (people disjoint from the refinement cohort),
keeps the asked false-accept rate on these unseen people. Measured: AUC 0.923 (h) → 0.963 (refined); FAR at
the own threshold for 1e-2: 1.04 % (h), 0.94 % (refined), FRR 72.2 → 43.7 %."""

from __future__ import annotations

import pytest

from tests.conftest import require_shared


@pytest.mark.slow
def test_refined_enrollment_and_own_thresholds_on_unseen_people() -> None:
    from training.eval.enrollment_study import run_study

    require_shared("data", "lfw", "lfw-deepfunneled")
    h = run_study(None, [1], [1], 1e-2, 3000, progress=False, refine=False)["results"][0]
    r = run_study(None, [1], [1], 1e-2, 3000, progress=False)["results"][0]
    assert h["users"] == r["users"] == 36 and h["impostor"] == r["impostor"]
    assert h["auc"] == pytest.approx(0.9085, abs=2e-3) and r["auc"] >= h["auc"] + 0.03  # measured 0.9548
    assert r["frr_calibrated"] <= h["frr_calibrated"] - 0.2  # 42.0 vs 74.4 %
    for row in (h, r):  # the asked 1 %, on people neither cohort holds
        assert 0.007 <= row["far_calibrated"] <= 0.013
