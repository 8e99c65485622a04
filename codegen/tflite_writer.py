"""A QuantizedF as a .tflite (full int8, or TFLM's 16x8), written directly as a flatbuffer — no TensorFlow.

The schema module is the one shipped inside the ``tflite-micro`` package
(``tflite_micro/tensorflow/lite/micro/python/schema_py_generated.py``), packed with ``flatbuffers``.

The graph (one subgraph, ops in spec order):

- input ``[1, 112, 112, 3]`` int8 (scale 1/128, zero point 0: q = u − 128, no QUANTIZE op),
- one CONV_2D per spec conv — **a grouped conv stays ONE CONV_2D** (TFLite infers the groups from
  input channels / filter input channels), weights OHWI int8 per output channel (quantized dimension 0,
  zero points 0), bias int32 (scale in_scale·w_scale[c]), TF 'SAME'/'VALID' padding (the spec uses TF's
  rule, so no PAD op), ReLU fused,
- the global 7×7 pool: an exact-sum pool (``QuantLayer.exact_sum``, int8) has no op of its own — fc1
  becomes one CONV_2D 7×7 VALID over the last conv's map with fc1's weights at every tap, and with the
  folded tail only the logit's row of it and no head op (:func:`_compact_tail`); a requantizing pool is a
  CONV_2D 7×7 VALID with one group per channel and all weights 1 (AVERAGE_POOL_2D cannot change the
  scale), followed by FULLY_CONNECTED (per-channel int8 weights, int32 bias, ReLU fused where the spec
  has one), which flattens [1, 1, 1, 96] itself (keep_num_dims false: no RESHAPE),
- the L2 normalization of gdc's 1×1 map (spec v5's "pool", ``L2Norm``): ONE L2_NORMALIZATION (no fused
  activation) from gdc's output tensor to ``[1, 1, 1, 96]`` int8 at TFLite's fixed scale 1/128, zero
  point 0 (LiteRT's kernel refuses any other; TFLM's assumes it); fc1's FULLY_CONNECTED reads that,
- output ``[1, 1]`` int8: the logit (real = scale · (q − zp)).

16x8 (``qf.activations == "int16"``): the same graph with int16 activations, the input included (q = u −
128, zero point 0), int8 weights and int32 biases; TFLM runs it with its int16-activation kernels. TFLite
has no int16 L2_NORMALIZATION, so there the layer is three ops: QUANTIZE int16 → int8 (to the layer's
intermediate scale ``w_scales[0]``, zero point 0; TFLM derives the multiplier from the two float32 scales,
which is what ``QuantLayer.multiplier``/``shift`` hold), the int8 L2_NORMALIZATION (1/128, zp 0), and
QUANTIZE int8 → int16 at the same scale 1/128, zero point 0 (multiplier 1: exact) — the golden model's
:func:`codegen.golden.l2norm_int8`. Its two int8 tensors are no layer's output.

Metadata (``Model.metadata`` entry :data:`METADATA_NAME`, a JSON buffer): format version, arch name and
hash, user id, threshold on the logit, input/logit quantization — :func:`read_metadata` reads it back,
:func:`check_model` refuses a model whose arch hash differs from the spec's.

Operator codes: one per builtin at the highest version its ops need, the versions onnx2tf's TFLite
converter writes for the same graph (CONV_2D grouped: 6, plain: 3, plain 16x8: 4; FULLY_CONNECTED
with per-channel int8 weights: 12; L2_NORMALIZATION int8: 2) and, for the 16x8 QUANTIZE, TFLite's
versioning rule (to int16: 2, to int8: 1). TFLM ignores them; LiteRT checks them.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import flatbuffers
import numpy as np
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

from codegen.golden import dense_int8
from pvcore.qtheta import L2NORM_OUT_SCALE, QuantizedF, QuantLayer, pool_weights
from pvcore.spec import F_SPEC, ArchSpec, AvgPool, Conv, Dense, L2Norm

TFLITE_FORMAT_VERSION = 2  # of our metadata record (the flatbuffer schema itself is version 3); 2: exact pool
METADATA_NAME = "pv_meta"
FILE_IDENTIFIER = b"TFL3"
SCHEMA_VERSION = 3


class TfliteError(ValueError):
    """A .tflite that is not one of ours, or not for this architecture."""


BUFFER_ALIGN = 16  # every constant buffer starts 16-byte aligned (as TFLite's converter does): int32
# biases are then read in place on cores that fault on unaligned loads (Xtensa), and SIMD kernels are happy


class _AlignedBufferT(fb.BufferT):
    """A Buffer whose data vector starts on a BUFFER_ALIGN boundary of the finished file."""

    def Pack(self, builder):  # noqa: N802 (flatbuffers' name)
        data = None
        if self.data is not None:
            raw = np.asarray(self.data, np.uint8).tobytes()
            builder.StartVector(1, len(raw), BUFFER_ALIGN)
            builder.head -= len(raw)
            builder.Bytes[builder.head : builder.head + len(raw)] = raw
            builder.vectorNumElems = len(raw)
            data = builder.EndVector()
        fb.BufferStart(builder)
        if data is not None:
            fb.BufferAddData(builder, data)
        return fb.BufferEnd(builder)


# What a TFLite Micro user of the 16x8 .tflite must know (codegen.emit prints it as a warning whenever it
# writes one, and the model header carries it): measured on QEMU mps2-an386 with TFLM 90b983c2 and
# CMSIS-NN 4ab83cc3 (tests/firmware/test_tflm_qemu.py).
TFLM_16X8_NOTE = ("TFLM's CMSIS-NN CONV_2D hands grouped int16 convolutions to CMSIS-NN's int16 convolution, which "
                  "ignores groups: WRONG logits without an error; CMSIS-NN's FULLY_CONNECTED refuses per-channel "
                  "int16 weights (AllocateTensors fails). Run this model on TFLM's reference kernels, or register "
                  "the reference CONV_2D for grouped int16 convolutions and the reference FULLY_CONNECTED, as "
                  "firmware_templates/tflm-common/pv_tflm.cc does (bit-exact); ESP-NN is not verified")


def buffer_offsets(model: bytes) -> list[tuple[int, int]]:
    """(file offset, size) of every non-empty constant buffer of a .tflite."""
    m = fb.Model.GetRootAs(bytearray(model), 0)
    out = []
    for i in range(m.BuffersLength()):
        b = m.Buffers(i)
        n = b.DataLength()
        if n:
            tab = b._tab
            out.append((tab.Vector(tab.Offset(4)), n))
    return out


def _q(scales, zps, dim: int = 0) -> fb.QuantizationParametersT:
    q = fb.QuantizationParametersT()
    q.scale = [float(s) for s in np.atleast_1d(scales)]
    q.zeroPoint = [int(z) for z in np.atleast_1d(zps)]
    q.quantizedDimension = dim
    return q


def _conv_version(groups: int, activations: str = "int8") -> int:
    if groups > 1:
        return 6  # a grouped CONV_2D
    return 4 if activations == "int16" else 3  # 16x8: version 4


L2NORM_VERSION = 2  # L2_NORMALIZATION with int8 output
QUANTIZE_VERSION_TO_INT8, QUANTIZE_VERSION_TO_INT16 = 1, 2  # tensorflow/lite/tools/versioning/op_version.cc


def _op_version(layer: object, activations: str = "int8") -> int:
    if isinstance(layer, AvgPool):
        return _conv_version(2, activations)  # one group per channel
    if isinstance(layer, Conv):
        return _conv_version(layer.groups, activations)
    return 12  # FULLY_CONNECTED with per-channel int8 weights


def metadata_record(
    qf: QuantizedF, user_id: str | None, threshold: float | None, spec: ArchSpec = F_SPEC
) -> dict[str, Any]:
    return {
        "format_version": TFLITE_FORMAT_VERSION,
        "arch": spec.name,
        "arch_hash": qf.arch_hash,
        "user_id": user_id,
        "threshold_logit": None if threshold is None else float(threshold),
        "input_scale": float(qf.input_scale),
        "input_zero_point": int(qf.input_zp),
        "logit_scale": float(qf.logit_scale),
        "logit_zero_point": int(qf.logit_zp),
        "activations": qf.activations,
        "producer": "codegen.tflite_writer",
    }


def _compact_tail(qf: QuantizedF, spec: ArchSpec) -> int | None:
    """The index of fc1 when the deployable graph may end there: fc1 reads an exact-sum pool and the
    folded tail (:func:`codegen.quantize.fold_linear_tail`) made fc1's row 0 the logit, its other rows
    constant, and head an identity of row 0. Then the .tflite holds fc1 as a CONV_2D k×k with that one
    row (its weights repeated k² times: 4.7 KB, not 113 KB for all 24) and no head op, and TFLM's logit
    is still bit for bit the golden model's: checked here, for every int8 value row 0 can take, that
    head maps it to itself when the other rows are what their zero weights give. None: the full graph."""
    n = len(spec.layers)
    if n < 3 or not qf.layers[n - 3].exact_sum or qf.activations != "int8":
        return None
    fc1, head = qf.layers[n - 2], qf.layers[n - 1]
    assert fc1.weights is not None and fc1.bias is not None and head.weights is not None
    if fc1.weights[1:].any() or fc1.bias[1:].any() or head.weights.shape[0] != 1:
        return None
    rest = np.clip(fc1.out_zp, fc1.act_min, fc1.act_max)  # rows 1… : requantize(0 + bias 0)
    xs = np.arange(fc1.act_min, fc1.act_max + 1)
    x = np.concatenate([xs[:, None], np.full((len(xs), fc1.weights.shape[0] - 1), rest)], axis=1).astype(np.int8)
    if not np.array_equal(dense_int8(x, head).reshape(-1), xs) or (head.out_scale, head.out_zp) != (
            fc1.out_scale, fc1.out_zp):
        return None
    return n - 2


def _l2norm_ops(q: QuantLayer, cur: int, out: int, shape: list[int], activations: str,
                tensor: Callable[..., int], opcode: Callable[[int, int], int]) -> list[fb.OperatorT]:
    """The ops of an L2Norm layer from tensor ``cur`` to tensor ``out`` (1/128, zp 0, made by the caller):
    the int8 L2_NORMALIZATION, or for int16 activations that op between QUANTIZE int16 → int8 (scale
    ``q.w_scales[0]``, zp 0) and QUANTIZE int8 → int16 — ``tensor``/``opcode`` are build_tflite's."""

    def op(code: int, version: int, src: int, dst: int) -> fb.OperatorT:
        o = fb.OperatorT()
        o.opcodeIndex = opcode(code, version)
        o.inputs, o.outputs = [src], [dst]
        if code == fb.BuiltinOperator.L2_NORMALIZATION:
            opt = fb.L2NormOptionsT()
            opt.fusedActivationFunction = fb.ActivationFunctionType.NONE  # the kernel accepts no other
            o.builtinOptionsType, o.builtinOptions = fb.BuiltinOptions.L2NormOptions, opt
        else:
            o.builtinOptionsType, o.builtinOptions = fb.BuiltinOptions.QuantizeOptions, fb.QuantizeOptionsT()
        return o

    if activations != "int16":
        return [op(fb.BuiltinOperator.L2_NORMALIZATION, L2NORM_VERSION, cur, out)]
    assert q.w_scales is not None
    mid = tensor(f"{q.name}/int8_in", shape, fb.TensorType.INT8, _q(q.w_scales[0], 0))
    normed = tensor(f"{q.name}/int8_out", shape, fb.TensorType.INT8, _q(L2NORM_OUT_SCALE, 0))
    return [op(fb.BuiltinOperator.QUANTIZE, QUANTIZE_VERSION_TO_INT8, cur, mid),
            op(fb.BuiltinOperator.L2_NORMALIZATION, L2NORM_VERSION, mid, normed),
            op(fb.BuiltinOperator.QUANTIZE, QUANTIZE_VERSION_TO_INT16, normed, out)]


