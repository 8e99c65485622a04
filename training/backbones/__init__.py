"""Registry of frozen backbones h_bb: name → loader.

Every backbone implements :class:`training.backbones.base.Backbone`. Loaders import their heavy
dependencies lazily so that listing backbones costs nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from training.backbones.base import ARCFACE112, DLIB150, Backbone, BackboneInfo


def _load_dlib(**_: object) -> Backbone:
    from training.backbones.dlib_resnet import DlibResNet

    return DlibResNet()


def _load_mobilefacenet_y1(**_: object) -> Backbone:
    from training.backbones.mobilefacenet_y1 import MobileFaceNetY1

    return MobileFaceNetY1()


def _load_iresnet(checkpoint: str | Path | None = None, depth: int = 50, **_: object) -> Backbone:
    if checkpoint is None:
        raise ValueError("backbone 'iresnet' needs a checkpoint: --checkpoint PATH [--depth 18|34|50|100]")
    from training.backbones.iresnet import IResNetBackbone

    return IResNetBackbone(Path(checkpoint), depth=depth)


REGISTRY: dict[str, tuple[BackboneInfo, Callable[..., Backbone]]] = {
    "dlib-resnet": (
        BackboneInfo("dlib-resnet", 128, DLIB150, "dlib ResNet-29 descriptor (face-recognition-models, CC0)"),
        _load_dlib,
    ),
    "mobilefacenet-y1": (
        BackboneInfo("mobilefacenet-y1", 128, ARCFACE112,
                     "InsightFace MobileFaceNet y1, MS1M (MXNet weights in the shared folder)",
                     preferred_detector="retinaface"),
        _load_mobilefacenet_y1,
    ),
    "iresnet": (
        BackboneInfo("iresnet", 512, ARCFACE112,
                     "ArcFace IResNet-18/34/50/100 from a user checkpoint (arcface_torch layout)",
                     preferred_detector="retinaface"),
        _load_iresnet,
    ),
}


def available_backbones() -> list[str]:
    return sorted(REGISTRY)


def backbone_info(name: str) -> BackboneInfo:
    if name not in REGISTRY:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(available_backbones())}")
    return REGISTRY[name][0]


def load_backbone(name: str, **kwargs: object) -> Backbone:
    backbone_info(name)
    return REGISTRY[name][1](**kwargs)


def resolve_detector(detector: str, backbone_name: str) -> str:
    """'auto' → the backbone's preferred detector, or dlib when the RetinaFace weights are not there."""
    if detector != "auto":
        return detector
    preferred = backbone_info(backbone_name).preferred_detector
    if preferred == "retinaface":
        from pvcore.paths import SharedDataMissing
        from training.face.retinaface import default_weights

        try:
            default_weights()
        except SharedDataMissing:
            logging.getLogger(__name__).warning("RetinaFace weights missing: aligning with dlib instead")
            return "dlib"
    return preferred
