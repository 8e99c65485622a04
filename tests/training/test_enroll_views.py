"""Enrollment as devices do it: the second detector, several photos and views, the user's own threshold from
an impostor cohort. Real faces (package sample images, LFW for the cohort), the shipped hypermodel."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from pvcore.spec import F_SPEC
from pvcore.user_store import UserStore
from training import calibration
from training.enroll import enroll_images
from training.face.errors import NoFaceError
from training.face.pipeline import FacePipeline
from training.hypermodel import Enroller, HyperModel, enrollment_views, mean_embedding

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def enroller() -> Enroller:
    return Enroller(HyperModel.load())  # the shipped model: dlib detector, dlib-resnet backbone


def blurred_astronaut() -> np.ndarray:
    """A face dlib's HOG detector misses (σ 4 blur) and YuNet finds."""
    return cv2.GaussianBlur(skimage.data.astronaut(), (0, 0), 4)


def test_a_face_the_first_detector_misses_goes_to_yunet(enroller: Enroller) -> None:
    img = blurred_astronaut()
    with pytest.raises(NoFaceError):
        FacePipeline("dlib").process(img)
    face = FacePipeline("dlib", fallback_detector="yunet").process(img)
    assert face.source == "yunet" and face.arcface112.shape == (112, 112, 3)
    sharp = FacePipeline("dlib").process(skimage.data.astronaut())
    d = np.linalg.norm(face.landmarks5 - sharp.landmarks5, axis=1)  # px, in a 512-px image, eyes 43 px apart
    assert d[:3].max() < 6 and d[3:].max() < 12  # the same eyes and nose; the mouth corners by another rule
    assert enroller.from_image(img).theta.shape == (F_SPEC.theta_size,)  # enrollment no longer fails on it


def test_enrollment_views() -> None:
    crop = skimage.data.astronaut()[:112, :112]
    v = enrollment_views(crop, 4)
    assert v.shape == (4, 112, 112, 3) and v.dtype == np.uint8
    assert np.array_equal(v[0], crop) and np.array_equal(v[1], crop[:, ::-1])
    assert np.array_equal(v[2][..., 0], v[2][..., 1]) and np.array_equal(v[3], v[2][:, ::-1])
    with pytest.raises(ValueError):
        enrollment_views(crop, 5)


def test_mean_embedding_keeps_the_scale() -> None:
    e = np.random.default_rng(0).normal(size=(5, 128)).astype(np.float32)
    m = mean_embedding(e)
    assert np.isclose(np.linalg.norm(m), np.linalg.norm(e, axis=1).mean(), rtol=1e-5)
    assert np.allclose(m / np.linalg.norm(m), e.mean(0) / np.linalg.norm(e.mean(0)), atol=1e-6)
    assert np.array_equal(mean_embedding(e[:1]), e[0])


def test_several_photos_average_into_one_theta(enroller: Enroller, tmp_path: Path) -> None:
    astro = skimage.data.astronaut()
    one = enroller.from_images([astro])
    assert np.array_equal(one.theta, enroller.from_image(astro).theta)  # one photo, one view: unchanged
    two = enroller.from_images([astro, astro[:, ::-1].copy()], views=2)
    emb = np.stack([enroller.from_image(astro).embedding, enroller.from_image(astro[:, ::-1].copy()).embedding])
    assert not np.array_equal(two.theta, one.theta)
    assert np.allclose(np.corrcoef(two.embedding, mean_embedding(emb))[0, 1], 1.0, atol=1e-2)
    meta, _ = enroll_images("astro2", [astro, astro[:, ::-1].copy()], store=UserStore(tmp_path), views=2,
                            enroller=enroller, refine=False, far=None)
    assert meta.n_photos == 2 and meta.calibration == {"method": "global"}
    assert meta.threshold == enroller.model.threshold


def test_threshold_for_far() -> None:
    s = np.random.default_rng(1).normal(size=20_000)
    thr, method = calibration.threshold_for_far(s, 1e-2)
    assert method == "quantile" and (s >= thr).mean() <= 1e-2 and (s >= thr).mean() > 0.9e-2
    thr, method = calibration.threshold_for_far(s[:500], 1e-3)  # 0.5 faces in the tail: extrapolate
    assert method == "znorm" and abs(thr - (s[:500].mean() + 3.0902 * s[:500].std())) < 1e-3
    thr, method = calibration.threshold_for_far(s, 1e-2, floor=5.0)  # never below the global threshold
    assert (thr, method) == (5.0, "global")
    with pytest.raises(ValueError):
        calibration.threshold_for_far(s, 0.0)


