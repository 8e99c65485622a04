"""Seeds of the blob fuzzer (fuzz_blob.c): real θ blobs from the golden quantizer — full int8 as the quantizer
makes it by default (format 4 where the spec's pool passes exact sums on; 2 for spec v5, whose "pool" is an
L2 normalization), int8 with every layer requantizing (2), 16x8 (3), and the shared-prefix base blob of
the default int8 one (layers [0, 8) only: no model, pv_blob_parse refuses it) — each behind the mode byte 0
(blob, CRC fixed up) and 1 (as is), mode 2 with no patch, and base.bin (the default int8 blob: mode 2's
starting point; not a shared-prefix base). One
more seed is the default int8 blob in a signed envelope (pvcore.signed) by a key no build trusts: a start for
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
from pvcore.blob import format_version, pack_blob
from pvcore.spec import F_SPEC


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="folder for the seeds (created)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    theta = torch.randn(F_SPEC.theta_size, generator=torch.Generator().manual_seed(0))
    qf = quantize(theta)
    int8 = f"int8_v{format_version(qf)}"
    blobs = {
        int8: pack_blob(qf, "fuzz", 0.0),
        f"{int8}_prefix_base": pack_blob(qf, "fuzz", 0.0, split=8),
        "int8_requant": pack_blob(quantize(theta, cfg=QuantConfig(exact_pool=False)), "fuzz", 0.5),
        "int16_v3": pack_blob(quantize(theta, cfg=QuantConfig(activations="int16")), "fuzz", -0.5),
    }
    for name, blob in blobs.items():
        (args.out / f"{name}_fixcrc").write_bytes(b"\x00" + blob)
        (args.out / f"{name}_asis").write_bytes(b"\x01" + blob)
    (args.out / "patches_none").write_bytes(b"\x02")
    untrusted = Ed25519PrivateKey.from_private_bytes(b"fuzz-seed-key-that-no-build-has!")
    (args.out / f"{int8}_signed_untrusted").write_bytes(b"\x01" + signed.seal(blobs[int8], 1, untrusted))
    (args.out.parent / "base.bin").write_bytes(blobs[int8])
    print(f"{len(blobs) * 2 + 2} seeds in {args.out}, base blob {args.out.parent / 'base.bin'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
