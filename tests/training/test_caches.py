"""Aligned-crop cache (resumable, status codes, image folders) and embedding cache (content-keyed)."""

import os
import shutil

import numpy as np
import pytest

from pvcore.cli import EXIT_ERROR
from training.align import main as align_main
from training.backbones.embedding_cache import EmbeddingCache
from training.face.cache import FAILED, PENDING, PRIMARY, folder_cache


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEVERIF_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def small_folder(tmp_path, lfw_dir):
    root = tmp_path / "people"
    for name, n in [("Aaron_Eckhart", 1), ("Bill_Gates", 3), ("Colin_Powell", 2)]:
        (root / name).mkdir(parents=True)
        for i in range(1, n + 1):
            shutil.copy(lfw_dir / name / f"{name}_{i:04d}.jpg", root / name)
    (root / "Colin_Powell" / "broken.jpg").write_bytes(b"not an image")
    return root


def test_folder_cache_resumes_and_records_failures(tmp_cache, small_folder):
    cache = folder_cache(small_folder)
    assert len(cache.paths) == 7 and (cache.status == PENDING).all()
    first = cache.ensure(which=[0, 1], workers=1, progress=False)
    assert first["primary"] == 2 and first["pending"] == 5
    # A second cache object over the same folder sees the saved state and finishes the rest.
    again = folder_cache(small_folder)
    summary = again.ensure(workers=2, progress=False)
    assert summary == {"primary": 6, "fallback-detector": 0, "fixed-box": 0, "failed": 1, "pending": 0}
    status = again.status
    broken = again.paths.index("Colin_Powell/broken.jpg")
    assert status[broken] == FAILED and (np.delete(status, broken) == PRIMARY).all()
    crops = again.crops()
    assert crops.shape == (7, 112, 112, 3) and crops[broken].max() == 0 and crops[0].mean() > 30


def test_align_cli_on_a_folder(tmp_cache, small_folder, capsys):
    assert align_main(["--dataset", str(small_folder), "--workers", "1", "--no-progress"]) == 0
    assert '"failed": 1' in capsys.readouterr().out


def test_align_cli_rejects_a_missing_folder(tmp_cache, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        align_main(["--dataset", str(tmp_path / "nowhere")])
    assert e.value.code == EXIT_ERROR and "not found" in capsys.readouterr().err


class CountingBackbone:
    name = "counting"
    embedding_dim = 4
    input_kind = "arcface112"

    def __init__(self) -> None:
        self.seen = 0

    def embed(self, images):
        self.seen += len(images)
        v = images.reshape(len(images), -1)[:, :4].astype(np.float32) + 1
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_embedding_cache_is_keyed_by_content(tmp_cache):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, (10, 112, 112, 3), dtype=np.uint8)
    bb = CountingBackbone()
    e1 = EmbeddingCache(bb).embed(imgs, batch=4, progress=False)
    assert bb.seen == 10
    # Same content in another order, plus a duplicate and one new image: only the new one is computed,
    # also by a fresh cache object (what was computed is on disk).
    more = np.concatenate([imgs[::-1], imgs[:1], rng.integers(0, 255, (1, 112, 112, 3), dtype=np.uint8)])
    bb2 = CountingBackbone()
    e2 = EmbeddingCache(bb2).embed(more, progress=False)
    assert bb2.seen == 1
    np.testing.assert_array_equal(e2[:10], e1[::-1])


def test_embedding_cache_merges_concurrent_writers(tmp_cache):
    rng = np.random.default_rng(1)
    a, b = (rng.integers(0, 255, (3, 112, 112, 3), dtype=np.uint8) for _ in range(2))
    c1, c2 = EmbeddingCache(CountingBackbone()), EmbeddingCache(CountingBackbone())  # both start empty
    c1.embed(a, progress=False)
    c2.embed(b, progress=False)  # saving must not drop what c1 saved meanwhile
    assert len(EmbeddingCache(CountingBackbone())) == 6


def test_dlib_embeds_in_worker_processes_as_it_does_in_one(tmp_cache, monkeypatch):
    """dlib holds the GIL on one core: a large enough set is embedded by worker processes, batch by batch in
    order, with the embeddings one process gives (the real model in both)."""
    from training.backbones import embedding_cache, load_backbone

    monkeypatch.setattr(embedding_cache, "PARALLEL_MIN_IMAGES", 8)
    imgs = np.random.default_rng(2).integers(0, 255, (13, 150, 150, 3), dtype=np.uint8)
    bb = load_backbone("dlib-resnet")
    cache = EmbeddingCache(bb)
    assert cache._workers(13) == min(2, len(os.sched_getaffinity(0))) and cache._workers(7) == 1
    got = cache.embed(imgs, batch=5, progress=False)  # batches of 5, 5, 3: each split over the workers
    np.testing.assert_array_equal(got, bb.embed(imgs))
    assert len(EmbeddingCache(bb)) == 13  # and saved
