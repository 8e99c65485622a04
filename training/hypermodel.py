"""A trained hypernetwork h = h_gen ∘ h_bb as one object: load it, turn aligned faces into θ.

A hypermodel file is what ``training.train`` writes as ``model_final.pt`` (or its half-precision export,
``python -m training.export_model``): h_gen's state dict, the training config (backbone, detector,
h_gen sizes), the arch hash of f and the operating threshold measured on held-out pairs. Its
``model_id`` (first 16 hex digits of the file's SHA-256) goes into every user-store entry, so that a θ
can always be traced back to the model that made it.

The shipped default (``DEFAULT_MODEL``) uses dlib's ResNet backbone and dlib's HOG detector: both come
from PyPI, so enrollment works on a machine without the shared data folder.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pvcore.spec import F_SPEC
from training.data.variants import LUMA
from training.verifier.hypernet import HGen, HGenConfig

DEFAULT_MODEL = Path(__file__).resolve().parent / "pretrained" / "hgen_dlib_lfw.pt"


class HyperModelError(ValueError):
    """The file is not a usable hypermodel (missing, corrupt, direct-f, other architecture)."""


class Generator(torch.nn.Module):
    """h_gen with its input standardization: θ = HGen((e − μ) / σ).

    μ, σ (per dimension, over the training images) are buffers, so they travel in every checkpoint and
    enrollment applies exactly what training did. Why: backbone embeddings of different people share a
    large common component (dlib: cosine ≈ 0.8 between strangers), so raw inputs differ little and h_gen
    starts out generating nearly the same θ for everyone and cannot fit even a small batch
    (docs/training.md, "h_gen").
    """

    def __init__(self, hgen: HGen, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.hgen = hgen
        self.register_buffer("emb_mean", mean.float().clone())
        self.register_buffer("emb_std", std.float().clone())

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return self.hgen((e - self.emb_mean) / self.emb_std)


@dataclass
class HyperModel:
    path: Path
    model_id: str
    backbone: str
    detector: str
    threshold: float  # logit threshold: decide "same person" iff f(x; θ) ≥ threshold
    generator: Generator
    meta: dict

    @classmethod
    def load(cls, path: str | Path | None = None) -> HyperModel:
        path = Path(path) if path is not None else DEFAULT_MODEL
        if not path.is_file():
            hint = " (the shipped model is missing from this checkout)" if path == DEFAULT_MODEL else ""
            raise HyperModelError(f"hypermodel file not found: {path}{hint}")
        raw = path.read_bytes()
        try:
            import io

            ck = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file
            raise HyperModelError(f"{path}: not a hypermodel file ({type(e).__name__}: {e})") from None
        return cls.from_checkpoint(ck, path, model_id=hashlib.sha256(raw).hexdigest()[:16])

    @classmethod
    def from_checkpoint(cls, ck: object, path: Path, model_id: str) -> HyperModel:
        """The model of a checkpoint dict as ``training.train`` or ``training.export_model`` writes it (``path``
        and ``model_id`` name it in messages and caches: ``load`` gives the file's path and content hash)."""
        if not isinstance(ck, dict) or "model" not in ck or "config" not in ck:
            raise HyperModelError(f"{path}: not a hypermodel file (no model/config entries)")
        if ck.get("direct_f"):
            raise HyperModelError(f"{path}: a directly trained f (ablation), not a hypernetwork")
        if ck.get("arch_hash") != F_SPEC.arch_hash():
            raise HyperModelError(f"{path}: made for f {ck.get('arch')} (arch hash {ck.get('arch_hash')}); this code "
                                  f"builds {F_SPEC.name} ({F_SPEC.arch_hash()})")
        cfg = ck["config"]
        dim = int(ck["embedding_dim"])
        hgen = HGen(HGenConfig(embedding_dim=dim, hidden=int(cfg["hgen_hidden"]), rank=int(cfg["hgen_rank"]),
                                personal_from=str(cfg.get("personal_from", ""))), F_SPEC)
        gen = Generator(hgen, torch.zeros(dim), torch.ones(dim))
        state = {k: v.float() for k, v in ck["model"].items()}  # exports may be float16
        gen.load_state_dict(state)
        gen.eval()
        return cls(path=path, model_id=model_id, backbone=str(cfg["backbone"]),
                   detector=str(cfg["detector"]), threshold=float(ck.get("threshold", 0.0)), generator=gen,
                   meta={k: v for k, v in ck.items() if k not in ("model", "optimizer")})

    @torch.no_grad()
    def theta(self, embeddings: np.ndarray) -> np.ndarray:
        """(N, d) backbone embeddings → (N, θ_size) float32."""
        e = torch.from_numpy(np.ascontiguousarray(embeddings, np.float32))
        return self.generator(e).numpy()


@dataclass
class Enrollment:
    theta: np.ndarray
    embedding: np.ndarray
    arcface112: np.ndarray
    timings_ms: dict[str, float]
    crops: np.ndarray | None = None  # every photo's aligned 112×112 crop (k, 112, 112, 3); arcface112 = crops[0]


FALLBACK_DETECTOR = "yunet"
ENROLLMENT_VIEWS = 4  # the views enrollment_views knows


def mean_embedding(emb: np.ndarray) -> np.ndarray:
    """The template of several embeddings (N, d) of one person: their mean, rescaled to their mean norm (the
    backbone's embeddings keep their usual scale for h_gen's standardization). One embedding: itself."""
    if len(emb) == 1:
        return np.array(emb[0], copy=True)
    mean = emb.mean(axis=0)
    return mean * (np.linalg.norm(emb, axis=1).mean() / max(float(np.linalg.norm(mean)), 1e-12))


def enrollment_views(crop: np.ndarray, n: int) -> np.ndarray:
    """``n`` (1–4) views of one aligned uint8 crop for enrollment: the crop, its mirror image, its grayscale
    (BT.601 luma in all three channels: the cameras of the boards we target are often grayscale) and the
    grayscale mirror image. Pure pixel operations on the aligned crop: no second detection."""
    if not 1 <= n <= ENROLLMENT_VIEWS:
        raise ValueError(f"enrollment views must be 1..{ENROLLMENT_VIEWS}, not {n}")
    c = np.asarray(crop, np.uint8)
    luma = np.rint(c.astype(np.float32) @ np.array(LUMA, np.float32)).clip(0, 255).astype(np.uint8)
    gray = np.repeat(luma[..., None], 3, axis=-1)
    return np.stack([c, c[:, ::-1], gray, gray[:, ::-1]][:n])


class Enroller:
    """Image → face → backbone embedding → θ. Holds the (slow to load) detector and backbone."""

    def __init__(self, model: HyperModel) -> None:
        from training.backbones import backbone_info, load_backbone
        from training.face.pipeline import FacePipeline

        self.model = model
        # A face the model's detector misses (profile, dark or grayscale photos) goes to YuNet, which needs
        # no shared data, instead of failing the enrollment.
        fallback = None if model.detector == FALLBACK_DETECTOR else FALLBACK_DETECTOR
        self.pipeline = FacePipeline(model.detector, multi_face="error", fallback_detector=fallback)
        self.backbone = load_backbone(model.backbone)
        self.kind = backbone_info(model.backbone).input_kind

    def from_aligned(self, crop_for_backbone: np.ndarray, arcface112: np.ndarray) -> Enrollment:
        t0 = time.perf_counter()
        emb = self.backbone.embed(crop_for_backbone[None])
        t1 = time.perf_counter()
        theta = self.model.theta(emb)[0]
        t2 = time.perf_counter()
        return Enrollment(theta, emb[0], arcface112, {"backbone": (t1 - t0) * 1e3, "h_gen": (t2 - t1) * 1e3})

    def from_images(self, images_rgb: list[np.ndarray], views: int = 1) -> Enrollment:
        """Several photos of one person (and ``views`` augmented views of each: :func:`enrollment_views`)
        → one θ from their mean backbone embedding, rescaled to the mean norm (a template average, as
        embedding systems enroll several photos). The stored crop is the first photo's."""
        from training.backbones.base import ARCFACE112

        if not images_rgb:
            raise ValueError("no enrollment photo")
        t0 = time.perf_counter()
        faces = [self.pipeline.process(im) for im in images_rgb]
        t_align = (time.perf_counter() - t0) * 1e3
        crops = np.concatenate([enrollment_views(f.arcface112 if self.kind == ARCFACE112 else f.dlib150, views)
                                for f in faces])
        t1 = time.perf_counter()
        emb = self.backbone.embed(crops)
        t2 = time.perf_counter()
        mean = mean_embedding(emb)
        theta = self.model.theta(mean[None])[0]
        t3 = time.perf_counter()
        return Enrollment(theta, mean, faces[0].arcface112,
                          {"detect_align": t_align, "backbone": (t2 - t1) * 1e3, "h_gen": (t3 - t2) * 1e3},
                          crops=np.stack([f.arcface112 for f in faces]))

    def from_image(self, image_rgb: np.ndarray) -> Enrollment:
        from training.backbones.base import ARCFACE112

        t0 = time.perf_counter()
        face = self.pipeline.process(image_rgb)
        t_align = (time.perf_counter() - t0) * 1e3
        crop = face.arcface112 if self.kind == ARCFACE112 else face.dlib150
        res = self.from_aligned(crop, face.arcface112)
        res.timings_ms = {"detect_align": t_align, **res.timings_ms}
        return res
