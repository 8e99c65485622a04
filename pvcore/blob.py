"""The θ blob: one user's int8 f as bytes that the firmware's C kernel uses in place (no copies).

Header (64 bytes, FIXED — the firmware θ store is written against it; all little-endian)::

    off size field
    0   4    magic b"PVTB"
    4   2    u16 format_version = 4 (full int8 whose pool passes its exact sums on, the default), 2 (full
                 int8, every layer requantizes), 3 (16x8: int16 activations); one layout for all three
    6   2    u16 header_size = 64
    8   4    u32 total_size (header + payload + 4-byte CRC)
    12  8    arch_hash: the spec's 16 hex digits as 8 raw bytes
    20  32   user_id UTF-8, NUL-padded
    52  4    f32 threshold_logit (decision: dequantized logit >= threshold)
    56  4    u32 payload_size
    60  4    u32 prefix_id: a base blob: the id of its shared layers [0, split); a personal blob: the id
                 of the base it needs; 0 otherwise (see "Shared prefix" below)
    64  ...  payload
    end 4    u32 CRC-32 (zlib.crc32, IEEE) over bytes [0, total_size - 4)

Payload (offsets relative to the payload start, i.e. blob offset 64; every array starts on a 4-byte
boundary, so with the blob itself 4-byte aligned the kernel reads int32/f32 arrays in place)::

    0   u32 n_layers (= the spec's layer count)
    4   u32 record_size = 64
    8   f32 input_scale       12  i32 input_zp     (1/128 and 0: q = u - 128)
    16  f32 logit_scale       20  i32 logit_zp     (= the last layer's output params)
    24  u32 first_layer       (k > 0: a personal blob, the records of layers [k, n); else 0)
    28  u32 split             (s > 0: a base blob, the records of the shared layers [0, s) only; else 0)
    32  the layer records of 64 bytes, in spec order: one per layer of [first_layer, end), where end is
        split for a base blob and n_layers otherwise (a full blob: first_layer = split = 0, all n)
        0  u8  kind (1 conv, 2 avgpool, 3 dense, 4 l2norm: TFLM's L2_NORMALIZATION, spec v5)
        1  u8  flags (bit 0: fused ReLU, bit 1: per-channel weights, bit 2: exact sum — the pool
                      outputs Σ(x − in_zp) unrounded, as int16, for the dense layer after it; version 4)
        2  u16 n_out (output channels / features)
        4  u32 n_weights (int8 count; 0 for avgpool)
        8  u32 n_quant (number of w_scales/multipliers/shifts: n_out for conv and dense, 1 for the pool,
                        whose weights (all 1) and bias (0) are implicit: n_out = n_weights = 0; 1 for l2norm:
                        the requantization to its int8 intermediate, wscale = that scale, zero point 0 —
                        16x8: int16 → int8; int8: the identity, wscale = in_scale, multiplier 1)
        12 f32 in_scale     16 i32 in_zp     20 f32 out_scale    24 i32 out_zp
        28 i32 act_min      32 i32 act_max
        36 u32 off_weights  int8[n_weights]   conv OHWI, dense [out][in]
        40 u32 off_bias     int32[n_out]
        44 u32 off_mult     int32[n_quant]    Q31 multipliers (TFLM QuantizeMultiplier)
        48 u32 off_shift    int32[n_quant]    > 0: left shift (TFLM convention)
        52 u32 off_wscale   f32[n_quant]      weight scales (for dequantization / .tflite export)
        56 u32 reserved[2] = 0
        (offsets are 0 where the count is 0)
    then the arrays, layer by layer in the order weights, bias, mult, shift, wscale, each padded with
    zero bytes to a multiple of 4.

The payload size is fixed by the spec and the layers held (:func:`payload_size`); ``codegen.c_arch``
emits the full blob's as ``PV_PAYLOAD_BYTES`` / ``PV_BLOB_BYTES``.

Shared prefix (base + personal blobs)
-------------------------------------
With a hypernetwork that generates only f's last layers (``personal_from``, e.g. the shipped model:
pool, fc1 and head), the layers before them are the same for every user. A firmware then keeps them
ONCE, as a compiled-in **base blob**: the records and arrays of the shared layers [0, split) only
(first_layer 0, ``split`` the first personal layer; 27.6 KB for the shipped model, :func:`base_blob_size`),
its prefix quantized on the package faces only, so every user of the model gets the same int8 prefix.
Its head keeps the whole model's n_layers and logit params, but it is no runnable model: only
:func:`unpack_base` reads it (``unpack_blob`` refuses it, and so does the firmware's ``pv_blob_parse``;
``pv_blob_set_base`` takes it). Each user's θ store slot holds a **personal blob**: the records and
arrays of layers [split, n) only (2.9 KB instead of 30.5 KB), bound to the base by ``prefix_id`` — a
CRC-32 of the int8 prefix's arithmetic (:func:`prefix_id`), which the board compares and never
recomputes. Base blobs made before they held the prefix only (all n layers, the full blob's size) are
refused: emit them again. The format version stays: it names the layers' arithmetic (int8, 16x8), and
a base blob never travels alone — it is compiled into the firmware built with it. This is what fits the
whole firmware with both A/B slots in 64 KB of flash (docs/firmware.md, "The 64 KB build"; the format
itself: docs/theta_blob.md).
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from pvcore.qtheta import KIND_AVGPOOL, KIND_CONV, KIND_DENSE, KIND_L2NORM, QuantizedF, QuantLayer
from pvcore.spec import F_SPEC, ArchSpec, AvgPool, Conv, Dense, L2Norm

MAGIC = b"PVTB"
FORMAT_VERSION = 4  # 4: the pool's exact sums feed fc1 (FLAG_EXACT_SUM; QuantConfig.exact_pool, docs/theta_blob.md)
FORMAT_VERSION_REQUANT_POOL = 2  # 2: per-channel dense weights, the pool requantizes (one multiplier)
# 3: the same layout holding a 16x8 model (``QuantizedF.activations == "int16"``: int16 activations with
# zero point 0 and int16 clamps); firmware runs it with its 16x8 kernels (pv_*_s16.c), an int8-only firmware refuses it
FORMAT_VERSION_16X8 = 3
FORMAT_VERSIONS = {FORMAT_VERSION: "int8", FORMAT_VERSION_REQUANT_POOL: "int8", FORMAT_VERSION_16X8: "int16"}
HEADER_SIZE = 64
CRC_SIZE = 4
USER_ID_BYTES = 32
PAYLOAD_HEAD_SIZE = 32
RECORD_SIZE = 64
KIND_CODES = {KIND_CONV: 1, KIND_AVGPOOL: 2, KIND_DENSE: 3, KIND_L2NORM: 4}
KIND_NAMES = {v: k for k, v in KIND_CODES.items()}
FLAG_RELU, FLAG_PER_CHANNEL, FLAG_EXACT_SUM = 1, 2, 4
THRESHOLD_MAX = float(np.finfo(np.float32).max)  # |threshold_logit| bound: any finite float32

HEADER_STRUCT = struct.Struct("<4sHHI8s32sfII")  # ..., payload_size, prefix_id
_PAYLOAD_HEAD = struct.Struct("<IIfifiII")
_RECORD = struct.Struct("<BBHIIfifiiiIIIIIII")
assert HEADER_STRUCT.size == HEADER_SIZE and _PAYLOAD_HEAD.size == PAYLOAD_HEAD_SIZE and _RECORD.size == RECORD_SIZE
# The fields of the three records above, in order (codegen.c_shared gives the C parser their offsets).
HEADER_FIELDS = ("magic", "format_version", "header_size", "total_size", "arch_hash", "user_id", "threshold_logit",
                 "payload_size", "prefix_id")
PAYLOAD_HEAD_FIELDS = ("n_layers", "record_size", "input_scale", "input_zp", "logit_scale", "logit_zp",
                       "first_layer", "split")
RECORD_FIELDS = ("kind", "flags", "n_out", "n_weights", "n_quant", "in_scale", "in_zp", "out_scale", "out_zp",
                 "act_min", "act_max", "off_weights", "off_bias", "off_mult", "off_shift", "off_wscale", "reserved0",
                 "reserved1")


def _offsets(st: struct.Struct, names: tuple[str, ...]) -> dict[str, int]:
    """Byte offset of every named field of the little-endian record ``st`` (one struct code per field)."""
    codes = re.findall(r"\d*[a-zA-Z?]", st.format.lstrip("<"))
    assert len(codes) == len(names), (st.format, names)
    return {n: struct.calcsize("<" + "".join(codes[:k])) for k, n in enumerate(names)}


HEADER_OFFSETS = _offsets(HEADER_STRUCT, HEADER_FIELDS)
PAYLOAD_HEAD_OFFSETS = _offsets(_PAYLOAD_HEAD, PAYLOAD_HEAD_FIELDS)
RECORD_OFFSETS = _offsets(_RECORD, RECORD_FIELDS)


class BlobError(ValueError):
    """A θ blob that cannot be used; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class BlobHeader:
    format_version: int
    total_size: int
    arch_hash: str
    user_id: str
    threshold_logit: float
    payload_size: int
    prefix_id: int = 0


