"""The command-line convention (pvcore.cli), the target registry (pvcore.targets) and the installed commands.

Every ``[project.scripts]`` entry of pyproject.toml is installed (``bash .ci/setup``), resolves to a callable
``main`` and answers ``--help`` with exit status 0; the registry's flash layouts agree with esptool's own chip
definitions; the shared arguments resolve, warn and refuse as the convention says."""

from __future__ import annotations

import argparse
import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from pvcore import cli
from pvcore.targets import FAMILIES, KERNELS, TARGETS, get_target

REPO = Path(__file__).resolve().parents[1]
SCRIPTS: dict[str, str] = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


# ---- installed commands -----------------------------------------------------------------------------------
def test_every_script_is_installed_as_declared() -> None:
    """The installed metadata matches pyproject.toml (a stale install: run `bash .ci/setup`), and each
    command is an executable next to this interpreter."""
    installed = {ep.name: ep.value for ep in importlib.metadata.distribution("hyperverif-mcu").entry_points
                 if ep.group == "console_scripts"}
    assert installed == SCRIPTS, "installed console scripts differ from pyproject.toml: run `bash .ci/setup`"
    bindir = Path(sys.executable).parent
    missing = [name for name in SCRIPTS if not (bindir / name).is_file()]
    assert not missing, f"not installed in {bindir}: {missing} (run `bash .ci/setup`)"


def test_every_script_resolves_and_its_help_exits_0() -> None:
    """One fresh interpreter imports every entry point (torch once, not once per command) and runs
    ``main(["--help"])``: a callable, exit status 0, a usage line on stdout."""
    code = (
        "import contextlib, importlib, io, sys\n"
        f"scripts = {SCRIPTS!r}\n"
        "bad = {}\n"
        "for name, value in scripts.items():\n"
        "    module, func = value.split(':')\n"
        "    main = getattr(importlib.import_module(module), func)\n"
        "    if not callable(main):\n"
        "        bad[name] = 'not callable'\n"
        "        continue\n"
        "    out = io.StringIO()\n"
        "    try:\n"
        "        with contextlib.redirect_stdout(out):\n"
        "            main(['--help'])\n"
        "        bad[name] = 'returned instead of exiting'\n"
        "    except SystemExit as e:\n"
        "        if e.code not in (0, None) or 'usage:' not in out.getvalue():\n"
        "            bad[name] = f'exit {e.code}, stdout {out.getvalue()[:200]!r}'\n"
        "print(bad)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == "{}", r.stdout[-3000:]


def test_an_installed_command_runs() -> None:
    """The console-script wrapper itself (not only its main): pv-flash, which needs no PyTorch."""
    exe = Path(sys.executable).parent / "pv-flash"
    r = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == cli.EXIT_OK and "--target" in r.stdout, r.stderr
    r = subprocess.run([str(exe), "--target", "esp32"], capture_output=True, text=True, timeout=60)
    assert r.returncode == cli.EXIT_ERROR and "error: --target esp32 needs --build" in r.stderr


# ---- the target registry ----------------------------------------------------------------------------------
def test_registry_records_are_complete() -> None:
    for name, t in TARGETS.items():
        assert t.name == name and t.family in FAMILIES and t.kernel in KERNELS, name
        assert (REPO / "firmware_templates" / t.firmware).is_dir(), name
        assert t.views in (1, 2) and t.activations in ("int8", "int16"), name
        if t.kernel == "tflm":  # TFLM runs the int8 .tflite once per image, whole
            assert t.views == 1 and t.activations == "int8" and not t.shared_prefix, name
        assert (t.family == "esp-idf") == (t.flash is not None) == (t.chip is not None), name
        assert t.family.endswith("-qemu") == (t.qemu is not None), name
        assert t.virtual == (t.family != "esp-idf"), name  # every board but the ESP32s boots here


def test_flash_layouts_agree_with_esptools_chip_definitions() -> None:
    from esptool.targets import CHIP_DEFS

    for t in TARGETS.values():
        if t.flash is None:
            continue
        chip = CHIP_DEFS[t.chip]
        assert t.flash.esptool_chip == chip.CHIP_NAME, t.name
        assert t.flash.bootloader_offset == chip.BOOTLOADER_FLASH_OFFSET, t.name
        fl = t.flash  # the θ partition: after the app, memory-mappable (64 KiB aligned), two erase-aligned slots
        assert fl.theta_offset >= fl.app_offset + fl.app_size and fl.theta_offset % 0x10000 == 0, t.name
        assert fl.theta_slot_bytes % 0x1000 == 0, t.name


def test_get_target_resolves_aliases_and_names_the_choices(capsys) -> None:
    assert get_target("qemu").name == "cortex-m-qemu"
    assert "'qemu' is deprecated; use 'cortex-m-qemu'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown target 'esp32'; targets: cortex-m-qemu, cortex-m-qemu-tflm, host"):
        get_target("esp32", families=("cortex-m-qemu", "host"))


# ---- the shared arguments ---------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="t")
    cli.add_target_arg(ap, default="esp32", allow_none=True)
    cli.add_port_args(ap, multiple=True, timeout=5.0)
    cli.add_user_store_args(ap)
    return ap


def test_shared_arguments_parse(capsys) -> None:
    a = _parser().parse_args(["--target", "host", "--port", "socket://a:1", "--port", "socket://b:2",
                              "--users", "some/users"])
    assert (a.target, a.port, a.baud, a.timeout, a.users) == ("host", ["socket://a:1", "socket://b:2"], 115200, 5.0,
                                                               Path("some/users"))
    a = _parser().parse_args(["--port", "x"])
    assert a.target == "esp32" and a.users is None  # None: UserStore's default ($FACEVERIF_USERS or ./users)
    assert _parser().parse_args(["--port", "x", "--target", "none"]).target is None
    assert _parser().parse_args(["--port", "x", "--target", "qemu"]).target == "cortex-m-qemu"
    assert "deprecated" in capsys.readouterr().err


def test_usage_errors_exit_2_and_errors_exit_1(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        _parser().parse_args(["--port", "x", "--target", "esp8266"])
    assert e.value.code == cli.EXIT_USAGE
    assert "argument --target: unknown target 'esp8266'; targets: esp32," in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        _parser().parse_args([])  # --port is required
    assert e.value.code == cli.EXIT_USAGE and "required: --port" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.fail("no such user 'zed'")
    assert e.value.code == cli.EXIT_ERROR and capsys.readouterr().err == "error: no such user 'zed'\n"
    assert (cli.EXIT_OK, cli.EXIT_ERROR, cli.EXIT_USAGE, cli.EXIT_CHECK_FAILED) == (0, 1, 2, 3)
