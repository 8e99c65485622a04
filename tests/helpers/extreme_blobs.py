"""θ blobs with one quantization parameter at an extreme: each bound of pvcore/qtheta.py at its limit and just
outside, with a valid CRC, made from a real blob (codegen's quantizer) by patching its bytes. For the
crafted-blob test (tests/firmware/test_extreme_blobs.py): the Python parser, the host simulator and QEMU
must give the same answer for each — all refuse, or all accept and give the golden model's logits."""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np

from pvcore.blob import (
    HEADER_OFFSETS,
    HEADER_SIZE,
    PAYLOAD_HEAD_OFFSETS,
    PAYLOAD_HEAD_SIZE,
    RECORD_OFFSETS,
    RECORD_SIZE,
)
from pvcore.qtheta import BIAS_LIMIT, INT32_MAX, INT32_MIN, MULT_MIN, l2norm_multiplier
from pvcore.spec import F_SPEC
from tests.helpers.blobs import recrc

FLT_MAX = float(np.finfo(np.float32).max)
LAYER = {la.name: i for i, la in enumerate(F_SPEC.layers)}


class Patch:
    """Writes fields of a full (first layer 0) blob in place."""

    def __init__(self, blob: bytes) -> None:
        self.b = bytearray(blob)

    def rec(self, layer: str) -> int:
        return HEADER_SIZE + PAYLOAD_HEAD_SIZE + LAYER[layer] * RECORD_SIZE

    def field(self, layer: str, name: str, fmt: str, value: float) -> None:
        struct.pack_into("<" + fmt, self.b, self.rec(layer) + RECORD_OFFSETS[name], value)

    def array(self, layer: str, off_field: str, n: int, fmt: str, values: object) -> None:
        off = HEADER_SIZE + struct.unpack_from("<I", self.b, self.rec(layer) + RECORD_OFFSETS[off_field])[0]
        vals = np.broadcast_to(np.asarray(values), (n,))
        struct.pack_into(f"<{n}{fmt}", self.b, off, *vals.tolist())

    def count(self, layer: str, name: str) -> int:
        return struct.unpack_from("<I", self.b, self.rec(layer) + RECORD_OFFSETS[name])[0]

    def mult(self, layer: str, m: int) -> None:
        self.array(layer, "off_mult", self.count(layer, "n_quant"), "i", m)

    def shift(self, layer: str, s: int) -> None:
        self.array(layer, "off_shift", self.count(layer, "n_quant"), "i", s)

    def bias(self, layer: str, b: object) -> None:
        self.array(layer, "off_bias", self.count(layer, "n_quant"), "i", b)

    def weights(self, layer: str, w: object) -> None:
        self.array(layer, "off_weights", self.count(layer, "n_weights"), "b", w)

    def out_params(self, layer: str, *, zp: int | None = None, scale: float | None = None) -> None:
        """A layer's output zero point / scale and, to keep the chain, the next layer's input (or the logit's)."""
        i = LAYER[layer]
        nxt = F_SPEC.layers[i + 1].name if i + 1 < len(F_SPEC.layers) else None
        if zp is not None:
            self.field(layer, "out_zp", "i", zp)
            if nxt:
                self.field(nxt, "in_zp", "i", zp)
            else:
                struct.pack_into("<i", self.b, HEADER_SIZE + PAYLOAD_HEAD_OFFSETS["logit_zp"], zp)
        if scale is not None:
            self.field(layer, "out_scale", "f", scale)
            if nxt:
                self.field(nxt, "in_scale", "f", scale)
            else:
                struct.pack_into("<f", self.b, HEADER_SIZE + PAYLOAD_HEAD_OFFSETS["logit_scale"], scale)

    def l2norm_mid(self, layer: str, factor: float) -> None:
        """A 16x8 L2 normalization's intermediate scale set to ``factor`` × its input scale, with the multiplier
        and shift that its int16 → int8 QUANTIZE then has (a consistent record: pvcore.qtheta.check_l2norm)."""
        in_scale = struct.unpack_from("<f", self.b, self.rec(layer) + RECORD_OFFSETS["in_scale"])[0]
        mid = float(np.float32(in_scale * factor))
        m, s = l2norm_multiplier(in_scale, mid)
        self.array(layer, "off_wscale", 1, "f", mid)
        self.mult(layer, m)
        self.shift(layer, s)

    def threshold(self, t: float) -> None:
        struct.pack_into("<f", self.b, HEADER_OFFSETS["threshold_logit"], t)

    def done(self) -> bytes:
        return recrc(self.b)