def _pad4(n: int) -> int:
    return (n + 3) & ~3


def _layer_counts(layer: object) -> tuple[int, int, int]:
    """(n_out, n_weights, n_quant) of a spec layer."""
    if isinstance(layer, Conv):
        return layer.out_ch, int(np.prod(layer.weight_shape)), layer.out_ch
    if isinstance(layer, Dense):
        return layer.out_features, layer.in_features * layer.out_features, layer.out_features
    if isinstance(layer, AvgPool | L2Norm):
        return 0, 0, 1
    raise TypeError(layer)


def payload_size(spec: ArchSpec = F_SPEC, first_layer: int = 0, end_layer: int | None = None) -> int:
    """Bytes of the payload holding ``spec``'s layers [first_layer, end_layer) (fixed by the architecture;
    end_layer None: to the last layer). Full blob: (0, None); personal: (split, None); base: (0, split)."""
    layers = spec.layers[first_layer:end_layer]
    n = PAYLOAD_HEAD_SIZE + RECORD_SIZE * len(layers)
    for layer in layers:
        n_out, n_w, n_q = _layer_counts(layer)
        n += _pad4(n_w) + 4 * n_out + 3 * 4 * n_q
    return n


def blob_size(spec: ArchSpec = F_SPEC, first_layer: int = 0, end_layer: int | None = None) -> int:
    """Bytes of the blob holding layers [first_layer, end_layer) (see :func:`payload_size`)."""
    return HEADER_SIZE + payload_size(spec, first_layer, end_layer) + CRC_SIZE


