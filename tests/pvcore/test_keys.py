"""The host's signing keys (pvcore.keys, python -m host_tools.keys) and the signed θ (pvcore.signed): keys
0600 and never overwritten, outside the repository, counters that only rise (atomic, one taker at a time),
rotation that carries the counter over, and envelopes that verify only untouched and under a trusted key."""

from __future__ import annotations

import stat
import struct
import threading
import zlib
from pathlib import Path

import pytest

from codegen.trusted_keys import TEST_KEYS_HEADER, render
from host_tools.keys import main as keys_cli
from pvcore import signed, test_key
from pvcore.blob import FORMAT_VERSION, HEADER_SIZE, HEADER_STRUCT, MAGIC, blob_size
from pvcore.cli import EXIT_ERROR, EXIT_USAGE
from pvcore.keys import Keyring, KeyringError
from pvcore.paths import REPO_ROOT
from pvcore.spec import F_SPEC


def _blob() -> bytes:
    """A θ blob whose header and CRC check out (its payload is zeros: enough to sign, not to run)."""
    n = blob_size(first_layer=8)
    head = HEADER_STRUCT.pack(MAGIC, FORMAT_VERSION, HEADER_SIZE, n, bytes.fromhex(F_SPEC.arch_hash()),
                              b"alice".ljust(32, b"\0"), 0.5, n - HEADER_SIZE - 4, 0)
    body = head + bytes(n - HEADER_SIZE - 4)
    return body + struct.pack("<I", zlib.crc32(body))


