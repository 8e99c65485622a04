"""The whole chain on one machine, no shared data needed: photo → θ → quantized firmware → emulated MCU → parity.

    python -m host_tools.demo                  # a few minutes on 2 cores; reports under runs/demo/

1. **Enroll** the astronaut of scikit-image's ``astronaut()`` (Eileen Collins) from that one photo and
   ``--enroll-views`` views of it (default 4: the photo, its mirror, and both in grayscale, the boards' cameras)
   with the hypernetwork shipped
   in the repository (``training.enroll.enroll_images``: dlib detection and alignment, YuNet where dlib
   finds no face, dlib-resnet embeddings averaged, h_gen → θ, θ refined against the model's impostor cohort:
   its file in the cache, built from the shared folder, or without those drawn from the statistics the model
   file carries) into a demo user store (``runs/demo/users``), and report how θ was refined and her threshold:
   her own for ``--far`` (default ``training.calibration.DEFAULT_FAR``, the shipped operating point), calibrated
   on the cohort's other half; with ``--far 0`` the model's global one.
2. **Emit** her verifier for ``cortex-m-qemu`` and ``esp32`` (``codegen.emit``: θ blob, C headers, .tflite,
   firmware projects; both run the 16x8 θ by default: int16 activations, int8 weights). The θ is signed
   and the firmware trusts the signing key (docs/signing.md): ``--keys``, else the user's keyring when it
   has a key, else a throwaway key generated for this run in a temporary folder.
3. **Build and boot** the emitted Cortex-M4 project on QEMU mps2-an386 (``--boards`` instances).
4. **Enroll over serial**: the emitted θ blob goes to each board in chunks, COMMIT, checked with INFO.
5. **Parity**: views of the enrolled person and of a stranger (Grace Hopper, matplotlib's sample
   photo) — geometric and photometric variations of their aligned faces, ``--per-person`` each (default 100,
   i.e. 200 images) — are sent over the serial link; the board's int16 logits are compared with the
   golden model (bit-exact) and PyTorch float f (decision agreement), and the board's decisions
   are counted per person.
6. The ESP32 project is only emitted (ESP-IDF is not installed here); the demo prints its θ-partition
   flash plan and writes the merged θ-partition image with esptool (offline).

Exit code 0 when parity passed (100 % bit-exact, agreement ≥ ``--min-agreement``), 3 when it failed,
1 on an error (missing toolchain, no face found, …) (``pvcore.cli``).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pvcore.cli import EXIT_CHECK_FAILED, EXIT_OK, fail, setup_logging
from pvcore.signed import inner_blob
from pvcore.targets import TARGETS
from training.calibration import DEFAULT_FAR

log = logging.getLogger(__name__)

ENROLLED = "astronaut"  # skimage.data.astronaut(): Eileen Collins
STRANGER = "grace_hopper"  # matplotlib sample_data/grace_hopper.jpg
DEMO_DIR = Path("runs") / "demo"


class DemoError(RuntimeError):
    pass


def package_photo(name: str) -> np.ndarray:
    """The full photos shipped by installed packages (uint8 RGB)."""
    if name == ENROLLED:
        import skimage.data

        return np.asarray(skimage.data.astronaut(), np.uint8)
    if name == STRANGER:
        from matplotlib import cbook
        from PIL import Image

        with cbook.get_sample_data("grace_hopper.jpg") as fh:
            return np.asarray(Image.open(fh).convert("RGB"), np.uint8)
    raise KeyError(name)


def aligned_face(image_rgb: np.ndarray) -> np.ndarray:
    """The ArcFace-aligned 112×112 crop of the largest face (dlib HOG + landmarks, as enrollment)."""
    from training.face.pipeline import FacePipeline

    return FacePipeline("dlib", multi_face="largest").process(image_rgb).arcface112


def views(crop: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` variations of an aligned crop: a small rotation (±8°), scale (±6 %) and shift (±3 px) about
    the crop centre — what a slightly different alignment gives — then the photometric changes of
    ``codegen.quantize.augment`` (flip, contrast, brightness, grey, noise). Seeded; the seed differs from
    the quantizer's calibration seed (0), so no view is a calibration image."""
    import cv2

    from codegen.quantize import augment

    rng = np.random.default_rng(seed)
    geo = []
    for _ in range(n):
        m = cv2.getRotationMatrix2D((55.5, 55.5), rng.uniform(-8, 8), rng.uniform(0.94, 1.06))
        m[:, 2] += rng.uniform(-3, 3, size=2)
        geo.append(cv2.warpAffine(crop, m, (112, 112), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    out = [augment(g[None], 2, seed=int(rng.integers(1 << 30)) + 1)[int(rng.integers(2))] for g in geo]
    return np.stack(out).astype(np.uint8)


# ---- the enrollment step (one call; swap it for another enrollment function) ------------------------------
@dataclass
class Enrolled:
    user_id: str
    theta: np.ndarray
    crop: np.ndarray
    threshold: float
    model_id: str
    threshold_origin: str = "the model's global threshold"
    refinement: str = "not refined"


def enroll_person(user_id: str, image_rgb: np.ndarray, store_root: Path, model_path: Path | None,
                  enroll_views: int = 4, far: float | None = DEFAULT_FAR) -> Enrolled:
    """training.enroll.enroll_images with the shipped hypernetwork (or ``model_path``): one photo,
    ``enroll_views`` views of it; with ``far``, her own threshold from the model's cohort if it is at hand."""
    from pvcore.user_store import UserStore
    from training.enroll import enroll_images, threshold_origin

    store = UserStore(store_root)
    meta, res = enroll_images(user_id, [image_rgb], model_path=model_path, store=store, force=True,
                              views=enroll_views, far=far)
    theta, _ = store.load(user_id)
    return Enrolled(user_id, theta, res.arcface112, meta.threshold, meta.hypermodel_id, threshold_origin(meta),
                    refinement_summary(meta))


def refinement_summary(meta) -> str:
    """How enrollment refined θ (training.refine), in words, from the user-store entry."""
    ref = (meta.calibration or {}).get("refine")
    if ref is None:
        return "not refined"
    if "skipped" in ref:
        return f"not refined: {ref['skipped']}"
    return (f"refined on {ref['positives']} views against {ref['cohort_size']} cohort faces in {ref['seconds']:.1f} s "
            f"(mean margin of the views {ref['pos_margin_h']:+.2f} → {ref['pos_margin']:+.2f}, of the cohort "
            f"{ref['neg_margin_h']:+.2f} → {ref['neg_margin']:+.2f})")


EnrollFn = Callable[..., Enrolled]


# ---- the demo ---------------------------------------------------------------------------------------------
def signing_keys(keys: Path | None) -> tuple[Path, bool]:
    """The keyring that signs the demo's θ (and whose keys its firmware trusts): ``keys``, else the user's
    default keyring when it has an active key, else a throwaway key in a temporary folder outside the
    repository (deleted once the θ are signed). Returns the folder and whether it is the throwaway one."""
    from pvcore.keys import Keyring

    ring = Keyring(keys)
    if keys is not None or ring.active_name() is not None:
        return ring.dir, False
    tmp = Path(tempfile.mkdtemp(prefix="pv-demo-keys-"))
    Keyring(tmp).generate("demo")
    print(f"no signing key in {ring.dir}: the demo signs with a throwaway key (python -m host_tools.keys "
          "generate makes yours)", flush=True)
    return tmp, True


def check_tools() -> None:
    missing = [t for t in ("arm-none-eabi-gcc", "qemu-system-arm", "make") if shutil.which(t) is None]
    if missing:
        raise DemoError(
            f"{', '.join(missing)} not found: apt-get install --no-install-recommends gcc-arm-none-eabi "
            "libnewlib-arm-none-eabi qemu-system-arm make (or run .ci/setup)"
        )


def run_demo(
    out: Path = DEMO_DIR,
    *,
    n_views: int = 100,
    boards: int = 2,
    model_path: Path | None = None,
    min_agreement: float = 99.5,
    enroll_fn: EnrollFn = enroll_person,
    show_progress: bool = True,
    enroll_views: int = 4,
    far: float | None = DEFAULT_FAR,
    keys: Path | None = None,
) -> dict[str, object]:
    from codegen.emit import emit
    from host_tools import flash
    from host_tools.enroll import blob_from_file, blob_from_store, enroll
    from host_tools.parity import print_summary, run_parity, write_reports
    from host_tools.qemu import QemuBoard
    from host_tools.serial_link import SerialLink

    check_tools()
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    users = out / "users"

    def lap(name: str, since: float) -> float:
        timings[name] = round(time.monotonic() - since, 2)
        print(f"[{time.monotonic() - t0:6.1f} s] {name} done ({timings[name]:.1f} s)", flush=True)
        return time.monotonic()

    t = time.monotonic()
    photo = package_photo(ENROLLED)
    person = enroll_fn(ENROLLED, photo, users, model_path, enroll_views=enroll_views, far=far)
    t = lap(f"enroll (detect, align, {enroll_views} view(s) embedded, h)", t)
    print(f"{ENROLLED}'s θ: {person.refinement}", flush=True)
    print(f"{ENROLLED}'s threshold: logit {person.threshold:+.3f} ({person.threshold_origin})", flush=True)

    keys_dir, throwaway = signing_keys(keys)
    emitted: dict[str, Path] = {}
    try:
        for target in ("cortex-m-qemu", "esp32"):
            res = emit(ENROLLED, target, out=out / "emit" / target, force=True, users_root=users, keys=keys_dir)
            emitted[target] = res.out
    finally:
        if throwaway:  # the θ are signed and the firmware trusts its public key: nothing needs it any more
            shutil.rmtree(keys_dir, ignore_errors=True)
    t = lap("emit cortex-m-qemu + esp32", t)

    blob_file = emitted["cortex-m-qemu"] / f"{ENROLLED}_theta.bin"
    ub = blob_from_file(blob_file)
    same = blob_from_store(ENROLLED, users, activations=ub.qf.activations)[0].blob == inner_blob(ub.blob)
    if not same:
        raise DemoError(f"{blob_file} differs from the blob host_tools builds from the user store")

    # ESP32: offline flash plan of the θ partition (ESP-IDF is not available to build the app here)
    esp_dir = emitted["esp32"]
    parts = flash.parse_partitions_csv(esp_dir / "partitions.csv")
    esp_blob = blob_from_file(esp_dir / f"{ENROLLED}_theta.bin")  # its own θ (16x8 too, the default)
    item = flash.theta_item(esp_blob.blob, parts)
    flash.merge(TARGETS["esp32"], [item], out / "esp32_theta_partition_merged.bin")
    esp_plan = {"theta_partition_offset": hex(item.offset), "theta_partition_bytes": len(item.data),
                "project": str(esp_dir)}  # fmt: skip

    elf = flash.qemu_elf(emitted["cortex-m-qemu"], None)
    t = lap("build the emitted Cortex-M4 firmware", t)

    faces = {name: aligned_face(package_photo(name)) for name in (ENROLLED, STRANGER)}
    images = np.concatenate([views(faces[ENROLLED], n_views, seed=101), views(faces[STRANGER], n_views, seed=202)])
    names = [f"{ENROLLED}/view{i:03d}" for i in range(n_views)] + [f"{STRANGER}/view{i:03d}" for i in range(n_views)]
    t = lap(f"align both faces, {len(images)} views", t)

    with ExitStack() as stack:
        urls = [stack.enter_context(QemuBoard(elf)) for _ in range(boards)]
        t = lap(f"boot {boards} QEMU mps2-an386 board(s)", t)
        installs = []
        for url in urls:
            with SerialLink(url, timeout=5.0) as link:
                installs.append(enroll(link, ub))
        t = lap("enroll over serial", t)
        r = run_parity(
            urls, ub, person.theta, images, names, source=f"{n_views} views each of {ENROLLED} and {STRANGER}",
            min_agreement=min_agreement, show_progress=show_progress,
        )  # fmt: skip
        t = lap("parity over serial", t)

    paths = write_reports(r, out / "parity")
    dec = np.array([row["device_decision"] for row in r.images], bool)
    accepted = {ENROLLED: int(dec[:n_views].sum()), STRANGER: int(dec[n_views:].sum())}
    summary = {
        "enrolled": ENROLLED,
        "hypermodel_id": person.model_id,
        "threshold": person.threshold,
        "threshold_origin": person.threshold_origin,
        "refinement": person.refinement,
        "enroll_views": enroll_views,
        "theta_install_s": [round(i.seconds, 2) for i in installs],
        "parity": r.summary(),
        "device_accepts": {k: f"{v}/{n_views}" for k, v in accepted.items()},
        "esp32": esp_plan,
        "timings_s": timings,
        "total_s": round(time.monotonic() - t0, 1),
    }
    (out / "demo.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print()
    print_summary(r)
    print(
        f"board decisions: {ENROLLED} views accepted {accepted[ENROLLED]}/{n_views}, "
        f"{STRANGER} views accepted {accepted[STRANGER]}/{n_views} (threshold logit {person.threshold:.3f})"
    )
    print(
        f"esp32: project {esp_dir} (build it with ESP-IDF: idf.py build), θ partition at "
        f"{esp_plan['theta_partition_offset']}; then python -m host_tools.flash --target esp32 --port PORT "
        f"--build {esp_dir}/build"
    )
    print(f"reports: {paths['md']}, {paths['png']}, {out / 'demo.json'}; total {summary['total_s']} s")
    summary["passed"] = r.passed
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m host_tools.demo",
        description="Enroll a package photo, emit the firmware, boot the emulated Cortex-M4, enroll over "
        "serial and check parity (device vs golden model vs PyTorch float) on 2×N views.",
    )
    ap.add_argument("--out", type=Path, default=DEMO_DIR, help="output folder (default runs/demo)")
    ap.add_argument("--per-person", type=int, default=100,
                    help="variations of each person's face sent to the boards (default 100: 200 images)")
    ap.add_argument("--boards", type=int, default=2, help="QEMU boards sharing the images (default 2)")
    ap.add_argument("--model", type=Path, help="hypermodel file (default: the one shipped in the repository)")
    ap.add_argument("--min-agreement", type=float, default=99.5, help="percent (default 99.5)")
    ap.add_argument("--enroll-views", type=int, default=4, choices=range(1, 5), metavar="{1..4}",
                    help="views of the enrollment photo averaged into her θ (default 4: the photo, its mirror "
                         "and both in grayscale)")
    ap.add_argument("--far", type=float, default=DEFAULT_FAR,
                    help="her own threshold for this false-accept rate, calibrated on the model's impostor "
                         f"cohort where it is at hand (training.enroll --far; default {DEFAULT_FAR:g}, the shipped "
                         "operating point; 0: the model's global threshold)")
    ap.add_argument("--keys", type=Path, metavar="DIR",
                    help="the signing keyring (default: $PV_KEYS_DIR or ~/.config/hyperverif-mcu/keys when it has a "
                         "key, else a throwaway key made for this run)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    setup_logging(quiet=True)
    if args.per_person < 1 or args.boards < 1:
        ap.error("--per-person and --boards must be ≥ 1")
    if not 0.0 <= args.far < 1.0:
        ap.error(f"--far must be a rate in [0, 1) (0: the global threshold), e.g. 0.01; got {args.far}")
    from codegen.emit import EmitError
    from host_tools.enroll import EnrollError
    from host_tools.flash import FlashError
    from host_tools.parity import ParityError
    from host_tools.serial_link import DeviceError, LinkError
    from pvcore.user_store import UserStoreError
    from training.face.errors import FaceError
    from training.hypermodel import HyperModelError

    try:
        summary = run_demo(
            args.out, n_views=args.per_person, boards=args.boards, model_path=args.model,
            min_agreement=args.min_agreement, show_progress=not args.no_progress, enroll_views=args.enroll_views,
            far=args.far, keys=args.keys,
        )  # fmt: skip
    except (DemoError, EmitError, EnrollError, FlashError, ParityError, LinkError, DeviceError, FaceError,
            HyperModelError, UserStoreError, RuntimeError, OSError) as e:  # fmt: skip
        fail(str(e))
    return EXIT_OK if summary["passed"] else EXIT_CHECK_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
