"""Seeds of the blob fuzzer (fuzz_blob.c): real θ blobs from the golden quantizer — full int8 with the exact
pool (format 4), int8 with a requantizing pool (2), 16x8 (3), and the shared-prefix base blob of the
format-4 one (layers [0, 8) only: no model, pv_blob_parse refuses it) — each behind the mode byte 0 (blob,
CRC fixed up) and 1 (as is), mode 2 with no patch, and base.bin (the format-4 blob: mode 2's starting
point; not a shared-prefix base). One
more seed is the format-4 blob in a signed envelope (pvcore.signed) by a key no build trusts: a start for
the envelope parser and the signature check (a seed signed by the trusted test key would make the
fuzzer's forgery check fire on its own input, so there is none).

    python firmware_templates/fuzz/make_blob_seeds.py OUT_DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from codegen.quantize import QuantConfig, quantize
from pvcore import signed
from pvcore.blob import pack_blob
from pvcore.spec import F_SPEC


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="folder for the seeds (created)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    theta = torch.randn(F_SPEC.theta_size, generator=torch.Generator().manual_seed(0))
    qf = quantize(theta)
    blobs = {
        "int8_v4": pack_blob(qf, "fuzz", 0.0),
        "int8_v4_prefix_base": pack_blob(qf, "fuzz", 0.0, split=8),
        "int8_v2": pack_blob(quantize(theta, cfg=QuantConfig(exact_pool=False)), "fuzz", 0.5),
        "int16_v3": pack_blob(quantize(theta, cfg=QuantConfig(activations="int16")), "fuzz", -0.5),
    }
    for name, blob in blobs.items():
        (args.out / f"{name}_fixcrc").write_bytes(b"\x00" + blob)
        (args.out / f"{name}_asis").write_bytes(b"\x01" + blob)
    (args.out / "patches_none").write_bytes(b"\x02")
    untrusted = Ed25519PrivateKey.from_private_bytes(b"fuzz-seed-key-that-no-build-has!")
    (args.out / "int8_v4_signed_untrusted").write_bytes(b"\x01" + signed.seal(blobs["int8_v4"], 1, untrusted))
    (args.out.parent / "base.bin").write_bytes(blobs["int8_v4"])
    print(f"{len(blobs) * 2 + 2} seeds in {args.out}, base blob {args.out.parent / 'base.bin'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
