"""The C kernel (firmware_templates/common) built for the host and compared with the golden model bit for
bit; the blob parser's error codes; the generated pv_arch.h and the arena plans; a Cortex-M4 cross-compile
of the portable core (every source and flag from the firmware's own build files, tests/helpers/cbuild.py)."""

from __future__ import annotations

import json
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from codegen.c_arch import DEFAULT_OUT, kernel16_arena_bytes, kernel_arena_bytes, kernel_plan, render, streaming
from codegen.golden import inv_sqrt_quantized_multiplier_exp, l2norm_rows_int8, run_int8
from pvcore.blob import pack_blob
from pvcore.qtheta import INT32_MAX, QuantizedF, l2norm_multiplier
from pvcore.spec import F_SPEC
from tests.codegen.conftest import THETA_NAMES
from tests.helpers import cbuild
from tests.helpers.blobs import CORRUPTIONS, corruptions
from tests.helpers.cbuild import run as run_c
from tests.helpers.l2norm import DEPTH, edge_rows, run_op

C_ERRORS = {
    "truncated_header": "PV_ERR_TRUNCATED",
    "truncated_body": "PV_ERR_TRUNCATED",
    "magic": "PV_ERR_MAGIC",
    "version": "PV_ERR_VERSION",
    "header_size": "PV_ERR_HEADER_SIZE",
    "payload_size": "PV_ERR_SIZE",
    "crc": "PV_ERR_CRC",
    "arch": "PV_ERR_ARCH",
    "layout": "PV_ERR_LAYOUT",
    "param": "PV_ERR_PARAM",
}


