"""Fixtures of the codegen tests: face images, three θ, their quantized f, the host build of the C kernel
(tests/helpers/cbuild.py: from the firmware's own source list and flags).

Face images: the aligned LFW crops when that cache exists (``training.face.cache.lfw_cache``), else the
package faces (scikit-image astronaut, matplotlib Grace Hopper) with deterministic augmentations — a
different seed from the calibration set's.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from codegen.quantize import augment, package_faces, quantize
from pvcore.paths import CACHE_ENV, REPO_ROOT
from pvcore.qtheta import QuantizedF
from tests.helpers import cbuild
from training.verifier.functional import random_theta

log = logging.getLogger(__name__)

N_IMAGES = 256
TEST_MAIN = Path(__file__).parent / "c" / "pv_test_main.c"


def lfw_crops(n: int) -> np.ndarray | None:
    """n aligned LFW crops spread over the dataset, or None when the aligned cache is not there."""
    base = Path(os.environ.get(CACHE_ENV) or REPO_ROOT / ".cache") / "aligned"
    if not any(base.glob("lfw-dlib-*/index.json")):  # do not let lfw_cache() create a new cache
        return None
    try:
        from training.face.cache import lfw_cache

        cache = lfw_cache("dlib")
        ok = np.flatnonzero(cache.status > 0)
    except Exception as e:  # shared LFW missing, or a cache of another list
        log.info("LFW cache unusable (%s): package faces instead", e)
        return None
    if len(ok) < n:
        return None
    idx = ok[np.linspace(0, len(ok) - 1, n).astype(np.int64)]
    return np.ascontiguousarray(cache.crops()[idx])


@pytest.fixture(scope="session")
def face_images() -> np.ndarray:
    imgs = lfw_crops(N_IMAGES)
    if imgs is None:
        base = package_faces()
        imgs = augment(base, N_IMAGES // len(base), seed=12345)
    return imgs


@pytest.fixture(scope="session")
def face_source(face_images: np.ndarray) -> str:
    return "lfw" if lfw_crops(1) is not None else "package faces + augmentations"


def hgen_theta(seed: int = 7) -> torch.Tensor:
    """θ as the (untrained) generator h_gen outputs it for a random unit embedding."""
    from training.verifier.hypernet import HGen

    torch.manual_seed(seed)
    h = HGen()
    e = torch.nn.functional.normalize(torch.randn(1, h.cfg.embedding_dim), dim=1)
    with torch.no_grad():
        return h(e)[0]


THETA_NAMES = ("random-0", "random-1", "hgen-7")


@pytest.fixture(scope="session")
def thetas() -> dict[str, torch.Tensor]:
    return {"random-0": random_theta(0), "random-1": random_theta(1), "hgen-7": hgen_theta(7)}


@pytest.fixture(scope="session")
def quantized(thetas: dict[str, torch.Tensor], face_images: np.ndarray) -> dict[str, QuantizedF]:
    """Each θ quantized with the first test face as its enrollment crop."""
    return {k: quantize(th, enroll_u8=face_images[0]) for k, th in thetas.items()}


def build_host(out: Path, extra_flags: list[str] | None = None) -> Path:
    """pv_test (c/pv_test_main.c) with the kernel, built as the host build does; it runs 16x8 blobs too."""
    return cbuild.build_host(out, TEST_MAIN, ["-DPV_WITH_16X8=1", *(extra_flags or [])])


@pytest.fixture(scope="session")
def pv_test_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_host(tmp_path_factory.mktemp("cbuild") / "pv_test")


@pytest.fixture(scope="session")
def pv_test_bin_dsp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The DSP (SMLAD) code path, with the three SIMD instructions emulated in C on the host."""
    return build_host(
        tmp_path_factory.mktemp("cbuild_dsp") / "pv_test_dsp", ["-DPV_USE_DSP", "-DPV_DSP_EMULATE"]
    )
