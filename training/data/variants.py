"""Image variants of an evaluation set, applied to the aligned crops (the alignment is the clean image's):

- ``clean``: the crops as aligned;
- ``gray``: the luminance only, as a grayscale camera gives it: ``cv2.cvtColor(crop, COLOR_RGB2GRAY)``
  (ITU-R BT.601: Y = 0.299 R + 0.587 G + 0.114 B, rounded) replicated into the 3 channels;
- ``lowres``: the face seen at 40×40 pixels and scaled back up: the 112×112 ArcFace crop resized to 40×40
  with ``cv2.INTER_AREA`` (pixel-area averaging, what a lower-resolution sensor integrates) and back to
  112×112 with ``cv2.INTER_LINEAR``. Every other crop kind (dlib's 150×150 chip) goes through the same
  scale factor 40/112 (150 → 54 → 150), so all crops of an image hold the same detail.

Both crops of an image get the variant, for enrollment and probe alike: the whole set is seen by the
camera the variant stands for.
"""

from __future__ import annotations

import cv2
import numpy as np

VARIANTS = ("clean", "gray", "lowres")
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma weights: a YUV sensor's Y channel, what "gray" keeps
LOWRES_SIDE = 40  # px of the 112×112 ArcFace crop
ARCFACE_SIDE = 112


def grayscale(crops: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB → the same shape, every channel the BT.601 luminance."""
    crops = _check(crops)
    out = np.empty_like(crops)
    for i, c in enumerate(crops):
        out[i] = cv2.cvtColor(c, cv2.COLOR_RGB2GRAY)[..., None]
    return out


def low_resolution(crops: np.ndarray, side: int = LOWRES_SIDE, reference: int = ARCFACE_SIDE) -> np.ndarray:
    """(N, H, W, 3) uint8 → the same shape, each crop down to round(H·side/reference) pixels (INTER_AREA)
    and back up (INTER_LINEAR)."""
    crops = _check(crops)
    h, w = crops.shape[1:3]
    small = (max(1, round(w * side / reference)), max(1, round(h * side / reference)))  # cv2: (width, height)
    out = np.empty_like(crops)
    for i, c in enumerate(crops):
        out[i] = cv2.resize(cv2.resize(c, small, interpolation=cv2.INTER_AREA), (w, h), interpolation=cv2.INTER_LINEAR)
    return out


def apply_variant(crops: np.ndarray, variant: str) -> np.ndarray:
    """``crops`` under ``variant`` (one of :data:`VARIANTS`); ``clean`` returns them as they are."""
    if variant == "clean":
        return crops
    if variant == "gray":
        return grayscale(crops)
    if variant == "lowres":
        return low_resolution(crops)
    raise ValueError(f"unknown variant {variant!r}; use one of {', '.join(VARIANTS)}")


def describe(variant: str) -> str:
    """The exact operations of ``variant``, for reports."""
    return {
        "clean": "the aligned crops as they are",
        "gray": "cv2.cvtColor(crop, COLOR_RGB2GRAY) (BT.601 luma) replicated into 3 channels",
        "lowres": (f"each crop resized by {LOWRES_SIDE}/{ARCFACE_SIDE} with cv2.INTER_AREA (ArcFace 112 → "
                   f"{LOWRES_SIDE}×{LOWRES_SIDE}, dlib 150 → 54×54) and back with cv2.INTER_LINEAR"),
    }[variant]


def _check(crops: np.ndarray) -> np.ndarray:
    crops = np.asarray(crops)
    if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[-1] != 3:
        raise ValueError(f"expected uint8 (N, H, W, 3) crops, got {crops.dtype} {crops.shape}")
    return crops