def test_generate_is_0600_refuses_overwrite_and_lists(tmp_path: Path) -> None:
    ring = Keyring(tmp_path / "keys")
    k = ring.generate("host")
    assert k.active and k.counter == 0 and k.has_private
    assert stat.S_IMODE((ring.dir / "host.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(ring.dir.stat().st_mode) == 0o700
    before = (ring.dir / "host.key").read_bytes()
    with pytest.raises(KeyringError, match="already exists.*nothing was overwritten"):
        ring.generate("host")
    assert (ring.dir / "host.key").read_bytes() == before
    assert [(x.name, x.active) for x in ring.keys()] == [("host", True)]


def test_wrong_permissions_missing_key_and_repo_folder_are_refused(tmp_path: Path) -> None:
    ring = Keyring(tmp_path / "keys")
    with pytest.raises(KeyringError, match="no active signing key"):
        ring.sign(_blob())
    ring.generate("host")
    (ring.dir / "host.key").chmod(0o644)
    with pytest.raises(KeyringError, match="mode 0644.*chmod 600"):
        ring.sign(_blob())
    with pytest.raises(KeyringError, match="inside the repository"):
        Keyring(REPO_ROOT / "runs" / "keys").generate("host")
    assert not (REPO_ROOT / "runs" / "keys").exists()
    with pytest.raises(KeyringError, match="key name"):
        ring.generate("../evil")


def test_counter_rises_and_survives_concurrent_signers(tmp_path: Path) -> None:
    ring = Keyring(tmp_path / "keys")
    ring.generate("host")
    got: list[int] = []

    def take() -> None:
        for _ in range(20):
            got.append(Keyring(ring.dir).next_counter("host"))

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(1, 81))  # every counter taken once, none lost
    assert ring.counter("host") == 80 and (ring.dir / "host.counter").read_text() == "80\n"
    env = ring.sign(_blob())
    assert signed.verify(env, ring.trusted()).counter == 81


def test_rotation_carries_the_counter_and_retire_drops_the_key(tmp_path: Path) -> None:
    ring = Keyring(tmp_path / "keys")
    old = ring.generate("old")
    for _ in range(5):
        ring.next_counter("old")
    old_env = ring.sign(_blob())
    new = ring.rotate("new")
    assert ring.active_name() == "new" and new.counter == 6  # a board that saw counter 6 takes the next θ
    new_env = ring.sign(_blob())
    assert signed.parse(new_env).counter == 7 and signed.parse(new_env).key_id == new.key_id
    assert set(ring.trusted()) == {old.key_id, new.key_id}  # during the rotation both are trusted
    with pytest.raises(KeyringError, match="active key"):
        ring.retire("new")
    ring.retire("old")
    assert set(ring.trusted()) == {new.key_id} and (ring.dir / "retired" / "old.key").is_file()
    with pytest.raises(signed.SignatureError, match="not trusted"):
        signed.verify(old_env, ring.trusted())
    signed.verify(new_env, ring.trusted())


def test_envelope_refuses_tampering_untrusted_keys_and_bare_blobs() -> None:
    trusted = {signed.key_id(test_key.public_key()): test_key.public_key()}
    env = test_key.sign(_blob(), counter=7)
    e = signed.verify(env, trusted)
    assert (e.counter, e.blob, len(env)) == (7, _blob(), len(_blob()) + signed.SIGNED_OVERHEAD)
    for off in (12, 20, signed.SIGNED_HEADER_SIZE + HEADER_SIZE - 12, len(env) - 1):  # counter, id, threshold, sig
        bad = bytearray(env)
        bad[off] ^= 1
        with pytest.raises(signed.SignatureError):
            signed.verify(bytes(bad), trusted)
    with pytest.raises(signed.SignatureError, match="unsigned"):
        signed.verify(_blob(), trusted)
    with pytest.raises(signed.SignatureError, match="not trusted"):
        signed.verify(env, {})
    bad = bytearray(env)
    struct.pack_into("<I", bad, 8, len(env) + 4)
    with pytest.raises(signed.SignatureError, match="sizes inconsistent"):
        signed.parse(bytes(bad))


def test_the_template_builds_trust_the_test_key() -> None:
    """firmware_templates/test_keys/pv_trusted_keys.h is the test key's header, as codegen renders it."""
    want = render([(test_key.NAME, test_key.public_key())],
                  "pvcore/test_key.py (the TEST key: never ship a build that trusts it)")
    assert TEST_KEYS_HEADER.read_text() == want


def test_cli(tmp_path: Path, capsys) -> None:
    d = str(tmp_path / "keys")
    assert keys_cli(["--keys", d, "generate"]) == 0
    with pytest.raises(SystemExit) as ei:
        keys_cli(["--keys", d, "generate"])
    assert ei.value.code == EXIT_ERROR and "already exists" in capsys.readouterr().err
    assert keys_cli(["--keys", d, "export"]) == 0
    pub = capsys.readouterr().out.strip()
    assert bytes.fromhex(pub) == Keyring(d).public_key("host")
    assert keys_cli(["--keys", d, "rotate", "host2"]) == 0
    assert keys_cli(["--keys", d, "trust", "other", test_key.public_key().hex()]) == 0
    capsys.readouterr()
    assert keys_cli(["--keys", d, "list"]) == 0
    out = capsys.readouterr().out
    assert "host2" in out and "ACTIVE" in out and "public only" in out
    (tmp_path / "b.bin").write_bytes(_blob())
    assert keys_cli(["--keys", d, "sign", str(tmp_path / "b.bin"), "--out", str(tmp_path / "s.bin")]) == 0
    assert signed.verify((tmp_path / "s.bin").read_bytes(), Keyring(d).trusted()).counter == 1
    assert keys_cli(["--keys", d, "header", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "pv_trusted_keys.h").read_text().count("#define PV_TRUSTED_KEY_COUNT 3u") == 1
    assert keys_cli(["--keys", d, "retire", "host"]) == 0
    with pytest.raises(SystemExit) as ei:
        keys_cli(["--keys", d, "sign", str(tmp_path / "s.bin"), "--out", str(tmp_path / "t.bin")])
    assert ei.value.code == EXIT_ERROR and "signed already" in capsys.readouterr().err
    with pytest.raises(SystemExit) as ei:
        keys_cli(["--keys", d, "nonsense"])
    assert ei.value.code == EXIT_USAGE
    with pytest.raises(SystemExit) as ei:
        keys_cli(["--help"])
    assert ei.value.code == 0
