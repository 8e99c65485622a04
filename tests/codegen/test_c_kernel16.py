"""The 16x8 C kernels (firmware_templates/common/kernels/pv_*_s16.c behind the kernel front) built for the
host and compared with the golden model's int16 arithmetic bit for bit, whole, streamed and layer by layer;
the parser on format-version-3 blobs; an int8-only build refusing them; an arena below the plan refused
(fast: package faces or 256 LFW crops; slow: ≥500 LFW crops × 3 users)."""

from __future__ import annotations

import json
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from codegen.c_arch import kernel16_arena_bytes
from codegen.golden import l2norm_int8, run_int8
from codegen.quantize import QuantConfig, quantize
from pvcore.blob import FORMAT_VERSION_16X8, pack_blob, unpack_blob
from pvcore.qtheta import INT32_MAX, MULT_MIN, QuantizedF, QuantLayer, l2norm_multiplier, quantize_multiplier
from pvcore.spec import F_SPEC
from tests.codegen.conftest import THETA_NAMES, build_host
from tests.codegen.users import USERS, make_store
from tests.conftest import require_shared
from tests.helpers.cbuild import run as run_c
from tests.helpers.l2norm import DEPTH, edge_rows, run_op

INT16 = QuantConfig(activations="int16")


@pytest.fixture(scope="module")
def quantized16(thetas: dict[str, torch.Tensor], face_images: np.ndarray) -> dict[str, QuantizedF]:
    """Each θ quantized 16x8, the first test face as its enrollment crop."""
    return {k: quantize(th, enroll_u8=face_images[0], cfg=INT16) for k, th in thetas.items()}


