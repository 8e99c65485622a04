"""Errors of the face pipeline. Each names the bad input and, where there is one, the way out."""

from __future__ import annotations


class FaceError(ValueError):
    """Base class: the image cannot give an aligned face."""


class ImageReadError(FaceError):
    """The file is missing, unreadable or not an image."""


class ImageTooSmallError(FaceError):
    """The image (or the face in it) is too small to align reliably."""


class NoFaceError(FaceError):
    """No face was detected."""


class MultipleFacesError(FaceError):
    """Several faces were detected and the policy asks for exactly one."""
