"""TensorFlow Lite Micro on the emulated Cortex-M4 (firmware_templates/cortex-m-qemu-tflm): the emitted .tflite
behind the same serial protocol, θ store and main loop as the fixed kernel, TFLM built from the shared
folder's third_party (reference and CMSIS-NN kernels; the library compiled once into .cache/tflm).

Slow, all of them (each boots QEMU; the first builds TFLM's library, about a minute per flag set on two
cores):
- the README's chain on this board: a package photo enrolled with the shipped hypernetwork, the emitted
  cortex-m-qemu-tflm project built with CMSIS-NN's kernels and booted twice, its θ sent over the serial
  link, parity on 200 views (every logit bit-exact with the golden model); then the same user's 16x8
  project on the same 200 views;
- the 16x8 .tflite on TFLM + CMSIS-NN: what TFLM's own routing does (wrong logits from grouped int16
  convolutions, no error; CMSIS-NN's FULLY_CONNECTED refuses per-channel int16 weights), and that
  pv_tflm.cc's routing (grouped int16 convolutions on the reference kernel) is bit-exact — so if an
  upstream update fixes the defect, this test says so and the workaround can go.
"""

from __future__ import annotations

import shutil
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest

from host_tools.qemu import QemuBoard, build_tflm_firmware, make, tflm_make_vars
from tests.conftest import require_shared


def _tools() -> None:
    missing = [t for t in ("arm-none-eabi-g++", "qemu-system-arm") if shutil.which(t) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run .ci/setup (gcc-arm-none-eabi, "
                    "libstdc++-arm-none-eabi-newlib, libstdc++-arm-none-eabi-dev, qemu-system-arm)")
    require_shared("third_party", "tflite-micro")


@pytest.mark.slow
def test_emitted_tflm_project_parity_200_views_over_serial(tmp_path: Path) -> None:
    _tools()
    from codegen.emit import emit
    from host_tools.demo import ENROLLED, STRANGER, aligned_face, enroll_person, package_photo, views
    from host_tools.enroll import blob_from_file, enroll
    from host_tools.parity import run_parity
    from host_tools.serial_link import SerialLink

    t0 = time.monotonic()
    users = tmp_path / "users"
    person = enroll_person(ENROLLED, package_photo(ENROLLED), users, None)
    res = emit(ENROLLED, "cortex-m-qemu-tflm", out=tmp_path / "emit", users_root=users)
    make(res.out, "-j2", "KERNELS=cmsis", *tflm_make_vars())  # the emitted project's own Makefile
    elf = res.out / "build" / "pv_fw.elf"
    ub = blob_from_file(res.out / f"{ENROLLED}_theta.bin")
    assert ub.qf.activations == "int8"  # the target's default .tflite: int8
    faces = {name: aligned_face(package_photo(name)) for name in (ENROLLED, STRANGER)}
    n = 100
    images = np.concatenate([views(faces[ENROLLED], n, seed=101), views(faces[STRANGER], n, seed=202)])
    names = [f"{ENROLLED}/view{i:03d}" for i in range(n)] + [f"{STRANGER}/view{i:03d}" for i in range(n)]
    t_prep = time.monotonic() - t0

    with ExitStack() as stack:
        # no -icount: parity needs no instruction counts, and QEMU runs faster without
        urls = [stack.enter_context(QemuBoard(elf, icount=False)) for _ in range(2)]
        for url in urls:
            with SerialLink(url, timeout=10.0) as link:
                enroll(link, ub)
        r = run_parity(urls, ub, person.theta, images, names, source="views", show_progress=False)
    t8 = time.monotonic() - t0 - t_prep
    assert r.n_images == 200
    assert r.bit_exact == r.n_images, f"TFLM != golden on {r.n_images - r.bit_exact} of {r.n_images} views"
    assert r.golden_decision_agree == r.n_images
    dec = np.array([row["device_decision"] for row in r.images], bool)
    assert dec[:n].sum() >= 90 and dec[n:].sum() <= 10, (dec[:n].sum(), dec[n:].sum())

    # the user's 16x8 project: the 16x8 .tflite on CMSIS-NN with pv_tflm.cc's routing
    res16 = emit(ENROLLED, "cortex-m-qemu-tflm", out=tmp_path / "emit16", users_root=users, activations="int16")
    make(res16.out, "-j2", "KERNELS=cmsis", *tflm_make_vars())
    ub16 = blob_from_file(res16.out / f"{ENROLLED}_theta.bin")
    assert ub16.qf.activations == "int16"
    with ExitStack() as stack:
        urls = [stack.enter_context(QemuBoard(res16.out / "build" / "pv_fw.elf", icount=False)) for _ in range(2)]
        for url in urls:
            with SerialLink(url, timeout=10.0) as link:
                assert link.info().runs_16x8
                enroll(link, ub16)
        r16 = run_parity(urls, ub16, person.theta, images, names, source="views", show_progress=False)
    assert r16.bit_exact == r16.n_images == 200, f"16x8: TFLM != golden on {200 - r16.bit_exact} views"
    assert r16.golden_decision_agree == r16.n_images
    print(f"\ntflm parity: prepare {t_prep:.0f} s, int8 (CMSIS-NN) on 200 views {t8:.0f} s "
          f"({r.seconds:.0f} s on the link), 16x8 on 200 views {r16.seconds:.0f} s")


@pytest.mark.slow
def test_16x8_on_cmsis_nn_upstream_defect_and_the_workaround(tmp_path: Path) -> None:
    """The emitted 16x8 .tflite on TFLM + CMSIS-NN, three ways, on three images over the UART."""
    _tools()
    from codegen.golden import images_to_int8, run_int8
    from codegen.quantize import package_faces
    from host_tools.fw_bench import test_theta_and_image, tflm_model_header
    from host_tools.serial_link import DeviceError, SerialLink
    from pvcore.protocol import ErrorCode

    qf, blob, _, _ = test_theta_and_image("int16")
    faces = package_faces()[:3]
    golden = [int(v) for v in run_int8(qf, faces)]
    header, _ = tflm_model_header(qf, tmp_path / "model")

    def logits(elf: Path) -> list[int]:
        with QemuBoard(elf, icount=False) as url, SerialLink(url, timeout=20.0) as link:
            link.install_theta(blob)
            return [link.infer(images_to_int8(f)).logits[0] for f in faces]

    # pv_tflm.cc's CONV_2D: grouped int16 convolutions on TFLM's reference kernel, the rest on CMSIS-NN
    assert logits(build_tflm_firmware(header, "cmsis", tmp_path / "routed")) == golden
    # TFLM's own CMSIS-NN CONV_2D: CMSIS-NN's int16 convolution ignores the groups — wrong, silently
    upstream = logits(build_tflm_firmware(header, "cmsis", tmp_path / "upstream",
                                          extra_cxxflags="-DPV_TFLM_UPSTREAM_INT16_CONV"))
    assert all(u != g for u, g in zip(upstream, golden)), (
        f"TFLM + CMSIS-NN gave the golden logits {upstream} for grouped int16 convolutions: the upstream defect "
        "is fixed, pv_tflm.cc's routing and codegen.emit's warning (TFLM_16X8_NOTE) can go")
    # CMSIS-NN's FULLY_CONNECTED: per-channel int16 weights refused in AllocateTensors (INFER fails)
    with pytest.raises(DeviceError) as e:
        logits(build_tflm_firmware(header, "cmsis", tmp_path / "cmsis_fc", fc="cmsis"))
    assert e.value.code == ErrorCode.INFER_FAILED
