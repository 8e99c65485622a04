"""Test helper: a QuantizedF as a minimal int8 .tflite, built with the flatbuffer schema module shipped in
the ``tflite-micro`` package, to run in the real TFLite Micro interpreter.

Not the project's .tflite emitter (that one is written on top of QuantizedF elsewhere): just enough of a
writer to show that the golden model's arithmetic is TFLM's. Every layer's output tensor is also a
subgraph output, so the comparison is layer by layer.
"""

from __future__ import annotations

import flatbuffers
import numpy as np
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

from codegen.quantize import QuantizedF
from training.verifier.spec import F_SPEC, ArchSpec, AvgPool, Conv, Dense


def _q(scales, zps, dim: int = 0) -> fb.QuantizationParametersT:
    q = fb.QuantizationParametersT()
    q.scale = [float(s) for s in np.atleast_1d(scales)]
    q.zeroPoint = [int(z) for z in np.atleast_1d(zps)]
    q.quantizedDimension = dim
    return q


def build_tflite(qf: QuantizedF, spec: ArchSpec = F_SPEC, layers: int | None = None) -> bytes:
    """int8 model of the first ``layers`` layers of f (all by default); outputs: every layer's output."""
    n_layers = len(spec.layers) if layers is None else layers
    buffers = [fb.BufferT()]  # buffer 0: the empty buffer
    tensors: list[fb.TensorT] = []
    opcodes: list[int] = []
    operators: list[fb.OperatorT] = []

    def tensor(name: str, shape, ttype: int, quant, data: np.ndarray | None = None) -> int:
        t = fb.TensorT()
        t.name, t.shape, t.type, t.quantization = name, list(shape), ttype, quant
        if data is not None:
            b = fb.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
            buffers.append(b)
            t.buffer = len(buffers) - 1
        tensors.append(t)
        return len(tensors) - 1

    def opcode(code: int) -> int:
        if code not in opcodes:
            opcodes.append(code)
        return opcodes.index(code)

    h, w = spec.input_hw
    cur = tensor("input", [1, h, w, spec.input_ch], fb.TensorType.INT8, _q(qf.input_scale, qf.input_zp))
    inp = cur
    outputs = []
    for layer, q, shape in list(zip(spec.layers, qf.layers, spec.shapes[1:]))[:n_layers]:
        op = fb.OperatorT()
        out_shape = [1, *shape] if not isinstance(layer, Dense) else [1, shape[-1]]
        out = tensor(f"{layer.name}/out", out_shape, fb.TensorType.INT8, _q(q.out_scale, q.out_zp))
        act = fb.ActivationFunctionType.RELU if q.relu else fb.ActivationFunctionType.NONE
        if isinstance(layer, Conv | Dense):
            wt = tensor(
                f"{layer.name}/w",
                q.weights.shape,
                fb.TensorType.INT8,
                _q(q.w_scales, np.zeros(q.w_scales.size, np.int64)),
                q.weights,
            )
            bt = tensor(
                f"{layer.name}/b",
                q.bias.shape,
                fb.TensorType.INT32,
                _q(q.bias_scales, np.zeros(q.bias_scales.size, np.int64)),
                q.bias.astype("<i4"),
            )
            op.inputs = [cur, wt, bt]
            if isinstance(layer, Conv):
                op.opcodeIndex = opcode(fb.BuiltinOperator.CONV_2D)
                opt = fb.Conv2DOptionsT()
                opt.padding = fb.Padding.SAME if layer.padding == "same" else fb.Padding.VALID
                opt.strideW = opt.strideH = layer.stride
                opt.fusedActivationFunction = act
                op.builtinOptionsType, op.builtinOptions = fb.BuiltinOptions.Conv2DOptions, opt
            else:
                op.opcodeIndex = opcode(fb.BuiltinOperator.FULLY_CONNECTED)
                opt = fb.FullyConnectedOptionsT()
                opt.fusedActivationFunction = act
                op.builtinOptionsType, op.builtinOptions = fb.BuiltinOptions.FullyConnectedOptions, opt
        elif isinstance(layer, AvgPool):
            op.inputs = [cur]
            op.opcodeIndex = opcode(fb.BuiltinOperator.AVERAGE_POOL_2D)
            opt = fb.Pool2DOptionsT()
            opt.padding = fb.Padding.VALID
            opt.strideW = opt.strideH = opt.filterWidth = opt.filterHeight = layer.kernel
            opt.fusedActivationFunction = act
            op.builtinOptionsType, op.builtinOptions = fb.BuiltinOptions.Pool2DOptions, opt
        op.outputs = [out]
        operators.append(op)
        outputs.append(out)
        cur = out

    sg = fb.SubGraphT()
    sg.tensors, sg.inputs, sg.outputs, sg.operators, sg.name = tensors, [inp], outputs, operators, "main"
    model = fb.ModelT()
    model.version = 3
    model.description = f"golden cross-check of {qf.arch_name} {qf.arch_hash}"
    model.buffers = buffers
    model.subgraphs = [sg]
    codes = []
    for c in opcodes:
        oc = fb.OperatorCodeT()
        oc.builtinCode = c
        oc.deprecatedBuiltinCode = c
        oc.version = 1
        codes.append(oc)
    model.operatorCodes = codes
    builder = flatbuffers.Builder(1 << 16)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def run_tflm(model: bytes, images_u8: np.ndarray, n_outputs: int) -> list[np.ndarray]:
    """Every output of the model for each image: list over outputs of (N, …) int8 arrays."""
    from tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(model, arena_size=1 << 20)
    per_out: list[list[np.ndarray]] = [[] for _ in range(n_outputs)]
    for img in images_u8:
        it.set_input((img.astype(np.int16) - 128).astype(np.int8)[None], 0)
        it.invoke()
        for k in range(n_outputs):
            per_out[k].append(np.array(it.get_output(k)).reshape(-1))
    return [np.stack(v) for v in per_out]
