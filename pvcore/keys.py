"""The enrollment host's signing keys: an Ed25519 keyring on disk, outside the repository.

A keyring is one folder (mode 0700; default ``$PV_KEYS_DIR``, else ``$XDG_CONFIG_HOME/hyperverif-mcu/keys``,
else ``~/.config/hyperverif-mcu/keys``)::

    NAME.key       the private key, PKCS#8 PEM, mode 0600 (refused when group or others may read it)
    NAME.pub       the raw 32-byte public key as 64 hex digits: every .pub is a key the firmware emitted
                   from this keyring trusts (pv_trusted_keys.h); a .pub without a .key: another host's key
    NAME.counter   the last counter this key signed with (decimal), replaced atomically under a lock
    ACTIVE         the name of the key that signs
    retired/       keys taken out of service (never deleted)

The counter is the signed θ's anti-replay number (pvcore.signed): each signature takes the next value, so a
board, which refuses a θ older than its active one, cannot be sent back to an earlier θ. Rotation keeps it
rising: the new key starts from the old key's counter. The CLI is ``python -m host_tools.keys``; the
procedure (generate, provision, rotate, retire) is docs/signing.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pvcore import signed
from pvcore.atomic import atomic_write_bytes
from pvcore.paths import REPO_ROOT

KEYS_ENV = "PV_KEYS_DIR"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")


class KeyringError(ValueError):
    """A keyring problem the message names, with the way out."""


def default_dir() -> Path:
    if os.environ.get(KEYS_ENV):
        return Path(os.environ[KEYS_ENV])
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "hyperverif-mcu" / "keys"


@dataclass(frozen=True)
class KeyInfo:
    name: str
    public_key: bytes
    has_private: bool
    counter: int
    active: bool

    @property
    def key_id(self) -> bytes:
        return signed.key_id(self.public_key)


class Keyring:
    def __init__(self, folder: str | Path | None = None):
        self.dir = Path(folder) if folder is not None else default_dir()

    # ---- paths --------------------------------------------------------------------------------------------
    def _path(self, name: str, ext: str) -> Path:
        if not NAME_RE.match(name):
            raise KeyringError(f"key name {name!r}: 1-32 of letters, digits, '_', '.', '-' (not first)")
        return self.dir / f"{name}.{ext}"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time (two enrollments signing at once must not take the same counter)."""
        self._ensure_dir()
        with open(self.dir / ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _ensure_dir(self) -> None:
        d = self.dir.resolve()
        if d == REPO_ROOT or REPO_ROOT in d.parents:
            raise KeyringError(f"keyring {self.dir} is inside the repository: keys never live there "
                               f"(default {default_dir()}, or set ${KEYS_ENV} / --keys to a folder outside it)")
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    # ---- reading ------------------------------------------------------------------------------------------
    def active_name(self) -> str | None:
        p = self.dir / "ACTIVE"
        return p.read_text().strip() if p.is_file() else None

    def public_key(self, name: str) -> bytes:
        p = self._path(name, "pub")
        if not p.is_file():
            raise KeyringError(f"no key {name!r} in {self.dir} (python -m host_tools.keys list)")
        try:
            raw = bytes.fromhex(p.read_text().strip())
        except ValueError:
            raw = b""
        if len(raw) != signed.PUBLIC_KEY_BYTES:
            raise KeyringError(f"{p}: not a public key (64 hex digits)")
        return raw

    def counter(self, name: str) -> int:
        p = self._path(name, "counter")
        if not p.is_file():
            return 0
        text = p.read_text().strip()
        if not text.isdigit() or int(text) > signed.COUNTER_MAX:
            raise KeyringError(f"{p}: counter {text!r} is not a number in 0..{signed.COUNTER_MAX}")
        return int(text)

    def keys(self) -> list[KeyInfo]:
        if not self.dir.is_dir():
            return []
        active = self.active_name()
        return [KeyInfo(p.stem, self.public_key(p.stem), self._path(p.stem, "key").is_file(), self.counter(p.stem),
                        p.stem == active) for p in sorted(self.dir.glob("*.pub"))]

    def trusted(self) -> dict[bytes, bytes]:
        """Key id → public key of every key the firmware should trust."""
        return {k.key_id: k.public_key for k in self.keys()}

    def private_key(self, name: str):
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        p = self._path(name, "key")
        if not p.is_file():
            raise KeyringError(f"no private key {p}: generate one (python -m host_tools.keys generate)")
        mode = stat.S_IMODE(p.stat().st_mode)
        if mode & 0o077:
            raise KeyringError(f"{p} has mode {mode:04o}: group or others may read it; chmod 600 it (and "
                               "consider the key exposed)")
        try:
            return load_pem_private_key(p.read_bytes(), password=None)
        except ValueError as e:
            raise KeyringError(f"{p}: not an unencrypted Ed25519 PEM key ({e})") from None

    def signing_key_name(self) -> str:
        name = self.active_name()
        if name is None:
            raise KeyringError(f"no active signing key in {self.dir}: python -m host_tools.keys generate")
        return name

    # ---- writing ------------------------------------------------------------------------------------------
    def generate(self, name: str, *, counter: int = 0, activate: bool | None = None) -> KeyInfo:
        """A new key pair; refuses to overwrite any file of ``name``. Becomes the active key when none is
        (or ``activate``)."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import (
            Encoding,
            NoEncryption,
            PrivateFormat,
            PublicFormat,
        )

        with self._locked():
            paths = [self._path(name, e) for e in ("key", "pub", "counter")]
            if any(p.exists() for p in paths):
                raise KeyringError(f"key {name!r} already exists in {self.dir}: choose another name "
                                   "(nothing was overwritten)")
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
            fd = os.open(paths[0], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # create-or-fail, 0600 from the start
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
                f.flush()
                os.fsync(f.fileno())
            pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            atomic_write_bytes(paths[1], (pub.hex() + "\n").encode())
            atomic_write_bytes(paths[2], f"{counter}\n".encode())
            if activate or (activate is None and self.active_name() is None):
                atomic_write_bytes(self.dir / "ACTIVE", (name + "\n").encode())
        return next(k for k in self.keys() if k.name == name)

    def trust(self, name: str, public_key: bytes) -> KeyInfo:
        """Trust another host's public key (a .pub without a private key)."""
        signed.key_id(public_key)  # checks the length
        with self._locked():
            p = self._path(name, "pub")
            if p.exists():
                raise KeyringError(f"key {name!r} already exists in {self.dir}")
            atomic_write_bytes(p, (public_key.hex() + "\n").encode())
        return next(k for k in self.keys() if k.name == name)

    def rotate(self, new_name: str) -> KeyInfo:
        """A new active key whose counter starts where the active one's is (boards keep refusing older θ);
        the old key stays trusted until retired."""
        old = self.signing_key_name()
        return self.generate(new_name, counter=self.counter(old), activate=True)

    def retire(self, name: str) -> Path:
        """Move a key out of the trusted set into retired/ (firmware emitted afterwards no longer trusts it)."""
        if name == self.active_name():
            raise KeyringError(f"{name!r} is the active key: rotate to a new one first")
        with self._locked():
            files = [p for p in (self._path(name, e) for e in ("key", "pub", "counter")) if p.exists()]
            if not files:
                raise KeyringError(f"no key {name!r} in {self.dir}")
            dest = self.dir / "retired"
            dest.mkdir(mode=0o700, exist_ok=True)
            for p in files:
                if (dest / p.name).exists():
                    raise KeyringError(f"{dest / p.name} exists: a retired key of that name is already there")
            for p in files:
                os.replace(p, dest / p.name)
        return dest

    def next_counter(self, name: str) -> int:
        """Take the key's next counter (persisted before it is returned: a crash never reuses one)."""
        with self._locked():
            n = self.counter(name) + 1
            if n > signed.COUNTER_MAX:
                raise KeyringError(f"key {name!r}: counter exhausted")
            atomic_write_bytes(self._path(name, "counter"), f"{n}\n".encode())
        return n

    def sign(self, blob: bytes, name: str | None = None) -> bytes:
        """The signed envelope of a θ blob, by ``name`` (default: the active key), with its next counter."""
        name = name or self.signing_key_name()
        key = self.private_key(name)
        return signed.seal(blob, self.next_counter(name), key)
