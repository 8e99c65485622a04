"""Align a face inside a box that a dataset gives, when no detector found it.

dlib's 68-point predictor is fitted inside the box, the 5 ArcFace points come from its landmarks
(:func:`training.face.align.five_from_68`) and both crops are made from that one fit, exactly as the face
pipeline does after a detection (``FacePipeline``; LFW's fixed-box fallback is the same step with one box
for every image). Used for CFP's profile faces that neither dlib nor RetinaFace finds (the box from the
dataset's fiducials, :func:`training.data.cfp.fiducial_box`) and to give already aligned 112×112 crops
(InsightFace ``.bin`` sets) the dlib chip the dlib-resnet backbone eats (:func:`dlib_chips_from_arcface`).
"""

from __future__ import annotations

import dlib
import numpy as np

from training.face import dlib_models
from training.face.align import align_arcface, five_from_68
from training.face.pipeline import DLIB_CHIP_PADDING, DLIB_CHIP_SIZE, AlignedFace

# The mean dlib HOG box of a face in ArcFace-aligned 112×112 crops: measured on 200 LFW images (the corners
# of each one's dlib box mapped through its ArcFace similarity transform; std ≈ 5 px per coordinate).
ARCFACE112_DLIB_BOX = (9.0, 24.0, 97.0, 114.0)


def align_in_box(image_rgb: np.ndarray, box: tuple[float, float, float, float] | np.ndarray,
                 source: str = "box") -> AlignedFace:
    """Both crops of the face in ``box`` (x1, y1, x2, y2, image pixels) of a uint8 RGB image."""
    img = np.ascontiguousarray(image_rgb, np.uint8)
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"empty face box {tuple(box)}")
    with dlib_models.LOCK:
        shape = dlib_models.shape_predictor_68()(img, dlib.rectangle(x1, y1, x2, y2))
    pts68 = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)
    lm5 = five_from_68(pts68)
    chip = dlib.get_face_chip(img, shape, size=DLIB_CHIP_SIZE, padding=DLIB_CHIP_PADDING)
    return AlignedFace(arcface112=align_arcface(img, lm5), dlib150=np.ascontiguousarray(chip, dtype=np.uint8),
                       landmarks5=lm5, box=np.asarray([x1, y1, x2, y2], np.float32), score=0.0, source=source)


def dlib_chips_from_arcface(crops: np.ndarray, box: tuple[float, float, float, float] = ARCFACE112_DLIB_BOX
                            ) -> np.ndarray:
    """dlib 150×150 chips (N, 150, 150, 3) of already aligned ArcFace crops (N, 112, 112, 3): the predictor
    fitted in the template's face box. The chip reaches beyond the 112 crop (padding 0.25), so its border
    is black where the crop ends — a ``.bin`` set holds no more of the photo."""
    crops = np.asarray(crops, np.uint8)
    if crops.ndim != 4 or crops.shape[1:] != (112, 112, 3):
        raise ValueError(f"expected ArcFace crops (N, 112, 112, 3), got {crops.shape}")
    return np.stack([align_in_box(c, box).dlib150 for c in crops]) if len(crops) else np.zeros(
        (0, DLIB_CHIP_SIZE, DLIB_CHIP_SIZE, 3), np.uint8)