def _case(fn: Callable[[Patch], None]) -> Callable[[bytes], bytes]:
    def make(blob: bytes) -> bytes:
        p = Patch(blob)
        fn(p)
        return p.done()

    return make


def _all(p: Patch, m: int, s: int) -> None:
    """Every layer's multipliers and shifts but the pool's (an L2 normalization's is tied to its scales)."""
    for la in F_SPEC.layers:
        if la.kind not in ("avgpool", "l2norm"):
            p.mult(la.name, m)
            p.shift(la.name, s)


def cases_int8() -> dict[str, Callable[[bytes], bytes]]:
    """name → patch of a real int8 blob (spec v5: format 2, the pool an L2 normalization). Names say the field
    and value."""
    c: dict[str, Callable[[Patch], None]] = {}
    for layer in ("stem", "b4_mix", "fc1", "head"):
        c[f"{layer} mult 0 shift 0"] = lambda p, la=layer: (p.mult(la, 0), p.shift(la, 0))
        c[f"{layer} mult 2^31-1 shift 30"] = lambda p, la=layer: (p.mult(la, INT32_MAX), p.shift(la, 30))
        c[f"{layer} mult 2^31-1 shift 7"] = lambda p, la=layer: (p.mult(la, INT32_MAX), p.shift(la, 7))
        c[f"{layer} mult 2^30 shift -31"] = lambda p, la=layer: (p.mult(la, MULT_MIN), p.shift(la, -31))
    c["stem mult 0 shift -5"] = lambda p: (p.mult("stem", 0), p.shift("stem", -5))
    c["stem mult 2^30"] = lambda p: p.mult("stem", MULT_MIN)
    c["stem mult 2^30-1"] = lambda p: p.mult("stem", MULT_MIN - 1)
    c["stem mult 2^31-1"] = lambda p: p.mult("stem", INT32_MAX)
    c["stem mult -2^30"] = lambda p: p.mult("stem", -MULT_MIN)
    c["stem mult -2^31"] = lambda p: p.mult("stem", INT32_MIN)
    c["stem shift -30"] = lambda p: p.shift("stem", -30)
    c["stem shift -32"] = lambda p: p.shift("stem", -32)
    c["stem shift 7"] = lambda p: p.shift("stem", 7)
    c["stem shift 8"] = lambda p: p.shift("stem", 8)
    c["stem shift 30"] = lambda p: p.shift("stem", 30)
    c["stem shift 31"] = lambda p: p.shift("stem", 31)
    c["stem shift 32"] = lambda p: p.shift("stem", 32)
    c["every layer mult 2^31-1 shift 30"] = lambda p: _all(p, INT32_MAX, 30)
    c["every layer mult 2^31-1 shift 7"] = lambda p: _all(p, INT32_MAX, 7)
    c["every layer mult 2^30 shift -31"] = lambda p: _all(p, MULT_MIN, -31)
    # the L2 normalization (spec v5's pool): its record is fixed (the identity multiplier at its input's
    # scale, output 1/128 zp 0); what it computes reaches its extremes through gdc's outputs, its rows
    c["pool (l2norm) mult 2^31-1"] = lambda p: p.mult("pool", INT32_MAX)
    c["pool (l2norm) shift 0"] = lambda p: p.shift("pool", 0)
    c["pool (l2norm) weight scale 0.5"] = lambda p: p.array("pool", "off_wscale", 1, "f", 0.5)
    c["pool (l2norm) out zp 1"] = lambda p: p.out_params("pool", zp=1)
    c["pool (l2norm) out scale 1/64"] = lambda p: p.out_params("pool", scale=1 / 64)
    c["gdc mult 0 shift 0 (pool rows all zero)"] = lambda p: (p.mult("gdc", 0), p.shift("gdc", 0))
    c["gdc mult 2^31-1 shift 7 (pool rows saturated)"] = lambda p: (p.mult("gdc", INT32_MAX), p.shift("gdc", 7))
    c["gdc zp 127 mult 2^31-1 shift 7 (pool |x - zp| up to 255)"] = lambda p: (
        p.out_params("gdc", zp=127), p.mult("gdc", INT32_MAX), p.shift("gdc", 7))
    c["gdc zp -128 mult 2^31-1 shift 7"] = lambda p: (p.out_params("gdc", zp=-128), p.mult("gdc", INT32_MAX),
                                                       p.shift("gdc", 7))
    for layer in ("stem", "fc1"):
        c[f"{layer} bias +2^30"] = lambda p, la=layer: p.bias(la, BIAS_LIMIT)
        c[f"{layer} bias -2^30"] = lambda p, la=layer: p.bias(la, -BIAS_LIMIT)
        c[f"{layer} bias +(2^30+1)"] = lambda p, la=layer: p.bias(la, BIAS_LIMIT + 1)
        c[f"{layer} bias -(2^30+1)"] = lambda p, la=layer: p.bias(la, -BIAS_LIMIT - 1)
    c["stem bias -2^31"] = lambda p: p.bias("stem", INT32_MIN)
    c["stem bias +2^30 mult 2^31-1 shift 30"] = lambda p: (p.bias("stem", BIAS_LIMIT), p.mult("stem", INT32_MAX),
                                                           p.shift("stem", 30))
    c["stem weights +127"] = lambda p: p.weights("stem", 127)
    c["stem weights -127"] = lambda p: p.weights("stem", -127)
    c["stem weights -128"] = lambda p: p.weights("stem", -128)
    c["stem weight scale 0"] = lambda p: p.array("stem", "off_wscale", 24, "f", 0.0)
    c["stem weight scale NaN"] = lambda p: p.array("stem", "off_wscale", 24, "f", float("nan"))
    # zero points: a ReLU layer's clamp starts at its zero point (TFLM), so it moves with it
    c["stem zp 127 (act_min 127)"] = lambda p: (p.out_params("stem", zp=127), p.field("stem", "act_min", "i", 127))
    c["stem zp 127 (act_min -128)"] = lambda p: p.out_params("stem", zp=127)
    c["stem zp 128 (act_min 128)"] = lambda p: (p.out_params("stem", zp=128), p.field("stem", "act_min", "i", 128))
    c["stem zp -129 (act_min -128)"] = lambda p: p.out_params("stem", zp=-129)
    c["logit zp 127"] = lambda p: p.out_params("head", zp=127)
    c["logit zp -128"] = lambda p: p.out_params("head", zp=-128)
    c["logit zp 128"] = lambda p: p.out_params("head", zp=128)
    c["fc1 zp -128"] = lambda p: p.out_params("fc1", zp=-128)
    c["stem zp only, chain broken"] = lambda p: p.field("stem", "out_zp", "i", -127)
    c["stem act_min > act_max"] = lambda p: (p.field("stem", "act_min", "i", 100), p.field("stem", "act_max", "i", 0))
    c["stem act_max 126"] = lambda p: p.field("stem", "act_max", "i", 126)
    c["head act_min -127"] = lambda p: p.field("head", "act_min", "i", -127)
    c["head act_min -129"] = lambda p: p.field("head", "act_min", "i", -129)
    # scales (float only: dequantization and the threshold)
    c["stem out scale 0"] = lambda p: p.out_params("stem", scale=0.0)
    c["stem out scale -1"] = lambda p: p.out_params("stem", scale=-1.0)
    c["stem out scale inf"] = lambda p: p.out_params("stem", scale=float("inf"))
    c["stem out scale NaN"] = lambda p: p.out_params("stem", scale=float("nan"))
    c["stem out scale FLT_MAX"] = lambda p: p.out_params("stem", scale=FLT_MAX)
    c["stem out scale 1e-45 (denormal)"] = lambda p: p.out_params("stem", scale=1e-45)
    c["logit scale FLT_MAX"] = lambda p: p.out_params("head", scale=FLT_MAX)
    # the threshold
    for name, t in (("+inf", float("inf")), ("-inf", float("-inf")), ("NaN", float("nan")), ("+3e38", 3e38),
                    ("-3e38", -3e38), ("+FLT_MAX", FLT_MAX), ("-FLT_MAX", -FLT_MAX), ("+3.2e38", 3.2e38)):
        c[f"threshold {name}"] = lambda p, t=t: p.threshold(t)
    return {k: _case(v) for k, v in c.items()}