def test_a_cohort_of_several_sources_keeps_the_rate_on_each() -> None:
    """Two sources whose impostor scores differ (web photos vs studio photos): the pooled quantile over-accepts the
    higher one; the grouped rule takes the strictest source's threshold, so each source's rate is kept."""
    rng = np.random.default_rng(2)
    s = np.concatenate([rng.normal(0.0, 1.0, 9_000), rng.normal(1.0, 1.0, 1_000)])
    g = np.repeat(np.array([0, 1], np.int8), [9_000, 1_000])
    pooled, _ = calibration.threshold_for_far(s, 0.05)
    assert 0.18 < (s[g == 1] >= pooled).mean() < 0.22  # 5 % on average: 20 % of the second source (measured)
    thr, method, group = calibration.threshold_for_far_groups(s, 0.05, None, g, ("LFW", "CFP"))
    assert method == "quantile" and group == "CFP"
    assert 0.045 < (s[g == 1] >= thr).mean() <= 0.05 and (s[g == 0] >= thr).mean() < 0.006  # measured 5.0 / 0.43 %
    assert calibration.threshold_for_far_groups(s, 0.05, None, None)[:2] == (pooled, "quantile")
    assert calibration.threshold_for_far_groups(s, 0.05, 9.0, g, ("LFW", "CFP")) == (9.0, "global", "")
    # a source too small to set a threshold of its own (here 20 faces far above the rest) leaves the pooled one
    tiny = np.concatenate([s, np.full(20, 50.0)])
    gt = np.concatenate([np.zeros(10_000, np.int8), np.ones(20, np.int8)])
    assert calibration.MIN_GROUP > 20
    pooled_tiny = calibration.threshold_for_far(tiny, 0.05)
    assert calibration.threshold_for_far_groups(tiny, 0.05, None, gt) == (*pooled_tiny, "")


def test_a_calibration_subset_keeps_each_sources_share() -> None:
    """The calibration faces are stored source after source: a subset takes each source's share, not the first
    rows (which would drop the second source)."""
    from training.refine import Cohort

    feats = np.arange(3000 * 2, dtype=np.float32).reshape(3000, 2)
    g = np.repeat(np.array([0, 1], np.int8), [2667, 333])
    c = Cohort(feats, np.zeros((3, 1)), "m", "r", feats, "c", None, g, ("LFW", "CFP"))
    f, gs = c.calibration_subset(1000)
    assert [int((gs == k).sum()) for k in (0, 1)] == [889, 111] and np.array_equal(f, feats[np.r_[0:889, 2667:2778]])
    f, gs = c.calibration_subset(5000)
    assert np.array_equal(f, feats) and np.array_equal(gs, g)
    c.calib_group = None
    f, gs = c.calibration_subset(1000)
    assert gs is None and np.array_equal(f, feats[:1000])


def test_enroll_cli_several_photos_and_no_cohort(tmp_path: Path) -> None:
    d = tmp_path / "img"
    d.mkdir()
    a, b = d / "a.png", d / "b.png"
    cv2.imwrite(str(a), cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(b), cv2.cvtColor(blurred_astronaut(), cv2.COLOR_RGB2BGR))
    r = subprocess.run([sys.executable, "-m", "training.enroll", "--user", "astro", "--users", str(tmp_path / "u"),
                        "--image", str(a), "--image", str(b), "--enroll-views", "2", "--far", "1e-3",
                        "--cohort", "none", "--no-refine", "--json"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    meta = json.loads(r.stdout)
    assert meta["n_photos"] == 2 and meta["calibration"] == {"method": "global"}
    r = subprocess.run([sys.executable, "-m", "training.enroll", "--user", "x", "--users", str(tmp_path / "u"),
                        "--image", str(a), "--far", "2"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "--far must be a rate in [0, 1)" in r.stderr and "Traceback" not in r.stderr
    # --far 0: the global threshold for a refined θ too (the cohort file, or the one drawn from the model's
    # statistics on a machine without the shared folder)
    r = subprocess.run([sys.executable, "-m", "training.enroll", "--user", "astro0", "--users", str(tmp_path / "u"),
                        "--image", str(a), "--far", "0", "--json"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    meta = json.loads(r.stdout)
    assert meta["calibration"]["method"] == "global" and "skipped" not in meta["calibration"]["refine"]
    assert "far_target" not in meta["calibration"] and meta["threshold"] == HyperModel.load().threshold


@pytest.mark.slow
def test_far_sets_the_users_own_threshold_from_the_lfw_cohort(enroller: Enroller, tmp_path: Path) -> None:
    """--far 1e-2 against 1,000 LFW faces: the stored threshold accepts about 1 % of the cohort."""
    from tests.conftest import require_shared

    require_shared("data", "lfw", "lfw-deepfunneled")
    meta, res = enroll_images("astro", [skimage.data.astronaut()], store=UserStore(tmp_path), far=1e-2,
                              cohort="lfw", cohort_size=1000, enroller=enroller)
    cal = meta.calibration
    assert cal["method"] in ("quantile", "global") and cal["cohort_size"] > 900 and cal["far_target"] == 1e-2
    assert meta.threshold >= enroller.model.threshold and meta.threshold == cal["threshold"]
    if cal["method"] == "quantile":
        assert 0.005 <= cal["cohort_far"] <= 0.01
