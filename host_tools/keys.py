"""The enrollment host's θ-signing keys: generate, list, export, rotate, retire, trust, sign, provision.

A board installs only θ signed by a key its firmware trusts (docs/signing.md). The keyring is a folder
outside the repository (``--keys DIR``; default ``$PV_KEYS_DIR``, else ``~/.config/hyperverif-mcu/keys``):
private keys mode 0600, one counter per key. Provisioning: the trusted public keys are compiled into the
firmware — ``codegen.emit --target …`` writes ``pv_trusted_keys.h`` from the keyring into every project;
``header --out DIR`` writes it for a build by hand.

    python -m host_tools.keys generate [NAME]        a new key pair (the active key when none is)
    python -m host_tools.keys list                   the keys: id, active, counter, private key present
    python -m host_tools.keys export [NAME]          the public key (64 hex digits)
    python -m host_tools.keys rotate NEW             a new active key, counter carried over (old key stays trusted)
    python -m host_tools.keys retire OLD             stop trusting OLD (moved to retired/)
    python -m host_tools.keys trust NAME HEX         trust another host's public key
    python -m host_tools.keys sign BLOB --out FILE   sign a θ blob with the active key (next counter)
    python -m host_tools.keys header --out DIR       DIR/pv_trusted_keys.h for the firmware

Exit status: 0 done, 1 an error (missing key, wrong permissions, existing key, …), 2 wrong command line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pvcore.atomic import atomic_write_bytes
from pvcore.cli import fail
from pvcore.keys import Keyring, KeyringError

DEFAULT_NAME = "host"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m host_tools.keys", description=__doc__.split("\n\n")[0],
                                 epilog="The procedure (generate, provision, rotate, retire) and the threat model: "
                                        "docs/signing.md. Exit status: 0 ok, 1 error, 2 usage.")
    ap.add_argument("--keys", type=Path, metavar="DIR",
                    help="the keyring folder (default: $PV_KEYS_DIR or ~/.config/hyperverif-mcu/keys)")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    p = sub.add_parser("generate", help="a new Ed25519 key pair (refuses to overwrite); active when none is")
    p.add_argument("name", nargs="?", default=DEFAULT_NAME, help=f"key name (default {DEFAULT_NAME!r})")
    p.add_argument("--activate", action="store_true", help="make it the active (signing) key")
    sub.add_parser("list", help="every key: name, key id, active, counter, whether the private key is here")
    p = sub.add_parser("export", help="print a public key (64 hex digits): what another keyring trusts")
    p.add_argument("name", nargs="?", help="key name (default: the active key)")
    p = sub.add_parser("rotate", help="generate NEW as the active key, its counter continuing the old one's; "
                                      "the old key stays trusted until retired")
    p.add_argument("new", help="name of the new key")
    p = sub.add_parser("retire", help="stop trusting a key (files moved to retired/): firmware emitted "
                                      "afterwards no longer accepts θ it signed")
    p.add_argument("name")
    p = sub.add_parser("trust", help="trust another host's public key (no private key)")
    p.add_argument("name")
    p.add_argument("public_key", help="64 hex digits (that host's `keys export`)")
    p = sub.add_parser("sign", help="sign a θ blob with the active key and its next counter")
    p.add_argument("blob", type=Path, help="a θ blob (codegen.emit --format blob, or pvcore.blob)")
    p.add_argument("--out", type=Path, required=True, help="the signed θ to write")
    p = sub.add_parser("header", help="write pv_trusted_keys.h (every public key of the keyring) into DIR: "
                                      "the keys a firmware built with it trusts")
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    args = ap.parse_args(argv)
    ring = Keyring(args.keys)
    try:
        if args.cmd == "generate":
            k = ring.generate(args.name, activate=True if args.activate else None)
            print(f"generated {k.name} (key id {k.key_id.hex()}) in {ring.dir}"
                  + (" — the active key" if ring.active_name() == k.name else ""))
        elif args.cmd == "list":
            keys = ring.keys()
            if not keys:
                fail(f"no keys in {ring.dir}: python -m host_tools.keys generate")
            for k in keys:
                print(f"{k.name:20s} {k.key_id.hex()}  counter {k.counter:>10d}  "
                      f"{'private' if k.has_private else 'public only'}{'  ACTIVE' if k.active else ''}")
        elif args.cmd == "export":
            print(ring.public_key(args.name or ring.signing_key_name()).hex())
        elif args.cmd == "rotate":
            k = ring.rotate(args.new)
            print(f"{k.name} (key id {k.key_id.hex()}) is the active key, counter from {k.counter}; "
                  "emit and flash the firmware (it trusts both keys), re-sign every θ, then retire the old key")
        elif args.cmd == "retire":
            print(f"{args.name} retired into {ring.retire(args.name)}")
        elif args.cmd == "trust":
            try:
                pub = bytes.fromhex(args.public_key)
            except ValueError:
                fail(f"public key {args.public_key!r}: not hex", 2)
            k = ring.trust(args.name, pub)
            print(f"trusting {k.name} (key id {k.key_id.hex()})")
        elif args.cmd == "sign":
            from pvcore.blob import BlobError, unpack_header
            from pvcore.signed import is_signed

            try:
                data = args.blob.read_bytes()
            except OSError as e:
                fail(f"cannot read {args.blob}: {e.strerror or e}")
            if is_signed(data):
                fail(f"{args.blob} is signed already")
            try:
                unpack_header(data)
            except BlobError as e:
                fail(f"{args.blob}: {e}")
            env = ring.sign(data)
            atomic_write_bytes(args.out, env)
            print(f"{args.out}: signed by {ring.signing_key_name()}, counter {ring.counter(ring.signing_key_name())}")
        elif args.cmd == "header":
            from codegen.trusted_keys import HEADER_NAME, render_keyring

            text = render_keyring(ring)
            atomic_write_bytes(args.out / HEADER_NAME, text.encode())
            print(f"wrote {args.out / HEADER_NAME} ({len(ring.keys())} trusted key(s))")
    except KeyringError as e:
        fail(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
