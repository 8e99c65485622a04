"""Render ``pv_arch.h``: the C kernel's static configuration, derived from the architecture spec.

It holds the arch hash (the θ blob parser refuses any other), the layer table (shapes, kernel, stride,
groups, TF 'same' pads), the blob sizes and the arena each kernel needs, ``PV_KERNEL_ARENA_BYTES`` (int8)
and ``PV_KERNEL16_ARENA_BYTES`` (16x8). The arenas are computed here, once, from the layer table, by the
kernels' memory plans (CMSIS-NN style: a function of the shapes, not a guess):

- int8 (:func:`kernel_plan`): every layer overwrites its own input in place, its output starting the
  "lag" below its input that keeps every output row off input rows not yet read; after the activations
  comes one scratch region, the largest any layer needs (a conv: its ring of ``kernel`` input rows as
  int16, its weights as int16, its requantization words; the stem also its int8 input band).
- 16x8 (:func:`kernel16_arena_bytes`): the layers up to the first whose output is smaller than the stem's
  run row by row while the image streams in; buffer A holds the last of them whole, the layers after it
  ping-pong between A and B, and the stem band and the streamed layers' rings of ``kernel`` input rows
  share B's space. int16 values, 2 bytes each.

The C planner (firmware_templates/common/pv_plan.c) computes the same plans at run time for the offsets,
and its size queries ``pv_kernel_arena_size()`` / ``pv_kernel16_arena_size()`` are held equal to these
figures by tests/codegen/test_c_kernel.py; a kernel refuses to run in an arena smaller than its plan.

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
from pvcore.blob import KIND_CODES, blob_size, payload_size
from pvcore.paths import REPO_ROOT
from pvcore.spec import F_SPEC, ArchSpec, AvgPool, Conv, Dense, L2Norm, same_pads

log = logging.getLogger(__name__)

DEFAULT_OUT = REPO_ROOT / "firmware_templates" / "common" / "pv_arch.h"


def _row(spec: ArchSpec, i: int) -> dict[str, int]:
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
    elif isinstance(layer, L2Norm):
        row.update(n_quant=1)  # the requantization to its int8 intermediate (16x8; int8: the identity)
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
)


def layer_table(spec: ArchSpec = F_SPEC) -> list[dict[str, int]]:
    """The rows of pv_arch.h's layer table (pv_layer_desc_t), one per layer."""
    return [_row(spec, i) for i in range(len(spec.layers))]


# ---- the kernels' memory plans (mirrored by pv_plan.c, see the module docstring) ----------------------
def _align8(n: int) -> int:
    return (n + 7) & ~7


def _out_bytes(d: dict[str, int]) -> int:
    return d["out_h"] * d["out_w"] * d["out_c"]


def _rows_ready(d: dict[str, int], oy: int) -> int:
    """Input rows a conv has expanded (so no longer needs in the arena) before output row oy."""
    return min(max(oy * d["stride"] - d["pad_top"] + d["kernel"], 0), d["in_h"])


def _lag(d: dict[str, int]) -> int:
    if d["kind"] != KIND_CODES["conv"]:
        return 0  # the pool, the L2 normalization and the dense layers run in place
    r_out, r_in = d["out_w"] * d["out_c"], d["in_w"] * d["in_c"]
    lag = max([(oy + 1) * r_out - _rows_ready(d, oy) * r_in for oy in range(d["out_h"])] + [0])
    return (lag + 3) & ~3


def _rowrun(d: dict[str, int]) -> bool:
    """A conv whose kernel rows are contiguous word-aligned runs of its input rows (one group, no left pad)."""
    k, c = d["kernel"], d["in_c"]
    return (d["groups"] == 1 and d["pad_left"] == 0 and k * c % 4 == 0 and d["stride"] * c % 4 == 0
            and d["in_w"] * c % 4 == 0 and (d["out_w"] - 1) * d["stride"] + k <= d["in_w"])


def _scratch_bytes(d: dict[str, int], first: bool) -> int:
    if d["kind"] == KIND_CODES["conv"]:
        span = (d["out_w"] - 1) * d["stride"] + d["kernel"]
        row = d["in_w"] * d["in_c"] if _rowrun(d) else max(span, d["in_w"] + d["pad_left"]) * d["in_c"]
        depth = d["kernel"] * d["kernel"] * d["in_c"] // d["groups"]
        rq_words = (d["out_c"] + 3) // 4 * 16  # bias, multiplier, rounding, shift per block of 4 channels
        n = _align8(d["kernel"] * row * 2) + _align8(d["out_c"] * depth * 2) + rq_words * 4
        return n + (_align8(d["kernel"] * d["in_w"] * d["in_c"]) if first else 0)
    if d["kind"] == KIND_CODES["dense"]:
        return _align8(d["in_h"] * d["in_w"] * d["in_c"] * 2)
    if d["kind"] == KIND_CODES["l2norm"]:
        return 0  # in place, value by value: a second pass over the input recomputes what it needs
    return _align8(d["in_c"] * 2)  # the pool's lane sums


