#!/usr/bin/env bash
# Runs a libFuzzer target for N inputs (default 1,000,000) and reports crashes.
#   firmware_templates/fuzz/run_fuzz.sh [N] [extra libFuzzer flags...]
#   PV_FUZZ_TARGET=blob run_fuzz.sh N  the θ blob parser + one inference per accepted blob (fuzz_blob.c;
#                                    seeds: real blobs from make_blob_seeds.py); default: frame
#   PV_FUZZ_BULK=0 run_fuzz.sh N    without bulk images (no whole inferences: much faster per input)
#   FUZZ_CORPUS=dir                  corpus folder (default build/corpus, build/blob_corpus)
# Seeds: a few well-formed requests (built by host_tools.serial_link) and, when codegen can make one,
# a real θ blob committed before every input (PV_FUZZ_BLOB) so INFER/BENCH reach the kernel.
# Exit code: 0 when libFuzzer found nothing, else libFuzzer's (crash inputs are saved in build/).
set -euo pipefail
cd "$(dirname "$0")"
N=${1:-1000000}
shift || true
ROOT=$(cd ../.. && pwd)
HERE=$PWD
PY=${PYTHON:-$ROOT/.venv/bin/python}
make -s
if [ "${PV_FUZZ_TARGET:-frame}" = blob ]; then
  (cd "$ROOT" && "$PY" firmware_templates/fuzz/make_blob_seeds.py "$HERE/build/blob_seeds")
  CORPUS=${FUZZ_CORPUS:-build/blob_corpus}
  mkdir -p "$CORPUS"
  export PV_FUZZ_BLOB=$PWD/build/base.bin
  echo "running: build/fuzz_blob -runs=$N -max_len=31000 -artifact_prefix=build/ $CORPUS build/blob_seeds $*"
  exec build/fuzz_blob -runs="$N" -max_len=31000 -artifact_prefix=build/ -print_final_stats=1 "$CORPUS" \
    build/blob_seeds "$@"
fi
CORPUS=${FUZZ_CORPUS:-build/corpus}
mkdir -p "$CORPUS" build/seeds
if [ -x "$PY" ]; then
  (cd "$ROOT" && "$PY" - "$HERE/build" <<'PYEOF'
import struct, sys
from pathlib import Path
from host_tools.serial_link import Cmd, encode_frame
out = Path(sys.argv[1])
reqs = [(Cmd.INFO, b""), (Cmd.PING, struct.pack("<H", 64) + b"x" * 10), (Cmd.COMMIT, b""),
        (Cmd.INFER, struct.pack("<II", 37632, 0) + bytes(64)), (Cmd.BENCH, struct.pack("<I", 1)),
        (Cmd.INFER_BULK, struct.pack("<II", 0, 1)), (Cmd.RESET, b"\x00"), (Cmd.LOAD_THETA, b"\0\0\0\0PVTB")]
for i, (c, p) in enumerate(reqs):
    (out / "seeds" / f"raw{i}").write_bytes(b"\x00" + encode_frame(c, i, p, leading_delimiter=True))
    (out / "seeds" / f"rec{i}").write_bytes(b"\x01" + struct.pack("<BBH", c, i, len(p)) + p)
try:
    import torch
    from pvcore.blob import pack_blob
    from codegen.quantize import quantize
    from pvcore.spec import F_SPEC
    qf = quantize(torch.randn(F_SPEC.theta_size, generator=torch.Generator().manual_seed(0)))
    from pvcore.test_key import sign  # the fuzz build trusts the test key (firmware_templates/test_keys)
    signed = sign(pack_blob(qf, "fuzz", 0.0))
    (out / "theta.bin").write_bytes(signed)
    p = struct.pack("<I", 0) + signed[:1024]  # the first chunk of a signed θ
    (out / "seeds" / "load_signed").write_bytes(b"\x00" + encode_frame(Cmd.LOAD_THETA, 9, p, leading_delimiter=True))
except Exception as e:  # the fuzzer still runs, without a committed θ
    print(f"no θ blob for the fuzzer: {e}", file=sys.stderr)
PYEOF
  )
fi
if [ -f build/theta.bin ]; then export PV_FUZZ_BLOB=$PWD/build/theta.bin; fi
echo "running: build/fuzz_frame -runs=$N -max_len=9000 -artifact_prefix=build/ $CORPUS build/seeds $*"
exec build/fuzz_frame -runs="$N" -max_len=9000 -artifact_prefix=build/ -print_final_stats=1 "$CORPUS" build/seeds "$@"
