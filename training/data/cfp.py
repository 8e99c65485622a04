"""Celebrities in Frontal-Profile (CFP; Sengupta et al., WACV 2016): its image lists, its two 10-fold
verification protocols (frontal-frontal FF, frontal-profile FP), its names and its fiducials.

Layout of the CFP folder (default ``shared_path("data", "cfp")``; every function takes ``root``)::

    Data/Images/<id>/frontal/<nn>.jpg      500 people (ids 001..500) × 10 frontal and 4 profile photos
    Data/Images/<id>/profile/<nn>.jpg
    Data/Fiducials/<id>/<view>/<nn>.txt    30 "x,y" points of the visible half of the face
    Data/list_name.txt                     the 500 names; line k is person k
    Protocol/Pair_list_F.txt               "<n> ../Data/Images/<id>/frontal/<nn>.jpg", n = 1..5000
    Protocol/Pair_list_P.txt               the same for the 2000 profile photos
    Protocol/Split/FF/<01..10>/same.txt    350 "a,b" lines each (frontal numbers); diff.txt likewise
    Protocol/Split/FP/<01..10>/same.txt    "a,b": a frontal number, b a profile number

The Readme's protocol: 10 folds, identity-disjoint, each of 350 same and 350 different pairs; report the
10-fold accuracy (mean, std), AUC and EER. Image paths handed out here are POSIX paths relative to
``Data/Images`` (``"001/frontal/01.jpg"``).

The 30 fiducials (0-based; read off the images, the Readme does not name them): 0–8 the jaw line of the
visible half, 9–11 the eyebrow, 12–17 the eye, 18–21 the nose ridge from its root to the tip, 22–24 the
nose base, 25 the mouth corner, 26–29 the lips on the midline. Only the face's extent is used
(:func:`fiducial_box`): the box in which the 68-point predictor is fitted for a face no detector finds
(:func:`align`), as LFW's fixed box is.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from pvcore.paths import shared_path

log = logging.getLogger(__name__)

N_PEOPLE = 500
N_FRONTAL, N_PROFILE = 5000, 2000
N_FOLDS = 10
PAIRS_PER_FOLD = 350  # same, and as many different
N_FIDUCIALS = 30
PROTOCOLS = ("FF", "FP")

Protocol = Literal["FF", "FP"]
_LIST_LINE = re.compile(r"^(\d+)\s+\.\./Data/Images/(\d{3}/(frontal|profile)/\d+\.jpg)$")


class CFPFormatError(ValueError):
    """A CFP list file does not have the documented layout; the message names the file and line."""


@dataclass(frozen=True)
class CFPPair:
    """One verification pair; ``a``/``b`` are image paths relative to :func:`images_root`, ``fold`` 0..9."""

    a: str
    b: str
    same: bool
    fold: int


def cfp_dir(root: str | Path | None = None) -> Path:
    """The CFP folder holding ``Data/`` and ``Protocol/`` (default: the shared ``data/cfp``)."""
    if root is None:
        return shared_path("data", "cfp")
    p = Path(root).expanduser()
    if not (p / "Protocol").is_dir():
        raise FileNotFoundError(f"CFP folder {p} not found (it should hold Data/ and Protocol/)")
    return p


def images_root(root: str | Path | None = None) -> Path:
    return cfp_dir(root) / "Data" / "Images"


def identity_of(rel_path: str) -> str:
    """The person id (``"001"``..``"500"``) of an image path."""
    return rel_path.split("/", 1)[0]


def _read_list(path: Path, view: str, expected: int) -> list[str]:
    out: list[str] = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        m = _LIST_LINE.match(line.strip())
        if m is None or m.group(3) != view:
            raise CFPFormatError(f"{path}:{lineno}: expected '<n> ../Data/Images/<id>/{view}/<nn>.jpg', got {line!r}")
        if int(m.group(1)) != len(out) + 1:
            raise CFPFormatError(f"{path}:{lineno}: number {m.group(1)} out of order (expected {len(out) + 1})")
        out.append(m.group(2))
    if len(out) != expected:
        raise CFPFormatError(f"{path}: {len(out)} images, expected {expected}")
    return out


def image_lists(root: str | Path | None = None) -> tuple[list[str], list[str]]:
    """(the 5000 frontal, the 2000 profile image paths); protocol number n is list index n − 1."""
    proto = cfp_dir(root) / "Protocol"
    return (_read_list(proto / "Pair_list_F.txt", "frontal", N_FRONTAL),
            _read_list(proto / "Pair_list_P.txt", "profile", N_PROFILE))


def all_images(root: str | Path | None = None) -> list[str]:
    """Every image of the protocols, frontal then profile (7000)."""
    frontal, profile = image_lists(root)
    return frontal + profile


def load_pairs(protocol: Protocol, root: str | Path | None = None) -> list[CFPPair]:
    """The 7000 pairs of ``protocol`` ("FF" or "FP"), fold by fold, each fold's same pairs first."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown CFP protocol {protocol!r}; use FF or FP")
    frontal, profile = image_lists(root)
    second = frontal if protocol == "FF" else profile
    split = cfp_dir(root) / "Protocol" / "Split" / protocol
    pairs: list[CFPPair] = []
    for fold in range(N_FOLDS):
        for kind in ("same", "diff"):
            path = split / f"{fold + 1:02d}" / f"{kind}.txt"
            if not path.is_file():
                raise CFPFormatError(f"{path} missing: CFP's {protocol} protocol has 10 folds 01..10")
            n = 0
            for lineno, line in enumerate(path.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    i, j = (int(v) for v in line.split(","))
                except ValueError:
                    raise CFPFormatError(f"{path}:{lineno}: expected 'a,b', got {line!r}") from None
                if not (1 <= i <= len(frontal) and 1 <= j <= len(second)):
                    raise CFPFormatError(f"{path}:{lineno}: image number out of range in {line!r}")
                a, b = frontal[i - 1], second[j - 1]
                if (identity_of(a) == identity_of(b)) != (kind == "same"):
                    raise CFPFormatError(f"{path}:{lineno}: {a} and {b} contradict the {kind} list")
                pairs.append(CFPPair(a, b, kind == "same", fold))
                n += 1
            if n != PAIRS_PER_FOLD:
                raise CFPFormatError(f"{path}: {n} pairs, expected {PAIRS_PER_FOLD}")
    return pairs


def load_names(root: str | Path | None = None) -> dict[str, str]:
    """Person id (``"001"``) → name, from ``Data/list_name.txt``."""
    path = cfp_dir(root) / "Data" / "list_name.txt"
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(names) != N_PEOPLE:
        raise CFPFormatError(f"{path}: {len(names)} names, expected {N_PEOPLE}")
    return {f"{k + 1:03d}": name for k, name in enumerate(names)}


def lfw_matches(names: dict[str, str], lfw_folds: list[list[str]]) -> dict[str, tuple[str, int]]:
    """CFP person id → (the LFW identity of the same name, its View 2 people.txt fold), for the CFP people who
    are in LFW's folds too (names matched case-insensitively, spaces as underscores)."""
    lfw_of = {n.lower(): (n, k) for k, fold in enumerate(lfw_folds) for n in fold}
    out = {}
    for pid, name in names.items():
        match = lfw_of.get("_".join(name.split()).lower())
        if match is not None:
            out[pid] = match
    return out


def lfw_overlap(names: dict[str, str], lfw_folds: list[list[str]]) -> dict[str, int]:
    """CFP person id → the LFW View 2 people.txt fold of the same name (:func:`lfw_matches`)."""
    return {pid: k for pid, (_, k) in lfw_matches(names, lfw_folds).items()}


def read_fiducials(rel_path: str, root: str | Path | None = None) -> np.ndarray:
    """The 30 fiducials (30, 2) float32 of an image path (``"001/profile/01.jpg"``)."""
    path = cfp_dir(root) / "Data" / "Fiducials" / str(Path(rel_path).with_suffix(".txt"))
    try:
        pts = np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2)
    except (OSError, ValueError) as e:
        raise CFPFormatError(f"{path}: not a list of 'x,y' fiducials ({e})") from None
    if pts.shape != (N_FIDUCIALS, 2):
        raise CFPFormatError(f"{path}: {pts.shape[0]} points, expected {N_FIDUCIALS}")
    return pts