def cases_int16() -> dict[str, Callable[[bytes], bytes]]:
    """name → patch of a 16x8 blob (format 3): zero points must be 0, clamps the int16 ones."""
    c: dict[str, Callable[[Patch], None]] = {
        "16x8 every layer mult 2^31-1 shift 30": lambda p: _all(p, INT32_MAX, 30),
        "16x8 every layer mult 2^30 shift -31": lambda p: _all(p, MULT_MIN, -31),
        "16x8 stem bias +2^30 mult 2^31-1 shift 30": lambda p: (p.bias("stem", BIAS_LIMIT), p.mult("stem", INT32_MAX),
                                                                p.shift("stem", 30)),
        "16x8 fc1 bias -2^30": lambda p: p.bias("fc1", -BIAS_LIMIT),
        "16x8 stem weights -127": lambda p: p.weights("stem", -127),
        "16x8 stem weights -128": lambda p: p.weights("stem", -128),
        "16x8 stem zp 1": lambda p: p.out_params("stem", zp=1),
        "16x8 logit zp -1": lambda p: p.out_params("head", zp=-1),
        "16x8 head act_max 32768": lambda p: p.field("head", "act_max", "i", 32768),
        "16x8 stem act_min -32768 (ReLU: 0)": lambda p: p.field("stem", "act_min", "i", -32768),
        "16x8 pool shift 31": lambda p: p.shift("pool", 31),
        "16x8 pool mult 2^31-1 shift 30": lambda p: (p.mult("pool", INT32_MAX), p.shift("pool", 30)),
        # the L2 normalization: its int16 → int8 multiplier must be its two scales' (TFLM's QUANTIZE)
        "16x8 pool mult 2^31-1 shift 7": lambda p: (p.mult("pool", INT32_MAX), p.shift("pool", 7)),
        "16x8 pool mult 2^30 shift -31": lambda p: (p.mult("pool", MULT_MIN), p.shift("pool", -31)),
        "16x8 pool mid scale = in scale (mult 2^30 shift 1: rows saturated)": lambda p: p.l2norm_mid("pool", 1.0),
        "16x8 pool mid scale in/64 (mult 2^30 shift 7)": lambda p: p.l2norm_mid("pool", 1 / 64),
        "16x8 pool mid scale in/128 (mult 2^30 shift 8)": lambda p: p.l2norm_mid("pool", 1 / 128),
        "16x8 pool mid scale in*2^32 (mult 2^30 shift -31)": lambda p: p.l2norm_mid("pool", 2.0**32),
        "16x8 pool mid scale in*2^40 (mult 0 shift 0: rows all zero)": lambda p: p.l2norm_mid("pool", 2.0**40),
        "16x8 gdc mult 0 shift 0 (pool rows all zero)": lambda p: (p.mult("gdc", 0), p.shift("gdc", 0)),
        "16x8 gdc mult 2^31-1 shift 7 (pool rows saturated)": lambda p: (p.mult("gdc", INT32_MAX),
                                                                          p.shift("gdc", 7)),
        "16x8 threshold NaN": lambda p: p.threshold(float("nan")),
        "16x8 threshold -FLT_MAX": lambda p: p.threshold(-FLT_MAX),
    }
    return {k: _case(v) for k, v in c.items()}
