"""Image folders as evaluation sets: every format OpenCV reads (.pgm included), the pair protocol drawn
for them (training.data.image_folder.verification_pairs), and ``training.evaluate --dataset FOLDER``."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from pvcore.paths import CACHE_ENV
from tests.conftest import require_shared
from training.data.image_folder import IMAGE_EXTENSIONS, ImageFolder, verification_pairs
from training.face.pipeline import read_image_rgb
from training.hypermodel import DEFAULT_MODEL


def test_pgm_and_other_opencv_formats_are_images(tmp_path: Path) -> None:
    gray = np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))
    (tmp_path / "ann").mkdir()
    (tmp_path / "bob").mkdir()
    assert cv2.imwrite(str(tmp_path / "ann" / "1.pgm"), gray)
    assert cv2.imwrite(str(tmp_path / "ann" / "2.ppm"), np.dstack([gray] * 3))
    assert cv2.imwrite(str(tmp_path / "bob" / "1.tif"), gray)
    (tmp_path / "bob" / "notes.txt").write_text("not an image")
    ds = ImageFolder.scan(tmp_path)
    assert [p for p, _ in ds.samples] == ["ann/1.pgm", "ann/2.ppm", "bob/1.tif"]
    assert ".pgm" in IMAGE_EXTENSIONS
    rgb = read_image_rgb(ds.path(0))
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb[..., 0], gray) and np.array_equal(rgb[..., 2], gray)


def test_verification_pairs_are_people_disjoint_folds_with_correct_labels() -> None:
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(40), rng.integers(1, 7, 40))
    a, b, same, fold = verification_pairs(labels, per_fold=6, seed=3)
    assert np.array_equal(same, labels[a] == labels[b]) and (a != b).all()
    assert set(np.unique(fold)) == set(range(10))
    people = [set(labels[a[fold == k]]) | set(labels[b[fold == k]]) for k in range(10)]
    assert all(not (people[i] & people[j]) for i in range(10) for j in range(i + 1, 10))
    for k in range(10):  # balanced: as many different pairs as same ones, each pair once
        assert same[fold == k].sum() == (~same[fold == k]).sum() <= 6
    assert len({(int(x), int(y)) for x, y in zip(a, b)}) == len(a)
    again = verification_pairs(labels, per_fold=6, seed=3)
    assert all(np.array_equal(u, v) for u, v in zip((a, b, same, fold), again))
    other = verification_pairs(labels, per_fold=6, seed=4)
    assert not np.array_equal(other[0], a)


def test_verification_pairs_small_sets() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2, 3])  # 4 identities: 2 folds of 2 people
    a, b, same, fold = verification_pairs(labels, per_fold=10)
    assert set(fold) == {0, 1} and same.any() and (~same).any()
    with pytest.raises(ValueError, match="at least 4"):
        verification_pairs(np.array([0, 0, 1, 1, 2]))
    with pytest.raises(ValueError, match="fewer than 2 folds"):
        verification_pairs(np.arange(8))  # nobody has 2 images: no same pair anywhere


def _pgm_folder(root: Path, people: int, per_person: int) -> Path:
    """LFW photos of the first people with enough images, saved as grayscale .pgm."""
    from training.data.lfw import image_path, lfw_root, load_people

    src = lfw_root()
    chosen = [n for n, c in sorted(load_people("view2").items()) if c >= per_person][:people]
    for name in chosen:
        (root / name).mkdir(parents=True)
        for k in range(1, per_person + 1):
            img = cv2.imread(str(src / image_path(name, k)), cv2.IMREAD_GRAYSCALE)
            assert cv2.imwrite(str(root / name / f"{k:02d}.pgm"), img)
    return root


@pytest.mark.slow
def test_evaluate_and_accuracy_take_a_pgm_folder(tmp_path: Path, monkeypatch) -> None:
    """``training.evaluate --dataset FOLDER`` scores a folder of .pgm photos, and codegen's crop loader
    (``codegen.accuracy --dataset FOLDER``) reads the same folder."""
    require_shared("data", "lfw", "lfw-deepfunneled")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    folder = _pgm_folder(tmp_path / "faces", people=8, per_person=3)
    from training import evaluate

    out = tmp_path / "eval"
    assert evaluate.main(["--backbone", "dlib-resnet", "--dataset", str(folder), "--out", str(out),
                          "--no-progress"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["n_pairs"] >= 8 and rep["set"]["alignment"]["failed"] == 0 and rep["set"]["images"] > 0
    assert rep["auc"] > 0.5 and (out / "roc.png").is_file()
    out_model = tmp_path / "eval-model"  # the shipped hypermodel on the same folder, grayscale variant
    assert evaluate.main(["--model", str(DEFAULT_MODEL), "--dataset", str(folder), "--one-way", "--variant", "gray",
                          "--out", str(out_model), "--no-progress"]) == 0
    rep_model = json.loads((out_model / "report.json").read_text())
    assert rep_model["n_pairs"] == rep["n_pairs"] and rep_model["variant"] == "gray"
    assert rep_model["sets"][0]["variant"] == "gray" and rep_model["scoring"] == "one-way"
    from codegen.faces import load_crops

    crops, paths = load_crops(str(folder), limit=5, detector="dlib")
    assert crops.shape == (5, 112, 112, 3) and all(p.endswith(".pgm") for p in paths)
    assert np.array_equal(crops[..., 0], crops[..., 1])  # grayscale photos stay grayscale
