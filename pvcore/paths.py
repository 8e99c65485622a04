"""Where the project finds third-party data and where it keeps costly intermediate results.

Third-party research files (LFW, pretrained weights) are *read* from the shared folder at run time
and never copied into the repository. Costly intermediate results (aligned crops, embeddings) go to
an ignored cache folder so that a second run is cheap.

Environment variables:
  FACEVERIF_SHARED  the shared folder (default: ``../shared`` next to the repository root)
  FACEVERIF_CACHE   the cache folder  (default: ``.cache`` inside the repository root)
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

SHARED_ENV = "FACEVERIF_SHARED"
CACHE_ENV = "FACEVERIF_CACHE"


class SharedDataMissing(FileNotFoundError):
    """A file that lives in the shared folder is not there."""


def shared_dir() -> Path:
    env = os.environ.get(SHARED_ENV)
    return Path(env).expanduser().resolve() if env else (REPO_ROOT.parent / "shared").resolve()


def shared_path(*parts: str) -> Path:
    """Path of a file in the shared folder; raises :class:`SharedDataMissing` naming the way out."""
    p = shared_dir().joinpath(*parts)
    if not p.exists():
        raise SharedDataMissing(
            f"{p} not found. Point {SHARED_ENV} at the folder holding data/ and weights/ "
            f"(currently {shared_dir()})."
        )
    return p


def cache_dir(*parts: str) -> Path:
    env = os.environ.get(CACHE_ENV)
    base = Path(env).expanduser().resolve() if env else REPO_ROOT / ".cache"
    p = base.joinpath(*parts)
    p.mkdir(parents=True, exist_ok=True)
    return p
