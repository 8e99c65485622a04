"""MobileFaceNet y1: MXNet .params reader, symbol interpreter and the backbone wrapper.

Tests that read ../shared fail (SharedDataMissing) rather than skip when the data is absent.
"""

from __future__ import annotations

import json
import struct

import cv2
import numpy as np
import pytest

from pvcore.paths import shared_path
from training.backbones.base import ARCFACE112
from training.backbones.mobilefacenet_y1 import MobileFaceNetY1, params_path, symbol_path
from training.backbones.mxnet_graph import MXNetGraph, UnsupportedOp
from training.backbones.mxnet_params import (
    NDARRAY_V2_MAGIC,
    NDARRAY_V3_MAGIC,
    MXNetParamsError,
    load_params,
    parse_params,
    split_arg_aux,
)

# fc1 output of the official MXNet 1.9.1 runtime (Module, CPU) for the synthetic image below.
MXNET_PATTERN_FC1_FIRST8 = [0.40559542, -0.02362107, 0.09070305, -0.10196785,
                            -0.32587397, 0.10841617, -0.24201125, 0.24090074]
MXNET_PATTERN_FC1_NORM = 3.762602


def _pattern_image() -> np.ndarray:
    y, x, c = np.meshgrid(np.arange(112), np.arange(112), np.arange(3), indexing="ij")
    return ((x * 2 + y * 3 + c * 50) % 256).astype(np.uint8)[None]


# ---------------------------------------------------------------- synthetic .params files


def _ndarray_bytes(a: np.ndarray, magic: int = NDARRAY_V2_MAGIC, type_flag: int = 0) -> bytes:
    out = struct.pack("<Ii", magic, 0) + struct.pack("<i", a.ndim) + struct.pack(f"<{a.ndim}q", *a.shape)
    out += struct.pack("<iii", 1, 0, type_flag)
    return out + np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()


def _params_bytes(named: dict[str, tuple[np.ndarray, int]], magic: int = NDARRAY_V2_MAGIC) -> bytes:
    out = struct.pack("<QQQ", 0x112, 0, len(named))
    for a, flag in named.values():
        out += _ndarray_bytes(a, magic, flag)
    out += struct.pack("<Q", len(named))
    for name in named:
        out += struct.pack("<Q", len(name.encode())) + name.encode()
    return out


@pytest.mark.parametrize("magic", [NDARRAY_V2_MAGIC, NDARRAY_V3_MAGIC])
def test_reader_roundtrip_synthetic(magic):
    named = {
        "arg:w": (np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 5.5, 0),
        "arg:d": (np.linspace(0, 1, 5, dtype=np.float64), 1),
        "aux:i": (np.array([[1, -2], [3, 4]], dtype=np.int64), 6),
        "aux:u": (np.array([7, 255], dtype=np.uint8), 3),
    }
    got = parse_params(_params_bytes(named, magic))
    assert list(got) == list(named)
    for k, (a, _) in named.items():
        assert got[k].dtype == a.dtype and got[k].shape == a.shape
        np.testing.assert_array_equal(got[k], a)
    arg, aux = split_arg_aux(got)
    assert set(arg) == {"w", "d"} and set(aux) == {"i", "u"}


def test_reader_errors():
    good = _params_bytes({"arg:w": (np.ones((2, 2), np.float32), 0)})
    parse_params(good)
    with pytest.raises(MXNetParamsError, match="magic"):
        parse_params(struct.pack("<Q", 0x113) + good[8:])
    with pytest.raises(MXNetParamsError, match="truncated"):
        parse_params(good[:-10])
    with pytest.raises(MXNetParamsError, match="truncated"):
        parse_params(good[:5])
    bad_nd = good[:24] + struct.pack("<I", 0xDEADBEEF) + good[28:]
    with pytest.raises(MXNetParamsError, match="bad NDArray magic 0xDEADBEEF"):
        parse_params(bad_nd)
    with pytest.raises(MXNetParamsError, match="trailing"):
        parse_params(good + b"\0")
    with pytest.raises(MXNetParamsError, match="prefix"):
        split_arg_aux({"w": np.zeros(1)})


# ---------------------------------------------------------------- the real checkpoint


@pytest.fixture(scope="module")
def raw_params():
    return load_params(params_path())


@pytest.fixture(scope="module")
def symbol():
    return json.loads(symbol_path().read_text())


@pytest.fixture(scope="module")
def model():
    return MobileFaceNetY1(flip_tta=True)


def test_params_file_parses(raw_params, symbol):
    assert len(raw_params) == 284
    arg, aux = split_arg_aux(raw_params)
    assert len(arg) == 184 and len(aux) == 100
    assert all(v.dtype == np.float32 for v in raw_params.values())
    assert arg["conv_1_conv2d_weight"].shape == (64, 3, 3, 3)
    assert arg["conv_6dw7_7_conv2d_weight"].shape == (512, 1, 7, 7)
    assert arg["fc1_weight"].shape == (128, 512)
    assert arg["pre_fc1_bias"].shape == (128,)
    assert aux["fc1_moving_var"].shape == (128,)
    assert sum(v.size for v in arg.values()) == 1_003_264
    assert sum(v.size for v in aux.values()) == 19_584
    assert all(np.isfinite(v).all() for v in raw_params.values())
    # every convolution weight agrees with its node's attributes
    nodes = symbol["nodes"]
    for n in nodes:
        if n["op"] == "Convolution":
            w = arg[nodes[n["inputs"][1][0]]["name"]]
            a = n["attrs"]
            assert w.shape[0] == int(a["num_filter"])
            assert w.shape[2:] == tuple(int(k) for k in a["kernel"].strip("()").split(","))
            if int(a["num_group"]) > 1:  # depthwise
                assert int(a["num_group"]) == w.shape[0] and w.shape[1] == 1