def c_logits16(
    binary: Path, tmp: Path, blob: bytes, images: np.ndarray, mode: str = "infer", layers: bool = False,
) -> tuple[subprocess.CompletedProcess, np.ndarray, np.ndarray | None]:
    (tmp / "blob.bin").write_bytes(blob)
    np.ascontiguousarray(images, np.uint8).tofile(tmp / "images.u8")
    extra = [str(tmp / "layers.i16")] if layers else []
    res = subprocess.run(
        [str(binary), mode, str(tmp / "blob.bin"), str(tmp / "images.u8"), str(tmp / "logits.i16"), *extra],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    out = np.fromfile(tmp / "logits.i16", "<i2") if (tmp / "logits.i16").exists() else np.zeros(0, np.int16)
    lay = np.fromfile(tmp / "layers.i16", "<i2") if layers and res.returncode == 0 else None
    return res, out, lay


def test_blob_of_a_16x8_model_is_format_3_and_round_trips(quantized16: dict[str, QuantizedF]) -> None:
    qf = quantized16["hgen-7"]
    blob = pack_blob(qf, "alice", 0.25)
    header, back = unpack_blob(blob)
    assert header.format_version == FORMAT_VERSION_16X8 == 3
    assert back.activations == "int16"
    assert back.equal_arithmetic(qf)


@pytest.mark.parametrize(("mode", "build"), [("infer", "plain"), ("stream", "plain"), ("infer", "dsp")])
def test_c_kernel16_bit_exact(
    pv_test_bin: Path,
    pv_test_bin_dsp: Path,
    quantized16: dict[str, QuantizedF],
    face_images: np.ndarray,
    face_source: str,
    mode: str,
    build: str,
    tmp_path: Path,
) -> None:
    """Every θ: the C int16 logit == golden's on every image ("stream": fed in 1000-byte chunks, bands split;
    "dsp": the SMLAD path, its instructions emulated in C — QEMU runs the real ones, tests/host_tools)."""
    pv_test_bin = pv_test_bin_dsp if build == "dsp" else pv_test_bin
    report = {}
    for name in THETA_NAMES:
        qf = quantized16[name]
        golden = run_int8(qf, face_images)
        assert golden.dtype == np.int16
        res, c, _ = c_logits16(pv_test_bin, tmp_path, pack_blob(qf, name, 0.0), face_images, mode)
        assert res.returncode == 0, res.stderr
        report[name] = f"{int((c == golden).sum())}/{len(golden)} bit-exact"
        assert np.array_equal(c, golden), f"{name}: {(c != golden).sum()} of {len(golden)} logits differ"
        assert len(np.unique(golden)) > len(golden) // 4  # int16 logits: nearly all distinct
    print(json.dumps({"mode": mode, "build": build, "images": f"{len(face_images)} {face_source}", **report}))


@pytest.mark.parametrize("mode", ["infer", "stream"])
def test_c_kernel16_layer_by_layer(
    pv_test_bin: Path, quantized16: dict[str, QuantizedF], face_images: np.ndarray, tmp_path: Path, mode: str
) -> None:
    """Every layer's int16 output equals golden's, whole image or fed in 1000-byte chunks (the streamed
    prefix's rows reach the hook one by one, interleaved; pv_test_main puts them back in place)."""
    qf, imgs = quantized16["random-1"], face_images[:4]
    _, acts = run_int8(qf, imgs, return_layers=True)
    res, _, lay = c_logits16(pv_test_bin, tmp_path, pack_blob(qf, "x", 0.0), imgs, mode=mode, layers=True)
    assert res.returncode == 0, res.stderr
    per_image = sum(int(np.prod(s)) for s in F_SPEC.shapes[1:])
    lay = lay.reshape(len(imgs), per_image)
    off = 0
    for name, a in acts.items():
        n = a[0].size
        assert np.array_equal(lay[:, off : off + n], a.reshape(len(imgs), -1)), f"layer {name} differs"
        off += n


def test_c_parse_16x8_threshold_and_params(pv_test_bin: Path, quantized16: dict[str, QuantizedF],
                                           tmp_path: Path) -> None:
    qf = quantized16["random-0"]
    for thr in (-1.5, 0.0, 0.0123, 2.0, 1e6):
        (tmp_path / "b.bin").write_bytes(pack_blob(qf, "alice", thr))
        name, thr_q, uid = run_c(pv_test_bin, "parse", tmp_path / "b.bin").stdout.split()
        assert (name, uid) == ("PV_OK", "alice")
        assert int(thr_q) == qf.threshold_q(float(np.float32(thr)))  # int16 range: 1e6 is 32768, never

    blob = pack_blob(qf, "alice", 0.0)

    def patched(rec_index: int, field_off: int, value: int) -> str:
        b = bytearray(blob)
        struct.pack_into("<i", b, 64 + 32 + 64 * rec_index + field_off, value)
        struct.pack_into("<I", b, len(b) - 4, zlib.crc32(bytes(b[:-4])) & 0xFFFFFFFF)
        (tmp_path / "p.bin").write_bytes(bytes(b))
        return run_c(pv_test_bin, "parse", tmp_path / "p.bin").stdout.split()[0]

    assert patched(3, 32, 40000) == "PV_ERR_PARAM"  # act_max beyond int16
    assert patched(3, 28, -40000) == "PV_ERR_PARAM"  # act_min beyond int16
    assert patched(3, 24, 1) == "PV_ERR_PARAM"  # a nonzero zero point (TFLM's int16 kernels: 0)
    assert patched(3, 32, 30000) == "PV_ERR_PARAM"  # a clamp the quantizer never sets (int16: [0, 32767])


@pytest.mark.parametrize(("mult", "shift"), [
    (None, None),  # the quantizer's own (the int16 → int8 QUANTIZE to the calibrated intermediate scale)
    (MULT_MIN, 1),  # intermediate scale = input scale: every value beyond ±127 saturates
    (MULT_MIN, 7), (INT32_MAX, 7),  # the largest left shift: nearly every row saturated
    (INT32_MAX, 0), (MULT_MIN, -31), (INT32_MAX, -24),  # everything (nearly) rounds to 0: rows of zeros
    (0, 0),  # the flushed multiplier: every row all zero (acc 0)
    (1_234_567_890, -9),
])
def test_c_l2norm_s16_equals_golden(pv_test_bin: Path, quantized16: dict[str, QuantizedF], tmp_path: Path,
                                    mult: int | None, shift: int | None) -> None:
    """pv_l2norm_s16 in place == golden's l2norm_int8 on int16 rows (QUANTIZE int16 → int8, TFLM's int8
    L2Normalization, the int8 values as int16): edge rows over the whole int16 range (zeros, ±1, saturated at
    −32768 / 32767, alternating) and random ones, for the multiplier/shift extremes the parser accepts."""
    q = quantized16["random-0"].layers[F_SPEC.pool_index]
    if mult is None:
        mult, shift = int(q.multiplier[0]), int(q.shift[0])
    q16 = QuantLayer(name="pool", kind="l2norm", relu=False, in_scale=q.in_scale, in_zp=0, out_scale=q.out_scale,
                     out_zp=0, act_min=q.act_min, act_max=q.act_max, w_scales=q.w_scales,
                     multiplier=np.array([mult], np.int32), shift=np.array([shift], np.int32))
    x = edge_rows(-32768, 32767, 150).astype(np.int16)
    got = run_op(pv_test_bin, tmp_path, "l2norm16", x, "<i2", DEPTH, mult, shift).reshape(x.shape)
    want = l2norm_int8(x.reshape(len(x), 1, 1, DEPTH), q16).reshape(x.shape)
    assert np.array_equal(got, want), f"{int((got != want).any(axis=1).sum())} of {len(x)} rows differ"
    assert got.min() >= -128 and got.max() <= 127


def test_c_parse_16x8_l2norm_params(pv_test_bin: Path, quantized16: dict[str, QuantizedF], tmp_path: Path) -> None:
    """The 16x8 L2 normalization's one multiplier must be the int16 → int8 QUANTIZE's for its two scales
    (TFLM's QuantizeMultiplier of their ratio in double: pv_quantize_scale_ratio), within the parser's
    bounds; any other intermediate scale with its own multiplier is accepted."""
    qf = quantized16["random-0"]
    blob = pack_blob(qf, "alice", 0.0)
    rec = 64 + 32 + 64 * F_SPEC.pool_index
    in_scale = qf.layers[F_SPEC.pool_index].in_scale

    def patched(wscale: float | None, mult: int, shift: int) -> str:
        b = bytearray(blob)
        arrays = [(44, "<i", mult), (48, "<i", shift)] + ([(52, "<f", wscale)] if wscale is not None else [])
        for field_off, fmt, value in arrays:
            struct.pack_into(fmt, b, 64 + struct.unpack_from("<I", b, rec + field_off)[0], value)
        struct.pack_into("<I", b, len(b) - 4, zlib.crc32(bytes(b[:-4])) & 0xFFFFFFFF)
        (tmp_path / "p.bin").write_bytes(bytes(b))
        return run_c(pv_test_bin, "parse", tmp_path / "p.bin").stdout.split()[0]

    m, s = int(qf.layers[F_SPEC.pool_index].multiplier[0]), int(qf.layers[F_SPEC.pool_index].shift[0])
    assert patched(None, m, s) == "PV_OK"
    assert patched(None, m + 1, s) == "PV_ERR_PARAM"  # a valid pair, not the scales' own
    assert patched(None, m, s + 1) == "PV_ERR_PARAM"
    assert patched(None, INT32_MAX, 7) == "PV_ERR_PARAM"
    for mid in (in_scale, in_scale / 64, in_scale / 100, in_scale * 2.0**30, in_scale * 2.0**40, 0.0123):
        pm, ps = l2norm_multiplier(in_scale, mid)
        assert patched(mid, pm, ps) == "PV_OK", mid
    assert l2norm_multiplier(in_scale, in_scale / 128) == quantize_multiplier(128.0) == (MULT_MIN, 8)
    assert patched(in_scale / 128, MULT_MIN, 8) == "PV_ERR_PARAM"  # the scales' own, beyond the left shift of 7
    assert patched(0.0, 0, 0) == "PV_ERR_PARAM"  # intermediate scale 0


def test_int8_only_build_refuses_a_16x8_blob(quantized16: dict[str, QuantizedF], tmp_path: Path) -> None:
    exe = build_host(tmp_path / "pv_test8", ["-UPV_WITH_16X8"])
    (tmp_path / "b.bin").write_bytes(pack_blob(quantized16["random-0"], "alice", 0.0))
    assert run_c(exe, "parse", tmp_path / "b.bin").stdout.split()[0] == "PV_ERR_VERSION"


def test_kernel16_refuses_an_arena_below_its_plan(
    quantized16: dict[str, QuantizedF], face_images: np.ndarray, tmp_path: Path
) -> None:
    """A build whose PV_KERNEL16_ARENA_BYTES is below the plan's need refuses to run (PV_ERR_LAYOUT)
    instead of writing past the arena."""
    exe = build_host(tmp_path / "pv_test_small", [f"-DPV_KERNEL16_ARENA_BYTES={kernel16_arena_bytes() - 4}u"])
    res, _, _ = c_logits16(exe, tmp_path, pack_blob(quantized16["random-0"], "x", 0.0), face_images[:1])
    assert res.returncode != 0 and "PV_ERR_LAYOUT" in res.stderr


@pytest.mark.slow
def test_c_kernel16_bit_exact_on_lfw_three_users(pv_test_bin: Path, tmp_path: Path) -> None:
    """≥500 aligned LFW crops × 3 users from a user store: the C 16x8 kernel == the golden model, all."""
    require_shared("data", "lfw")
    from codegen.faces import load_crops

    crops, _ = load_crops("lfw", 512)
    assert len(crops) >= 500
    store = make_store(tmp_path / "users")
    total = 0
    for user in USERS:
        theta, meta = store.load(user)
        qf = quantize(theta, enroll_u8=crops[0], cfg=INT16)
        res, c, _ = c_logits16(pv_test_bin, tmp_path, pack_blob(qf, user, meta.threshold), crops, "stream")
        assert res.returncode == 0, res.stderr
        golden = run_int8(qf, crops)
        n_diff = int((c != golden).sum())
        assert n_diff == 0, f"{user}: {n_diff} of {len(crops)} logits differ between the C kernel and golden"
        total += len(crops)
    print(f"pv_kernel16 == golden on {total} int16 logits ({len(crops)} LFW crops × {len(USERS)} users)")

