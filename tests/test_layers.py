"""The stack's layering: every import points down, and the serial tools run without PyTorch.

pvcore (the bottom: spec, θ record, blob format, user store, paths) < training < codegen < host_tools.
A module may import its own package and any package below it, never one above (function-level imports
count too: a lazy import is still a dependency)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = ["pvcore", "training", "codegen", "host_tools"]  # bottom first


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", LAYERS)
def test_every_import_points_down(package: str) -> None:
    above = set(LAYERS[LAYERS.index(package) + 1:])
    bad = {}
    for path in sorted((REPO / package).rglob("*.py")):
        up = _imported_packages(path) & above
        if up:
            bad[str(path.relative_to(REPO))] = sorted(up)
    assert not bad, f"{package} imports packages above it: {bad}"


def test_the_bottom_needs_no_torch() -> None:
    assert "torch" not in set().union(*(_imported_packages(p) for p in (REPO / "pvcore").rglob("*.py")))


# The tools a user runs against a board on a machine without PyTorch: open the link, flash, enroll a blob file.
TORCH_FREE_MODULES = ["host_tools.serial_link", "host_tools.flash", "host_tools.enroll", "host_tools.qemu",
                      "pvcore.blob", "pvcore.user_store", "pvcore.spec"]


def test_serial_tools_import_without_torch() -> None:
    """Imports each module in a fresh interpreter where ``import torch`` fails, then runs the blob check
    and ``--help`` of the CLIs: nothing on these paths may need PyTorch."""
    code = (
        "import sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ImportError('torch is not installed (blocked by the test)')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "import importlib\n"
        f"for m in {TORCH_FREE_MODULES!r}:\n"
        "    importlib.import_module(m)\n"
        "from host_tools import enroll, flash\n"
        "for main in (enroll.main, flash.main):\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, e.code\n"
        "assert 'torch' not in sys.modules\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]
