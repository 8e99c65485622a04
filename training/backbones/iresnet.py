"""ArcFace IResNet-18/34/50/100 (insightface ``recognition/arcface_torch/backbones/iresnet.py``).

The module tree and parameter names are those of arcface_torch, so its released ``backbone.pth`` /
``model.pt`` state dicts load with ``strict=True``: stem ``conv1``/``bn1``/``prelu``; ``layer1..4`` of
``IBasicBlock`` (``bn1-conv1-bn2-prelu-conv2-bn3``, stride on ``conv2``, ``downsample`` = 1×1 conv + BN
on the first block of each stage); then ``bn2``, ``dropout``, ``fc`` (512·7·7 → 512) and ``features``
(BatchNorm1d). Input 112×112 RGB, preprocessed ``(x / 255 - 0.5) / 0.5``; output 512-d.

Checkpoints accepted by :class:`IResNetBackbone`: a plain state dict, or a dict holding one under
``state_dict_backbone`` (arcface_torch training checkpoints), ``state_dict``, ``model_state_dict``,
``model`` or ``backbone``. Prefixes ``module.`` (DataParallel/DDP) and ``model.``/``backbone.`` are
stripped. Missing ``num_batches_tracked`` buffers are tolerated (they play no part at inference).

AdaFace checkpoints are **not** supported, and not for want of a key rename: AdaFace's IR nets
(``input_layer``/``body``/``output_layer``) differ in structure — the first block of stage 1 has a
parameter-free ``MaxPool2d(1, 2)`` shortcut where IResNet has a 1×1 conv + BN ``downsample``, the final
BatchNorm1d has no affine parameters, and AdaFace expects BGR input. Such a checkpoint is recognised and
refused with a message saying so.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from training.backbones.base import ARCFACE112, BackboneInfo, l2_normalize

log = logging.getLogger(__name__)

LAYERS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
}
INPUT_SIZE = 112
EMBEDDING_DIM = 512


class IResNetCheckpointError(ValueError):
    """The checkpoint cannot be loaded into the requested IResNet; the message says why."""


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class IBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-05)
        self.conv1 = conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-05)
        self.prelu = nn.PReLU(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-05)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.bn1(x)
        out = self.conv1(out)
        out = self.bn2(out)
        out = self.prelu(out)
        out = self.conv2(out)
        out = self.bn3(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        return out + identity


class IResNet(nn.Module):
    fc_scale = 7 * 7

    def __init__(self, layers: tuple[int, int, int, int], dropout: float = 0.0,
                 num_features: int = EMBEDDING_DIM) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes, eps=1e-05)
        self.prelu = nn.PReLU(self.inplanes)
        self.layer1 = self._make_layer(64, layers[0], stride=2)
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.bn2 = nn.BatchNorm2d(512 * IBasicBlock.expansion, eps=1e-05)
        self.dropout = nn.Dropout(p=dropout, inplace=True)
        self.fc = nn.Linear(512 * IBasicBlock.expansion * self.fc_scale, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-05)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.1)
            elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * IBasicBlock.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * IBasicBlock.expansion, stride),
                nn.BatchNorm2d(planes * IBasicBlock.expansion, eps=1e-05),
            )
        layers = [IBasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * IBasicBlock.expansion
        layers += [IBasicBlock(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.bn2(x)
        x = torch.flatten(x, 1)
        x = self.dropout(x)
        x = self.fc(x)
        return self.features(x)


def iresnet(depth: int, dropout: float = 0.0, num_features: int = EMBEDDING_DIM) -> IResNet:
    """IResNet of ``depth`` 18, 34, 50 or 100 (randomly initialised as arcface_torch does)."""
    if depth not in LAYERS:
        raise ValueError(f"IResNet depth must be one of {sorted(LAYERS)}, got {depth}")
    return IResNet(LAYERS[depth], dropout=dropout, num_features=num_features)


# --------------------------------------------------------------------------------------------------
# checkpoints

_WRAPPER_KEYS = ("state_dict_backbone", "state_dict", "model_state_dict", "model", "backbone")
_STRIP_PREFIXES = ("module.", "model.", "backbone.")
_BLOCK_KEY = re.compile(r"^layer([1-4])\.(\d+)\.")
_ADAFACE_KEY = re.compile(r"(^|\.)(input_layer|output_layer)\.")


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    for _ in range(3):
        if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
        if isinstance(obj, Mapping):
            inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
            if inner is not None:
                obj = inner
                continue
        break
    what = f"a dict with keys {sorted(obj)[:8]}" if isinstance(obj, Mapping) else f"a {type(obj).__name__}"
    raise IResNetCheckpointError(
        f"{path}: no state dict found (got {what}); expected a state dict or a dict holding one under "
        f"{', '.join(_WRAPPER_KEYS)}"
    )


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove wrapper prefixes.

    A prefix on every key is dropped; a file mixing prefixed backbone keys with others (e.g. ``model.*``
    next to ``head.*``) keeps only the prefixed part when it holds ``conv1.weight``.
    """
    changed = True
    while changed and state:
        changed = False
        for prefix in _STRIP_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                changed = True
            elif prefix + "conv1.weight" in state:
                dropped = sorted(k for k in state if not k.startswith(prefix))
                log.info("checkpoint: keeping the %s* keys, ignoring %d other(s) such as %s",
                         prefix, len(dropped), dropped[0])
                state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
                changed = True
    return state


