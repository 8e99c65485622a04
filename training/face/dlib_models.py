"""dlib's face models, from the CC0 ``face-recognition-models`` package (installable from PyPI alone).

We locate the model folder with importlib instead of importing the package: its ``__init__`` imports
``pkg_resources``, which newer setuptools no longer ship.
"""

from __future__ import annotations

import functools
import importlib.util
import threading
from pathlib import Path

import dlib

# The models below are one object per process (loading them costs seconds), shared by every pipeline and
# backbone; dlib's objects are not safe to call from two threads at once (seen: two enrollments racing in
# threads got phantom second faces from the detector), so every call into them holds this lock.
LOCK = threading.RLock()


@functools.cache
def models_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "face-recognition-models is not installed: pip install face-recognition-models "
            "(dlib's CC0 face models)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def model_path(filename: str) -> Path:
    p = models_dir() / filename
    if not p.is_file():
        raise FileNotFoundError(f"dlib model {p} missing; reinstall face-recognition-models")
    return p


@functools.cache
def hog_detector() -> dlib.fhog_object_detector:
    return dlib.get_frontal_face_detector()


@functools.cache
def shape_predictor_68() -> dlib.shape_predictor:
    return dlib.shape_predictor(str(model_path("shape_predictor_68_face_landmarks.dat")))


@functools.cache
def face_descriptor_model() -> dlib.face_recognition_model_v1:
    return dlib.face_recognition_model_v1(str(model_path("dlib_face_recognition_resnet_model_v1.dat")))
