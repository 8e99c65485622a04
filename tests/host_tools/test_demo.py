"""Pieces of host_tools.demo that run fast: the package photos, their alignment, the views. The whole
demo (shipped hypernetwork, QEMU, 200 images) is the slow test in test_parity_qemu.py."""

from __future__ import annotations

import numpy as np
import pytest

from host_tools.demo import ENROLLED, STRANGER, aligned_face, package_photo, views


@pytest.fixture(scope="module")
def faces() -> dict[str, np.ndarray]:
    return {name: aligned_face(package_photo(name)) for name in (ENROLLED, STRANGER)}


def test_both_package_photos_give_an_aligned_face(faces) -> None:
    for crop in faces.values():
        assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8 and crop.std() > 20
    assert np.abs(faces[ENROLLED].astype(int) - faces[STRANGER].astype(int)).mean() > 20


def test_views_are_seeded_and_all_different(faces) -> None:
    crop = faces[ENROLLED]
    a, b, c = views(crop, 12, seed=1), views(crop, 12, seed=1), views(crop, 12, seed=2)
    assert a.shape == (12, 112, 112, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    flat = a.reshape(12, -1).astype(np.int32)
    assert len({row.tobytes() for row in a.reshape(12, -1)}) == 12
    assert all(np.abs(row - crop.reshape(-1)).mean() > 1 for row in flat)  # none is the enrollment crop
    # still the same face: views stay much closer to their crop than to the other person's
    own = np.abs(flat - crop.reshape(-1)).mean()
    other = np.abs(flat - faces[STRANGER].reshape(-1).astype(np.int32)).mean()
    assert own < other


def test_unknown_package_photo() -> None:
    with pytest.raises(KeyError):
        package_photo("nobody")