def c_logits(
    binary: Path, tmp: Path, blob: bytes, images: np.ndarray, mode: str = "infer", layers: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    (tmp / "blob.bin").write_bytes(blob)
    np.ascontiguousarray(images, np.uint8).tofile(tmp / "images.u8")
    extra = [tmp / "layers.i8"] if layers else []
    res = run_c(binary, mode, tmp / "blob.bin", tmp / "images.u8", tmp / "logits.i8", *extra)
    assert res.returncode == 0, res.stderr
    lay = np.fromfile(tmp / "layers.i8", np.int8) if layers else None
    return np.fromfile(tmp / "logits.i8", np.int8), lay


# --------------------------------------------------------------------------------------------------
# generated header, arena
# --------------------------------------------------------------------------------------------------
def test_pv_arch_header_is_up_to_date() -> None:
    assert DEFAULT_OUT.read_text() == render(), "stale pv_arch.h: run `python -m codegen.c_arch`"


def test_kernel_plans() -> None:
    """The int8 plan runs every layer of pv-gconv-s in place (the activations take the largest one's bytes,
    the scratch comes after them); the 16x8 plan is buffers A and B of the largest output after the
    streamed prefix (b2_down's 14x14x48 int16)."""
    plan = kernel_plan()
    largest = max(int(np.prod(s)) for s in F_SPEC.shapes[1:])
    assert plan.scratch == (largest + 7) // 8 * 8 and set(plan.out_offsets) == {0}
    assert plan.total == kernel_arena_bytes() == 31_584  # spec v4 and v5 (v3: 32,448)
    assert kernel16_arena_bytes() == 2 * 2 * 14 * 14 * 48 == 37_632
    assert streaming() == (4, 28)
    text = render()
    assert f"#define PV_KERNEL_ARENA_BYTES {plan.total}u" in text
    assert f"#define PV_KERNEL16_ARENA_BYTES {kernel16_arena_bytes()}u" in text


def test_c_arena_size_queries_equal_the_python_plans(pv_test_bin: Path) -> None:
    """pv_kernel_arena_size() / pv_kernel16_arena_size() (the C planner at run time) == codegen.c_arch's
    figures == the PV_KERNEL_ARENA_BYTES / PV_KERNEL16_ARENA_BYTES that boards allocate."""
    size8, const8, size16, const16 = map(int, run_c(pv_test_bin, "arena").stdout.split())
    assert size8 == const8 == kernel_arena_bytes()
    assert size16 == const16 == kernel16_arena_bytes()
    print(json.dumps({"int8": size8, "16x8": size16}))


# --------------------------------------------------------------------------------------------------
# bit-exactness
# --------------------------------------------------------------------------------------------------
def test_c_kernel_bit_exact(
    pv_test_bin: Path,
    quantized: dict[str, QuantizedF],
    face_images: np.ndarray,
    face_source: str,
    tmp_path: Path,
) -> None:
    report = {}
    for name in THETA_NAMES:
        qf = quantized[name]
        golden = run_int8(qf, face_images)
        c, _ = c_logits(pv_test_bin, tmp_path, pack_blob(qf, name, 0.0), face_images)
        report[name] = f"{int((c == golden).sum())}/{len(golden)} bit-exact"
        assert np.array_equal(c, golden), f"{name}: {(c != golden).sum()} of {len(golden)} logits differ"
    print(json.dumps({"images": f"{len(face_images)} {face_source}", **report}))


def test_c_kernel_layer_by_layer(
    pv_test_bin: Path, quantized: dict[str, QuantizedF], face_images: np.ndarray, tmp_path: Path
) -> None:
    qf, imgs = quantized["hgen-7"], face_images[:8]
    _, acts = run_int8(qf, imgs, return_layers=True)
    _, lay = c_logits(pv_test_bin, tmp_path, pack_blob(qf, "x", 0.0), imgs, layers=True)
    # every layer's output bytes; an exact pool's would be its sums as int16 (little-endian), but spec v5's
    # "pool" is an L2 normalization: int8 at scale 1/128
    width = {q.name: 2 if q.exact_sum else 1 for q in qf.layers}
    assert width["pool"] == 1 and qf.layers[F_SPEC.pool_index].kind == "l2norm"
    per_image = sum(int(np.prod(s)) * width[la.name] for s, la in zip(F_SPEC.shapes[1:], F_SPEC.layers))
    lay = lay.reshape(len(imgs), per_image)
    off = 0
    for name, a in acts.items():
        n = a[0].size * width[name]
        got = np.ascontiguousarray(lay[:, off : off + n])
        got = got.view("<i2") if width[name] == 2 else got
        assert np.array_equal(got, a.reshape(len(imgs), -1)), f"layer {name} differs"
        off += n


@pytest.mark.parametrize("mode", ["stream", "rows"])
def test_c_streaming_equals_golden(
    pv_test_bin: Path, quantized: dict[str, QuantizedF], face_images: np.ndarray, tmp_path: Path, mode: str
) -> None:
    """The image fed in 1000-byte chunks (bands split across chunks) or band by band (pv_stream_rows)."""
    qf = quantized["random-1"]
    c, _ = c_logits(pv_test_bin, tmp_path, pack_blob(qf, "x", 0.0), face_images, mode=mode)
    assert np.array_equal(c, run_int8(qf, face_images))


def test_c_dsp_path_bit_exact_emulated(
    pv_test_bin_dsp: Path, quantized: dict[str, QuantizedF], face_images: np.ndarray, tmp_path: Path
) -> None:
    """The SMLAD code path (PV_USE_DSP) on the host, its three SIMD instructions emulated in C."""
    for name in THETA_NAMES:
        qf = quantized[name]
        c, _ = c_logits(pv_test_bin_dsp, tmp_path, pack_blob(qf, name, 0.0), face_images[:96])
        assert np.array_equal(c, run_int8(qf, face_images[:96])), name


def test_c_kernel_runs_format_2_blobs(pv_test_bin: Path, face_images: np.ndarray, tmp_path: Path) -> None:
    """Spec v5's int8 blobs are format 2 (every layer requantizes: its "pool" is an L2 normalization, which
    has no exact sums to pass on, whatever QuantConfig.exact_pool says) and run bit-exact; the exact-sum
    flag on the L2 normalization's record is refused, in a blob of either int8 format."""
    import dataclasses

    from codegen.quantize import QuantConfig, quantize
    from training.verifier.functional import random_theta

    q2 = quantize(random_theta(5), cfg=dataclasses.replace(QuantConfig(n_aug=4), exact_pool=False))
    b2 = pack_blob(q2, "x", 0.0)
    assert struct.unpack_from("<H", b2, 4)[0] == 2
    assert pack_blob(quantize(random_theta(5), cfg=QuantConfig(n_aug=4)), "x", 0.0) == b2
    c, _ = c_logits(pv_test_bin, tmp_path, b2, face_images[:64])
    assert np.array_equal(c, run_int8(q2, face_images[:64]))
    for version in (2, 4):
        forged = bytearray(b2)
        struct.pack_into("<H", forged, 4, version)
        forged[64 + 32 + 64 * F_SPEC.pool_index + 1] |= 4  # FLAG_EXACT_SUM
        struct.pack_into("<I", forged, len(forged) - 4, zlib.crc32(bytes(forged[:-4])) & 0xFFFFFFFF)
        (tmp_path / "f.bin").write_bytes(bytes(forged))
        assert run_c(pv_test_bin, "parse", tmp_path / "f.bin").stdout.split()[0] == "PV_ERR_LAYOUT", version


# --------------------------------------------------------------------------------------------------
# blob parsing in C
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def c_blob(quantized: dict[str, QuantizedF]) -> bytes:
    return pack_blob(quantized["random-0"], "alice", 0.0123)


def test_c_parse_ok_and_threshold(
    pv_test_bin: Path, c_blob: bytes, quantized: dict[str, QuantizedF], tmp_path: Path
) -> None:
    (tmp_path / "b.bin").write_bytes(c_blob)
    name, thr_q, uid = run_c(pv_test_bin, "parse", tmp_path / "b.bin").stdout.split()
    assert (name, uid) == ("PV_OK", "alice")
    assert int(thr_q) == quantized["random-0"].threshold_q(float(np.float32(0.0123)))
    (tmp_path / "slot.bin").write_bytes(c_blob + b"\xff" * 100)  # a flash slot longer than the blob
    assert run_c(pv_test_bin, "parse", tmp_path / "slot.bin").stdout.split()[0] == "PV_OK"


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_c_parse_refuses_corruption(pv_test_bin: Path, c_blob: bytes, name: str, tmp_path: Path) -> None:
    data, _ = corruptions(c_blob)[name]
    (tmp_path / "bad.bin").write_bytes(data)
    assert run_c(pv_test_bin, "parse", tmp_path / "bad.bin").stdout.split()[0] == C_ERRORS[name]


def test_c_parse_refuses_misaligned_blob(pv_test_bin: Path, c_blob: bytes, tmp_path: Path) -> None:
    (tmp_path / "b.bin").write_bytes(c_blob)
    assert run_c(pv_test_bin, "parse-misaligned", tmp_path / "b.bin").stdout.split()[0] == "PV_ERR_ALIGN"


def test_c_parse_refuses_bad_bias_and_pool_params(pv_test_bin: Path, c_blob: bytes, tmp_path: Path) -> None:
    def patched(rec_index: int, field_off: int, fmt: str, value, array: bool = False) -> str:
        b = bytearray(c_blob)
        rec = 64 + 32 + 64 * rec_index
        if array:
            off = struct.unpack_from("<I", b, rec + field_off)[0]
            struct.pack_into(fmt, b, 64 + off, value)
        else:
            struct.pack_into(fmt, b, rec + field_off, value)
        struct.pack_into("<I", b, len(b) - 4, zlib.crc32(bytes(b[:-4])) & 0xFFFFFFFF)
        (tmp_path / "p.bin").write_bytes(bytes(b))
        return run_c(pv_test_bin, "parse", tmp_path / "p.bin").stdout.split()[0]

    pool = [la.name for la in F_SPEC.layers].index("pool")
    assert patched(1, 40, "<i", 2**30 + 1, array=True) == "PV_ERR_PARAM"  # bias beyond 2^30
    assert patched(pool, 48, "<i", 31, array=True) == "PV_ERR_PARAM"  # the pool's shift beyond 30
    assert patched(pool, 24, "<i", 5) == "PV_ERR_PARAM"  # pool out zp 5: the next layer's input does not chain
    assert patched(2, 16, "<i", 3) == "PV_ERR_PARAM"  # input params do not chain
    assert patched(3, 32, "<i", 200) == "PV_ERR_PARAM"  # act_max beyond int8
    assert patched(3, 28, "<i", 127) == "PV_ERR_PARAM"  # a clamp the quantizer never sets (ReLU: [zp, 127])


def test_c_parse_refuses_bad_l2norm_params(pv_test_bin: Path, c_blob: bytes, tmp_path: Path) -> None:
    """The int8 L2 normalization's record as pvcore/qtheta.check_l2norm holds it: output scale 1/128 and zero
    point 0 (TFLM's, fixed), one multiplier: the identity (2^30, 1) at the input's own scale."""
    pool = F_SPEC.pool_index
    rec = 64 + 32 + 64 * pool

    def patched(*fields: tuple[int, str, object, bool]) -> str:
        b = bytearray(c_blob)
        for field_off, fmt, value, array in fields:
            at = 64 + struct.unpack_from("<I", b, rec + field_off)[0] if array else rec + field_off
            struct.pack_into(fmt, b, at, value)
        struct.pack_into("<I", b, len(b) - 4, zlib.crc32(bytes(b[:-4])) & 0xFFFFFFFF)
        (tmp_path / "p.bin").write_bytes(bytes(b))
        return run_c(pv_test_bin, "parse", tmp_path / "p.bin").stdout.split()[0]

    in_scale = struct.unpack_from("<f", c_blob, rec + 12)[0]
    assert patched() == "PV_OK"
    assert patched((44, "<i", INT32_MAX, True)) == "PV_ERR_PARAM"  # a multiplier the int8 op would not use
    assert patched((48, "<i", 0, True)) == "PV_ERR_PARAM"  # (2^30, 0): not the identity
    assert patched((52, "<f", in_scale * 2, True)) == "PV_ERR_PARAM"  # intermediate scale != input scale
    assert patched((52, "<f", in_scale * 2, True), (44, "<i", 2**30, True), (48, "<i", 0, True)) == "PV_ERR_PARAM"
    # output params: TFLM's 1/128, zero point 0 (fc1's input, the next record's, moved along: the chain holds)
    assert patched((24, "<i", 1, False), (64 + 16, "<i", 1, False)) == "PV_ERR_PARAM"
    assert patched((20, "<f", 1 / 64, False), (64 + 12, "<f", 1 / 64, False)) == "PV_ERR_PARAM"
    assert patched((0, "<B", 2, False)) == "PV_ERR_LAYOUT"  # an avgpool record where the table says l2norm
    assert patched((2, "<H", DEPTH, False)) == "PV_ERR_LAYOUT"  # n_out: no biases


# --------------------------------------------------------------------------------------------------
# the L2 normalization's C port (kernels/pv_l2norm_s8.c, pv_blob.c) against the golden model
# --------------------------------------------------------------------------------------------------
def test_c_inv_sqrt_equals_golden(pv_test_bin: Path, tmp_path: Path) -> None:
    """pv_inv_sqrt_mult_exp == golden's GetInvSqrtQuantizedMultiplierExp: every acc below 4096 (0 and 1: the
    special case; below 32 the multiplier is shifted left), every power of two and its neighbours (the
    normalization's bit pairs; 2^29 and up: its divisions by 4), random accs up to 2^31 - 1."""
    pow2 = np.array([1 << k for k in range(1, 31)], np.int64)
    acc = np.concatenate([np.arange(4096), pow2 - 1, pow2, pow2 + 1, [INT32_MAX, 6_242_400, 96 * 255**2],
                          np.random.default_rng(0).integers(0, INT32_MAX, 8000, endpoint=True)])
    acc = np.clip(acc, 0, INT32_MAX).astype(np.int32)
    got = run_op(pv_test_bin, tmp_path, "invsqrt", acc, "<i4").reshape(-1, 2)
    mult, shift = inv_sqrt_quantized_multiplier_exp(acc)
    assert np.array_equal(got[:, 0], mult) and np.array_equal(got[:, 1], shift)


def test_c_quantize_scale_ratio_equals_python(pv_test_bin: Path, tmp_path: Path) -> None:
    """pv_quantize_scale_ratio (integers only) == pvcore.qtheta.l2norm_multiplier (the float32 scales' ratio
    in double, then QuantizeMultiplier): random scales over float32's whole range, subnormals, the identity,
    ratios that flush to (0, 0) or need a left shift, and ratios whose exact value lies just off a rounding
    tie of the 31-bit multiplier, where double's own rounding decides it."""
    rng = np.random.default_rng(1)
    pairs = [rng.uniform(1e-6, 1.0, (2000, 2)), 10.0 ** rng.uniform(-45, 38, (2000, 2)),
             [[1, 1], [0.5, 1], [1, 0.5], [3.4028235e38, 1e-45], [1e-45, 3.4028235e38], [1e-45, 1e-45],
              [1.4e-45, 2.8e-45], [1.1754942e-38, 1.1754944e-38], [0.1, 0.3], [1, 2**31], [1, 2**32], [1, 2**33],
              [2**7, 1], [2**8, 1], [1, 1 + 2**-23], [1 + 2**-23, 1]]]
    ties = []
    for m2 in rng.integers(2**21, 2**23, 1500) | 1:  # odd: m1·2^30 / m2 is (2j + 1)/2 ± 1/(2 m2)
        for sign in (1, -1):
            m1 = (int(m2) + sign) // 2 * pow(2**30, -1, int(m2)) % int(m2) + int(m2)
            if m1 < 2**24:
                ties.append([m1 * 2.0**-40, int(m2) * 2.0**-10])
    f = np.concatenate([np.asarray(p, np.float64) for p in (*pairs, ties)]).astype(np.float32)
    got = run_op(pv_test_bin, tmp_path, "qratio", f, "<i4").reshape(-1, 2)
    want = np.array([l2norm_multiplier(float(a), float(b)) for a, b in f], np.int64)
    bad = np.flatnonzero((got != want).any(axis=1))
    assert bad.size == 0, [(f[i].tolist(), got[i].tolist(), want[i].tolist()) for i in bad[:5]]


@pytest.mark.parametrize("zp", [0, -128, 127, -111, 5])
def test_c_l2norm_s8_equals_golden(pv_test_bin: Path, tmp_path: Path, zp: int) -> None:
    """pv_l2norm_s8 in place == golden's TFLM L2Normalization on edge rows of int8 values (x − zp = 0 in every
    value, ±1, tiny, saturated at −128 / 127 — with zp at a bound, |x − zp| up to 255 — and random)."""
    x = edge_rows(-128, 127, 150).astype(np.int8)
    got = run_op(pv_test_bin, tmp_path, "l2norm8", x, np.int8, DEPTH, zp).reshape(x.shape)
    want = l2norm_rows_int8(x.astype(np.int64) - zp)
    assert np.array_equal(got, want), f"{int((got != want).any(axis=1).sum())} of {len(x)} rows differ"
    if zp == 0:
        assert (got[0] == 0).all() and got[1, 5] == 127 and got[2, 7] == -128  # acc 0, acc 1: TFLM's 2^31 - 1


def test_c_crc32_is_zlib(pv_test_bin: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for n in (0, 1, 7, 1000, 30001):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        (tmp_path / "d.bin").write_bytes(data)
        assert run_c(pv_test_bin, "crc", tmp_path / "d.bin").stdout.strip() == f"{zlib.crc32(data):08x}"


# --------------------------------------------------------------------------------------------------
# Cortex-M4 cross-compile
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dsp,extra", [(False, ""), (True, "-DPV_WITH_16X8=1")], ids=["plain-int8", "dsp-16x8"])
def test_common_sources_cross_compile_for_cortex_m4(dsp: bool, extra: str, tmp_path: Path) -> None:
    """Every source of sources.mk (which lists every .c of common/, nothing forgotten) with the Cortex-M4
    firmware's flags (int8 only, and with the 16x8 kernels); the DSP build's conv kernels use SMLAD."""
    cc = cbuild.tool("arm-none-eabi-gcc", "apt-get install gcc-arm-none-eabi")
    sources = [Path(s) for s in cbuild.core_sources()]
    assert {s for s in sources if s.is_relative_to(cbuild.COMMON)} == set(cbuild.COMMON.rglob("*.c"))
    assert {s.name for s in sources if not s.is_relative_to(cbuild.COMMON)} == {"monocypher.c", "monocypher-ed25519.c"}
    flags = [f for f in cbuild.arm_flags(dsp, extra) if f != "-flto"]  # machine code, not LTO's IR, to look into
    for src in sources:
        res = subprocess.run([cc, *flags, "-c", str(src), "-o", str(tmp_path / (src.stem + ".o"))],
                             capture_output=True, text=True)
        assert res.returncode == 0, f"{src.name}:\n{res.stderr}"
    if dsp:
        for obj in ("pv_conv_s8.o", "pv_conv_s16.o", "pv_dense_s8.o"):
            dis = subprocess.run([cc.replace("gcc", "objdump"), "-d", str(tmp_path / obj)], capture_output=True,
                                 text=True).stdout
            assert "smlad" in dis and "sxtb16" in dis, obj
