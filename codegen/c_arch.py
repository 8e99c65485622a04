"""Render ``pv_arch.h``: the C kernel's static configuration, derived from the architecture spec.

It holds the arch hash (the θ blob parser refuses any other), the layer table (shapes, kernel, stride,
groups, TF 'same' pads, arena offsets), the blob sizes and ``PV_ARENA_BYTES``. The arena size is
computed by :func:`arena_plan` (CMSIS-NN style: a function of the shapes, not a guess): activations
ping-pong between the two ends of one buffer — layer i writes its output at offset 0 when i is even and
flush with the end when i is odd, so its input (the previous output) sits at the other end. The arena
is therefore ``max_i(in_i + out_i)`` (each rounded up to 4 bytes), with the first layer reading the
caller's image directly.

``python -m codegen.c_arch`` rewrites ``firmware_templates/common/pv_arch.h``; ``--check`` exits 1 when
the file on disk differs from what the spec gives (CI's guard against a stale header).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from pvcore.atomic import atomic_write_bytes
from pvcore.blob import FORMAT_VERSION, HEADER_SIZE, KIND_CODES, blob_size, payload_size
from pvcore.paths import REPO_ROOT
from pvcore.spec import F_SPEC, ArchSpec, AvgPool, Conv, Dense, same_pads

log = logging.getLogger(__name__)

DEFAULT_OUT = REPO_ROOT / "firmware_templates" / "common" / "pv_arch.h"


def _pad4(n: int) -> int:
    return (n + 3) & ~3


@dataclass(frozen=True)
class ArenaPlan:
    size: int  # bytes
    out_offsets: tuple[int, ...]  # where each layer writes its output
    in_offsets: tuple[int | None, ...]  # where each layer reads its input (None: the caller's image)
    out_bytes: tuple[int, ...]


def arena_plan(spec: ArchSpec = F_SPEC) -> ArenaPlan:
    """Ping-pong placement of every layer's int8 output in one arena (see the module docstring)."""
    outs = [math.prod(s) for s in spec.shapes[1:]]
    size = 0
    for i, n in enumerate(outs):
        size = max(size, _pad4(n) + (_pad4(outs[i - 1]) if i > 0 else 0))
    out_offsets = tuple(0 if i % 2 == 0 else (size - n) & ~3 for i, n in enumerate(outs))
    in_offsets = (None, *out_offsets[:-1])
    for i in range(1, len(outs)):  # the plan's invariant: a layer's input and output never overlap
        a, b = sorted([(in_offsets[i], outs[i - 1]), (out_offsets[i], outs[i])])
        assert a[0] + a[1] <= b[0], f"arena overlap at layer {i}"
    return ArenaPlan(size, out_offsets, in_offsets, tuple(outs))


def _row(spec: ArchSpec, i: int, plan: ArenaPlan) -> dict[str, int]:
    layer = spec.layers[i]
    ih, iw, ic = spec.shapes[i]
    oh, ow, oc = spec.shapes[i + 1]
    row = dict(
        kind=KIND_CODES[layer.kind],
        relu=int(bool(getattr(layer, "relu", False))),
        in_h=ih,
        in_w=iw,
        in_c=ic,
        out_h=oh,
        out_w=ow,
        out_c=oc,
        kernel=1,
        stride=1,
        groups=1,
        pad_top=0,
        pad_left=0,
        n_weights=0,
        n_quant=0,
        out_offset=plan.out_offsets[i],
    )
    if isinstance(layer, Conv):
        pt = same_pads(ih, layer.kernel, layer.stride)[0] if layer.padding == "same" else 0
        pl = same_pads(iw, layer.kernel, layer.stride)[0] if layer.padding == "same" else 0
        row.update(
            kernel=layer.kernel,
            stride=layer.stride,
            groups=layer.groups,
            pad_top=pt,
            pad_left=pl,
            n_weights=math.prod(layer.weight_shape),
            n_quant=layer.out_ch,
        )
    elif isinstance(layer, AvgPool):
        row.update(kernel=layer.kernel, stride=layer.kernel, n_quant=1)  # weights 1 and bias 0 implicit
    elif isinstance(layer, Dense):
        row.update(in_h=1, in_w=1, in_c=layer.in_features, n_weights=math.prod(layer.weight_shape),
                   n_quant=layer.out_features)
    return row


