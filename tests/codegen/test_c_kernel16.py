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
from codegen.golden import run_int8
from codegen.quantize import QuantConfig, quantize
from pvcore.blob import FORMAT_VERSION_16X8, pack_blob, unpack_blob
from pvcore.qtheta import QuantizedF
from pvcore.spec import F_SPEC
from tests.codegen.conftest import THETA_NAMES, build_host
from tests.codegen.users import USERS, make_store
from tests.conftest import require_shared
from tests.helpers.cbuild import run as run_c

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

