"""The TensorFlow-free .tflite writer: graph structure, metadata, alignment, and bit-exactness of the
TFLite Micro interpreter with the golden int8 model (fast: package faces; slow: ≥500 LFW crops × 3 users)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

from codegen.golden import run_int8
from codegen.quantize import QuantConfig, quantize
from codegen.tflite_writer import (
    METADATA_NAME,
    TfliteError,
    buffer_offsets,
    build_tflite,
    check_model,
    read_metadata,
    tflm_arena_bytes,
    tflm_logits,
)
from pvcore.qtheta import QuantizedF
from pvcore.spec import F_SPEC, Conv
from tests.codegen.users import USERS, make_store
from tests.conftest import require_shared
from tests.helpers.specs import SPEC_V4


@pytest.fixture(scope="module")
def model(quantized: dict[str, QuantizedF]) -> bytes:
    return build_tflite(quantized["random-0"], user_id="alice", threshold=0.25)


def _codes(model: bytes) -> tuple[fb.ModelT, fb.SubGraphT, list[int]]:
    m = fb.ModelT.InitFromPackedBuf(bytearray(model), 0)
    sg = m.subgraphs[0]
    return m, sg, [m.operatorCodes[op.opcodeIndex].builtinCode for op in sg.operators]


def test_graph_is_full_int8_with_grouped_convs_as_single_conv2d(model: bytes, quantized) -> None:
    m, sg, codes = _codes(model)
    n_conv = sum(isinstance(la, Conv) for la in F_SPEC.layers)
    # one CONV_2D per conv, the L2 normalization ONE L2_NORMALIZATION, fc1 and head FULLY_CONNECTED
    assert codes == ([fb.BuiltinOperator.CONV_2D] * n_conv + [fb.BuiltinOperator.L2_NORMALIZATION]
                     + [fb.BuiltinOperator.FULLY_CONNECTED] * 2)
    inp, out = sg.tensors[sg.inputs[0]], sg.tensors[sg.outputs[0]]
    assert list(inp.shape) == [1, 112, 112, 3] and inp.type == fb.TensorType.INT8
    assert list(out.shape) == [1, 1] and out.type == fb.TensorType.INT8 and len(sg.outputs) == 1
    qf = quantized["random-0"]
    for op, layer, q in zip(sg.operators, F_SPEC.layers, qf.layers):
        if not isinstance(layer, Conv):
            continue
        w, b = sg.tensors[op.inputs[1]], sg.tensors[op.inputs[2]]
        # one CONV_2D per grouped conv: the filter's input depth is in_ch / groups
        assert list(w.shape) == [layer.out_ch, layer.kernel, layer.kernel, layer.in_ch // layer.groups]
        assert w.type == fb.TensorType.INT8 and len(w.quantization.scale) == layer.out_ch
        assert w.quantization.quantizedDimension == 0 and not any(w.quantization.zeroPoint)
        assert b.type == fb.TensorType.INT32
        relu = fb.ActivationFunctionType.RELU if layer.relu else fb.ActivationFunctionType.NONE
        assert op.builtinOptions.fusedActivationFunction == relu
        got = np.frombuffer(bytes(np.asarray(m.buffers[w.buffer].data, np.uint8)), np.int8)
        assert np.array_equal(got, q.weights.reshape(-1))
    # the L2 normalization: gdc's output in, [1, 1, 1, 96] int8 out at TFLite's fixed 1/128, zp 0; no activation
    i_pool = F_SPEC.pool_index
    norm, before = sg.operators[i_pool], F_SPEC.layers[i_pool - 1]
    assert m.operatorCodes[norm.opcodeIndex].version == 2  # L2_NORMALIZATION with int8 output
    assert list(norm.inputs) == list(sg.operators[i_pool - 1].outputs) and len(norm.outputs) == 1
    assert sg.tensors[norm.inputs[0]].name.decode() == f"{before.name}/out"
    t = sg.tensors[norm.outputs[0]]
    assert list(t.shape) == [1, 1, 1, before.out_ch] and t.type == fb.TensorType.INT8
    assert list(t.quantization.scale) == [np.float32(1 / 128)] and list(t.quantization.zeroPoint) == [0]
    assert norm.builtinOptionsType == fb.BuiltinOptions.L2NormOptions
    assert norm.builtinOptions.fusedActivationFunction == fb.ActivationFunctionType.NONE
    fc1 = sg.operators[i_pool + 1]
    assert list(fc1.inputs[:1]) == list(norm.outputs)
    for op, name in zip(sg.operators[i_pool + 1:], ("fc1", "head")):  # per-output-feature weight scales
        w = sg.tensors[op.inputs[1]]
        assert list(w.shape) == list(qf.layer(name).weights.shape) and len(w.quantization.scale) == w.shape[0]
    assert all(t.type == fb.TensorType.INT8 for t in sg.tensors if t.buffer == 0)


def test_graph_of_an_avgpool_spec_with_the_exact_pool(face_images: np.ndarray) -> None:
    """A spec whose features are a global pool (spec v4's, which the writer still builds), with the exact
    pool (the default): the pool is no op — fc1 is a CONV_2D k×k VALID over the last conv's map with its
    weights at every tap — and with the folded tail only its logit row, so the graph ends there (head is an
    identity): n_conv + 1 CONV_2D; TFLM's logits the golden model's."""
    from training.verifier.functional import random_theta

    spec = SPEC_V4
    qf = quantize(random_theta(0, spec), cfg=QuantConfig(n_aug=4), spec=spec)
    model = build_tflite(qf, spec)
    m, sg, codes = _codes(model)
    n_conv = sum(isinstance(la, Conv) for la in spec.layers)
    assert codes == [fb.BuiltinOperator.CONV_2D] * (n_conv + 1)
    assert list(sg.tensors[sg.outputs[0]].shape) == [1, 1, 1, 1]
    fc1 = qf.layer("fc1")
    last = sg.operators[-1]
    w = sg.tensors[last.inputs[1]]
    i_pool = spec.pool_index
    k, before = spec.layers[i_pool].kernel, spec.layers[i_pool - 1]
    assert sg.tensors[last.inputs[0]].name.decode() == f"{before.name}/out"
    assert last.builtinOptions.padding == fb.Padding.VALID
    assert list(w.shape) == [1, k, k, before.out_ch] and list(w.quantization.scale) == [fc1.w_scales[0]]
    got = np.frombuffer(bytes(np.asarray(m.buffers[w.buffer].data, np.uint8)), np.int8).reshape(k * k, -1)
    assert (got == fc1.weights[0]).all()  # fc1's logit row at every one of the pool's k×k taps
    imgs = face_images[:8]
    assert np.array_equal(run_int8(qf, imgs, spec), tflm_logits(model, imgs))


def test_graph_of_an_avgpool_spec_with_the_requantizing_pool(face_images: np.ndarray) -> None:
    """exact_pool off (format version 2's model) on SPEC_V4: the global mean is one more CONV_2D (k×k,
    one group per channel, weights 1) that requantizes, then fc1 and head as FULLY_CONNECTED — TFLM's logits
    the golden model's."""
    from training.verifier.functional import random_theta

    spec = SPEC_V4
    qf = quantize(random_theta(0, spec), cfg=QuantConfig(n_aug=4, exact_pool=False), spec=spec)
    model = build_tflite(qf, spec)
    m, sg, codes = _codes(model)
    n_conv = sum(isinstance(la, Conv) for la in spec.layers)
    assert codes == [fb.BuiltinOperator.CONV_2D] * (n_conv + 1) + [fb.BuiltinOperator.FULLY_CONNECTED] * 2
    assert list(sg.tensors[sg.outputs[0]].shape) == [1, 1]
    i_pool = spec.pool_index
    pool_w = sg.tensors[sg.operators[i_pool].inputs[1]]
    k = spec.layers[i_pool].kernel
    assert list(pool_w.shape) == [96, k, k, 1] and list(pool_w.quantization.scale) == [np.float32(1 / k**2)]
    assert set(np.asarray(m.buffers[pool_w.buffer].data).tolist()) == {1}
    for op in sg.operators[i_pool + 1 :]:  # FULLY_CONNECTED with per-output-feature weight scales
        w = sg.tensors[op.inputs[1]]
        assert len(w.quantization.scale) == w.shape[0]
    imgs = face_images[:8]
    assert np.array_equal(run_int8(qf, imgs, spec), tflm_logits(model, imgs))


def test_metadata_and_alignment(model: bytes) -> None:
    meta = read_metadata(model)
    assert meta["arch_hash"] == F_SPEC.arch_hash() and meta["format_version"] == 2
    assert meta["user_id"] == "alice" and meta["threshold_logit"] == 0.25
    assert check_model(model) == meta
    assert all(off % 16 == 0 for off, _ in buffer_offsets(model)) and len(buffer_offsets(model)) >= 19


def test_check_model_refuses_other_arch_and_foreign_files(quantized: dict[str, QuantizedF]) -> None:
    qf = quantized["random-1"]
    good = build_tflite(qf)
    m = fb.ModelT.InitFromPackedBuf(bytearray(good), 0)
    md = next(x for x in m.metadata if x.name.decode() == METADATA_NAME)
    rec = json.loads(bytes(np.asarray(m.buffers[md.buffer].data, np.uint8)))
    rec["arch_hash"] = "0123456789abcdef"
    m.buffers[md.buffer].data = np.frombuffer(json.dumps(rec).encode(), np.uint8)
    import flatbuffers

    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    with pytest.raises(TfliteError, match="0123456789abcdef"):
        check_model(bytes(b.Output()))
    with pytest.raises(TfliteError, match="not a .tflite"):
        read_metadata(b"PVTB" + bytes(100))
    m.metadata = []
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    with pytest.raises(TfliteError, match="no 'pv_meta' metadata"):
        read_metadata(bytes(b.Output()))


def test_tflm_equals_golden_on_package_faces(quantized: dict[str, QuantizedF], face_images: np.ndarray) -> None:
    imgs = face_images[:24]
    for name, qf in quantized.items():
        mine = run_int8(qf, imgs)
        theirs = tflm_logits(build_tflite(qf), imgs)
        assert np.array_equal(mine, theirs), f"{name}: {(mine != theirs).sum()} of {len(imgs)} logits differ"


def test_tflm_arena(model: bytes) -> None:
    n = tflm_arena_bytes(model)
    # two int8 activations of the largest adjacent pair (28×28×24 in, 28×28×24 out) must fit at least
    assert 2 * 28 * 28 * 24 <= n < 1 << 20


def test_16x8_model_is_int16_throughout_and_equals_golden_layer_by_layer(face_images: np.ndarray) -> None:
    """The 16x8 model (int16 activations, int8 weights, int32 biases): every layer's activation tensor int16
    with zero point 0 — the L2 normalization QUANTIZE → int8 L2_NORMALIZATION → QUANTIZE, whose two int8
    tensors are its own — and TFLM's output of EVERY layer equals the golden model's, on package faces."""
    from codegen.tflite_writer import run_tflm
    from training.verifier.functional import random_theta

    imgs = face_images[:8]
    qf = quantize(random_theta(3).numpy(), enroll_u8=imgs[0], cfg=QuantConfig(activations="int16"))
    assert qf.activations == "int16" and qf.act_dtype is np.int16
    model = build_tflite(qf, layer_outputs=True)
    assert read_metadata(model)["activations"] == "int16"
    m = fb.ModelT.InitFromPackedBuf(bytearray(model), 0)
    sg = m.subgraphs[0]
    codes = [m.operatorCodes[op.opcodeIndex].builtinCode for op in sg.operators]
    i_pool = F_SPEC.pool_index
    ops = fb.BuiltinOperator
    assert codes[i_pool:i_pool + 3] == [ops.QUANTIZE, ops.L2_NORMALIZATION, ops.QUANTIZE]
    acts = [t for t in sg.tensors if t.buffer == 0]
    mid = [t for t in acts if t.type != fb.TensorType.INT16]
    acts = [t for t in acts if t.type == fb.TensorType.INT16]
    assert len(acts) == len(F_SPEC.layers) + 1  # input + every layer's output
    assert all(list(t.quantization.zeroPoint) == [0] for t in acts)
    pool = qf.layer("pool")
    # int16 → int8 at the layer's intermediate scale, then TFLite's int8 L2_NORMALIZATION output: both zp 0
    assert [(t.name.decode(), t.type, list(t.quantization.scale), list(t.quantization.zeroPoint)) for t in mid] == [
        ("pool/int8_in", fb.TensorType.INT8, [pool.w_scales[0]], [0]),
        ("pool/int8_out", fb.TensorType.INT8, [np.float32(1 / 128)], [0])]
    assert list(sg.tensors[sg.operators[i_pool + 2].outputs[0]].quantization.scale) == [np.float32(1 / 128)]
    with_bias = [op for op in sg.operators if len(op.inputs) == 3]
    assert len(with_bias) == len(F_SPEC.layers) - 1  # every layer but the L2 normalization has weights
    assert all(sg.tensors[op.inputs[2]].type == fb.TensorType.INT32 for op in with_bias)  # int32 bias
    outs = run_tflm(model, imgs, len(F_SPEC.layers))
    _, golden = run_int8(qf, imgs, return_layers=True)
    for layer, theirs in zip(F_SPEC.layers, outs):
        mine = golden[layer.name].reshape(len(imgs), -1)
        assert mine.dtype == np.int16 and theirs.dtype == np.int16
        assert np.array_equal(mine, theirs.reshape(len(imgs), -1)), f"{layer.name} differs"
    assert len(np.unique(golden[F_SPEC.layers[-1].name])) > 1


def test_16x8_residual_logit_row_is_the_same_f() -> None:
    """16x8 splits the folded logit's weights into their int8 grid values (fc1 row 0) and the residual
    (row 1), summed by head: the same f in float, and the int16 logit closer to it than int8's. On the
    package faces and their augmentations, always (the guard below was measured there; the LFW crops of
    the face_images fixture exist only once some test has aligned LFW, and move the ratio)."""
    import torch

    from codegen.quantize import augment, package_faces

    face_images = augment(package_faces(), 32, seed=12345)

    from codegen.quantize import deployed_weights, residual_logit_row
    from training.verifier.functional import apply_effective, f_logits_u8, random_theta, to_input

    theta = random_theta(4).numpy()
    params = deployed_weights(torch.as_tensor(theta))
    split = residual_logit_row(params)
    x = to_input(face_images[:12])
    with torch.no_grad():
        assert torch.allclose(apply_effective(x, params), apply_effective(x, split), atol=1e-4)
    assert split["fc1.weight"][1].abs().max() < split["fc1.weight"][0].abs().max() / 100
    fl = f_logits_u8(theta, face_images[:12], 1)
    err = {}
    for act in ("int8", "int16"):
        qf = quantize(theta, enroll_u8=face_images[0], cfg=QuantConfig(activations=act))
        err[act] = np.abs(qf.dequantize_logit(run_int8(qf, face_images[:12])) - fl).mean()
    # measured (package faces + augmentations, this θ): 16x8 0.227, int8 0.268 (random θ 0–5: ratio 0.51–0.92);
    # both models share the int8 weights and, since spec v5, TFLite's int8 L2_NORMALIZATION, whose 1/128 output
    # steps fc1 amplifies: the most of either error, so 16x8 gains less than it did on the pooled sums
    assert err["int16"] < 0.95 * err["int8"], err


@pytest.mark.slow
@pytest.mark.parametrize("activations", ["int8", "int16"])
def test_tflm_bit_exact_on_lfw_three_users(tmp_path, activations: str) -> None:
    """≥500 aligned LFW crops × 3 users from a user store: TFLM's integer logit == the golden model's, all
    (int8: the full-int8 model every target runs; int16: the 16x8 model of ``--activations int16``)."""
    require_shared("data", "lfw")
    from codegen.faces import load_crops

    crops, _ = load_crops("lfw", 512)
    assert len(crops) >= 500
    store = make_store(tmp_path / "users")
    total = 0
    for user in USERS:
        theta, meta = store.load(user)
        qf = quantize(theta, enroll_u8=crops[0], cfg=QuantConfig(activations=activations))
        model = build_tflite(qf, user_id=user, threshold=meta.threshold)
        mine = run_int8(qf, crops)
        theirs = tflm_logits(model, crops)
        n_diff = int((mine != theirs).sum())
        assert n_diff == 0, f"{user}: {n_diff} of {len(crops)} logits differ between TFLM and the golden model"
        assert mine.dtype == qf.act_dtype
        assert len(np.unique(mine)) > 1  # the logits really depend on the face
        total += len(crops)
    print(f"TFLM == golden on {total} {activations} logits ({len(crops)} LFW crops × {len(USERS)} users)")
