"""dlib's ResNet-29 face descriptor (128-d, LFW 99.38 reported by dlib), on dlib's own 150×150 chip."""

from __future__ import annotations

import numpy as np

from training.backbones.base import DLIB150, l2_normalize
from training.face import dlib_models


class DlibResNet:
    name = "dlib-resnet"
    cache_key = "dlib-resnet-v1"
    embedding_dim = 128
    input_kind = DLIB150
    single_core = True  # dlib's bindings hold the GIL: EmbeddingCache embeds large sets in worker processes

    def __init__(self) -> None:
        self._model = dlib_models.face_descriptor_model()

    def embed(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[1:] != (150, 150, 3) or images.dtype != np.uint8:
            raise ValueError(f"dlib-resnet expects (N,150,150,3) uint8 dlib chips, got {images.dtype} {images.shape}")
        chips = [np.ascontiguousarray(im) for im in images]
        # The batched overload takes aligned chips directly (no landmarks needed).
        with dlib_models.LOCK:  # one model per process, not safe from two threads at once
            desc = self._model.compute_face_descriptor(chips) if chips else []
        return l2_normalize(np.array([np.array(d) for d in desc], np.float32).reshape(-1, self.embedding_dim))
