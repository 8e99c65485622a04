"""codegen.benchmark, the yardstick: its deployed scorer and non-personal embedding against the golden model,
its metrics at the operating point, its command line, and an end-to-end run on a small subset of LFW, CFP-FP
and an InsightFace .bin set (slow)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from codegen import benchmark
from codegen.accuracy import int8_pair_logits
from codegen.golden import run_int8
from codegen.quantize import QuantConfig, quantize
from pvcore.spec import F_SPEC
from tests.conftest import require_shared
from training.verifier.functional import random_theta


def _shared_prefix_thetas(n: int) -> torch.Tensor:
    """n θ with one convolutional prefix (up to the pool) and their own dense layers, as the shipped
    models generate them (so GPTQ rounds the prefix once)."""
    from training.verifier.batched import split_spec

    n_prefix = split_spec(F_SPEC, "pool")[2]
    thetas = torch.stack([random_theta(s) for s in range(n)])
    thetas[:, :n_prefix] = thetas[0, :n_prefix]
    return thetas


@pytest.mark.parametrize("activations", ["int16", "int8"])
def test_deployed_logits_are_int8_pair_logits_with_each_enrollment_quantized_once(face_images: np.ndarray,
                                                                                  activations: str) -> None:
    """Two sets sharing an enrollment (θ 1 on crop 1, as a CFP frontal photo in FF and FP): the same logits as
    codegen.accuracy's int8_pair_logits per set, three quantizations instead of four."""
    crops = face_images[:3]
    thetas = _shared_prefix_thetas(3)
    job1 = (thetas, np.array([1, 0, 1]), np.array([2, 1, 0]), crops)
    job2 = (thetas[[1, 2]], np.array([0, 1]), np.array([1, 0]), crops[[1, 2]])  # its row 0: θ 1 on crop 1
    got, counts = benchmark.deployed_logits([job1, job2], activations, progress=False)
    for (th, rows, cols, cr), lg in zip([job1, job2], got):
        assert np.array_equal(lg, int8_pair_logits(th, rows, cols, cr, False, activations=activations))
    assert counts == {"quantized": 3, "in_several_sets": 1}
    qf = quantize(thetas[0].numpy(), enroll_u8=crops[0], cfg=QuantConfig(activations=activations))
    assert got[0][1] == qf.dequantize_logit(run_int8(qf, crops[1:2]))[0]


def test_pooled_features_are_the_golden_models_pool_output(face_images: np.ndarray) -> None:

    qf = quantize(random_theta(5).numpy(), enroll_u8=None, cfg=QuantConfig(activations="int16"))
    feats = benchmark.pooled_features(qf, face_images[:6], batch=4)
    _, acts = run_int8(qf, face_images[:6], return_layers=True)
    pool = F_SPEC.pool_index
    q = qf.layers[pool]
    want = (acts[F_SPEC.layers[pool].name].reshape(6, -1).astype(np.float64) - q.out_zp) * q.out_scale
    np.testing.assert_array_equal(feats, want)
    assert feats.shape == (6, F_SPEC.layers[pool - 1].out_ch)


def test_shared_prefix_only_for_a_model_whose_prefix_reaches_the_pool() -> None:
    thetas = torch.stack([random_theta(0)])

    def model(personal_from: str) -> SimpleNamespace:
        return SimpleNamespace(meta={"config": {"personal_from": personal_from}})

    assert benchmark.shared_prefix_qf(model(""), thetas, "int16") is None
    assert benchmark.shared_prefix_qf(model("b5_dw"), thetas, "int16") is None  # personal convolutions
    qf = benchmark.shared_prefix_qf(model("pool"), thetas, "int16")
    assert qf is not None and qf.activations == "int16" and not qf.calibration["enrollment"]


