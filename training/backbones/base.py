"""The interface every frozen backbone h_bb implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

# What a backbone eats. The face pipeline produces both kinds of crop for every image.
ARCFACE112 = "arcface112"  # uint8 RGB 112x112, 5-point similarity-aligned to the ArcFace template
DLIB150 = "dlib150"  # uint8 RGB 150x150, dlib's own face chip (dlib.get_face_chip, padding 0.25)


class Backbone(Protocol):
    name: str
    embedding_dim: int
    input_kind: str  # ARCFACE112 or DLIB150

    def embed(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB crops of ``input_kind`` → (N, embedding_dim) float32, L2-normalised."""
        ...


@dataclass(frozen=True)
class BackboneInfo:
    name: str
    embedding_dim: int
    input_kind: str
    description: str
    # The landmarks the backbone was trained with: ArcFace-family models were trained on crops aligned
    # from MTCNN/RetinaFace 5-point landmarks, dlib's descriptor on dlib's own landmarks.
    preferred_detector: str = "dlib"


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def mirrored(crops: np.ndarray) -> np.ndarray:
    """Crops (N, H, W, C) mirrored left-right, contiguous: the second view of flip test-time augmentation
    (MobileFaceNet's ``flip_tta``, ``training.evaluate --views 2``)."""
    return np.ascontiguousarray(np.asarray(crops)[:, :, ::-1])
