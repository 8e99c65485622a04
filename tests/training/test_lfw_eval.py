"""End-to-end LFW evaluation on a subset (fold 1 of View 2, 600 pairs): real images, real detector,
real pretrained backbones. The full 6,000-pair figures are in the README; these are regression guards."""

import json

import numpy as np
import pytest

from pvcore.cli import EXIT_ERROR, EXIT_USAGE
from training.data.insightface_bin import write_bin
from training.evaluate import lfw_pairs
from training.evaluate import main as evaluate_main

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("backbone,floor", [("mobilefacenet-y1", 0.98), ("dlib-resnet", 0.98)])
def test_lfw_fold1_accuracy(lfw_dir, tmp_path, capsys, backbone, floor):
    out = tmp_path / "report"
    assert evaluate_main(["--backbone", backbone, "--dataset", "lfw", "--max-folds", "1", "--out", str(out),
                          "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["n_pairs"] == 600
    assert report["accuracy_mean"] >= floor, report
    assert report["auc"] >= 0.99
    assert (out / "roc.png").stat().st_size > 1000 and (out / "scores.png").stat().st_size > 1000
    assert "acc" in capsys.readouterr().out


def test_bin_dataset_gives_the_same_pairs(lfw_dir, tmp_path):
    # Write fold 1's aligned crops as an InsightFace .bin (lossless PNG) and evaluate it from the file:
    # the scores must be those of the LFW path (same crops, same backbone).
    pairs = lfw_pairs(max_folds=1, progress=False)
    crops = pairs.crops["arcface112"]
    images = np.stack([crops[i] for ab in zip(pairs.left, pairs.right) for i in ab])
    path = tmp_path / "lfw_fold1.bin"
    write_bin(path, images, pairs.same, fmt="png")
    out = tmp_path / "bin_report"
    assert evaluate_main(["--backbone", "mobilefacenet-y1", "--dataset", str(path), "--out", str(out),
                          "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["n_pairs"] == 600 and report["accuracy_mean"] >= 0.98


def test_evaluate_rejects_bad_input(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        evaluate_main(["--backbone", "mobilefacenet-y1", "--dataset", str(tmp_path / "missing.bin")])
    assert e.value.code == EXIT_ERROR and "neither" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        evaluate_main(["--backbone", "no-such-net", "--dataset", "lfw"])
    assert e.value.code == EXIT_USAGE
    with pytest.raises(SystemExit) as e:
        evaluate_main(["--backbone", "iresnet", "--dataset", str(tmp_path / "x.bin")])
    assert e.value.code == EXIT_ERROR
