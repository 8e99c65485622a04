"""codegen.benchmark's rows (f) deployed and (g) float with θ refined at enrollment (training.refine) and the
users' own thresholds (--far), on a small subset of LFW's held-out fold, from a cohort file; a model whose
held-out LFW fold may be in the cohort is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codegen import benchmark
from tests.conftest import require_shared


@pytest.mark.slow
def test_refined_rows_on_a_small_subset(tmp_path: Path, capsys) -> None:
    require_shared("data", "lfw", "pairs.txt")
    from training.hypermodel import HyperModel
    from training.refine import build_cohort

    cohort = tmp_path / "cohort.npz"
    build_cohort(HyperModel.load(), size=300).save(cohort)
    out = tmp_path / "report"
    code = benchmark.main(["--sets", "lfw", "--limit-pairs", "40", "--variants", "clean", "--far", "0.05",
                           "--cohort-file", str(cohort), "--out", str(out), "--json", "--no-progress"])
    assert code == 0
    rep = json.loads(capsys.readouterr().out)
    rows = rep["sets"]["lfw"]["variants"]["clean"]["rows"]
    assert list(rows) == list(benchmark.ROWS) + list(benchmark.REFINED_ROWS)
    assert rep["refine"]["cohort_size"] == 300 and rep["user_threshold"]["cohort_size"] == 300
    assert rep["user_threshold"]["far"] == 0.05 and "calibration half" in rep["user_threshold"]["cohort"]
    for key in ("deployed_refined", "float_refined"):
        assert 0 < rows[key]["auc"] <= 1 and rows[key]["operating_threshold"] == rep["model"]["threshold"]
    # the deployed refined θ decides like its float twin (16x8), as the unrefined one does
    dep, flt = rows["deployed_refined"], rows["float_refined"]
    assert abs(dep["far"] - flt["far"]) <= 0.05 and abs(dep["frr"] - flt["frr"]) <= 0.05
    # a user's own threshold is never below the model's: it accepts a subset of what the model's accepts
    for key in benchmark.USER_THRESHOLD_ROWS:
        assert rows[key]["far_user"] <= rows[key]["far"] and rows[key]["frr_user"] >= rows[key]["frr"]
    md = (out / "report.md").read_text()
    assert "| clean | (f) deployed, θ refined at enrollment (the default enrollment) |" in md
    assert "FAR % at the user's threshold (target 0.05)" in md


def test_refine_refuses_a_model_whose_held_out_fold_may_be_in_the_cohort(tmp_path: Path, capsys) -> None:
    import torch

    from training.hypermodel import DEFAULT_MODEL

    ck = torch.load(DEFAULT_MODEL, map_location="cpu", weights_only=False)
    ck["config"] = {**ck["config"], "fold": 5}
    model = tmp_path / "fold5.pt"
    torch.save(ck, model)
    assert benchmark.main(["--model", str(model), "--sets", "lfw", "--refine", "--out", str(tmp_path)]) == 1
    assert "the impostor cohort holds LFW people of fold 5" in capsys.readouterr().err
