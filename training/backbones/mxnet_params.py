"""Read MXNet ``.params`` files (the serialised NDArray list) with numpy only — no MXNet needed.

Byte layout, all little-endian, as written by ``NDArray::Save`` in apache/mxnet
``src/ndarray/ndarray.cc`` (dmlc streams write a vector as a uint64 count, then its items):

    uint64  list magic 0x112 (kMXAPINDArrayListMagic)
    uint64  reserved (0)
    uint64  number of arrays, then each NDArray:
        uint32  magic: V2 0xF993FAC9 (with storage type) or V3 0xF993FACA (numpy shape semantics);
                older files: V1 0xF993FAC8 (no storage type) or, oldest, no magic at all
        int32   storage type (V2/V3 only): 0 dense, 1 row_sparse, 2 csr — only dense is supported
        shape   uint32/int32 ndim, then ndim int64 dims (V1–V3); oldest format: uint32 dims
                (V2: ndim 0 means an empty "none" array; V3: ndim -1 or a dim of -1 means unknown)
        int32   dev_type, int32 dev_id (the context it was saved from; ignored)
        int32   type flag (mshadow: 0 float32, 1 float64, 2 float16, 3 uint8, 4 int32, 5 int8, 6 int64,
                7 bool, 8 int16, 9 uint16, 10 uint32, 11 uint64)
        bytes   prod(shape) * itemsize raw C-order data
    uint64  number of names, then each name: uint64 length + UTF-8 bytes ("arg:<name>" / "aux:<name>")
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

LIST_MAGIC = 0x112
NDARRAY_V1_MAGIC = 0xF993FAC8
NDARRAY_V2_MAGIC = 0xF993FAC9
NDARRAY_V3_MAGIC = 0xF993FACA

_DTYPES = {
    0: np.float32,
    1: np.float64,
    2: np.float16,
    3: np.uint8,
    4: np.int32,
    5: np.int8,
    6: np.int64,
    7: np.bool_,
    8: np.int16,
    9: np.uint16,
    10: np.uint32,
    11: np.uint64,
}
_STORAGE_NAMES = {0: "default", 1: "row_sparse", 2: "csr"}
_MAX_NDIM = 32  # sanity bound; MXNet's own limit is far below this


class MXNetParamsError(ValueError):
    """The bytes are not a (supported) MXNet NDArray list."""


class _Reader:
    def __init__(self, data: bytes, source: str):
        self.data = data
        self.pos = 0
        self.source = source

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise MXNetParamsError(
                f"{self.source}: truncated file — needed {n} bytes for {what} at offset {self.pos}, "
                f"only {len(self.data) - self.pos} left (file size {len(self.data)})"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str, what: str):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))

    def u64(self, what: str) -> int:
        return self.unpack("Q", what)[0]


def _read_shape(r: _Reader, signed_ndim: bool, dim_fmt: str, what: str) -> tuple[int, ...] | None:
    """Returns the shape, or None for an unknown shape (V3 ndim -1)."""
    (ndim,) = r.unpack("i" if signed_ndim else "I", f"{what} ndim")
    if ndim == -1 and signed_ndim:
        return None
    if not 0 <= ndim <= _MAX_NDIM:
        raise MXNetParamsError(f"{r.source}: implausible ndim {ndim} for {what} at offset {r.pos - 4}")
    return tuple(r.unpack(dim_fmt * ndim, f"{what} dims")) if ndim else ()


def _read_ndarray(r: _Reader, index: int) -> np.ndarray:
    what = f"array #{index}"
    start = r.pos
    (magic,) = r.unpack("I", f"{what} magic")
    if magic in (NDARRAY_V2_MAGIC, NDARRAY_V3_MAGIC):
        (stype,) = r.unpack("i", f"{what} storage type")
        if stype != 0:
            raise MXNetParamsError(
                f"{r.source}: {what} has storage type {stype} ({_STORAGE_NAMES.get(stype, 'unknown')}); "
                "only dense (default) arrays are supported"
            )
        shape = _read_shape(r, signed_ndim=True, dim_fmt="q", what=what)
        v3 = magic == NDARRAY_V3_MAGIC
        if shape is None or (v3 and any(d < 0 for d in shape)) or (not v3 and len(shape) == 0):
            return np.empty((0,), dtype=np.float32)  # an uninitialised ("none") NDArray
    elif magic == NDARRAY_V1_MAGIC:
        shape = _read_shape(r, signed_ndim=False, dim_fmt="q", what=what)
        if not shape:
            return np.empty((0,), dtype=np.float32)
    elif magic <= _MAX_NDIM:  # oldest format: no magic, the first word is ndim, dims are uint32
        shape = tuple(r.unpack("I" * magic, f"{what} dims")) if magic else ()
        if not shape:
            return np.empty((0,), dtype=np.float32)
    else:
        raise MXNetParamsError(
            f"{r.source}: bad NDArray magic 0x{magic:08X} for {what} at offset {start} "
            f"(expected 0x{NDARRAY_V2_MAGIC:08X} or 0x{NDARRAY_V3_MAGIC:08X})"
        )
    if any(d < 0 for d in shape):
        raise MXNetParamsError(f"{r.source}: {what} has a negative dimension in shape {shape}")
    r.unpack("ii", f"{what} context")  # dev_type, dev_id — the data is always stored as CPU bytes
    (type_flag,) = r.unpack("i", f"{what} type flag")
    if type_flag not in _DTYPES:
        raise MXNetParamsError(f"{r.source}: {what} has unsupported type flag {type_flag}")
    dtype = np.dtype(_DTYPES[type_flag]).newbyteorder("<")
    count = int(np.prod(shape, dtype=np.int64))
    raw = r.take(count * dtype.itemsize, f"{what} data {shape} {dtype.name}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=True)


def parse_params(data: bytes, source: str = "<bytes>") -> dict[str, np.ndarray]:
    """Parse the bytes of an MXNet NDArray list. Keys are the stored names (``arg:…`` / ``aux:…``);
    an unnamed list gets keys ``"0"``, ``"1"``, …"""
    r = _Reader(data, source)
    magic = r.u64("list magic")
    if magic != LIST_MAGIC:
        raise MXNetParamsError(
            f"{source}: not an MXNet NDArray list — magic 0x{magic:X}, expected 0x{LIST_MAGIC:X}"
        )
    r.u64("reserved word")
    n_arrays = r.u64("array count")
    if n_arrays > len(data):  # each array needs far more than one byte
        raise MXNetParamsError(f"{source}: implausible array count {n_arrays}")
    arrays = [_read_ndarray(r, i) for i in range(n_arrays)]
    n_names = r.u64("name count")
    if n_names not in (0, n_arrays):
        raise MXNetParamsError(f"{source}: {n_names} names for {n_arrays} arrays")
    names = []
    for i in range(n_names):
        length = r.u64(f"name #{i} length")
        names.append(r.take(length, f"name #{i}").decode("utf-8"))
    if r.pos != len(data):
        extra = len(data) - r.pos
        raise MXNetParamsError(f"{source}: {extra} unexpected trailing bytes after offset {r.pos}")
    if not names:
        names = [str(i) for i in range(n_arrays)]
    if len(set(names)) != len(names):
        raise MXNetParamsError(f"{source}: duplicate array names")
    return dict(zip(names, arrays))


def load_params(path: str | Path) -> dict[str, np.ndarray]:
    """Read an MXNet ``.params`` file; keys keep their ``arg:`` / ``aux:`` prefixes."""
    path = Path(path)
    return parse_params(path.read_bytes(), source=str(path))


def split_arg_aux(params: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Split a loaded checkpoint into (arg_params, aux_params) without the prefixes, as
    ``mx.model.load_checkpoint`` does. Names without a known prefix are an error."""
    arg: dict[str, np.ndarray] = {}
    aux: dict[str, np.ndarray] = {}
    for key, value in params.items():
        kind, sep, name = key.partition(":")
        if not sep or kind not in ("arg", "aux"):
            raise MXNetParamsError(f"parameter name {key!r} has no 'arg:' or 'aux:' prefix")
        (arg if kind == "arg" else aux)[name] = value
    return arg, aux