def test_strict_coverage(raw_params, symbol):
    arg, aux = split_arg_aux(raw_params)
    params = {**arg, **aux}
    variables = {n["name"] for n in symbol["nodes"] if n["op"] == "null"}
    assert variables - set(params) == {"data"}
    assert set(params) - variables == set()
    nodes = symbol["nodes"]
    consumed = {nodes[i[0]]["name"] for n in nodes if n["op"] != "null" for i in n["inputs"]}
    assert set(params) <= consumed
    graph = MXNetGraph(symbol, params)
    assert graph.unused_params == [] and graph.head_name == "fc1"
    with pytest.raises(KeyError, match="not used"):
        MXNetGraph(symbol, {**params, "stray_weight": np.zeros(3, np.float32)})
    missing = dict(params)
    del missing["conv_1_relu_gamma"]
    with pytest.raises(KeyError, match="conv_1_relu_gamma"):
        MXNetGraph(symbol, missing)


def test_graph_ops_and_unsupported(model, symbol):
    assert model.info()["op_types"] == {
        "_minus_scalar": 1, "_mul_scalar": 1, "Convolution": 49, "BatchNorm": 50,
        "LeakyReLU": 33, "elemwise_add": 12, "FullyConnected": 1,
    }
    bad = {"nodes": [{"op": "null", "name": "data", "inputs": []},
                     {"op": "SoftmaxActivation", "name": "sm", "inputs": [[0, 0, 0]]}],
           "heads": [[1, 0, 0]]}
    with pytest.raises(UnsupportedOp, match="SoftmaxActivation"):
        MXNetGraph(bad, {})


def test_bn_defaults_follow_mxnet(model):
    # no eps attr → MXNet default 1e-3; fc1 has eps 2e-5 and fix_gamma (gamma used as 1)
    assert model.net.ops["conv_1_batchnorm"].eps == pytest.approx(1e-3)
    assert not model.net.ops["conv_1_batchnorm"].fix_gamma
    assert model.net.ops["fc1"].eps == pytest.approx(2e-5) and model.net.ops["fc1"].fix_gamma


def test_matches_mxnet_reference(model):
    raw = model.raw_embed(_pattern_image())
    assert raw.shape == (1, 128) and raw.dtype == np.float32
    np.testing.assert_allclose(raw[0, :8], MXNET_PATTERN_FC1_FIRST8, atol=2e-5)
    assert np.linalg.norm(raw) == pytest.approx(MXNET_PATTERN_FC1_NORM, rel=1e-5)


def test_embed_shape_norm_determinism(model):
    assert (model.name, model.embedding_dim, model.input_kind) == ("mobilefacenet-y1", 128, ARCFACE112)
    x = np.random.default_rng(0).integers(0, 256, (70, 112, 112, 3), dtype=np.uint8)  # spans 2 batches
    e1 = model.embed(x)
    assert e1.shape == (70, 128) and e1.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e1, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(e1, model.embed(x))
    np.testing.assert_allclose(model.embed(x[60:70]), e1[60:70], atol=1e-5)  # batch-independent
    assert model.embed(x[:0]).shape == (0, 128)
    info = model.info()
    assert info["parameters"] == 1_003_264 and info["buffers"] == 19_584
    assert not any(m.training for m in model.net.modules())


def test_flip_tta_is_flip_invariant(model):
    x = _pattern_image()
    np.testing.assert_allclose(model.embed(x), model.embed(np.ascontiguousarray(x[:, :, ::-1])), atol=1e-5)


def test_input_validation(model):
    with pytest.raises(ValueError, match="112"):
        model.embed(np.zeros((1, 96, 112, 3), np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        model.embed(np.zeros((1, 112, 112, 3), np.float32))


# ---------------------------------------------------------------- real faces (LFW, unaligned)


def _lfw(name: str, idx: str) -> np.ndarray:
    p = shared_path("data", "lfw", "lfw-deepfunneled", name, f"{name}_{int(idx):04d}.jpg")
    img = cv2.imread(str(p))
    assert img is not None, f"unreadable {p}"
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)[68:180, 69:181]  # fixed centre crop, NOT aligned


def test_same_vs_different_similarity(model):
    lines = shared_path("data", "lfw", "pairs.txt").read_text().splitlines()
    rows = [ln.split() for ln in lines[1:21] + lines[301:321]]
    assert [len(r) for r in rows] == [3] * 20 + [4] * 20
    a = np.stack([_lfw(r[0], r[1]) for r in rows])
    b = np.stack([_lfw(r[0], r[2]) if len(r) == 3 else _lfw(r[2], r[3]) for r in rows])
    sim = (model.embed(a) * model.embed(b)).sum(1)
    same, diff = sim[:20], sim[20:]
    # measured: same 0.674 ± 0.129 (min 0.349), different 0.021 ± 0.107 (max 0.223)
    assert same.mean() > 0.5 and diff.mean() < 0.15
    assert same.mean() - diff.mean() > 0.4
    assert np.median(same) > diff.max() - 0.05