@dataclass(frozen=True)
class KernelPlan:
    out_offsets: tuple[int, ...]  # where each layer's output lives in the arena
    scratch: int  # where the scratch region starts
    total: int  # arena bytes


def kernel_plan(spec: ArchSpec = F_SPEC) -> KernelPlan:
    """The int8 kernel's in-place plan (see the module docstring)."""
    rows = layer_table(spec)
    off = sum(_lag(d) for d in rows[1:])
    offsets, act, scr = [], 0, 0
    for i, d in enumerate(rows):
        off -= _lag(d) if i > 0 else 0
        offsets.append(off)
        # the exact-sum pool writes int16 sums: twice its bytes
        act = max(act, off + _out_bytes(d) * (2 if d["kind"] == KIND_CODES["avgpool"] else 1))
        scr = max(scr, _scratch_bytes(d, i == 0))
    return KernelPlan(tuple(offsets), _align8(act), _align8(act) + scr)


def kernel_arena_bytes(spec: ArchSpec = F_SPEC) -> int:
    """PV_KERNEL_ARENA_BYTES: the int8 kernel's arena."""
    return kernel_plan(spec).total


def kernel16_arena_bytes(spec: ArchSpec = F_SPEC) -> int:
    """PV_KERNEL16_ARENA_BYTES: the 16x8 kernel's arena (see the module docstring)."""
    rows = layer_table(spec)
    sizes = [_out_bytes(d) for d in rows]  # values
    streamed = next(i + 1 for i in range(1, len(rows)) if sizes[i] < sizes[0])
    buf = max(sizes[streamed - 1 :])
    band_and_rings = sum(d["kernel"] * d["in_w"] * d["in_c"] for d in rows[:streamed])
    return 2 * (buf + max(buf, band_and_rings))


def render(spec: ArchSpec = F_SPEC) -> str:
    h = spec.arch_hash()
    hash_bytes = ", ".join(f"0x{b:02x}" for b in bytes.fromhex(h))
    rows = layer_table(spec)
    table = " \\\n".join(
        "    { " + ", ".join(f"{r[f]}u" for f in FIELDS) + " }," + f" /* {layer.name} */"
        for r, layer in zip(rows, spec.layers)
    )
    max_k = max(  # the conv layers' (a 16x8 conv keeps one block of its weights, 4 x depth int16, on the stack)
        (r["kernel"] * r["kernel"] * (r["in_c"] // r["groups"]) for r in rows if r["kind"] == 1), default=0
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
#define PV_MAX_DEPTH {max_k}u /* largest accumulation depth of a conv layer (kernel*kernel*in_c/groups) */
#define PV_MACS {sum(spec.macs())}u

/* Input-row streaming of the first layer (pv_stream_*): rows per band and bands per image. */
#define PV_STREAM_ROWS {stream_rows}u
#define PV_STREAM_BANDS {stream_bands}u
#define PV_STREAM_BAND_BYTES {stream_rows * iw * spec.input_ch}u

/* Arena bytes of the int8 and the 16x8 kernel's memory plans (codegen.c_arch; pv_plan.c computes the same
 * and each kernel refuses an arena smaller than its plan). Defined here unless the build overrides them. */
#ifndef PV_KERNEL_ARENA_BYTES
#define PV_KERNEL_ARENA_BYTES {kernel_arena_bytes(spec)}u
#endif
#ifndef PV_KERNEL16_ARENA_BYTES
#define PV_KERNEL16_ARENA_BYTES {kernel16_arena_bytes(spec)}u
#endif

/* θ blob (pvcore/blob.py): sizes for this architecture (the format itself: pv_blob_format.h). */
#define PV_PAYLOAD_BYTES {payload_size(spec)}u
#define PV_BLOB_BYTES {blob_size(spec)}u

#define PV_KIND_CONV {KIND_CODES["conv"]}u
#define PV_KIND_AVGPOOL {KIND_CODES["avgpool"]}u
#define PV_KIND_DENSE {KIND_CODES["dense"]}u
#define PV_KIND_L2NORM {KIND_CODES["l2norm"]}u /* TFLite's L2_NORMALIZATION over the channels (int8 out, 1/128) */
/* Which of the operators without weights the layer table holds: the kernel front calls only these (the
 * linker drops the others' kernels, flash the 64 KiB build needs) and the planner refuses a table with any
 * other. */
#define PV_ARCH_HAS_AVGPOOL {int(any(r["kind"] == KIND_CODES["avgpool"] for r in rows))}u
#define PV_ARCH_HAS_L2NORM {int(any(r["kind"] == KIND_CODES["l2norm"] for r in rows))}u

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
    print(
        f"wrote {args.out}: arch {F_SPEC.name} {F_SPEC.arch_hash()}, arenas {kernel_arena_bytes()} B (int8) "
        f"and {kernel16_arena_bytes()} B (16x8), blob {blob_size()} B"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