def base_blob_size(split: int, spec: ArchSpec = F_SPEC) -> int:
    """Bytes of the base blob of the shared layers [0, split)."""
    return blob_size(spec, 0, split)


def prefix_id(qf: QuantizedF, split: int) -> int:
    """The id of qf's int8 layers [0, split): CRC-32 over every number their arithmetic uses (never 0)."""
    if not 0 < split < len(qf.layers):
        raise BlobError(f"shared prefix split {split}: must be in 1..{len(qf.layers) - 1}")
    return _prefix_crc(qf.arch_hash, qf.layers[:split])


def _prefix_crc(arch_hash: str, layers: list[QuantLayer]) -> int:
    """:func:`prefix_id` of the shared layers ``layers`` (all of a base blob's)."""
    crc = zlib.crc32(arch_hash.encode())
    for q in layers:
        head = struct.pack("<8sBfifiii", q.name.encode()[:8], KIND_CODES[q.kind], q.in_scale, q.in_zp,
                           q.out_scale, q.out_zp, q.act_min, q.act_max)
        crc = zlib.crc32(head + (b"exact" if q.exact_sum else b""), crc)
        for a in (q.weights, q.bias, q.multiplier, q.shift, q.w_scales):
            if a is not None:
                crc = zlib.crc32(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<"), copy=False).tobytes(), crc)
    return (crc & 0xFFFFFFFF) or 1


def format_version(qf: QuantizedF) -> int:
    """The blob format version that ``qf`` needs (4 only when its pool passes exact sums on)."""
    if qf.activations == "int16":
        return FORMAT_VERSION_16X8
    return FORMAT_VERSION if any(q.exact_sum for q in qf.layers) else FORMAT_VERSION_REQUANT_POOL


def _encode_user_id(user_id: str) -> bytes:
    raw = user_id.encode("utf-8")
    if not raw or len(raw) > USER_ID_BYTES or b"\0" in raw:
        raise BlobError(
            f"user id {user_id!r} must be 1–{USER_ID_BYTES} bytes of UTF-8 without NUL "
            f"(it is {len(raw)} bytes): choose a shorter id"
        )
    return raw.ljust(USER_ID_BYTES, b"\0")


def pack_blob(qf: QuantizedF, user_id: str, threshold_logit: float, spec: ArchSpec = F_SPEC, *,
              split: int = 0, personal: bool = False) -> bytes:
    """The θ blob of one user: header, payload, CRC. ``split`` > 0: the base blob holding the shared
    layers [0, split) only (``personal=False``), or the personal blob with layers [split, n) only
    (``personal=True``); both carry :func:`prefix_id`."""
    qf.check(spec)
    if not abs(threshold_logit) <= THRESHOLD_MAX:  # NaN fails too
        raise BlobError(f"threshold_logit {threshold_logit} is not a finite float32")
    if personal and not split:
        raise BlobError("a personal blob needs the split (its first layer)")
    uid = _encode_user_id(user_id)
    pid = prefix_id(qf, split) if split else 0
    first, end = (split, len(qf.layers)) if personal else (0, split or len(qf.layers))
    records, data = [], bytearray()
    data_start = PAYLOAD_HEAD_SIZE + RECORD_SIZE * (end - first)

    def put(arr: np.ndarray | None) -> int:
        if arr is None or arr.size == 0:
            return 0
        off = data_start + len(data)
        raw = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        data.extend(raw + b"\0" * (_pad4(len(raw)) - len(raw)))
        return off

    for q, layer in list(zip(qf.layers, spec.layers))[first:end]:
        n_out, n_w, n_q = _layer_counts(layer)
        flags = ((FLAG_RELU if q.relu else 0) | (FLAG_PER_CHANNEL if q.per_channel else 0)
                 | (FLAG_EXACT_SUM if q.exact_sum else 0))
        offs = [put(q.weights), put(q.bias), put(q.multiplier), put(q.shift), put(q.w_scales)]
        records.append(
            _RECORD.pack(
                KIND_CODES[q.kind],
                flags,
                n_out,
                n_w,
                n_q,
                q.in_scale,
                q.in_zp,
                q.out_scale,
                q.out_zp,
                q.act_min,
                q.act_max,
                *offs,
                0,
                0,
            )
        )
    payload = (
        _PAYLOAD_HEAD.pack(
            len(qf.layers), RECORD_SIZE, qf.input_scale, qf.input_zp, qf.logit_scale, qf.logit_zp, first,
            0 if personal else split,
        )
        + b"".join(records)
        + bytes(data)
    )
    if len(payload) != payload_size(spec, first, end):
        raise AssertionError(f"payload {len(payload)} bytes, layout says {payload_size(spec, first, end)}")
    total = HEADER_SIZE + len(payload) + CRC_SIZE
    header = HEADER_STRUCT.pack(
        MAGIC,
        format_version(qf),
        HEADER_SIZE,
        total,
        bytes.fromhex(qf.arch_hash),
        uid,
        threshold_logit,
        len(payload),
        pid,
    )
    body = header + payload
    return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


def _bare(data: bytes) -> bytes:
    """The θ blob of a signed θ (pvcore.signed's envelope), or ``data`` itself."""
    from pvcore.signed import SignatureError, inner_blob

    try:
        return inner_blob(data)
    except SignatureError as e:
        raise BlobError(str(e)) from None


def unpack_header(blob: bytes, spec: ArchSpec = F_SPEC) -> BlobHeader:
    """Check the header and CRC of ``blob`` (not the payload); raise :class:`BlobError` naming the fault.
    A signed θ (pvcore.signed) is read as the blob inside it; its signature is not checked here."""
    blob = _bare(blob)
    if len(blob) < HEADER_SIZE + CRC_SIZE:
        raise BlobError(f"θ blob truncated: {len(blob)} bytes, a header alone is {HEADER_SIZE}")
    magic, version, hsize, total, arch, uid, thr, psize, pid = HEADER_STRUCT.unpack_from(blob)
    if magic != MAGIC:
        raise BlobError(f"bad magic {magic!r}: not a θ blob (expected {MAGIC!r})")
    if version not in FORMAT_VERSIONS:
        raise BlobError(
            f"θ blob format version {version}, this tool reads versions {sorted(FORMAT_VERSIONS)}: "
            "regenerate the blob with this toolchain"
        )
    if hsize != HEADER_SIZE:
        raise BlobError(f"θ blob header size {hsize}, expected {HEADER_SIZE}")
    if total > len(blob):
        raise BlobError(f"θ blob truncated: header says {total} bytes, got {len(blob)}")
    if total != HEADER_SIZE + psize + CRC_SIZE:
        raise BlobError(
            f"θ blob sizes inconsistent: total {total} != {HEADER_SIZE} + payload {psize} + {CRC_SIZE}"
        )
    want_crc = struct.unpack_from("<I", blob, total - CRC_SIZE)[0]
    got_crc = zlib.crc32(blob[: total - CRC_SIZE]) & 0xFFFFFFFF
    if want_crc != got_crc:
        raise BlobError(f"θ blob CRC mismatch: stored {want_crc:08x}, computed {got_crc:08x} (corrupted)")
    arch_hex = arch.hex()
    if arch_hex != spec.arch_hash():
        raise BlobError(
            f"θ blob arch hash {arch_hex} does not match this toolchain's {spec.name} "
            f"arch hash {spec.arch_hash()}: regenerate θ for this architecture"
        )
    if not abs(thr) <= THRESHOLD_MAX:
        raise BlobError(f"θ blob threshold_logit {thr} is not finite")
    try:
        user_id = uid.rstrip(b"\0").decode("utf-8")
    except UnicodeDecodeError as e:
        raise BlobError(f"θ blob user id is not UTF-8: {uid!r}") from e
    return BlobHeader(version, total, arch_hex, user_id, float(thr), psize, pid)


def blob_split(blob: bytes) -> tuple[int, int]:
    """(first_layer, split) of a blob whose header checked out: (0, 0) full, (0, k) base, (k, 0) personal."""
    first, split = struct.unpack_from("<II", _bare(blob), HEADER_SIZE + 24)
    return int(first), int(split)


@dataclass(frozen=True)
class _Payload:
    """A checked blob's payload head and the layers it holds, [first, end)."""

    header: BlobHeader
    input_scale: float
    input_zp: int
    logit_scale: float
    logit_zp: int
    first: int
    split: int
    layers: list[QuantLayer]


@dataclass(frozen=True)
class BaseBlob:
    """A base blob read back (:func:`unpack_base`): the shared int8 layers [0, split) of a model."""

    header: BlobHeader
    split: int
    layers: tuple[QuantLayer, ...]
    activations: str  # "int8" or "int16": every personal blob on this base has the same


def _read(blob: bytes, spec: ArchSpec) -> _Payload:
    """Check the header, the payload head and every record the blob holds; their QuantLayers."""
    header = unpack_header(blob, spec)
    payload = blob[HEADER_SIZE : HEADER_SIZE + header.payload_size]
    if header.payload_size < PAYLOAD_HEAD_SIZE:
        raise BlobError(f"θ blob payload is {header.payload_size} bytes, less than its {PAYLOAD_HEAD_SIZE}-byte head")
    n_layers, rec_size, in_scale, in_zp, logit_scale, logit_zp, first, split = _PAYLOAD_HEAD.unpack_from(payload)
    n = len(spec.layers)
    if first >= n or split >= n or (first and split):
        raise BlobError(f"θ blob first layer {first} / split {split}: {spec.name} has {n} layers, and a blob is "
                        "full (0 / 0), a base (0 / split) or personal (first / 0)")
    end = split or n
    if header.payload_size != payload_size(spec, first, end):
        if split and header.payload_size == payload_size(spec):
            raise BlobError(f"base θ blob in the old layout (all {n} layers; a base now holds its shared layers "
                            f"[0, {split}) only): emit it again with this toolchain")
        raise BlobError(
            f"θ blob payload is {header.payload_size} bytes, {spec.name}'s layers [{first}, {end}) need "
            f"{payload_size(spec, first, end)}"
        )
    if n_layers != n or rec_size != RECORD_SIZE:
        raise BlobError(
            f"θ blob has {n_layers} layers of {rec_size}-byte records, expected {n} of {RECORD_SIZE}"
        )
    if (first or split) and header.prefix_id == 0:
        raise BlobError(f"{'personal' if first else 'base'} θ blob without a prefix id")

    def arr(off: int, count: int, dtype: str, what: str) -> np.ndarray | None:
        if count == 0:
            return None
        nbytes = count * np.dtype(dtype).itemsize
        if off % 4 or off < PAYLOAD_HEAD_SIZE or off + nbytes > len(payload):
            raise BlobError(
                f"θ blob: {what} at offset {off} (+{nbytes} bytes) outside the payload or unaligned"
            )
        return np.frombuffer(payload, dtype, count, off).copy()

    layers = []
    for i, layer in list(enumerate(spec.layers))[first:end]:
        (
            kind,
            flags,
            n_out,
            n_w,
            n_q,
            li_scale,
            li_zp,
            lo_scale,
            lo_zp,
            act_min,
            act_max,
            o_w,
            o_b,
            o_m,
            o_s,
            o_ws,
            _a,
            _b,
        ) = _RECORD.unpack_from(payload, PAYLOAD_HEAD_SIZE + (i - first) * RECORD_SIZE)
        want = _layer_counts(layer)
        if KIND_NAMES.get(kind) != layer.kind or (n_out, n_w, n_q) != want:
            raise BlobError(
                f"θ blob layer {i} ({layer.name}): kind {kind} counts {(n_out, n_w, n_q)}, "
                f"expected {layer.kind} {want}"
            )
        q = QuantLayer(
            layer.name,
            layer.kind,
            bool(flags & FLAG_RELU),
            li_scale,
            li_zp,
            lo_scale,
            lo_zp,
            act_min,
            act_max,
            exact_sum=bool(flags & FLAG_EXACT_SUM),
        )
        if flags & ~(FLAG_RELU | FLAG_PER_CHANNEL | FLAG_EXACT_SUM) or (
                q.exact_sum and header.format_version != FORMAT_VERSION):
            raise BlobError(f"θ blob layer {i} ({layer.name}): flags {flags:#x} invalid for format version "
                            f"{header.format_version}")
        if n_w:
            w = arr(o_w, n_w, "<i1", f"{layer.name} weights")
            assert w is not None
            q.weights = w.reshape(
                (layer.out_ch, layer.kernel, layer.kernel, layer.in_ch // layer.groups)
                if isinstance(layer, Conv)
                else layer.weight_shape
            ).astype(np.int8)
            q.bias = arr(o_b, n_out, "<i4", f"{layer.name} bias").astype(np.int32)
        if n_q:
            q.multiplier = arr(o_m, n_q, "<i4", f"{layer.name} multipliers").astype(np.int32)
            q.shift = arr(o_s, n_q, "<i4", f"{layer.name} shifts").astype(np.int32)
            q.w_scales = arr(o_ws, n_q, "<f4", f"{layer.name} weight scales").astype(np.float32)
        layers.append(q)
    return _Payload(header, in_scale, in_zp, logit_scale, logit_zp, first, split, layers)


def unpack_base(blob: bytes, spec: ArchSpec = F_SPEC) -> BaseBlob:
    """Parse and check a base blob: its shared layers [0, split), their parameters and its prefix id.
    Anything else (a full or personal blob, a base in the old all-layers layout) raises BlobError."""
    blob = _bare(blob)
    p = _read(blob, spec)
    if p.first or not p.split:
        raise BlobError(f"not a base θ blob (first layer {p.first}, split {p.split}): a base holds the shared "
                        "layers [0, split) of a --shared-prefix model (pv_base_theta.h)")
    activations = FORMAT_VERSIONS[p.header.format_version]
    prefix = QuantizedF(p.header.arch_hash, spec.name, p.layers, p.logit_scale, p.logit_zp, p.input_scale,
                        p.input_zp, activations=activations)
    try:
        prefix.check(spec, end=p.split)
    except ValueError as e:
        raise BlobError(f"base θ blob parameters invalid: {e}") from e
    got = _prefix_crc(p.header.arch_hash, p.layers)
    if got != p.header.prefix_id:
        raise BlobError(f"base θ blob: prefix id {p.header.prefix_id:08x} is not its layers' {got:08x}")
    return BaseBlob(p.header, p.split, tuple(p.layers), activations)


def unpack_blob(blob: bytes, spec: ArchSpec = F_SPEC, base: bytes | None = None) -> tuple[BlobHeader, QuantizedF]:
    """Parse and check a full or personal θ blob; the QuantizedF is arithmetically identical to the packed
    one. A personal blob needs its ``base`` blob (whose shared layers it completes); a base blob alone is
    no model (BlobError; :func:`unpack_base` reads it)."""
    blob = _bare(blob)
    p = _read(blob, spec)
    header = p.header
    if p.split:
        raise BlobError(f"base θ blob (the shared layers [0, {p.split}) only): no runnable model — load a full "
                        "or personal θ blob; the base is compiled into the firmware (pv_base_theta.h)")
    base_layers: list[QuantLayer] = []
    if p.first:
        if base is None:
            raise BlobError(f"personal θ blob (layers {p.first}.. only): it needs the base blob of its model")
        b = unpack_base(base, spec)
        if b.split != p.first or b.header.prefix_id != header.prefix_id:
            raise BlobError(
                f"personal θ blob for shared prefix {header.prefix_id:08x} (layers < {p.first}), the base has "
                f"{b.header.prefix_id:08x} (layers < {b.split}): emit θ again for this firmware's model"
            )
        base_layers = list(b.layers)
    qf = QuantizedF(
        header.arch_hash,
        spec.name,
        base_layers + p.layers,
        logit_scale=p.logit_scale,
        logit_zp=p.logit_zp,
        input_scale=p.input_scale,
        input_zp=p.input_zp,
        activations=FORMAT_VERSIONS[header.format_version],
    )
    if base_layers and b.activations != qf.activations:
        raise BlobError(f"personal θ blob is {qf.activations}, its base {b.activations}: one type per model")
    try:
        qf.check(spec)
    except ValueError as e:
        raise BlobError(f"θ blob parameters invalid: {e}") from e
    return header, qf


def write_blob(path, qf: QuantizedF, user_id: str, threshold_logit: float, spec: ArchSpec = F_SPEC):
    """Pack and write atomically (temp file + rename)."""
    from pvcore.atomic import atomic_write_bytes

    return atomic_write_bytes(path, pack_blob(qf, user_id, threshold_logit, spec))
