"""InsightFace MobileFaceNet "y1" (model-y1-test2, MS1M-RefineV2, 128-d) ported from MXNet to PyTorch.

The network is rebuilt from the shipped ``model-symbol.json`` + ``model-0000.params`` by the generic
interpreter in :mod:`training.backbones.mxnet_graph`; MXNet itself is not needed.

Input: 112×112 ArcFace-aligned crops, **RGB** channel order, raw 0–255 values. The graph subtracts
127.5 and multiplies by 1/128 itself. InsightFace trained and evaluated this model on RGB: its
record/bin readers decode JPEGs with ``mx.image.imdecode``, which returns RGB, and feed them unchanged.
Output: the ``fc1`` node (BatchNorm after the 128-unit ``pre_fc1`` layer), L2-normalised here.

``flip_tta`` follows InsightFace's verification protocol (``eval/verification.py``): the *raw*
embeddings of the image and of its horizontal mirror are summed, then normalised. The accuracies in
the official training log were measured that way.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch

from pvcore.paths import shared_path
from training.backbones.base import ARCFACE112, BackboneInfo, l2_normalize, mirrored
from training.backbones.mxnet_graph import MXNetGraph

WEIGHTS_DIR = ("weights", "insightface_mobilefacenet_y1")


def symbol_path() -> Path:
    return shared_path(*WEIGHTS_DIR, "model-symbol.json")


def params_path() -> Path:
    return shared_path(*WEIGHTS_DIR, "model-0000.params")


class MobileFaceNetY1:
    name = "mobilefacenet-y1"
    embedding_dim = 128
    input_kind = ARCFACE112
    input_size = 112

    def __init__(self, flip_tta: bool = True, batch_size: int = 64, device: str | torch.device = "cpu"):
        self.flip_tta = flip_tta
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.net = MXNetGraph.from_files(symbol_path(), params_path(), input_names=("data",))
        # channels_last (NHWC) runs the depthwise convolutions markedly faster on CPU (oneDNN)
        self.net = self.net.to(self.device, memory_format=torch.channels_last).eval()
        if self.net.head_name != "fc1":
            raise ValueError(f"unexpected output node {self.net.head_name!r}, expected 'fc1'")

    def raw_embed(self, images: np.ndarray) -> np.ndarray:
        """(N, 112, 112, 3) uint8 RGB → (N, 128) float32 un-normalised network output (no flip)."""
        images = self._check(images)
        out = np.empty((len(images), self.embedding_dim), dtype=np.float32)
        with torch.inference_mode():
            for s in range(0, len(images), self.batch_size):
                x = torch.from_numpy(images[s : s + self.batch_size]).to(self.device)
                # NHWC uint8 → NCHW-shaped float 0..255, kept in channels_last memory layout
                x = x.permute(0, 3, 1, 2).float().contiguous(memory_format=torch.channels_last)
                out[s : s + len(x)] = self.net(x).cpu().numpy()
        return out

    def embed(self, images: np.ndarray) -> np.ndarray:
        """(N, 112, 112, 3) uint8 RGB ArcFace crops → (N, 128) float32, L2-normalised."""
        emb = self.raw_embed(images)
        if self.flip_tta:
            emb = emb + self.raw_embed(mirrored(images))
        return l2_normalize(emb)

    def _check(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        s = self.input_size
        if images.ndim != 4 or images.shape[1:] != (s, s, 3):
            raise ValueError(f"{self.name} expects (N, {s}, {s}, 3) RGB crops, got shape {images.shape}")
        if images.dtype != np.uint8:
            raise TypeError(f"{self.name} expects uint8 images, got {images.dtype}")
        return np.ascontiguousarray(images)

    def info(self) -> dict:
        n_params = sum(p.numel() for p in self.net.parameters())
        # gamma of a fix_gamma BatchNorm is stored but never used (MXNet takes it as 1)
        n_unused = sum(m.weight.numel() for m in self.net.modules() if getattr(m, "fix_gamma", False))
        return {
            "name": self.name,
            "embedding_dim": self.embedding_dim,
            "input_kind": self.input_kind,
            "channel_order": "RGB",
            "flip_tta": self.flip_tta,
            "parameters": n_params,
            "parameters_effective": n_params - n_unused,
            "buffers": sum(b.numel() for b in self.net.buffers()),
            "op_types": dict(Counter(self.net.op_types.values())),
        }

    def backbone_info(self) -> BackboneInfo:
        i = self.info()
        return BackboneInfo(
            self.name, self.embedding_dim, self.input_kind,
            f"InsightFace MobileFaceNet y1 (MS1M-RefineV2), MXNet port, {i['parameters']:,} parameters, "
            f"RGB input, flip TTA {'on' if self.flip_tta else 'off'}",
        )
