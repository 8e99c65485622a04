"""Third-party C sources the firmware builds with, fetched from a package registry, never committed.

    python -m codegen.third_party fetch     download, check the SHA-256, extract (idempotent)
    python -m codegen.third_party path      print the folder of each package's sources

**Monocypher 3.1.2** (Loup Vaillant; BSD-2-Clause OR CC0-1.0): the device's Ed25519 signature check
(``crypto_ed25519_check``, RFC 8032 with SHA-512, in ``optional/monocypher-ed25519.c``) behind
``firmware_templates/common/pv_sign.c``. Its unmodified release sources ship inside the ``monocypher-py
0.0.3`` sdist on PyPI (``src/monocypher-3.1.2-src/``); this module downloads that sdist from its pinned
URL, refuses it unless its SHA-256 is the pinned one, and extracts the four C files and the licence into
``.cache/third_party/monocypher-3.1.2/`` (ignored by git). ``firmware_templates/common/sources.mk`` calls
this file when the folder is missing (so a fresh clone builds), ``.ci/setup`` calls it too, and
``codegen.emit`` copies the files into every emitted project (which then builds without this repository).

Standard library only: make runs it with the system's ``python3`` before any virtual environment exists.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
THIRD_PARTY_DIR = REPO_ROOT / ".cache" / "third_party"


@dataclass(frozen=True)
class Package:
    name: str  # the folder under .cache/third_party/
    url: str
    sha256: str
    members: dict[str, str]  # path inside the archive -> path in the folder

    @property
    def folder(self) -> Path:
        return THIRD_PARTY_DIR / self.name


_MC = "monocypher-py-0.0.3/src/monocypher-3.1.2-src/"
MONOCYPHER = Package(
    name="monocypher-3.1.2",
    url="https://files.pythonhosted.org/packages/ad/9a/b8981f6f6ea67b448c3d19e3d4b5f3f12209cafd5725520726236c527d17/"
        "monocypher-py-0.0.3.tar.gz",
    sha256="9f1da74704ade57be8f1f93c75526342b0c4515a9548a388cc2f6ddc62ac94a3",
    members={
        _MC + "monocypher.c": "monocypher.c",
        _MC + "monocypher.h": "monocypher.h",
        _MC + "optional/monocypher-ed25519.c": "monocypher-ed25519.c",
        _MC + "optional/monocypher-ed25519.h": "monocypher-ed25519.h",
        "monocypher-py-0.0.3/LICENSE": "LICENSE",
    },
)
PACKAGES = (MONOCYPHER,)


class FetchError(RuntimeError):
    pass


def fetched(pkg: Package = MONOCYPHER) -> bool:
    return all((pkg.folder / dst).is_file() for dst in pkg.members.values())


def fetch(pkg: Package = MONOCYPHER, *, timeout: float = 60.0) -> Path:
    """The package's folder, downloaded and extracted first when missing. The folder appears whole or
    not at all (extracted beside it, then renamed), so two builds fetching at once are harmless."""
    if fetched(pkg):
        return pkg.folder
    try:
        with urllib.request.urlopen(pkg.url, timeout=timeout) as r:
            data = r.read()
    except OSError as e:
        raise FetchError(f"cannot download {pkg.name} from {pkg.url}: {e}") from e
    got = hashlib.sha256(data).hexdigest()
    if got != pkg.sha256:
        raise FetchError(f"{pkg.url}: SHA-256 {got}, pinned {pkg.sha256}: refusing it")
    THIRD_PARTY_DIR.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{pkg.name}-", dir=THIRD_PARTY_DIR))
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for src, dst in pkg.members.items():
            f = tar.extractfile(src)
            if f is None:
                raise FetchError(f"{pkg.url}: no {src} in the archive")
            (tmp / dst).write_bytes(f.read())
    try:
        os.rename(tmp, pkg.folder)
    except OSError:  # another process got there first
        if not fetched(pkg):
            raise
        for p in tmp.iterdir():
            p.unlink()
        tmp.rmdir()
    return pkg.folder


def sources(pkg: Package = MONOCYPHER) -> dict[str, bytes]:
    """File name -> bytes of the package's C files (fetched first when missing)."""
    folder = fetch(pkg)
    return {dst: (folder / dst).read_bytes() for dst in pkg.members.values() if dst.endswith((".c", ".h"))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m codegen.third_party", description=__doc__.split("\n")[0])
    ap.add_argument("action", choices=("fetch", "path"), help="fetch: download and extract what is missing; "
                    "path: print each package's folder")
    args = ap.parse_args(argv)
    try:
        for pkg in PACKAGES:
            if args.action == "fetch":
                print(f"{pkg.name}: {fetch(pkg)}", file=sys.stderr)
            else:
                print(pkg.folder)
    except FetchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
