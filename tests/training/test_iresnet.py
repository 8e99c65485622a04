"""IResNet backbone: checkpoint loading (random init written to disk — no pretrained IResNet weights are
in the shared folder), embedding shape and norm, and the errors for unusable checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.backbones.base import ARCFACE112
from training.backbones.iresnet import IResNetBackbone, IResNetCheckpointError, iresnet


@pytest.fixture(scope="module")
def r18() -> torch.nn.Module:
    torch.manual_seed(0)
    model = iresnet(18).eval()
    # non-trivial BN statistics so that loading them actually matters
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    return model


@pytest.fixture(scope="module")
def r18_ckpt(r18: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "backbone.pth"
    # as saved from a DistributedDataParallel-wrapped model
    torch.save({f"module.{k}": v for k, v in r18.state_dict().items()}, path)
    return path


FACES = np.random.default_rng(0).integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def ref(r18: torch.nn.Module) -> np.ndarray:
    """Embeddings of FACES by the source model with arcface_torch preprocessing (CPU forward is slow:
    computed once)."""
    with torch.inference_mode():
        x = (torch.from_numpy(FACES).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
        return torch.nn.functional.normalize(r18(x), dim=1).numpy()


def test_state_dict_names_match_arcface_torch() -> None:
    keys = set(iresnet(18).state_dict())
    for k in ("conv1.weight", "bn1.running_var", "prelu.weight", "layer1.0.bn1.weight",
              "layer1.0.conv1.weight", "layer1.0.bn2.bias", "layer1.0.prelu.weight", "layer1.0.conv2.weight",
              "layer1.0.bn3.weight",
              "layer1.0.downsample.0.weight", "layer1.0.downsample.1.running_mean", "layer4.1.bn3.weight",
              "bn2.weight", "fc.weight", "fc.bias", "features.weight", "features.running_mean"):
        assert k in keys, k
    assert "layer1.1.downsample.0.weight" not in keys
    assert iresnet(18).fc.in_features == 512 * 7 * 7


def test_load_and_embed(r18_ckpt: Path, ref: np.ndarray) -> None:
    bb = IResNetBackbone(r18_ckpt, depth=18, batch_size=2)
    assert (bb.name, bb.embedding_dim, bb.input_kind) == ("iresnet", 512, ARCFACE112)
    emb = bb.embed(FACES)  # two batches
    assert emb.shape == (3, 512) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # the same as the source model: weights, preprocessing and batching are right
    np.testing.assert_allclose(emb, ref, atol=1e-5)
    assert bb.embed(FACES[:0]).shape == (0, 512)


def test_training_checkpoint_dict_and_missing_counters(
    r18: torch.nn.Module, ref: np.ndarray, tmp_path: Path
) -> None:
    state = {k: v for k, v in r18.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "checkpoint_gpu_0.pt"
    torch.save({"epoch": 3, "state_dict_backbone": state, "state_dict_softmax_fc": {}}, path)
    bb = IResNetBackbone(path, depth=18)
    np.testing.assert_allclose(bb.embed(FACES[2]), ref[2:], atol=1e-5)  # a single (H, W, 3) crop


def test_depth_mismatch_names_keys_and_guesses_depth(r18_ckpt: Path) -> None:
    with pytest.raises(IResNetCheckpointError) as e:
        IResNetBackbone(r18_ckpt, depth=34)
    msg = str(e.value)
    assert "does not match IResNet-34" in msg
    assert "missing key(s)" in msg and "layer1.2.bn1.weight" in msg
    assert "0 unexpected key(s)" in msg
    assert "looks like IResNet-18" in msg


def test_unexpected_keys_are_listed(r18: torch.nn.Module, tmp_path: Path) -> None:
    state = dict(r18.state_dict())
    state["head.kernel"] = torch.zeros(3)
    path = tmp_path / "extra.pth"
    torch.save(state, path)
    with pytest.raises(IResNetCheckpointError, match=r"1 unexpected key\(s\): head.kernel"):
        IResNetBackbone(path, depth=18)


def test_missing_and_foreign_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        IResNetBackbone(tmp_path / "nope.pth", depth=18)
    with pytest.raises(ValueError, match="depth must be one of"):
        IResNetBackbone(tmp_path / "nope.pth", depth=42)
    adaface = tmp_path / "adaface_ir18.ckpt"
    torch.save({"state_dict": {"model.input_layer.0.weight": torch.zeros(64, 3, 3, 3),
                               "model.body.0.res_layer.0.weight": torch.zeros(64),
                               "head.kernel": torch.zeros(512, 10)}}, adaface)
    with pytest.raises(IResNetCheckpointError, match="AdaFace-style"):
        IResNetBackbone(adaface, depth=18)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(IResNetCheckpointError, match="cannot be read"):
        IResNetBackbone(junk, depth=18)
    no_state = tmp_path / "no_state.pth"
    torch.save({"epoch": 1}, no_state)
    with pytest.raises(IResNetCheckpointError, match="no state dict found"):
        IResNetBackbone(no_state, depth=18)


def test_embed_rejects_wrong_input(r18_ckpt: Path) -> None:
    bb = IResNetBackbone(r18_ckpt, depth=18)
    with pytest.raises(ValueError, match="112, 112, 3"):
        bb.embed(np.zeros((1, 96, 112, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        bb.embed(np.zeros((1, 112, 112, 3), np.float32))
