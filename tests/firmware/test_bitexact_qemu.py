"""The Cortex-M4 firmware on QEMU mps2-an386 against the int8 golden model, bit for bit, at scale:
over 200 face images streamed over the UART (INFER, pyserial socket://) and over 1,000 more through the
bulk path (INFER_BULK on images preloaded in PSRAM), with three users' θ (random θ quantized by codegen).

Images: aligned LFW crops from the RetinaFace cache (``python -m training.align --dataset lfw --detector
retinaface`` builds it under .cache/) plus the package faces; without the cache the package faces with
augmentations stand in, except under CI=true, where a missing cache fails the test. Boards run in
parallel (the UART is slow: about 1.3 s per image), so the whole test takes a couple of minutes.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from codegen.golden import images_to_int8, run_int8
from codegen.quantize import augment, package_faces
from host_tools.qemu import QemuBoard
from host_tools.serial_link import SerialLink
from tests.firmware.conftest import User

N_UART = 204  # 4 boards x 51 images, each board cycling through the three users
UART_BOARDS = 4
N_BULK = 1002  # 3 boards x 334 images (16 MiB PSRAM holds 444), one user per board
pytestmark = pytest.mark.slow


def _lfw_crops(n: int) -> np.ndarray | None:
    """n aligned LFW crops spread over the dataset; aligned on demand into the cache (RetinaFace, 2 workers,
    ≈ 1 min for 1,000 images on a fresh clone). None without the shared data folder."""
    from codegen.faces import load_crops
    from pvcore.paths import SharedDataMissing

    try:
        crops, _ = load_crops("lfw", n + 16, detector="retinaface", workers=2)  # a few may fail alignment
    except SharedDataMissing:
        return None
    return crops[:n] if len(crops) >= n else None


@pytest.fixture(scope="module")
def faces() -> tuple[np.ndarray, str]:
    """N_UART + N_BULK distinct uint8 face crops (112x112x3) and where they come from."""
    n = N_UART + N_BULK
    pkg = package_faces()
    lfw = _lfw_crops(n - len(pkg))
    if lfw is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(
                "LFW missing: set FACEVERIF_SHARED to the shared data folder"
            )
        return augment(pkg, -(-n // len(pkg)), seed=99)[:n], "package faces + augmentations"
    return np.concatenate([pkg, lfw]), f"{len(lfw)} aligned LFW crops + {len(pkg)} package faces"


def _uart_board(elf: Path, users: list[User], images: np.ndarray) -> list[tuple[int, int]]:
    """One board: the images over the UART, the users' θ in turn. Returns (board logit, golden) pairs."""
    out = []
    with QemuBoard(elf) as url, SerialLink(url, timeout=10.0) as link:
        link.info()
        parts = np.array_split(np.arange(len(images)), len(users))
        for user, idx in zip(users, parts):
            link.install_theta(user.blob)
            want = run_int8(user.qf, images[idx])
            for i, q in zip(idx, want):
                out.append((link.infer(images_to_int8(images[i])).logit, int(q)))
        assert link.stats.frame_errors == 0
    return out


def _bulk_board(elf: Path, user: User, images: np.ndarray, tmp: Path) -> list[tuple[int, int]]:
    bulk = tmp / f"bulk-{user.name}.bin"
    bulk.write_bytes(images_to_int8(images).tobytes())
    want = run_int8(user.qf, images)
    with QemuBoard(elf, bulk=bulk) as url, SerialLink(url, timeout=10.0) as link:
        link.info()
        link.install_theta(user.blob)
        res = link.infer_bulk(0, len(images), per_inference_s=5.0)
    assert [r.index for r in res] == list(range(len(images)))
    return [(r.logit, int(q)) for r, q in zip(res, want)]


def test_qemu_bit_exact_uart_and_bulk(
    qemu_elf: Path, users: dict[str, User], faces: tuple[np.ndarray, str], tmp_path: Path
) -> None:
    images, source = faces
    ulist = [users[k] for k in ("alice", "bob", "carol")]
    uart_imgs, bulk_imgs = images[:N_UART], images[N_UART:]
    with ThreadPoolExecutor(UART_BOARDS + len(ulist)) as ex:
        uart = [
            ex.submit(_uart_board, qemu_elf, ulist[b:] + ulist[:b], part)
            for b, part in enumerate(np.array_split(uart_imgs, UART_BOARDS))
        ]
        bulk = [
            ex.submit(_bulk_board, qemu_elf, u, part, tmp_path)
            for u, part in zip(ulist, np.array_split(bulk_imgs, len(ulist)))
        ]
        uart_pairs = [p for f in uart for p in f.result()]
        bulk_pairs = [p for f in bulk for p in f.result()]
    report = {
        "images": source,
        "uart": f"{sum(a == b for a, b in uart_pairs)}/{len(uart_pairs)} bit-exact",
        "bulk": f"{sum(a == b for a, b in bulk_pairs)}/{len(bulk_pairs)} bit-exact",
        "users": [u.name for u in ulist],
    }
    print(json.dumps(report))
    assert len(uart_pairs) >= 200 and len(bulk_pairs) >= 1000
    assert all(a == b for a, b in uart_pairs), report
    assert all(a == b for a, b in bulk_pairs), report
