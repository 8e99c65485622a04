"""5-point similarity alignment to the standard 112×112 ArcFace template.

The template is InsightFace's ``arcface_dst`` (used to train the ArcFace / MobileFaceNet models we
load): eye centres, nose tip and mouth corners of a frontal face in a 112×112 crop. The transform is
the least-squares similarity (rotation, uniform scale, translation; Umeyama), estimated with
scikit-image exactly as InsightFace's ``norm_crop`` does, and applied with OpenCV.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.transform import SimilarityTransform

ARCFACE_SIZE = 112
# Order: left eye (image left), right eye, nose tip, left mouth corner, right mouth corner.
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)


def similarity_matrix(landmarks: np.ndarray, template: np.ndarray = ARCFACE_TEMPLATE) -> np.ndarray:
    """2×3 matrix mapping image coordinates to template coordinates."""
    landmarks = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    tform = SimilarityTransform.from_estimate(landmarks, np.asarray(template, dtype=np.float64))
    if not tform:
        raise ValueError(f"degenerate landmarks, cannot estimate a similarity transform: {landmarks.tolist()}")
    return tform.params[:2].astype(np.float32)


def align_arcface(image_rgb: np.ndarray, landmarks: np.ndarray, size: int = ARCFACE_SIZE) -> np.ndarray:
    """Warp ``image_rgb`` so the 5 landmarks land on the ArcFace template; returns uint8 size×size×3."""
    template = ARCFACE_TEMPLATE * (size / ARCFACE_SIZE)
    m = similarity_matrix(landmarks, template)
    return cv2.warpAffine(image_rgb, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=0.0)


def five_from_68(shape68: np.ndarray) -> np.ndarray:
    """ArcFace's 5 points from the iBUG 68-point layout: eye centres (mean of the 6 eye-contour points),
    nose tip (30) and the outer mouth corners (48, 54)."""
    p = np.asarray(shape68, dtype=np.float32).reshape(68, 2)
    return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]]).astype(np.float32)