NOSE_TIP = 21


def fiducial_box(points: np.ndarray, view: str) -> tuple[float, float, float, float]:
    """A square face box (x1, y1, x2, y2) from the 30 fiducials of one half of the face: from the eyebrow
    to the chin; across, the visible half mirrored about the nose tip (frontal) or the points' extent
    (profile: jaw line to nose tip)."""
    p = np.asarray(points, np.float64)
    top, bottom = p[:, 1].min(), p[:, 1].max()
    if view == "frontal":
        cx = p[NOSE_TIP, 0]
        half = np.abs(p[:, 0] - cx).max()
    else:
        cx = (p[:, 0].min() + p[:, 0].max()) / 2
        half = (p[:, 0].max() - p[:, 0].min()) / 2
    side = max(bottom - top, 2 * half)
    cy = (top + bottom) / 2
    return (float(cx - side / 2), float(cy - side / 2), float(cx + side / 2), float(cy + side / 2))


def cfp_cache(detector: str = "dlib", root: str | Path | None = None):
    """The aligned cache of CFP's 7000 images: ``detector``, then the other detector (RetinaFace finds most
    profiles dlib's frontal HOG misses); the rest get the fiducials' box in :func:`align`."""
    from training.face.cache import AlignedCache

    other = {"dlib": "retinaface", "retinaface": "dlib"}[detector]
    return AlignedCache("cfp", images_root(root), all_images(root), detector=detector, fallback_detector=other,
                        multi_face="center")


def align(cache, which: np.ndarray, workers: int = 2, progress: bool = True,
          root: str | Path | None = None) -> dict[str, int]:
    """Align the images ``which`` (cache indices) still pending: the detectors first (``cache.ensure``),
    then, for the faces they miss, the 68-point predictor in :func:`fiducial_box`, stored as the cache's
    ``fixed-box`` status (a box the dataset gives). Returns how many of ``which`` each path aligned."""
    from training.face.box_align import align_in_box
    from training.face.cache import FAILED, FIXED_BOX, STATUS_NAMES
    from training.face.pipeline import read_image_rgb

    which = np.unique(np.asarray(which, np.int64))
    cache.ensure(which, workers=workers, progress=progress)
    status = cache.status
    failed = which[status[which] == FAILED]
    faces = {}
    for i in failed:
        rel = cache.paths[i]
        try:
            box = fiducial_box(read_fiducials(rel, root), rel.split("/")[1])
            faces[int(i)] = align_in_box(read_image_rgb(cache.root / rel), box, source="fiducials")
        except (CFPFormatError, ValueError) as e:  # FaceError is a ValueError: unreadable image
            log.warning("%s: no face from the fiducials either (%s)", rel, e)
    if faces:
        log.info("CFP: %d of %d images aligned in their fiducials' box", len(faces), len(which))
        cache.put(faces, FIXED_BOX)
    status = cache.status[which]
    return {name: int((status == code).sum()) for code, name in STATUS_NAMES.items()}
