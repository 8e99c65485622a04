"""RetinaFace-MobileNet0.25 port: strict weight loading and sane detections on real faces.

These tests read the weights and LFW from the shared folder and deliberately do not skip when it is missing:
``shared_path`` raises SharedDataMissing, so a CI run without the data fails loudly instead of passing empty.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from skimage import data as skdata

from pvcore.paths import shared_path
from training.face.retinaface import (
    Detection,
    RetinaFaceDetector,
    RetinaFaceNet,
    default_weights,
    load_state_dict,
    nms,
    priors_for,
)

LFW_IMAGES = ["Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "George_W_Bush/George_W_Bush_0001.jpg",
              "Serena_Williams/Serena_Williams_0001.jpg"]  # fmt: skip


@pytest.fixture(scope="module")
def detector() -> RetinaFaceDetector:
    return RetinaFaceDetector()


def _read_rgb(rel: str) -> np.ndarray:
    path = shared_path("data", "lfw", "lfw-deepfunneled", *rel.split("/"))
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, f"cv2 could not read {path}"
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _assert_plausible_landmarks(det: Detection) -> None:
    assert det.landmarks.shape == (5, 2) and det.landmarks.dtype == np.float32
    (lex, ley), (rex, rey), (_, ny), (_, lmy), (_, rmy) = det.landmarks
    assert lex < rex, "left eye (smaller x) must come first"
    assert max(ley, rey) < ny < min(lmy, rmy), "eyes above the nose above the mouth"
    assert 25 <= rex - lex <= 70 and abs(rey - ley) < 20
    x1, y1, x2, y2 = det.box
    assert np.all(det.landmarks >= [x1, y1]) and np.all(det.landmarks <= [x2, y2]), "landmarks inside the box"


def test_weights_load_strictly() -> None:
    model = RetinaFaceNet()
    result = model.load_state_dict(load_state_dict(default_weights()), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    # the upstream README gives 0.426 M parameters for this network
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(426_000, rel=0.01)


def test_priors_match_network_output() -> None:
    model = RetinaFaceNet().eval()
    for h, w in [(250, 250), (37, 61), (1, 1)]:
        with torch.inference_mode():
            scores = model(torch.zeros(1, 3, h, w))[1]
        assert scores.shape[1] == len(priors_for(h, w))


@pytest.mark.parametrize("rel", LFW_IMAGES)
def test_one_centred_face_on_lfw(detector: RetinaFaceDetector, rel: str) -> None:
    image = _read_rgb(rel)
    assert image.shape == (250, 250, 3)
    dets = detector.detect(image)
    assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)
    strong = [d for d in dets if d.score > 0.9]
    assert len(strong) == 1, f"{rel}: {[round(d.score, 3) for d in dets]}"
    det = strong[0]
    assert det.box.shape == (4,) and det.box.dtype == np.float32
    cx, cy = (det.box[:2] + det.box[2:]) / 2
    assert abs(cx - 125) < 30 and abs(cy - 125) < 35, f"box {det.box} not near the centre"
    assert 50 < det.box[2] - det.box[0] < 160
    _assert_plausible_landmarks(det)


def test_astronaut_face_upper_middle(detector: RetinaFaceDetector) -> None:
    image = skdata.astronaut()  # 512x512 RGB, Eileen Collins' face in the upper middle
    dets = detector.detect(image)
    assert dets and dets[0].score > 0.9
    cx, cy = (dets[0].box[:2] + dets[0].box[2:]) / 2
    assert 150 < cx < 330 and 40 < cy < 200, f"box {dets[0].box}"
    assert all(d.score < 0.9 for d in dets[1:])
    _assert_plausible_landmarks(dets[0])


def test_black_image_has_no_face(detector: RetinaFaceDetector) -> None:
    assert detector.detect(np.zeros((250, 250, 3), np.uint8)) == []


def test_rejects_non_uint8_rgb(detector: RetinaFaceDetector) -> None:
    with pytest.raises(ValueError):
        detector.detect(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError):
        detector.detect(np.zeros((64, 64), np.uint8))


def test_nms_keeps_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], np.float32)
    scores = np.array([0.8, 0.9, 0.7], np.float32)
    assert nms(boxes, scores, 0.4).tolist() == [1, 2]
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.4).tolist() == []