def test_row_metrics_at_the_model_threshold_and_at_other_folds_thresholds() -> None:
    same = np.array([True, True, False, False] * 5)
    scores = np.array([0.9, 0.5, 0.45, 0.1] * 5)
    folds = np.repeat(np.arange(5), 4)
    at_model = benchmark.row_metrics(scores, same, folds, threshold=0.6)
    assert at_model["far"] == 0.0 and at_model["frr"] == 0.5  # 0.5 rejected: half the same pairs
    assert at_model["operating_threshold"] == 0.6 and at_model["threshold_rule"] == "model threshold"
    low = benchmark.row_metrics(scores, same, folds, threshold=0.3)
    assert low["far"] == 0.5 and low["frr"] == 0.0  # 0.45 accepted: half the different pairs
    kfold = benchmark.row_metrics(scores, same, folds, threshold=None)
    assert kfold["far"] == 0.0 and kfold["frr"] == 0.0  # the other folds' threshold: between 0.45 and 0.5
    assert kfold["accuracy_mean"] == 1.0 and "other 9" in kfold["threshold_rule"]
    # the device's rule: a float32 score equal to the float32 threshold is accepted
    edge = benchmark.row_metrics(np.array([0.3, 0.1] * 10, np.float32).astype(np.float64),
                                 np.array([True, False] * 10), np.repeat(np.arange(10), 2), threshold=0.3)
    assert edge["frr"] == 0.0