def _guess_depth(keys: set[str]) -> str:
    blocks = [0, 0, 0, 0]
    for k in keys:
        m = _BLOCK_KEY.match(k)
        if m:
            i = int(m.group(1)) - 1
            blocks[i] = max(blocks[i], int(m.group(2)) + 1)
    if not any(blocks):
        return ""
    depth = next((d for d, lay in LAYERS.items() if tuple(blocks) == lay), None)
    shape = "/".join(map(str, blocks))
    return (f" The checkpoint looks like IResNet-{depth} (blocks per stage {shape})." if depth
            else f" The checkpoint has {shape} blocks per stage, which is no IResNet depth known here.")


def load_checkpoint_state(path: Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint file and return its backbone state dict with wrapper prefixes removed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"IResNet checkpoint {path} not found; pass --checkpoint PATH to a .pth/.pt file"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad or unsafe file
        raise IResNetCheckpointError(
            f"{path}: cannot be read as a PyTorch checkpoint with weights_only=True ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}). If it holds more than tensors, re-save its state "
            f"dict with torch.save(model.state_dict(), ...)"
        ) from e
    return _strip_prefixes(_unwrap(obj, path))


def load_iresnet_state(model: IResNet, state: dict[str, torch.Tensor], depth: int, source: str = "") -> None:
    """Load ``state`` into ``model`` strictly (bar ``num_batches_tracked``), explaining any mismatch."""
    src = f"{source}: " if source else ""
    keys = set(state)
    if any(_ADAFACE_KEY.search(k) for k in keys):
        raise IResNetCheckpointError(
            f"{src}this is an AdaFace-style IR checkpoint (input_layer/body/output_layer). AdaFace's IR "
            "net is not arcface_torch's IResNet (MaxPool shortcut in stage 1, non-affine final "
            "BatchNorm1d, BGR input), so it cannot be loaded by renaming keys; use an arcface_torch "
            "IResNet checkpoint."
        )
    expected = model.state_dict()
    missing = sorted(k for k in expected.keys() - keys if not k.endswith("num_batches_tracked"))
    unexpected = sorted(keys - expected.keys())
    if missing or unexpected:
        def show(ks: list[str]) -> str:
            return ", ".join(ks[:6]) + (f", … ({len(ks) - 6} more)" if len(ks) > 6 else "") if ks else "none"

        raise IResNetCheckpointError(
            f"{src}checkpoint does not match IResNet-{depth}: "
            f"{len(missing)} missing key(s): {show(missing)}; "
            f"{len(unexpected)} unexpected key(s): {show(unexpected)}.{_guess_depth(keys)} "
            f"Pass the matching --depth ({'/'.join(map(str, LAYERS))})."
        )
    bad_shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if bad_shapes:
        raise IResNetCheckpointError(
            f"{src}checkpoint tensors have other shapes than IResNet-{depth} "
            f"(checkpoint vs model): {'; '.join(bad_shapes[:6])}"
        )
    full = {k: state.get(k, v) for k, v in expected.items()}
    model.load_state_dict(full, strict=True)


class IResNetBackbone:
    """Frozen IResNet backbone: (N, 112, 112, 3) uint8 RGB ArcFace crops → (N, 512) unit vectors.

    ``flip=True`` adds the embedding of the horizontally mirrored crop before normalising (InsightFace's
    "accuracy-flip" evaluation).
    """

    name = "iresnet"
    embedding_dim = EMBEDDING_DIM
    input_kind = ARCFACE112

    def __init__(
        self,
        checkpoint: Path,
        depth: int = 50,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        flip: bool = False,
    ) -> None:
        if depth not in LAYERS:
            raise ValueError(f"IResNet depth must be one of {sorted(LAYERS)}, got {depth}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.checkpoint = Path(checkpoint)
        self.depth = depth
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.flip = flip
        state = load_checkpoint_state(self.checkpoint)
        model = iresnet(depth)
        load_iresnet_state(model, state, depth, source=str(self.checkpoint))
        self.model = model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        log.info("loaded IResNet-%d from %s", depth, self.checkpoint)

    @property
    def info(self) -> BackboneInfo:
        return BackboneInfo(self.name, self.embedding_dim, self.input_kind,
                            f"IResNet-{self.depth} from {self.checkpoint}")

    @staticmethod
    def preprocess(images: np.ndarray) -> torch.Tensor:
        """uint8 (N, H, W, 3) RGB → float32 (N, 3, H, W) in [-1, 1] (arcface_torch convention)."""
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
        return (x / 255.0 - 0.5) / 0.5

    def embed(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(
                f"IResNet expects (N, {INPUT_SIZE}, {INPUT_SIZE}, 3) RGB ArcFace crops, "
                f"got shape {images.shape}"
            )
        if images.dtype != np.uint8:
            raise ValueError(f"IResNet expects uint8 images, got {images.dtype}")
        out = np.empty((len(images), self.embedding_dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                x = self.preprocess(images[start:start + self.batch_size]).to(self.device)
                e = self.model(x)
                if self.flip:
                    e = e + self.model(torch.flip(x, dims=[3]))
                out[start:start + len(x)] = e.float().cpu().numpy()
        return l2_normalize(out)
