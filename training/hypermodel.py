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
from training.verifier.hypernet import HGen, HGenConfig

DEFAULT_MODEL = Path(__file__).resolve().parent / "pretrained" / "hgen_dlib_lfw.pt"


class HyperModelError(ValueError):
    """The file is not a usable hypermodel (missing, corrupt, direct-f, other architecture)."""


class Generator(torch.nn.Module):
    """h_gen with its input standardization: θ = HGen((e − μ) / σ).

    μ, σ (per dimension, over the training images) are buffers, so they travel in every checkpoint and
    enrollment applies exactly what training did. Why: backbone embeddings of different people share a
    large common component (dlib: cosine ≈ 0.8 between strangers), so raw inputs differ little and h_gen
    starts out generating nearly the same θ for everyone. Measured on a fixed LFW batch (8 people × 4
    images, AdamW 1e-3): with raw e the positive−negative logit gap stays < 0.04 after 130 steps; with
    standardized e the batch is fitted (gap 19, loss 0.05) by step 60.
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
        return cls(path=path, model_id=hashlib.sha256(raw).hexdigest()[:16], backbone=str(cfg["backbone"]),
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


class Enroller:
    """Image → face → backbone embedding → θ. Holds the (slow to load) detector and backbone."""

    def __init__(self, model: HyperModel) -> None:
        from training.backbones import backbone_info, load_backbone
        from training.face.pipeline import FacePipeline

        self.model = model
        self.pipeline = FacePipeline(model.detector, multi_face="error")
        self.backbone = load_backbone(model.backbone)
        self.kind = backbone_info(model.backbone).input_kind

    def from_aligned(self, crop_for_backbone: np.ndarray, arcface112: np.ndarray) -> Enrollment:
        t0 = time.perf_counter()
        emb = self.backbone.embed(crop_for_backbone[None])
        t1 = time.perf_counter()
        theta = self.model.theta(emb)[0]
        t2 = time.perf_counter()
        return Enrollment(theta, emb[0], arcface112, {"backbone": (t1 - t0) * 1e3, "h_gen": (t2 - t1) * 1e3})

    def from_image(self, image_rgb: np.ndarray) -> Enrollment:
        from training.backbones.base import ARCFACE112

        t0 = time.perf_counter()
        face = self.pipeline.process(image_rgb)
        t_align = (time.perf_counter() - t0) * 1e3
        crop = face.arcface112 if self.kind == ARCFACE112 else face.dlib150
        res = self.from_aligned(crop, face.arcface112)
        res.timings_ms = {"detect_align": t_align, **res.timings_ms}
        return res
