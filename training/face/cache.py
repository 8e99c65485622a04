"""On-disk cache of aligned crops for a whole dataset: uint8 memmaps, resumable, parallel.

Layout of ``<cache>/aligned/<dataset>-<detector>-<hash of the image list>/``:
  index.json         image paths (relative to the dataset root), detector, format version
  arcface112.u8      (N, 112, 112, 3) uint8 memmap, ArcFace-aligned RGB crops
  dlib150.u8         (N, 150, 150, 3) uint8 memmap, dlib face chips
  landmarks.npy      (N, 5, 2) float32, ArcFace points in original image pixels
  status.npy         (N,) int8: 0 pending, 1 primary detector, 2 fallback detector, 3 fixed-box fallback,
                     -1 failed (unreadable image; its crops stay black)

Status and landmarks are rewritten atomically after every chunk, *after* the memmaps are flushed, so
an interrupted run resumes where it stopped and never marks a crop done that is not on disk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pvcore.atomic import atomic_write, atomic_write_json
from pvcore.paths import cache_dir
from training.backbones.base import ARCFACE112, DLIB150
from training.face.errors import FaceError
from training.face.pipeline import AlignedFace, FacePipeline

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
PENDING, PRIMARY, FALLBACK_DETECTOR, FIXED_BOX, FAILED = 0, 1, 2, 3, -1
STATUS_NAMES = {PRIMARY: "primary", FALLBACK_DETECTOR: "fallback-detector", FIXED_BOX: "fixed-box",
                FAILED: "failed", PENDING: "pending"}
SHAPES = {ARCFACE112: (112, 112, 3), DLIB150: (150, 150, 3)}

# LFW deep-funneled images are 250×250 with the labelled face centred; this is the mean dlib HOG box
# over 200 LFW images (std ≈ 6–9 px) and serves as the last-resort box for images no detector finds.
LFW_FIXED_BOX = (69.0, 79.0, 175.0, 185.0)

_worker_pipe: FacePipeline | None = None
_worker_root: Path | None = None


def _init_worker(root: str, pipeline_kwargs: dict) -> None:
    global _worker_pipe, _worker_root
    import cv2

    cv2.setNumThreads(1)  # one process per core already; nested thread pools only contend
    if "retinaface" in (pipeline_kwargs.get("detector"), pipeline_kwargs.get("fallback_detector")):
        import torch

        torch.set_num_threads(1)
    _worker_pipe = FacePipeline(**pipeline_kwargs)
    _worker_root = Path(root)


def _align_one(item: tuple[int, str]) -> tuple[int, int, np.ndarray | None, np.ndarray | None, np.ndarray | None, str]:
    idx, rel = item
    assert _worker_pipe is not None and _worker_root is not None
    try:
        face = _worker_pipe.process_file(_worker_root / rel)
    except FaceError as e:
        return idx, FAILED, None, None, None, str(e)
    code = PRIMARY if face.source == _worker_pipe.detector.name else (
        FIXED_BOX if face.source == "fixed-box" else FALLBACK_DETECTOR)
    return idx, code, face.arcface112, face.dlib150, face.landmarks5, ""


class AlignedCache:
    def __init__(self, dataset: str, root: Path, paths: Sequence[str], detector: str = "dlib",
                 fallback_detector: str | None = None, fallback_box: tuple | None = None,
                 multi_face: str = "center") -> None:
        self.dataset, self.root, self.paths = dataset, Path(root), list(paths)
        self.detector = detector
        self.pipeline_kwargs = dict(detector=detector, multi_face=multi_face,
                                    fallback_detector=fallback_detector, fallback_box=fallback_box)
        h = hashlib.sha1("\n".join(self.paths).encode()).hexdigest()[:10]
        self.dir = cache_dir("aligned", f"{dataset}-{detector}-{h}")
        self.index = {p: i for i, p in enumerate(self.paths)}
        n = len(self.paths)
        index_file = self.dir / "index.json"
        if not index_file.exists():
            for kind, shape in SHAPES.items():
                np.memmap(self.dir / f"{kind}.u8", np.uint8, "w+", shape=(n, *shape)).flush()
            self._save_state(np.zeros(n, np.int8), np.zeros((n, 5, 2), np.float32))
            atomic_write_json(index_file, {"version": FORMAT_VERSION, "dataset": dataset, "detector": detector,
                                           "pipeline": {k: v for k, v in self.pipeline_kwargs.items()},
                                           "paths": self.paths})
        else:
            meta = json.loads(index_file.read_text())
            if meta.get("version") != FORMAT_VERSION or meta.get("paths") != self.paths:
                raise RuntimeError(f"aligned cache {self.dir} does not match this dataset; delete it to rebuild")

    # -- state -------------------------------------------------------------------------------------
    def _save_state(self, status: np.ndarray, landmarks: np.ndarray) -> None:
        atomic_write(self.dir / "status.npy", lambda f: np.save(f, status))
        atomic_write(self.dir / "landmarks.npy", lambda f: np.save(f, landmarks))

    @property
    def status(self) -> np.ndarray:
        return np.load(self.dir / "status.npy")

    @property
    def landmarks(self) -> np.ndarray:
        return np.load(self.dir / "landmarks.npy")

    def crops(self, kind: str = ARCFACE112) -> np.memmap:
        return np.memmap(self.dir / f"{kind}.u8", np.uint8, "r", shape=(len(self.paths), *SHAPES[kind]))

    def indices(self, rel_paths: Sequence[str]) -> np.ndarray:
        missing = [p for p in rel_paths if p not in self.index]
        if missing:
            raise KeyError(f"{len(missing)} images not in the {self.dataset} cache, e.g. {missing[0]}")
        return np.array([self.index[p] for p in rel_paths], dtype=np.int64)

    def summary(self) -> dict[str, int]:
        s = self.status
        return {name: int((s == code).sum()) for code, name in STATUS_NAMES.items()}

    # -- work --------------------------------------------------------------------------------------
    def put(self, faces: dict[int, AlignedFace], code: int) -> None:
        """Store faces aligned outside :meth:`ensure` (e.g. in a box from a dataset's own landmarks) under
        status ``code``; the crops are flushed before the status says they are there, as in :meth:`ensure`."""
        if code not in STATUS_NAMES or code in (PENDING, FAILED):
            raise ValueError(f"status {code} is not one of an aligned face")
        status, landmarks = self.status, self.landmarks
        mm = {k: np.memmap(self.dir / f"{k}.u8", np.uint8, "r+", shape=(len(self.paths), *s))
              for k, s in SHAPES.items()}
        for idx, face in faces.items():
            mm[ARCFACE112][idx], mm[DLIB150][idx], landmarks[idx] = face.arcface112, face.dlib150, face.landmarks5
            status[idx] = code
        for m in mm.values():
            m.flush()
        self._save_state(status, landmarks)

    def ensure(self, which: Sequence[int] | None = None, workers: int = 2, chunk: int = 256,
               progress: bool = True, retry_failed: bool = False) -> dict[str, int]:
        """Align every image in ``which`` (default: all) that is still pending (or failed, if asked)."""
        status, landmarks = self.status, self.landmarks
        todo = np.arange(len(self.paths)) if which is None else np.unique(np.asarray(which, np.int64))
        todo = todo[(status[todo] == PENDING) | (retry_failed & (status[todo] == FAILED))]
        if len(todo):
            mm = {k: np.memmap(self.dir / f"{k}.u8", np.uint8, "r+", shape=(len(self.paths), *s))
                  for k, s in SHAPES.items()}
            items = [(int(i), self.paths[i]) for i in todo]
            # forkserver, not fork: a parent that already ran torch/OpenMP threads can hang forked children.
            ctx = mp.get_context("forkserver")
            bar = tqdm(total=len(items), desc=f"align {self.dataset} ({self.detector})", unit="img",
                       disable=not progress)
            with ctx.Pool(workers, _init_worker, (str(self.root), self.pipeline_kwargs)) as pool:
                for start in range(0, len(items), chunk):
                    results = pool.map(_align_one, items[start:start + chunk], chunksize=8)
                    for idx, code, a112, d150, lm, err in results:
                        if code == FAILED:
                            log.warning("alignment failed: %s", err)
                        else:
                            mm[ARCFACE112][idx], mm[DLIB150][idx], landmarks[idx] = a112, d150, lm
                        status[idx] = code
                    for m in mm.values():
                        m.flush()
                    self._save_state(status, landmarks)
                    bar.update(len(results))
            bar.close()
        return self.summary()


def lfw_cache(detector: str = "dlib") -> AlignedCache:
    """The aligned cache of all 13,233 LFW images. Fallbacks: the other detector, then the fixed box."""
    from training.data import lfw

    other = {"dlib": "retinaface", "retinaface": "dlib"}[detector]
    return AlignedCache("lfw", lfw.lfw_root(), lfw.all_images(), detector=detector,
                        fallback_detector=other, fallback_box=LFW_FIXED_BOX)


def folder_cache(root: str | Path, detector: str = "dlib") -> AlignedCache:
    """Aligned cache of an image folder (one sub-folder per identity). Several faces: the largest."""
    from training.data.image_folder import ImageFolder

    folder = ImageFolder.scan(root)
    root = Path(root).resolve()
    return AlignedCache(f"folder-{root.name}", root, [p for p, _ in folder.samples], detector=detector,
                        multi_face="largest")
