"""training.data.variants: the grayscale and low-resolution variants of an evaluation set's crops."""

from __future__ import annotations

import numpy as np
import pytest

from training.data.variants import VARIANTS, apply_variant, describe, grayscale, low_resolution


def _crops(n: int, side: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, side, side, 3), dtype=np.uint8)


@pytest.mark.parametrize("side", [112, 150])
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_keeps_shape_and_dtype(variant: str, side: int) -> None:
    x = _crops(3, side)
    y = apply_variant(x, variant)
    assert y.shape == x.shape and y.dtype == np.uint8
    assert describe(variant)
    if variant == "clean":
        assert y is x


def test_gray_is_the_bt601_luminance_in_all_three_channels() -> None:
    x = _crops(2, 112, seed=1)
    g = grayscale(x)
    assert np.array_equal(g[..., 0], g[..., 1]) and np.array_equal(g[..., 1], g[..., 2])
    luma = x.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    assert np.abs(g[..., 0].astype(np.float64) - luma).max() <= 1.0  # OpenCV's fixed-point rounding
    pure_red = np.zeros((1, 112, 112, 3), np.uint8)
    pure_red[..., 0] = 200
    assert grayscale(pure_red)[0, 0, 0, 0] == round(0.299 * 200)


def test_lowres_loses_fine_detail_and_keeps_coarse_structure() -> None:
    yy, xx = np.mgrid[0:112, 0:112]
    checker = (((yy // 2 + xx // 2) % 2) * 255).astype(np.uint8)  # 2-px squares: finer than 40×40 can hold
    fine = np.repeat(checker[None, ..., None], 3, axis=-1)
    low = low_resolution(fine)
    assert low.std() < 0.1 * fine.std()  # the squares average out
    ramp = np.repeat(np.repeat((xx * 255 // 111).astype(np.uint8)[None, ..., None], 3, -1), 1, 0)
    assert np.abs(low_resolution(ramp).astype(int) - ramp).max() <= 4  # a smooth ramp survives
    face = _crops(1, 112, seed=2)
    assert not np.array_equal(low_resolution(face), face)


def test_lowres_uses_the_same_scale_for_the_dlib_chip() -> None:
    """150 px chips go through 54 px (150 · 40/112, the ArcFace crop's 112 → 40), INTER_AREA then INTER_LINEAR."""
    import cv2

    chip = _crops(1, 150, seed=3)
    want = cv2.resize(cv2.resize(chip[0], (54, 54), interpolation=cv2.INTER_AREA), (150, 150),
                      interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(low_resolution(chip)[0], want)
    crop = _crops(1, 112, seed=4)
    want = cv2.resize(cv2.resize(crop[0], (40, 40), interpolation=cv2.INTER_AREA), (112, 112),
                      interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(low_resolution(crop)[0], want)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown variant"):
        apply_variant(_crops(1, 112), "sepia")
    with pytest.raises(ValueError, match="uint8"):
        grayscale(np.zeros((1, 112, 112, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        low_resolution(np.zeros((112, 112, 3), np.uint8))
