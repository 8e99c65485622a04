"""RetinaFace-MobileNet0.25 face detector (5 landmarks), a PyTorch port of biubug6's network.

Architecture and decoding follow biubug6/Pytorch_Retinaface as trained in
biubug6/Face-Detector-1MB-with-landmark, whose ``mobilenet0.25_Final.pth`` we load strictly. That repo
differs from Pytorch_Retinaface in two ways the weights depend on (the state dict cannot tell either):
every activation is a plain ReLU (its ``leaky`` setting is computed but never used), and the anchors were
shrunk to ``[[10, 20], [32, 64], [128, 256]]`` (its README says it changed the anchor sizes; its ncnn and
MNN demos hard-code these). Anchor sizes scale every decoded box and landmark offset: with the
Pytorch_Retinaface settings (LeakyReLU 0.1, ``[[16, 32], ...]``) the same weights give boxes 1.6x too big,
landmarks off the eyes and duplicate detections on LFW, with these settings one tight box per face.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pvcore.paths import shared_path

MIN_SIZES = ((10, 20), (32, 64), (128, 256))  # anchor side lengths in pixels, per pyramid level
STEPS = (8, 16, 32)  # stride of each pyramid level
VARIANCE = (0.1, 0.2)  # SSD-style encoding scales: centre/landmark offsets, log width/height
MEAN_BGR = (104.0, 117.0, 123.0)  # the network was trained on cv2 (BGR) images minus this mean, no scaling
PRE_NMS_TOP_K = 5000  # as in the reference detect.py


def default_weights() -> Path:
    return shared_path("weights", "retinaface_biubug6", "weights", "mobilenet0.25_Final.pth")


# ---------------------------------------------------------------- network (names mirror the state dict keys)


def _conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, relu: bool = True) -> list:
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return layers + [nn.ReLU(inplace=True)] if relu else layers


def _seq_conv_bn(*args, **kwargs) -> nn.Sequential:
    return nn.Sequential(*_conv_bn(*args, **kwargs))


def _conv_dw(cin: int, cout: int, stride: int) -> nn.Sequential:
    # depthwise 3x3 then pointwise 1x1, each with BN+ReLU: indices 0-2 and 3-5 as in the checkpoint
    return nn.Sequential(*_conv_bn(cin, cin, 3, stride, groups=cin), *_conv_bn(cin, cout, 1))


class _MobileNetV1x025(nn.Module):
    """Width-0.25 MobileNetV1 cut into the three stages the FPN taps (strides 8, 16, 32); the ImageNet
    classifier of the original is dropped, as torchvision's IntermediateLayerGetter did when training."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(
            _seq_conv_bn(3, 8, stride=2), _conv_dw(8, 16, 1), _conv_dw(16, 32, 2),
            _conv_dw(32, 32, 1), _conv_dw(32, 64, 2), _conv_dw(64, 64, 1),
        )  # fmt: skip
        self.stage2 = nn.Sequential(_conv_dw(64, 128, 2), *[_conv_dw(128, 128, 1) for _ in range(5)])
        self.stage3 = nn.Sequential(_conv_dw(128, 256, 2), _conv_dw(256, 256, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c1 = self.stage1(x)
        c2 = self.stage2(c1)
        return [c1, c2, self.stage3(c2)]


class _FPN(nn.Module):
    """Top-down feature pyramid: 1x1 lateral convs, nearest upsampling, 3x3 merge convs (not on the top)."""

    def __init__(self, in_channels: tuple[int, int, int], out: int) -> None:
        super().__init__()
        self.output1, self.output2, self.output3 = (_seq_conv_bn(c, out, k=1) for c in in_channels)
        self.merge1 = _seq_conv_bn(out, out)
        self.merge2 = _seq_conv_bn(out, out)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        o1, o2, o3 = self.output1(feats[0]), self.output2(feats[1]), self.output3(feats[2])
        o2 = self.merge2(o2 + F.interpolate(o3, size=o2.shape[-2:], mode="nearest"))
        o1 = self.merge1(o1 + F.interpolate(o2, size=o1.shape[-2:], mode="nearest"))
        return [o1, o2, o3]


class _SSH(nn.Module):
    """SSH context module: parallel 3x3, 5x5 (two 3x3) and 7x7 (three 3x3, sharing the first) branches."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv3X3 = _seq_conv_bn(cin, cout // 2, relu=False)
        self.conv5X5_1 = _seq_conv_bn(cin, cout // 4)
        self.conv5X5_2 = _seq_conv_bn(cout // 4, cout // 4, relu=False)
        self.conv7X7_2 = _seq_conv_bn(cout // 4, cout // 4)
        self.conv7x7_3 = _seq_conv_bn(cout // 4, cout // 4, relu=False)  # sic: lower-case x in the checkpoint

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.conv5X5_1(x)
        return F.relu(torch.cat([self.conv3X3(x), self.conv5X5_2(b5), self.conv7x7_3(self.conv7X7_2(b5))], 1))


class _Head(nn.Module):
    """1x1 conv predicting ``per_anchor`` values for each of the 2 anchors of every cell, returned as
    (B, H*W*2, per_anchor) in (row, column, anchor) order, the order :func:`priors_for` generates."""

    def __init__(self, cin: int, per_anchor: int, anchors: int = 2) -> None:
        super().__init__()
        self.per_anchor = per_anchor
        self.conv1x1 = nn.Conv2d(cin, anchors * per_anchor, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1x1(x).permute(0, 2, 3, 1).reshape(x.shape[0], -1, self.per_anchor)


class RetinaFaceNet(nn.Module):
    """Returns (box deltas (B,N,4), face probability (B,N), landmark deltas (B,N,10)) over the N priors."""

    def __init__(self, in_channel: int = 32, out_channel: int = 64) -> None:
        super().__init__()
        self.body = _MobileNetV1x025()
        self.fpn = _FPN((in_channel * 2, in_channel * 4, in_channel * 8), out_channel)
        self.ssh1, self.ssh2, self.ssh3 = (_SSH(out_channel, out_channel) for _ in range(3))
        self.ClassHead = nn.ModuleList(_Head(out_channel, 2) for _ in range(3))
        self.BboxHead = nn.ModuleList(_Head(out_channel, 4) for _ in range(3))
        self.LandmarkHead = nn.ModuleList(_Head(out_channel, 10) for _ in range(3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p = self.fpn(self.body(x))
        feats = [self.ssh1(p[0]), self.ssh2(p[1]), self.ssh3(p[2])]
        boxes = torch.cat([h(f) for h, f in zip(self.BboxHead, feats, strict=True)], 1)
        logits = torch.cat([h(f) for h, f in zip(self.ClassHead, feats, strict=True)], 1)
        landmarks = torch.cat([h(f) for h, f in zip(self.LandmarkHead, feats, strict=True)], 1)
        return boxes, F.softmax(logits, dim=-1)[..., 1], landmarks


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    sd = torch.load(path, map_location="cpu", weights_only=True)
    sd = sd.get("state_dict", sd)
    return {k.removeprefix("module."): v for k, v in sd.items()}  # checkpoints saved from DataParallel


# ---------------------------------------------------------------- priors, decoding, NMS


@lru_cache(maxsize=32)
def priors_for(height: int, width: int) -> np.ndarray:
    """(N, 4) anchors (cx, cy, w, h) in pixels for an input of this size, in the heads' output order.
    A 3x3/stride-2 conv with padding 1 maps n to ceil(n/2), so the level with stride s has ceil(n/s) cells."""
    out = []
    for step, sizes in zip(STEPS, MIN_SIZES, strict=True):
        rows, cols = math.ceil(height / step), math.ceil(width / step)
        cy, cx = np.meshgrid((np.arange(rows) + 0.5) * step, (np.arange(cols) + 0.5) * step, indexing="ij")
        centres = np.stack([cx, cy], -1).reshape(-1, 1, 2)  # (cells, 1, 2)
        wh = np.array(sizes, np.float64).reshape(1, -1, 1)  # (1, anchors, 1): square anchors
        centres, wh = np.broadcast_arrays(centres, wh)  # both (cells, anchors, 2)
        out.append(np.concatenate([centres, wh], -1).reshape(-1, 4))
    priors = np.concatenate(out).astype(np.float32)
    priors.flags.writeable = False  # shared through the cache
    return priors


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; indices of the kept boxes, highest score first."""
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    order, keep = np.argsort(-scores, kind="stable"), []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        lt = np.maximum(boxes[i, :2], boxes[rest, :2])
        rb = np.minimum(boxes[i, 2:], boxes[rest, 2:])
        inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.array(keep, dtype=np.int64)


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Use at most ``n`` intra-op threads for the block and restore the caller's setting afterwards."""
    before = torch.get_num_threads()
    if n >= before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------- public API


@dataclass(frozen=True)
class Detection:
    box: np.ndarray  # (4,) float32 x1,y1,x2,y2 in image pixels
    score: float
    # (5,2) float32 in image pixels, ArcFace order: left eye (smaller x in a frontal face, i.e. the subject's
    # right eye), right eye, nose tip, left mouth corner, right mouth corner
    landmarks: np.ndarray


class RetinaFaceDetector:
    def __init__(
        self,
        weights: Path | None = None,
        conf_threshold: float = 0.6,
        nms_threshold: float = 0.4,
        device: str = "cpu",
    ) -> None:
        self.conf_threshold = conf_threshold
        self.nms_threshold = nms_threshold
        self.device = torch.device(device)
        self.model = RetinaFaceNet()
        sd = load_state_dict(Path(weights) if weights is not None else default_weights())
        self.model.load_state_dict(sd, strict=True)
        self.model.eval().requires_grad_(False).to(self.device)
        self._mean = torch.tensor(MEAN_BGR, device=self.device).view(1, 3, 1, 1)
        # torch may count all the host's cores inside a container; use no more than this process may run on
        self._threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        """Faces in a uint8 HxWx3 RGB image, sorted by score (highest first)."""
        image_rgb = np.asarray(image_rgb)
        if (
            image_rgb.dtype != np.uint8
            or image_rgb.ndim != 3
            or image_rgb.shape[2] != 3
            or not image_rgb.size
        ):
            raise ValueError(f"expected a uint8 HxWx3 RGB image, got {image_rgb.dtype} {image_rgb.shape}")
        h, w = image_rgb.shape[:2]
        with _torch_threads(self._threads or 1), torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(image_rgb)).to(self.device)
            x = x.permute(2, 0, 1).flip(0).unsqueeze(0).float() - self._mean  # RGB -> BGR, minus the mean
            loc, scores, ldm = (t[0].float().cpu().numpy() for t in self.model(x))
        priors = priors_for(h, w)
        if len(priors) != len(scores):  # the prior layout and the network's output layout must agree
            raise RuntimeError(f"{len(priors)} priors but {len(scores)} predictions for a {h}x{w} image")

        keep = np.flatnonzero(scores > self.conf_threshold)
        keep = keep[np.argsort(-scores[keep], kind="stable")[:PRE_NMS_TOP_K]]
        pri, loc, ldm, scores = priors[keep], loc[keep], ldm[keep], scores[keep]
        # SSD decoding: centre offsets in units of variance*anchor size, log-scale width and height
        centre = pri[:, :2] + loc[:, :2] * VARIANCE[0] * pri[:, 2:]
        size = pri[:, 2:] * np.exp(loc[:, 2:] * VARIANCE[1])
        boxes = np.concatenate([centre - size / 2, centre + size / 2], 1)
        points = pri[:, None, :2] + ldm.reshape(-1, 5, 2) * VARIANCE[0] * pri[:, None, 2:]
        keep = nms(boxes, scores, self.nms_threshold)
        # clip boxes (not landmarks) to the image after NMS, as the reference C++ demo does
        boxes = np.clip(boxes[keep], 0, np.array([w, h, w, h], np.float32)).astype(np.float32)
        points = points[keep].astype(np.float32)
        return [Detection(b, float(s), p) for b, s, p in zip(boxes, scores[keep], points, strict=True)]