def build_tflite(
    qf: QuantizedF,
    spec: ArchSpec = F_SPEC,
    *,
    user_id: str | None = None,
    threshold: float | None = None,
    layers: int | None = None,
    layer_outputs: bool = False,
    check: bool = True,
) -> bytes:
    """The int8 .tflite of ``qf``. ``layers`` keeps only the first n layers; ``layer_outputs`` makes every
    layer's output a subgraph output (layer-by-layer debugging); the default is the deployable model with
    the single logit output. ``check=False`` skips :meth:`QuantizedF.check` (for hand-edited test models)."""
    if check:
        qf.check(spec)
    n_layers = len(spec.layers) if layers is None else layers
    buffers: list[fb.BufferT] = [_AlignedBufferT()]  # buffer 0: the empty buffer (tensors without data)
    tensors: list[fb.TensorT] = []
    opcodes: list[tuple[int, int]] = []
    operators: list[fb.OperatorT] = []

    def add_buffer(raw: bytes) -> int:
        b = _AlignedBufferT()
        b.data = np.frombuffer(raw, np.uint8)
        buffers.append(b)
        return len(buffers) - 1

    def tensor(name: str, shape, ttype: int, quant, data: np.ndarray | None = None) -> int:
        t = fb.TensorT()
        t.name, t.shape, t.type, t.quantization = name, list(shape), ttype, quant
        if data is not None:
            t.buffer = add_buffer(np.ascontiguousarray(data).tobytes())
        tensors.append(t)
        return len(tensors) - 1

    def opcode(code: int, version: int) -> int:
        """One operator code per builtin, at the highest version any of its ops needs (as TFLite does)."""
        for i, (c, v) in enumerate(opcodes):
            if c == code:
                opcodes[i] = (c, max(v, version))
                return i
        opcodes.append((code, version))
        return len(opcodes) - 1

    h, w = spec.input_hw
    act_type = fb.TensorType.INT16 if qf.activations == "int16" else fb.TensorType.INT8
    cur = tensor("input", [1, h, w, spec.input_ch], act_type, _q(qf.input_scale, qf.input_zp))
    inp = cur
    outputs = []
    compact = _compact_tail(qf, spec) if n_layers == len(spec.layers) and not layer_outputs else None
    for i, (layer, q, shape) in enumerate(list(zip(spec.layers, qf.layers, spec.shapes[1:]))[:n_layers]):
        if q.exact_sum:  # no op and no tensor (not in layer_outputs either): the next layer reads the map
            continue  # and sums it itself, as a CONV_2D k×k
        if compact is not None and i == compact + 1:
            break  # the folded head: an exact identity, left out (see _compact_tail)
        op = fb.OperatorT()
        summed = i > 0 and qf.layers[i - 1].exact_sum  # a dense over an exact-sum pool: CONV_2D k×k VALID
        out_shape = [1, *shape] if not isinstance(layer, Dense) else [1, shape[-1]]
        weights, bias, w_scales, bias_scales = q.weights, q.bias, q.w_scales, q.bias_scales
        if summed:
            k = spec.layers[i - 1].kernel
            assert weights is not None
            if compact is not None:  # only the logit's row
                weights, bias, w_scales, bias_scales = weights[:1], bias[:1], w_scales[:1], bias_scales[:1]
            weights = np.repeat(np.repeat(weights[:, None, None, :], k, axis=1), k, axis=2)  # (O, k, k, C)
            out_shape = [1, 1, 1, weights.shape[0]]
        last = layer is spec.layers[n_layers - 1] or (compact is not None and i == compact)
        out_name = "logit" if last and n_layers == len(spec.layers) else f"{layer.name}/out"
        out = tensor(out_name, out_shape, act_type, _q(q.out_scale, q.out_zp))
        act = fb.ActivationFunctionType.RELU if q.relu else fb.ActivationFunctionType.NONE
        if isinstance(layer, L2Norm):
            operators.extend(_l2norm_ops(q, cur, out, out_shape, qf.activations, tensor, opcode))
            outputs.append(out)
            cur = out
            continue
        if isinstance(layer, AvgPool):  # the requantizing pool: CONV_2D k×k, one group per channel, weights 1
            weights, bias = pool_weights(layer, shape[-1])
        assert weights is not None and w_scales is not None and bias is not None
        wt = tensor(
            f"{layer.name}/weights",
            weights.shape,
            fb.TensorType.INT8,
            _q(w_scales, np.zeros(w_scales.size, np.int64)),
            weights.astype(np.int8),
        )
        bt = tensor(
            f"{layer.name}/bias",
            bias.shape,
            fb.TensorType.INT32,
            _q(bias_scales, np.zeros(w_scales.size, np.int64)),
            bias.astype("<i4"),
        )
        op.inputs = [cur, wt, bt]
        if isinstance(layer, Conv | AvgPool) or summed:
            version = _conv_version(1, qf.activations) if summed else _op_version(layer, qf.activations)
            op.opcodeIndex = opcode(fb.BuiltinOperator.CONV_2D, version)
            opt = fb.Conv2DOptionsT()
            if isinstance(layer, Conv):
                opt.padding = fb.Padding.SAME if layer.padding == "same" else fb.Padding.VALID
                opt.strideW = opt.strideH = layer.stride
            else:
                opt.padding, opt.strideW, opt.strideH = fb.Padding.VALID, 1, 1
            opt.dilationWFactor = opt.dilationHFactor = 1
            opt.fusedActivationFunction = act
            op.builtinOptionsType, op.builtinOptions = fb.BuiltinOptions.Conv2DOptions, opt
        elif isinstance(layer, Dense):
            op.opcodeIndex = opcode(fb.BuiltinOperator.FULLY_CONNECTED, _op_version(layer, qf.activations))
            opt = fb.FullyConnectedOptionsT()
            opt.fusedActivationFunction = act
            opt.keepNumDims = False
            op.builtinOptionsType, op.builtinOptions = fb.BuiltinOptions.FullyConnectedOptions, opt
        else:
            raise TypeError(layer)
        op.outputs = [out]
        operators.append(op)
        outputs.append(out)
        cur = out

    sg = fb.SubGraphT()
    sg.tensors, sg.inputs, sg.operators, sg.name = tensors, [inp], operators, "main"
    sg.outputs = outputs if layer_outputs else [cur]
    model = fb.ModelT()
    model.version = SCHEMA_VERSION
    kind = "16x8" if qf.activations == "int16" else "int8"
    model.description = f"{spec.name} {qf.arch_hash} {kind}" + (f" user {user_id}" if user_id else "")
    meta = fb.MetadataT()
    meta.name = METADATA_NAME
    meta.buffer = add_buffer(json.dumps(metadata_record(qf, user_id, threshold, spec), sort_keys=True).encode())
    model.metadata = [meta]
    model.buffers = buffers
    model.subgraphs = [sg]
    codes = []
    for code, version in opcodes:
        oc = fb.OperatorCodeT()
        oc.builtinCode = code
        oc.deprecatedBuiltinCode = min(code, 127)  # the int8 field of schema v3a
        oc.version = version
        codes.append(oc)
    model.operatorCodes = codes
    builder = flatbuffers.Builder(1 << 16)
    builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def read_metadata(model: bytes) -> dict[str, Any]:
    """Our metadata record of a .tflite (TfliteError when it is not a .tflite or has none)."""
    data = bytes(model)
    if len(data) < 8 or data[4:8] != FILE_IDENTIFIER:
        raise TfliteError("not a .tflite flatbuffer (file identifier TFL3 missing)")
    try:
        m = fb.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception as e:  # a damaged flatbuffer raises anything from IndexError to struct.error
        raise TfliteError(f"unreadable .tflite flatbuffer: {e}") from e
    for md in m.metadata or []:
        name = md.name.decode() if isinstance(md.name, bytes) else md.name
        if name == METADATA_NAME:
            raw = bytes(np.asarray(m.buffers[md.buffer].data, np.uint8))
            return json.loads(raw.decode())
    raise TfliteError(f"the .tflite carries no {METADATA_NAME!r} metadata: it was not written by codegen")


