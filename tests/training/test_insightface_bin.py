"""InsightFace verification .bin files: round trips (synthetic and real LFW faces) and malformed input."""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from training.data.insightface_bin import BinFormatError, encode_image, read_bin, write_bin
from training.data.lfw import lfw_root, load_pairs


def _synthetic(n: int, seed: int = 0) -> np.ndarray:
    """Smooth colour images (JPEG-friendly) with a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:112, 0:112].astype(np.float32) / 111.0
    out = np.empty((n, 112, 112, 3), dtype=np.uint8)
    for i in range(n):
        a, b, c = rng.uniform(0, 1, 3)
        img = np.stack([255 * (a * xx + (1 - a) * yy), 255 * b * xx * yy, np.full_like(xx, 255 * c)], -1)
        out[i] = np.clip(img + rng.normal(0, 2, img.shape), 0, 255).astype(np.uint8)
    return out


def _real_lfw_crops(n_pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """Centre 112x112 crops (resized from the central 150 px) of the first view-2 pairs of each kind."""
    pairs = load_pairs("view2")
    chosen = pairs[:n_pairs // 2] + pairs[300:300 + n_pairs - n_pairs // 2]
    root = lfw_root()
    imgs = []
    for p in chosen:
        for rel in (p.a, p.b):
            bgr = cv2.imread(str(root / rel))
            assert bgr is not None, rel
            crop = cv2.resize(bgr[50:200, 50:200], (112, 112), interpolation=cv2.INTER_AREA)
            imgs.append(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))
    return np.stack(imgs), np.array([p.same for p in chosen])


def test_png_round_trip_is_exact(tmp_path: Path) -> None:
    images = _synthetic(6)
    issame = np.array([True, False, True])
    path = tmp_path / "sub" / "synthetic.bin"
    write_bin(path, images, issame, fmt="png")
    got, got_same = read_bin(path)
    assert got.dtype == np.uint8 and got.shape == (6, 112, 112, 3)
    np.testing.assert_array_equal(got, images)
    np.testing.assert_array_equal(got_same, issame)
    assert got_same.dtype == bool
    assert [p.name for p in path.parent.iterdir()] == ["synthetic.bin"]  # no temp file left


def test_format_is_insightface_pickle(tmp_path: Path) -> None:
    images = _synthetic(2)
    path = tmp_path / "x.bin"
    write_bin(path, images, [False], fmt="png")
    with open(path, "rb") as f:
        bins, issame_list = pickle.load(f, encoding="bytes")
    assert isinstance(bins, list) and len(bins) == 2 and isinstance(bins[0], bytes)
    assert issame_list == [False]
    assert bins[0][:8] == b"\x89PNG\r\n\x1a\n"
    # the colour order inside is BGR-encoded RGB, i.e. a normal image file: decoding it with OpenCV
    # and converting to RGB gives the original back
    dec = cv2.cvtColor(cv2.imdecode(np.frombuffer(bins[1], np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(dec, images[1])


def test_jpeg_round_trip_of_real_lfw_faces(tmp_path: Path) -> None:
    images, issame = _real_lfw_crops(4)
    path = tmp_path / "lfw_small.bin"
    write_bin(path, images, issame, fmt="jpg", jpeg_quality=95)
    got, got_same = read_bin(path)
    np.testing.assert_array_equal(got_same, issame)
    err = np.abs(got.astype(np.int16) - images.astype(np.int16))
    assert err.mean() < 2.0 and np.percentile(err, 99) < 16
    # the colour channels are not swapped: per-channel means survive
    np.testing.assert_allclose(got.mean(axis=(0, 1, 2)), images.mean(axis=(0, 1, 2)), atol=1.0)


def test_reads_python2_style_file_and_resizes(tmp_path: Path) -> None:
    images = _synthetic(2)
    big = cv2.resize(images[0], (128, 128), interpolation=cv2.INTER_LINEAR)
    bins = [bytearray(encode_image(big, "png")), np.frombuffer(encode_image(images[1], "png"), np.uint8)]
    path = tmp_path / "py2.bin"
    with open(path, "wb") as f:
        pickle.dump((bins, np.array([True])), f, protocol=2)
    got, issame = read_bin(path)
    assert got.shape == (2, 112, 112, 3) and issame.tolist() == [True]
    np.testing.assert_array_equal(got[1], images[1])


def _dump(path: Path, obj: object) -> Path:
    with open(path, "wb") as f:
        pickle.dump(obj, f)
    return path


def test_read_errors(tmp_path: Path) -> None:
    good = encode_image(_synthetic(1)[0], "png")
    with pytest.raises(FileNotFoundError):
        read_bin(tmp_path / "missing.bin")
    with pytest.raises(BinFormatError, match="odd number of images"):
        read_bin(_dump(tmp_path / "odd.bin", ([good, good, good], [True])))
    with pytest.raises(BinFormatError, match="4 images but 1 issame"):
        read_bin(_dump(tmp_path / "mismatch.bin", ([good] * 4, [True])))
    with pytest.raises(BinFormatError, match=r"image 1 \(pair 0\) cannot be decoded"):
        read_bin(_dump(tmp_path / "garbage.bin", ([good, b"not an image"], [True])))
    with pytest.raises(BinFormatError, match="expected a pickled tuple"):
        read_bin(_dump(tmp_path / "dict.bin", {"bins": []}))
    (tmp_path / "text.bin").write_text("hello")
    with pytest.raises(BinFormatError, match="not a verification .bin pickle"):
        read_bin(tmp_path / "text.bin")


def test_write_errors(tmp_path: Path) -> None:
    images = _synthetic(4)
    with pytest.raises(BinFormatError, match="odd number"):
        write_bin(tmp_path / "a.bin", images[:3], [True])
    with pytest.raises(BinFormatError, match="need 2 issame labels"):
        write_bin(tmp_path / "a.bin", images, [True])
    with pytest.raises(BinFormatError, match="uint8"):
        write_bin(tmp_path / "a.bin", images.astype(np.float32), [True, False])
    with pytest.raises(ValueError, match="unknown image format"):
        write_bin(tmp_path / "a.bin", images, [True, False], fmt="gif")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