@pytest.mark.parametrize("argv,message", [
    (["--variants", "sepia"], "variants are"),
    (["--sets", "nowhere"], "is not lfw"),
    (["--limit-pairs", "5"], "at least 20"),
])
def test_bad_command_lines_exit_2(argv: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        benchmark.main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_a_missing_model_is_an_error(tmp_path: Path, capsys) -> None:
    assert benchmark.main(["--model", str(tmp_path / "none.pt"), "--sets", "lfw", "--out", str(tmp_path)]) == 1
    assert "hypermodel file not found" in capsys.readouterr().err


def test_assumptions_name_the_cfp_folds_a_model_trained_and_chose_on() -> None:
    from types import SimpleNamespace

    cfg = {"fold": 0, "val_fold": 1, "dataset": "lfw", "cfp_train_folds": "0,1,2,3", "cfp_val_folds": "4"}
    model = SimpleNamespace(meta={"config": cfg}, backbone="dlib-resnet")
    text = " ".join(benchmark.assumptions(model, ["lfw-val", "cfp-ff"]))
    assert "trained on the people of CFP folds 0, 1, 2, 3; cfp-ff and cfp-fp score only folds 5, 6, 7, 8, 9" in text
    assert "CFP validation" not in text  # lfw-val is not a CFP validation set
    assert "CFP validation: folds 4" in " ".join(benchmark.assumptions(model, ["cfp-fp-val"]))
    lfw_only = SimpleNamespace(meta={"config": {"fold": 0, "dataset": "lfw"}}, backbone="dlib-resnet")
    assert "absent from the model's training data" in " ".join(benchmark.assumptions(lfw_only, ["cfp-fp"]))


def test_lfw_val_needs_a_model_with_a_validation_fold(capsys) -> None:
    # the default model was trained without one: an error that says so, not fold 0 scored as "validation"
    assert benchmark.main(["--sets", "lfw-val", "--limit-pairs", "20", "--no-progress", "--far", "0",
                           "--no-refine"]) == 1
    assert "no LFW validation fold" in capsys.readouterr().err


@pytest.mark.slow
def test_lfw_val_scores_the_validation_fold(tmp_path: Path) -> None:
    require_shared("data", "lfw", "pairs.txt")
    from training.hypermodel import DEFAULT_MODEL

    out = tmp_path / "report"
    assert benchmark.main(["--model", str(DEFAULT_MODEL.parent / "hgen_dlib_lfw_val1.pt"), "--sets", "lfw-val",
                           "--limit-pairs", "20", "--variants", "clean", "--no-refine", "--far", "0", "--out",
                           str(out), "--no-progress"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["sets"]["lfw-val"]["info"]["validation_fold"] == 1
    assert "choose, they do not report" in " ".join(rep["assumptions"])


@pytest.mark.slow
def test_end_to_end_on_a_small_subset(tmp_path: Path, capsys) -> None:
    """The command on 40 pairs of LFW's held-out fold, of CFP-FP and of a .bin set written from aligned LFW
    crops, clean and gray: every row of every set and variant in report.md and report.json, and the plots."""
    require_shared("data", "lfw", "pairs.txt")
    require_shared("data", "cfp", "Protocol")
    from training.data.insightface_bin import write_bin
    from training.evaluate import lfw_pairs

    lfw1 = lfw_pairs("view2", "dlib", workers=2, progress=False, fold=1, limit=40)  # a fold the model saw: a
    images = np.stack([lfw1.crops["arcface112"][lfw1.left], lfw1.crops["arcface112"][lfw1.right]], axis=1)
    bin_path = tmp_path / "lfw_fold1.bin"  # format test only, so its people being seen does not matter
    write_bin(bin_path, images.reshape(-1, 112, 112, 3), lfw1.same, fmt="png")
    out = tmp_path / "report"
    code = benchmark.main(["--sets", f"lfw,cfp-fp,{bin_path}", "--limit-pairs", "40", "--variants", "clean,gray",
                           "--out", str(out), "--json", "--no-progress"])
    assert code == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep == json.loads((out / "report.json").read_text()) | {"out": str(out)}
    assert list(rep["sets"]) == ["lfw", "cfp-fp", "lfw_fold1"]
    md = (out / "report.md").read_text()
    for s in rep["sets"].values():
        assert s["pairs"] == 40 and 0 < s["same"] < 40
        kept = s["info"].get("cfp_folds", [])
        k = len(kept) if len(kept) > 1 else 10  # a model's CFP report folds: its k-fold figures use those folds
        assert list(s["variants"]) == ["clean", "gray"]
        for v in s["variants"].values():
            assert list(v["rows"]) == list(benchmark.ALL_ROWS)  # (f), (g): refined, as enrollment does
            for key in benchmark.USER_THRESHOLD_ROWS:  # --far DEFAULT_FAR by default: the users' own thresholds too
                assert 0 <= v["rows"][key]["far_user"] <= v["rows"][key]["far"]  # never below the model's
            for r in v["rows"].values():
                assert 0 <= r["far"] <= 1 and 0 <= r["frr"] <= 1 and 0 < r["auc"] <= 1
                assert len(r["fold_accuracies"]) == k
            assert (out / v["plots"]["roc"]).stat().st_size > 1000 and (out / v["plots"]["scores"]).is_file()
            assert v["deployed_vs_float"]["directed_pairs"] == 40
        for label, _ in benchmark.ALL_ROWS.values():
            assert md.count(f"| {label} |") >= 2 * len(rep["sets"])
    for variant in ("clean", "gray"):  # the deployed row of all sets of a variant is scored in one pass
        assert rep["deployed"][variant]["seconds"] > 0 and rep["deployed"][variant]["pairs"] == 3 * 40
    lfw, fp = rep["sets"]["lfw"], rep["sets"]["cfp-fp"]
    assert lfw["info"]["held_out_fold"] == 0 and lfw["variants"]["clean"]["rows"]["deployed"]["operating_threshold"]
    # the default model trained on CFP folds 0–4: FP is scored on folds 5–9 only, without the people named in
    # the LFW folds it saw
    assert fp["info"]["cfp_folds"] == [5, 6, 7, 8, 9] and fp["info"]["fold_pairs"] == 3500
    assert fp["info"]["excluded_pairs"] == 1436 and fp["info"]["excluded_people"] == 75
    assert any("CFP folds 0, 1, 2, 3, 4" in a for a in rep["assumptions"])
    assert sum(fp["info"]["alignment"].values()) == fp["info"]["images"] and fp["info"]["alignment"]["failed"] == 0
    assert "dlib150" in rep["sets"]["lfw_fold1"]["info"]
    assert rep["command"][:3] == ["python", "-m", "codegen.benchmark"] and rep["timings"]["total_s"] > 0
