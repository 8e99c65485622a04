"""InsightFace verification ``.bin`` files (lfw.bin, cfp_fp.bin, agedb_30.bin, calfw.bin, cplfw.bin, ...).

Format (as read by ``load_bin`` in insightface ``recognition/arcface_torch/eval/verification.py``): a
pickle of the tuple ``(bins, issame_list)``. ``bins`` is a list of 2N encoded images (JPEG or PNG bytes
of 112×112 ArcFace-aligned faces); ``issame_list`` holds N booleans; pair i is
``(bins[2i], bins[2i + 1])``. Files written by Python 2 need ``pickle.load(f, encoding="bytes")``.

InsightFace decodes with ``mx.image.imdecode`` (RGB); we decode with OpenCV and convert BGR → RGB, so
:func:`read_bin` returns RGB like InsightFace. An image of another size is resized to ``image_size``
(InsightFace's ``resize_short`` does the same for the square crops these files hold).

The pickle is read with the standard unpickler, so open only files from sources you trust.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from pvcore.atomic import atomic_write

log = logging.getLogger(__name__)

IMAGE_SIZE = (112, 112)  # (height, width)


class BinFormatError(ValueError):
    """A verification .bin file (or the data for one) is malformed; the message says what and where."""


def _as_bytes(item: object, path: Path, idx: int) -> bytes:
    if isinstance(item, bytes | bytearray | memoryview):
        return bytes(item)
    if isinstance(item, np.ndarray) and item.dtype == np.uint8 and item.ndim == 1:
        return item.tobytes()
    raise BinFormatError(f"{path}: image {idx} is a {type(item).__name__}, expected encoded image bytes")


def read_bin(
    path: str | Path, image_size: tuple[int, int] = IMAGE_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """Read a verification .bin → ``(images (2N, H, W, 3) uint8 RGB, issame (N,) bool)``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"verification file {path} not found")
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as e:
        raise BinFormatError(f"{path}: not a verification .bin pickle ({type(e).__name__}: {e})") from e
    if not (isinstance(obj, tuple | list) and len(obj) == 2):
        raise BinFormatError(
            f"{path}: expected a pickled tuple (bins, issame_list), got {type(obj).__name__}"
        )
    bins, issame_list = obj
    try:
        issame = np.asarray(list(issame_list), dtype=bool)
        n_bins = len(bins)
    except TypeError as e:
        raise BinFormatError(f"{path}: bins and issame_list must be sequences ({e})") from e
    if issame.ndim != 1:
        raise BinFormatError(f"{path}: issame_list must be a flat list of booleans")
    if n_bins % 2:
        raise BinFormatError(f"{path}: odd number of images ({n_bins}); images come in pairs")
    if n_bins != 2 * len(issame):
        raise BinFormatError(
            f"{path}: {n_bins} images but {len(issame)} issame labels (expected {2 * len(issame)} images)"
        )
    h, w = image_size
    images = np.empty((n_bins, h, w, 3), dtype=np.uint8)
    resized = 0
    for i, item in enumerate(bins):
        buf = np.frombuffer(_as_bytes(item, path, i), dtype=np.uint8)
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
        if img is None:
            raise BinFormatError(f"{path}: image {i} (pair {i // 2}) cannot be decoded")
        if img.shape[:2] != (h, w):
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
            resized += 1
        images[i] = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if resized:
        log.warning("%s: %d image(s) not %dx%d were resized", path, resized, h, w)
    log.debug("%s: %d pairs (%d same)", path, len(issame), int(issame.sum()))
    return images, issame


def encode_image(image: np.ndarray, fmt: Literal["png", "jpg"] = "jpg", jpeg_quality: int = 95) -> bytes:
    """Encode one (H, W, 3) uint8 RGB image as PNG or JPEG bytes."""
    bgr = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
    if fmt == "png":
        ok, buf = cv2.imencode(".png", bgr)
    elif fmt in ("jpg", "jpeg"):
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    else:
        raise ValueError(f"unknown image format {fmt!r}; use 'png' or 'jpg'")
    if not ok:
        raise BinFormatError("OpenCV could not encode the image")
    return buf.tobytes()


def write_bin(
    path: str | Path,
    images: np.ndarray,
    issame: np.ndarray | list[bool],
    fmt: Literal["png", "jpg"] = "jpg",
    jpeg_quality: int = 95,
) -> None:
    """Write ``images`` ((2N, H, W, 3) uint8 RGB, pairs consecutive) and ``issame`` (N bools) atomically.

    The result reads back with InsightFace's ``load_bin`` and with :func:`read_bin`; PNG is lossless.
    """
    path = Path(path)
    images = np.asarray(images)
    issame_arr = np.asarray(issame)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise BinFormatError(
            f"images must be a (2N, H, W, 3) uint8 RGB array, got shape {images.shape} dtype {images.dtype}"
        )
    if len(images) % 2:
        raise BinFormatError(f"odd number of images ({len(images)}); images come in pairs")
    if issame_arr.ndim != 1 or len(images) != 2 * len(issame_arr):
        raise BinFormatError(
            f"{len(images)} images need {len(images) // 2} issame labels, got shape {issame_arr.shape}"
        )
    if issame_arr.dtype != bool and not np.isin(issame_arr, (0, 1)).all():
        raise BinFormatError("issame must hold booleans (or 0/1)")
    bins = [encode_image(img, fmt, jpeg_quality) for img in images]
    issame_list = [bool(x) for x in issame_arr]
    # protocol 4: readable by every Python 3 InsightFace tool
    atomic_write(path, lambda f: pickle.dump((bins, issame_list), f, protocol=4))
    log.debug("wrote %s: %d pairs", path, len(issame_list))