def check_model(model: bytes, spec: ArchSpec = F_SPEC) -> dict[str, Any]:
    """Read the metadata and refuse a model of another format version or architecture."""
    meta = read_metadata(model)
    if meta.get("format_version") != TFLITE_FORMAT_VERSION:
        raise TfliteError(
            f".tflite metadata format version {meta.get('format_version')}, this tool reads "
            f"{TFLITE_FORMAT_VERSION}: emit the model again"
        )
    if meta.get("arch_hash") != spec.arch_hash():
        raise TfliteError(
            f".tflite was built for arch hash {meta.get('arch_hash')}, this toolchain's {spec.name} has "
            f"{spec.arch_hash()}: emit the model again from θ"
        )
    return meta


# --------------------------------------------------------------------------------------------------
# Running it in the TFLite Micro interpreter (the `tflite-micro` package)
# --------------------------------------------------------------------------------------------------
def input_dtype(model: bytes) -> type:
    """The NumPy type of the model's input (and every activation): int16 for a 16x8 model, else int8."""
    return np.int16 if read_metadata(model).get("activations") == "int16" else np.int8


def run_tflm(model: bytes, images_u8: np.ndarray, n_outputs: int = 1, arena_size: int = 1 << 20) -> list[np.ndarray]:
    """Every output of the model for each uint8 image, fed as q = u − 128: list over outputs of (N, …)."""
    from tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(bytes(model), arena_size=arena_size)
    in_type = input_dtype(model)
    per_out: list[list[np.ndarray]] = [[] for _ in range(n_outputs)]
    for img in np.asarray(images_u8):
        it.set_input((img.astype(np.int16) - 128).astype(in_type)[None], 0)
        it.invoke()
        for k in range(n_outputs):
            per_out[k].append(np.array(it.get_output(k)).reshape(-1))
    return [np.stack(v) for v in per_out]