def streaming(spec: ArchSpec = F_SPEC) -> tuple[int, int]:
    """(rows per band, bands) when the first layer is a conv whose output row i reads exactly input rows
    [i·k, i·k + k) (stride = kernel, no vertical padding, exact tiling); (0, 0) otherwise."""
    first = spec.layers[0]
    ih = spec.input_hw[0]
    if (
        isinstance(first, Conv)
        and first.stride == first.kernel
        and ih % first.kernel == 0
        and (first.padding == "valid" or same_pads(ih, first.kernel, first.stride)[0] == 0)
    ):
        return first.kernel, ih // first.kernel
    return 0, 0


FIELDS = (
    "kind",
    "relu",
    "in_h",
    "in_w",
    "in_c",
    "out_h",
    "out_w",
    "out_c",
    "kernel",
    "stride",
    "groups",
    "pad_top",
    "pad_left",
    "n_weights",
    "n_quant",
    "out_offset",
)


def render(spec: ArchSpec = F_SPEC) -> str:
    plan = arena_plan(spec)
    h = spec.arch_hash()
    hash_bytes = ", ".join(f"0x{b:02x}" for b in bytes.fromhex(h))
    rows = [_row(spec, i, plan) for i in range(len(spec.layers))]
    table = " \\\n".join(
        "    { " + ", ".join(f"{r[f]}u" for f in FIELDS) + " }," + f" /* {layer.name} */"
        for r, layer in zip(rows, spec.layers)
    )
    max_k = max(
        (r["kernel"] * r["kernel"] * (r["in_c"] // r["groups"]) for r in rows if r["kind"] != 2), default=0
    )
    ih, iw = spec.input_hw
    stream_rows, stream_bands = streaming(spec)
    struct_fields = "\n".join(f"    uint32_t {f};" for f in FIELDS)
    return f"""/* GENERATED by `python -m codegen.c_arch` from the architecture spec {spec.name}
 * (pvcore/spec.py). Do not edit: change the spec and regenerate. */
#ifndef PV_ARCH_H
#define PV_ARCH_H

#include <stdint.h>

#define PV_ARCH_NAME "{spec.name}"
#define PV_ARCH_HASH_HEX "{h}"
#define PV_ARCH_HASH {{ {hash_bytes} }} /* the 8 raw bytes of a θ blob header, offset 12 */

#define PV_INPUT_H {ih}u
#define PV_INPUT_W {iw}u
#define PV_INPUT_C {spec.input_ch}u
#define PV_INPUT_BYTES {ih * iw * spec.input_ch}u

#define PV_N_LAYERS {len(spec.layers)}u
#define PV_MAX_DEPTH {max_k}u /* largest accumulation depth (kernel*kernel*in_c/groups) */
#define PV_MACS {sum(spec.macs())}u

/* Input-row streaming of the first layer (pv_stream_*): rows per band and bands per image. */
#define PV_STREAM_ROWS {stream_rows}u
#define PV_STREAM_BANDS {stream_bands}u
#define PV_STREAM_BAND_BYTES {stream_rows * iw * spec.input_ch}u

/* Ping-pong activation arena (codegen.c_arch.arena_plan): max over layers of in + out bytes. */
#define PV_ARENA_BYTES {plan.size}u

/* θ blob (pvcore/blob.py): fixed sizes for this architecture. */
#define PV_BLOB_FORMAT_VERSION {FORMAT_VERSION}u
#define PV_BLOB_HEADER_BYTES {HEADER_SIZE}u
#define PV_PAYLOAD_BYTES {payload_size(spec)}u
#define PV_BLOB_BYTES {blob_size(spec)}u

#define PV_KIND_CONV {KIND_CODES["conv"]}u
#define PV_KIND_AVGPOOL {KIND_CODES["avgpool"]}u
#define PV_KIND_DENSE {KIND_CODES["dense"]}u

typedef struct pv_layer_desc {{
{struct_fields}
}} pv_layer_desc_t;

/* One row per layer, in the order of pv_layer_desc_t. Dense layers: in = 1x1xin_features. */
#define PV_ARCH_LAYER_TABLE {{ \\
{table} \\
}}

#endif /* PV_ARCH_H */
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m codegen.c_arch",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"header to write (default {DEFAULT_OUT})")
    ap.add_argument("--check", action="store_true", help="do not write; exit 1 if the file is stale")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        if not args.out.exists() or args.out.read_text() != text:
            print(f"{args.out} is stale or missing: run `python -m codegen.c_arch`", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date (arch hash {F_SPEC.arch_hash()})")
        return 0
    atomic_write_bytes(args.out, text.encode())
    plan = arena_plan()
    print(
        f"wrote {args.out}: arch {F_SPEC.name} {F_SPEC.arch_hash()}, arena {plan.size} B, "
        f"blob {blob_size()} B"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
