"""codegen.accuracy's int8-vs-float figures: decision agreement, near-threshold error, expected agreement."""

import numpy as np

from codegen.accuracy import expected_agreement, int8_agreement


def test_agreement_figures_by_hand() -> None:
    fl = np.array([-3.0, 0.2, 0.6, 3.0])  # threshold 0.5: pairs 1 and 2 are near it, 0 and 3 are not
    q = fl + np.array([0.0, 0.4, 0.0, -0.1])  # pair 1 crosses the threshold (0.2 → 0.6)
    a = int8_agreement(fl, q, 0.5)
    assert a["decision_agreement"] == 0.75 and a["n_disagree"] == 1
    assert a["near_threshold_pairs"] == 2 and np.isclose(a["near_threshold_mean_abs_dlogit"], 0.2)
    # near errors {+0.4, 0.0}: +0.4 flips pair 1 only (0.2 → 0.6; 0.6 stays), 0.0 flips none → 1 − 1/8
    assert np.isclose(a["expected_agreement"], 7 / 8)
    assert expected_agreement(fl, fl, 0.5) == 1.0
    assert expected_agreement(np.array([5.0]), np.array([4.0]), 0.5) == 1.0  # nothing near: nothing can flip
