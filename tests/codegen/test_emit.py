"""python -m codegen.emit: artifacts, rendered firmware projects (compiled with gcc and arm-none-eabi-gcc,
the ESP-IDF project's portable part run on the host against the golden model), and every refusal —
each leaving nothing half-written."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from codegen import emit as emit_mod
from codegen.emit import SLOT_HEADER_BYTES
from codegen.golden import images_to_int8, run_int8, run_int8_views
from codegen.quantize import quantize
from codegen.tflite_writer import check_model
from pvcore.blob import FORMAT_VERSION, FORMAT_VERSION_REQUANT_POOL, base_blob_size, blob_size, unpack_blob
from pvcore.cli import EXIT_ERROR, EXIT_USAGE
from pvcore.paths import REPO_ROOT
from pvcore.signed import SIGNED_OVERHEAD
from pvcore.spec import F_SPEC, AvgPool
from pvcore.targets import TARGETS
from pvcore.user_store import UserStore
from tests.codegen.users import make_store
from tests.helpers import cbuild

# The format of an int8 blob: 4 where f's pool passes its exact sums on, 2 where every layer requantizes
# (spec v5: the pool is an L2 normalization)
INT8_FORMAT = FORMAT_VERSION if isinstance(F_SPEC.layers[F_SPEC.pool_index], AvgPool) else FORMAT_VERSION_REQUANT_POOL

CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-O2"]  # what ESP-IDF adds to the project's own options
APP_TEST = Path(__file__).parent / "c" / "app_test.c"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> UserStore:
    return make_store(tmp_path_factory.mktemp("store") / "users")


def run_cli(store: UserStore, *args: str, capsys) -> tuple[int, str, str]:
    try:
        rc = emit_mod.main(["--users", str(store.root), *args])
    except SystemExit as e:  # pvcore.cli.fail and argparse exit with the status
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def emitted(out: Path) -> list[str]:
    """The files of an emitted folder, beside its marker (which every emitted folder carries)."""
    names = sorted(p.name for p in out.iterdir())
    assert emit_mod.MARKER in names, names
    return [n for n in names if n != emit_mod.MARKER]


def leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(".")] if parent.exists() else []


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} not installed (bash .ci/setup installs it)")
    return path


# --------------------------------------------------------------------------------------------------
# CLI basics
# --------------------------------------------------------------------------------------------------
def test_help_and_list_targets(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        emit_mod.main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "--target" in text and "--force" in text and "--format" in text
    assert emit_mod.main(["--list-targets"]) == 0
    listed = capsys.readouterr().out
    for name in ("esp32", "esp32s3", "esp32c3", "esp32-tflm", "cortex-m-qemu", "host"):
        assert name in listed


def test_artifacts_only(store: UserStore, tmp_path: Path, capsys) -> None:
    out = tmp_path / "alice"
    rc, text, _ = run_cli(store, "--user", "alice", "--out", str(out), capsys=capsys)
    assert rc == 0, text
    names = emitted(out)
    assert names == ["alice.tflite", "alice_model.h", "alice_theta.bin", "alice_theta.h"]
    for n in names:  # every output with its size, and the two memory figures
        assert f"{n}" in text and f"{(out / n).stat().st_size:,} B" in text
    signed_slot = blob_size() + SIGNED_OVERHEAD + SLOT_HEADER_BYTES  # slot header + signed θ
    assert f"θ flash: {signed_slot:,} B" in text and "arena:" in text and "TFLM needs" in text
    header, qf = unpack_blob((out / "alice_theta.bin").read_bytes())
    theta, meta = store.load("alice")
    assert header.user_id == "alice" and header.threshold_logit == np.float32(meta.threshold)
    assert qf.equal_arithmetic(quantize(theta, enroll_u8=store.load_crop("alice")))
    tfl = check_model((out / "alice.tflite").read_bytes())
    assert tfl["user_id"] == "alice" and tfl["threshold_logit"] == meta.threshold
    h = (out / "alice_theta.h").read_text()
    assert '#define PV_THETA_ARCH_HASH_HEX "' + qf.arch_hash + '"' in h
    assert "const int8_t pv_theta_b1_dw_weights[864]" in h and "pv_theta_head_multiplier[1]" in h


@pytest.mark.parametrize("fmt,want", [("blob", ["bob_theta.bin"]), ("c-header", ["bob_theta.h"]),
                                      ("tflite", ["bob.tflite", "bob_model.h"])])
def test_single_formats(store: UserStore, tmp_path: Path, capsys, fmt: str, want: list[str]) -> None:
    rc, text, err = run_cli(store, "--user", "bob", "--out", str(tmp_path / "o"), "--format", fmt, capsys=capsys)
    assert rc == 0, err
    assert emitted(tmp_path / "o") == sorted(want)


# --------------------------------------------------------------------------------------------------
# Refusals: a clear message, exit code 2, nothing written
# --------------------------------------------------------------------------------------------------
def test_16x8_tflite(store: UserStore, tmp_path: Path, capsys, face_images: np.ndarray) -> None:
    """--activations int16: the 16x8 .tflite and its C array only; TFLM runs it bit-exact with the golden
    model, and the header's integer threshold is the dequantized rule's."""
    from codegen.quantize import QuantConfig
    from codegen.tflite_writer import tflm_logits

    out = tmp_path / "o16"
    rc, text, err = run_cli(store, "--user", "carol", "--out", str(out), "--format", "tflite",
                            "--activations", "int16", capsys=capsys)
    assert rc == 0, err
    assert emitted(out) == ["carol.tflite", "carol_model.h"]
    assert "16x8" in text and "TFLM needs" in text
    model = (out / "carol.tflite").read_bytes()
    assert check_model(model)["activations"] == "int16"
    theta, meta = store.load("carol")
    qf = quantize(theta, enroll_u8=store.load_crop("carol"), cfg=QuantConfig(activations="int16"))
    imgs = face_images[:8]
    got = tflm_logits(model, imgs)
    assert got.dtype == np.int16 and np.array_equal(got, run_int8(qf, imgs))
    h = (out / "carol_model.h").read_text()
    assert "#define PV_MODEL_ACTIVATIONS_INT16 1" in h
    assert f"#define PV_MODEL_THRESHOLD_Q {qf.threshold_q(meta.threshold)}" in h
    assert np.array_equal(got >= qf.threshold_q(meta.threshold), qf.decide(got, meta.threshold))


@pytest.mark.parametrize("args,match", [
    (["--format", "tflite", "--target", "esp32-tflm"], "ESP-NN's kernels, whose 16x8 results are not verified"),
    (["--format", "tflite", "--shared-prefix", "pool"], "a 16x8 base blob is not built yet"),
    (["--target", "esp32", "--views", "2"], "runs one view per probe"),
])
def test_16x8_refusals(store: UserStore, tmp_path: Path, capsys, args: list[str], match: str) -> None:
    _refused(store, tmp_path, capsys, ["--user", "alice", "--activations", "int16", *args], match)


def test_16x8_esp32_project_runs_bit_exact(store: UserStore, tmp_path: Path, capsys,
                                           face_images: np.ndarray) -> None:
    """--target esp32 (16x8 by default): a blob of format 3, a project built with PV_WITH_16X8=1 and one
    view, whose portable part (on the host) runs the built-in 16x8 θ bit-exact with the golden model."""
    from codegen.emit import kernel16_arena_bytes
    from codegen.quantize import QuantConfig
    from pvcore.blob import FORMAT_VERSION_16X8

    gcc = need("gcc")
    out = tmp_path / "esp32-16"
    rc, text, err = run_cli(store, "--user", "carol", "--target", "esp32", "--out", str(out), capsys=capsys)
    assert rc == 0, err
    assert "blob format 3" in text and "views per probe: 1" in text and f"{kernel16_arena_bytes():,} B" in text
    header, qf_blob = unpack_blob((out / "carol_theta.bin").read_bytes())
    assert header.format_version == FORMAT_VERSION_16X8 and qf_blob.activations == "int16"
    defines = project_defines(out / "main")
    assert "-DPV_WITH_16X8=1" in defines and "-DPV_VIEWS=1u" in defines
    imgs = face_images[:16]
    got = run_app_test(gcc, out / "main", tmp_path, imgs)
    theta, _ = store.load("carol")
    qf = quantize(theta, enroll_u8=store.load_crop("carol"), cfg=QuantConfig(activations="int16"))
    assert qf.equal_arithmetic(qf_blob)
    assert np.array_equal(got, run_int8(qf, imgs))


def _entry_copy(store: UserStore, tmp_path: Path) -> UserStore:
    root = tmp_path / "users"
    shutil.copytree(store.root, root)
    return UserStore(root)


def _refused(store: UserStore, tmp_path: Path, capsys, args: list[str], match: str,
             code: int = EXIT_ERROR) -> None:
    out = tmp_path / "out" / "proj"
    rc, _, err = run_cli(store, *args, "--out", str(out), capsys=capsys)
    assert rc == code and match in err, err
    assert not out.exists() and leftovers(out.parent) == []


def test_unknown_user(store: UserStore, tmp_path: Path, capsys) -> None:
    _refused(store, tmp_path, capsys, ["--user", "mallory"], "unknown user 'mallory'")


def test_unknown_target(store: UserStore, tmp_path: Path, capsys) -> None:
    _refused(store, tmp_path, capsys, ["--user", "alice", "--target", "esp8266"], "unknown target 'esp8266'",
             EXIT_USAGE)


def test_tflm_target_needs_the_tflite(store: UserStore, tmp_path: Path, capsys) -> None:
    _refused(store, tmp_path, capsys, ["--user", "alice", "--target", "esp32-tflm", "--format", "blob"],
             "--format tflite or all")


def test_theta_of_another_architecture(store: UserStore, tmp_path: Path, capsys) -> None:
    s = _entry_copy(store, tmp_path)
    meta_path = s.path("alice") / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["arch_hash"] = "0000000000000000"
    meta_path.write_text(json.dumps(meta))
    _refused(s, tmp_path, capsys, ["--user", "alice"], "0000000000000000")


def test_corrupt_theta(store: UserStore, tmp_path: Path, capsys) -> None:
    s = _entry_copy(store, tmp_path)
    p = s.path("bob") / "theta.npy"
    raw = bytearray(p.read_bytes())
    raw[-7] ^= 0x55  # one flipped byte: the CRC in meta.json catches it
    p.write_bytes(bytes(raw))
    _refused(s, tmp_path, capsys, ["--user", "bob"], "corrupt")
    p.write_bytes(bytes(raw[:100]))  # truncated: numpy cannot even read it
    _refused(s, tmp_path, capsys, ["--user", "bob"], "corrupt")


def test_existing_output_refused_then_forced(store: UserStore, tmp_path: Path, capsys) -> None:
    """An existing output is refused; --force replaces a folder emit wrote, and only such a folder (the other
    outputs --force refuses: tests/codegen/test_emit_output.py)."""
    out = tmp_path / "proj"
    rc, _, err = run_cli(store, "--user", "alice", "--out", str(out), "--format", "c-header", capsys=capsys)
    assert rc == 0, err
    rc, _, err = run_cli(store, "--user", "alice", "--out", str(out), capsys=capsys)
    assert rc == EXIT_ERROR and "exists" in err and "--force" in err
    assert emitted(out) == ["alice_theta.h"] and leftovers(tmp_path) == []
    rc, _, err = run_cli(store, "--user", "alice", "--out", str(out), "--format", "blob", "--force", capsys=capsys)
    assert rc == 0, err
    assert emitted(out) == ["alice_theta.bin"] and leftovers(tmp_path) == []
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "mine.txt").write_text("keep me")
    rc, _, err = run_cli(store, "--user", "alice", "--out", str(mine), "--force", capsys=capsys)
    assert rc == EXIT_ERROR and "not written by codegen.emit" in err
    assert [p.name for p in mine.iterdir()] == ["mine.txt"] and leftovers(tmp_path) == []


# --------------------------------------------------------------------------------------------------
# Firmware projects
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["esp32", "esp32s3", "esp32c3", "esp32-tflm"])
def test_esp_idf_project_files(store: UserStore, tmp_path: Path, capsys, target: str) -> None:
    from host_tools.flash import find_partition, parse_partitions_csv

    out = tmp_path / target
    rc, text, err = run_cli(store, "--user", "carol", "--target", target, "--out", str(out), capsys=capsys)
    assert rc == 0, err
    t = TARGETS[target]
    for rel in ("CMakeLists.txt", "partitions.csv", "sdkconfig.defaults", "README.md", "main/CMakeLists.txt",
                "main/idf_component.yml", "main/app_main.c", "main/pv_app.c", "main/pv_app_config.h",
                "main/carol_theta.h", "main/pv/pv_arch.h", "main/pv/pv_protocol.c", "carol_theta.bin"):
        assert (out / rel).is_file(), rel
    assert f'CONFIG_IDF_TARGET="{t.chip}"' in (out / "sdkconfig.defaults").read_text()
    theta = find_partition(parse_partitions_csv(out / "partitions.csv"), "theta")
    assert theta.offset == t.flash.theta_offset and theta.offset % 0x10000 == 0
    assert theta.size >= 2 * t.flash.theta_slot_bytes
    comp = (out / "main" / "idf_component.yml").read_text()
    srcs = (out / "main" / "CMakeLists.txt").read_text()
    if t.kernel == "tflm":
        assert "espressif/esp-tflite-micro" in comp and '"pv_tflm.cc"' in srcs and "pv_kernel.c" not in srcs
        assert (out / "main" / "carol_model.h").is_file() and not (out / "main" / "pv" / "pv_kernel.c").exists()
    else:
        assert "esp-tflite-micro" not in comp and '"pv/pv_kernel.c"' in srcs and '"pv/pv_conv_s8.c"' in srcs
    app = (out / "main" / "app_main.c").read_text()
    assert "esp_partition_mmap" in app and "uart_driver_install" in app and "{{" not in app
    assert f"#define PV_SLOT_BYTES {t.flash.theta_slot_bytes}u" in app  # the slot size partitions.csv holds two of


def test_views_per_target(store: UserStore, tmp_path: Path, capsys) -> None:
    """Every fixed-kernel project runs the 16x8 θ by default (one view); with --activations int8 the ESP32s
    run two int8 views, the Cortex-M and host builds one (the 48 KB budget); -tflm: int8, one view; --views
    overrides; the build flags are in the project, and the report says them."""
    out = tmp_path / "esp32"
    rc, text, err = run_cli(store, "--user", "carol", "--target", "esp32", "--out", str(out), capsys=capsys)
    assert rc == 0, err
    assert project_defines(out / "main") == ["-DPV_VIEWS=1u", "-DPV_WITH_16X8=1"]
    readme = (out / "README.md").read_text()
    assert "16x8 θ" in readme and "Two views" not in readme
    assert "views per probe: 1" in text and f"arena: {emit_mod.kernel16_arena_bytes():,} B" in text
    rc, text, err = run_cli(store, "--user", "carol", "--target", "esp32", "--activations", "int8", "--out",
                            str(out), "--force", capsys=capsys)
    assert rc == 0, err
    assert project_defines(out / "main") == ["-DPV_VIEWS=2u"]
    assert "Two views per probe" in (out / "README.md").read_text()
    arena = emit_mod.kernel_arena_bytes()
    assert "views per probe: 2" in text and f"arena: {2 * arena:,} B" in text
    rc, text, err = run_cli(store, "--user", "carol", "--target", "esp32", "--views", "2", "--out", str(out),
                            "--force", capsys=capsys)  # two views ask for int8
    assert rc == 0, err
    assert project_defines(out / "main") == ["-DPV_VIEWS=2u"] and unpack_blob(
        (out / "carol_theta.bin").read_bytes())[0].format_version == INT8_FORMAT
    rc, text, err = run_cli(store, "--user", "carol", "--target", "esp32", "--activations", "int8", "--views", "1",
                            "--out", str(out), "--force", capsys=capsys)
    assert rc == 0, err
    assert project_defines(out / "main") == ["-DPV_VIEWS=1u"] and f"arena: {arena:,} B" in text
    assert "Two views" not in (out / "README.md").read_text()
    for target, acts, with16 in (("cortex-m-qemu", None, 1), ("host", None, 1), ("cortex-m-qemu", "int8", 0),
                                 ("host", "int8", 0), ("esp32-tflm", None, 0)):
        out = tmp_path / f"{target}-{acts}"
        extra = ["--activations", acts] if acts else []
        assert run_cli(store, "--user", "carol", "--target", target, "--out", str(out), *extra,
                       capsys=capsys)[0] == 0
        version = unpack_blob((out / "carol_theta.bin").read_bytes())[0].format_version
        assert version == (3 if with16 else INT8_FORMAT)
        if TARGETS[target].family != "esp-idf":
            assert "PV_VIEWS ?= 1" in (out / "Makefile").read_text()
            assert f"PV_WITH_16X8 ?= {with16}" in (out / "Makefile").read_text()
        else:  # a TFLM build: pv_kernel.h's kernel front is pv_tflm.cc's
            assert project_defines(out / "main") == ["-DPV_VIEWS=1u", "-DPV_KERNEL_TFLM"]
    assert emit_mod.main(["--list-targets"]) == 0
    listed = capsys.readouterr().out
    assert "esp32    " in listed and "default 16x8 θ, 1 view per probe (--activations int8: 2 views" in listed
    assert "cortex-m-qemu" in listed and "(--activations int8: 1 view per probe)" in listed
    assert "int8 θ, 1 view per probe" in listed  # the -tflm targets


def test_cortex_m_tflm_project(store: UserStore, tmp_path: Path, capsys) -> None:
    """cortex-m-qemu-tflm: a Makefile project around the TFLM glue every TFLM project shares (the same file as
    an ESP-IDF -tflm project's main/pv_tflm.cc), the core without the fixed kernel, the model header; int8 by
    default, 16x8 on request — with the warning for TFLM + CMSIS-NN/ESP-NN users on the command line and in
    the model header. (Built and run on QEMU: tests/firmware/test_tflm_qemu.py.)"""
    glue = (REPO_ROOT / "firmware_templates" / "tflm-common" / "pv_tflm.cc").read_bytes()
    out = tmp_path / "tflm"
    rc, text, err = run_cli(store, "--user", "carol", "--target", "cortex-m-qemu-tflm", "--out", str(out),
                            capsys=capsys)
    assert rc == 0, err
    assert "WARNING" not in err and f"blob format {INT8_FORMAT}" in text
    assert (out / "tflm" / "pv_tflm.cc").read_bytes() == glue and (out / "tflm" / "tflm.mk").is_file()
    assert (out / "pv" / "pv_protocol.c").is_file() and not (out / "pv" / "pv_kernel.c").exists()
    mk = (out / "Makefile").read_text()
    assert "include tflm/tflm.mk" in mk and "-DPV_MODEL_HEADER='\"carol_model.h\"'" in mk
    assert "-DPV_KERNEL_TFLM" in mk and "TFLM_FC ?= $(KERNELS)" in mk
    assert "#define PV_MODEL_ACTIVATIONS_INT16 0" in (out / "carol_model.h").read_text()
    out16 = tmp_path / "tflm16"
    rc, text, err = run_cli(store, "--user", "carol", "--target", "cortex-m-qemu-tflm", "--activations", "int16",
                            "--out", str(out16), capsys=capsys)
    assert rc == 0, err
    assert "blob format 3" in text and "WARNING" in err and "ignores groups" in err
    assert "TFLM_FC ?= ref" in (out16 / "Makefile").read_text()
    h = (out16 / "carol_model.h").read_text()
    assert "#define PV_MODEL_ACTIVATIONS_INT16 1" in h and "WARNING (16x8 on TFLite Micro)" in h
    esp = tmp_path / "esp"
    assert run_cli(store, "--user", "carol", "--target", "esp32-tflm", "--out", str(esp), capsys=capsys)[0] == 0
    assert (esp / "main" / "pv_tflm.cc").read_bytes() == glue


def test_views_refused(store: UserStore, tmp_path: Path, capsys) -> None:
    _refused(store, tmp_path, capsys, ["--user", "alice", "--target", "esp32-tflm", "--views", "2"],
             "one view per image")
    _refused(store, tmp_path, capsys, ["--user", "alice", "--views", "2"], "needs --target")


def test_two_view_host_project_serves_both_views(store: UserStore, tmp_path: Path, capsys,
                                                face_images: np.ndarray) -> None:
    """An emitted host project built with --views 2 answers INFER with both views' logits, each bit-exact
    with the golden model, and decides on their mean as QuantizedF.decide_mean2 does."""
    from host_tools.qemu import HostBoard
    from host_tools.serial_link import SerialLink

    need("make")
    need("gcc")
    out = tmp_path / "host"
    assert run_cli(store, "--user", "bob", "--target", "host", "--views", "2", "--format", "blob",
                   "--out", str(out), capsys=capsys)[0] == 0
    res = subprocess.run(["make", "-j2", "-C", str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    theta, meta = store.load("bob")
    qf = quantize(theta, enroll_u8=store.load_crop("bob"))
    imgs = face_images[:4]
    want = run_int8_views(qf, imgs, views=2)
    board = HostBoard(tmp_path / "store.bin", exe=out / "build" / "pv_host")
    url = board.start()
    try:
        with SerialLink(url, timeout=5.0) as link:
            assert link.info().views == 2
            link.install_theta((out / "bob_theta.bin").read_bytes())
            for img, (q, q_m) in zip(imgs, want):
                r = link.infer(images_to_int8(img))
                assert r.logits == (int(q), int(q_m))
                assert r.decision == bool(qf.decide_mean2(q, q_m, meta.threshold))
    finally:
        board.stop()


def arm_flags() -> list[str]:
    """The Cortex-M4 firmware's architecture flags (firmware_templates/cortex-m-qemu/Makefile ARCH_FLAGS)."""
    return [*cbuild.make_var(cbuild.QEMU_DIR, "ARCH_FLAGS"), "-ffreestanding"]


@pytest.mark.parametrize("cc,arm", [("gcc", False), ("arm-none-eabi-gcc", True)])
@pytest.mark.parametrize("target", ["esp32", "esp32c3-tflm"])
def test_esp_idf_portable_c_compiles(store: UserStore, tmp_path: Path, capsys, target: str, cc: str,
                                     arm: bool) -> None:
    """Everything of the ESP-IDF project except app_main.c (IDF headers) and pv_tflm.cc (TFLM headers)."""
    exe = need(cc)
    out = tmp_path / target
    assert run_cli(store, "--user", "alice", "--target", target, "--out", str(out), capsys=capsys)[0] == 0
    main = out / "main"
    flags = arm_flags() if arm else []
    for src in project_sources(main):
        cmd = [exe, *CFLAGS, *flags, *project_defines(main), f"-I{main}", f"-I{main / 'pv'}", "-c", str(src),
               "-o", str(tmp_path / "x.o")]
        res = subprocess.run(cmd, capture_output=True, text=True)
        assert res.returncode == 0, f"{' '.join(cmd)}\n{res.stderr}"


@pytest.mark.parametrize("target", ["esp32", "esp32c3-tflm"])
def test_esp_idf_portable_part_links_against_its_runtime(store: UserStore, tmp_path: Path, capsys,
                                                        target: str) -> None:
    """Every pv_* function the portable part calls is defined: by pv/ itself (fixed kernel), or by
    main/pv_tflm.cc for the TFLM targets (pv_infer and the pv_stream_* the protocol streams INFER
    through). pv_tflm.cc needs TFLM's headers, so its definitions are read from its source."""
    gcc, nm = need("gcc"), need("nm")
    out = tmp_path / target
    assert run_cli(store, "--user", "alice", "--target", target, "--out", str(out), capsys=capsys)[0] == 0
    main = out / "main"
    undefined: set[str] = set()
    defined: set[str] = set()
    for i, src in enumerate(project_sources(main)):
        obj = tmp_path / f"{i}.o"
        cmd = [gcc, *CFLAGS, *project_defines(main), f"-I{main}", f"-I{main / 'pv'}", "-c", str(src), "-o", str(obj)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        for line in subprocess.run([nm, str(obj)], capture_output=True, text=True, check=True).stdout.splitlines():
            kind, name = line.split()[-2:]
            (undefined if kind == "U" else defined).add(name)
    missing = {n for n in undefined - defined if n.startswith("pv_")}
    tflm = main / "pv_tflm.cc"
    provided = set(re.findall(r'extern "C" [\w\s*]+?\b(pv_\w+)\(', tflm.read_text())) if tflm.exists() else set()
    assert missing <= provided, f"undefined at link time: {sorted(missing - provided)}"
    if TARGETS[target].kernel == "tflm":
        assert {"pv_infer", "pv_stream_begin", "pv_stream_feed", "pv_stream_end"} <= missing


def project_sources(main: Path) -> list[Path]:
    """The C sources an emitted ESP-IDF project's main/CMakeLists.txt builds, but app_main.c (IDF headers)."""
    srcs = re.search(r"SRCS ([^\n]*)", (main / "CMakeLists.txt").read_text())
    assert srcs is not None
    return [main / s for s in re.findall(r'"([^"]+\.c)"', srcs.group(1)) if s != "app_main.c"]


def project_defines(main: Path) -> list[str]:
    """The -D options an emitted ESP-IDF project's main/CMakeLists.txt compiles its sources with."""
    opts = re.search(r"target_compile_options\([^)]*\)", (main / "CMakeLists.txt").read_text())
    assert opts is not None
    return re.findall(r"-D[^\s)]+", opts.group(0))


def run_app_test(gcc: str, main: Path, tmp_path: Path, imgs: np.ndarray) -> np.ndarray:
    """Build c/app_test.c with an emitted ESP-IDF project's portable part (``main``, with the project's
    own -D options) and run it on the uint8 faces ``imgs``: the int8 logits it prints."""
    exe = tmp_path / "app_test"
    cmd = [gcc, *CFLAGS, *project_defines(main), f"-I{main}", f"-I{main / 'pv'}", *map(str, project_sources(main)),
           str(APP_TEST), "-o", str(exe), "-lm"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    res = subprocess.run([str(exe)], input=(imgs.astype(np.int16) - 128).astype(np.int8).tobytes(),
                         capture_output=True)
    assert res.returncode == 0, res.stderr.decode()
    return np.array([int(x) for x in res.stdout.split()], np.int64)  # int8, or a 16x8 θ's int16


def test_esp_idf_app_runs_builtin_theta_bit_exact(store: UserStore, tmp_path: Path, capsys,
                                                  face_images: np.ndarray) -> None:
    """The emitted project's portable part on the host: first boot writes the built-in θ into the store,
    its const arrays equal the blob's, and its kernel's logits equal the golden model's."""
    gcc = need("gcc")
    out = tmp_path / "esp32"
    assert run_cli(store, "--user", "carol", "--target", "esp32", "--activations", "int8", "--out", str(out),
                   capsys=capsys)[0] == 0
    imgs = face_images[:32]
    got = run_app_test(gcc, out / "main", tmp_path, imgs)
    theta, _ = store.load("carol")
    want = run_int8(quantize(theta, enroll_u8=store.load_crop("carol")), imgs)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("target,activations", [("host", "int8"), ("cortex-m-qemu", "int8"), ("host", "int16"),
                                                ("cortex-m-qemu", "int16")])
def test_make_projects_build(store: UserStore, tmp_path: Path, capsys, target: str, activations: str) -> None:
    need("make")
    need("gcc" if target == "host" else "arm-none-eabi-gcc")
    out = tmp_path / target
    assert run_cli(store, "--user", "bob", "--target", target, "--out", str(out), "--format", "blob",
                   "--activations", activations, capsys=capsys)[0] == 0
    assert f"PV_WITH_16X8 ?= {int(activations == 'int16')}" in (out / "Makefile").read_text()
    res = subprocess.run(["make", "-j1", "-C", str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (out / "build" / ("pv_host" if target == "host" else "pv_fw.elf")).is_file()


@pytest.fixture(scope="module")
def model_store(tmp_path_factory) -> UserStore:
    """dave, enrolled with the shipped hypernetwork (θ for a fixed unit embedding): its layers before pool
    are the model's shared prefix."""
    from codegen.quantize import package_faces
    from training.hypermodel import HyperModel

    m = HyperModel.load()
    e = np.random.default_rng(5).normal(size=(1, 128)).astype(np.float32)
    store = UserStore(tmp_path_factory.mktemp("model-store") / "users")
    store.save("dave", m.theta(e / np.linalg.norm(e))[0], backbone=m.backbone, hypermodel_id=m.model_id,
               threshold=m.threshold, source_image="dave.jpg", crop=package_faces()[0])
    return store


def test_shared_prefix_project_builds_in_64k(model_store: UserStore, tmp_path: Path, capsys) -> None:
    """--shared-prefix pool: pv_base_theta.h in the project, a personal blob of 3 KB, and the emitted
    firmware's flash (code + base, the signature check included) plus two 4 KiB θ slots within 64 KiB
    (measured with spec v5: 57,180 + 8,192 = 65,372 B, docs/firmware.md)."""
    from codegen.shared_prefix import split_index
    from pvcore.blob import blob_split, unpack_blob

    need("arm-none-eabi-gcc")
    out = tmp_path / "dave"
    rc, text, err = run_cli(model_store, "--user", "dave", "--target", "cortex-m-qemu", "--shared-prefix", "pool",
                            "--out", str(out), capsys=capsys)
    assert rc == 0, err
    blob = (out / "dave_theta.bin").read_bytes()
    split = split_index("pool")
    assert blob_split(blob) == (split, 0) and len(blob) == blob_size(first_layer=split) + SIGNED_OVERHEAD
    assert f"θ flash: {len(blob) + SLOT_HEADER_BYTES:,} B (personal blob" in text
    assert f"#define PV_BASE_SPLIT {split}u" in (out / "pv_base_theta.h").read_text()
    res = subprocess.run(["make", "-j1", "-C", str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    size = subprocess.run(["arm-none-eabi-size", "-A", str(out / "build" / "pv_fw.elf")], capture_output=True,
                          text=True, check=True).stdout
    sec = {p[0]: int(p[1]) for p in (ln.split() for ln in size.splitlines()) if len(p) == 3 and p[1].isdigit()}
    flash = sec[".isr_vector"] + sec[".text"] + sec.get(".data", 0) + sec.get(".ARM.exidx", 0)
    # the base is in, and the A/B slots fit 64 KiB
    assert flash > base_blob_size(split) and flash + 2 * 4096 <= 64 * 1024, sec
    _, qf = unpack_blob(blob, base=pack_from_header(out / "pv_base_theta.h"))  # the blob completes the base
    assert [q.name for q in qf.layers] == [la.name for la in F_SPEC.layers]


def test_esp_idf_shared_prefix_app_runs_bit_exact(model_store: UserStore, tmp_path: Path, capsys,
                                                   face_images: np.ndarray) -> None:
    """--target esp32 --shared-prefix pool: pv_base_theta.h is compiled into the app (pv_app_config.h says
    so), the built-in θ is the personal blob, and the project's portable part on the host — base set
    before the store opens, personal blob seeded and parsed against it — gives the golden model's logits;
    it compiles with arm-none-eabi-gcc too."""
    from codegen.shared_prefix import split_index
    from pvcore.blob import blob_split

    gcc = need("gcc")
    out = tmp_path / "esp32"
    rc, _, err = run_cli(model_store, "--user", "dave", "--target", "esp32", "--shared-prefix", "pool",
                         "--out", str(out), capsys=capsys)
    assert rc == 0, err
    main = out / "main"
    cfg = (main / "pv_app_config.h").read_text()
    assert "#define PV_BASE_THETA 1" in cfg and '#define PV_BASE_HEADER "pv_base_theta.h"' in cfg
    blob = (out / "dave_theta.bin").read_bytes()
    assert blob_split(blob) == (split_index("pool"), 0)
    assert len(blob) == blob_size(first_layer=split_index("pool")) + SIGNED_OVERHEAD
    imgs = face_images[:16]
    got = run_app_test(gcc, main, tmp_path, imgs)
    _, qf = unpack_blob(blob, base=pack_from_header(main / "pv_base_theta.h"))
    assert len(got) == len(imgs) and np.array_equal(got, run_int8(qf, imgs))
    arm = need("arm-none-eabi-gcc")
    for src in map(str, project_sources(main)):
        cmd = [arm, *CFLAGS, *arm_flags(), f"-I{main}", f"-I{main / 'pv'}", "-c", src, "-o", str(tmp_path / "x.o")]
        res = subprocess.run(cmd, capture_output=True, text=True)
        assert res.returncode == 0, f"{' '.join(cmd)}\n{res.stderr}"


def pack_from_header(path: Path) -> bytes:
    """The base blob's bytes back from the C array of pv_base_theta.h."""
    import re

    body = path.read_text().split("const pv_base_blob_t pv_base_blob = {{", 1)[1].split("}};", 1)[0]
    return bytes(int(x, 16) for x in re.findall(r"0x([0-9a-f]{2})\b", body))


def test_shared_prefix_errors(model_store: UserStore, tmp_path: Path, capsys) -> None:
    rc, _, err = run_cli(model_store, "--user", "dave", "--shared-prefix", "nope", "--out", str(tmp_path / "a"),
                         capsys=capsys)
    assert rc == EXIT_ERROR and "no layer 'nope'" in err
    rc, _, err = run_cli(model_store, "--user", "dave", "--target", "esp32-tflm", "--shared-prefix", "pool",
                         "--out", str(tmp_path / "b"), capsys=capsys)  # its .tflite is the whole model
    assert rc == EXIT_ERROR and "no base-blob build" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