def tflm_logits(model: bytes, images_u8: np.ndarray) -> np.ndarray:
    """Integer logits (N,) of the deployable model in TFLM: int8 (int16 for a 16x8 model)."""
    out = run_tflm(model, images_u8, 1)[0].reshape(-1)
    return out.astype(np.int16 if out.dtype == np.int16 else np.int8)


@contextlib.contextmanager
def _quiet_fds():
    """Send the process's fds 1 and 2 to /dev/null for a while (C code's prints included)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


def tflm_arena_bytes(model: bytes, lo: int = 1024, hi: int = 1 << 22) -> int:
    """The smallest arena (bytes, to 16) the TFLM Python interpreter accepts for ``model`` and invokes
    with — found by bisection, since the package exposes no arena_used_bytes. A board's TFLM build may need
    more for its own bookkeeping (its ``MicroInterpreter::arena_used_bytes()`` says how much)."""
    from tflite_micro import runtime

    in_type = input_dtype(model)
    x = np.zeros((1, *F_SPEC.input_hw, F_SPEC.input_ch), in_type)

    def ok(n: int) -> bool:
        with _quiet_fds():  # TFLM prints every failed allocation to stdout/stderr from C
            try:
                it = runtime.Interpreter.from_bytes(bytes(model), arena_size=n)
                it.set_input(x, 0)
                it.invoke()
                return True
            except Exception:
                return False

    if not ok(hi):
        raise TfliteError(f"the model does not run in TFLM even with a {hi}-byte arena")
    while hi - lo > 16:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi
