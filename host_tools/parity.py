"""Parity of a board with the host: the device's int8 outputs against the golden int8 model and float f.

    python -m host_tools.parity --user alice --port socket://127.0.0.1:4321 --dataset lfw --limit 200
    python -m host_tools.parity --user alice --port /dev/ttyUSB0 --images crops/ --out runs/parity/alice

Every aligned 112×112 crop is sent over the serial link (INFER), and the board's int8 logit, score and
decision come back. They are compared with

(a) the int8 golden model (``codegen.golden.run_int8``, TFLite Micro's reference arithmetic) on the same
    quantized f: the int8 logits must agree **bit for bit** on every image;
(b) the float f in PyTorch (``training.verifier.functional.f_apply``) on the user's float θ: |Δscore|
    statistics (score = sigmoid(logit)) and the agreement of the accept/reject decisions at the user's
    threshold (device: dequantized int8 logit ≥ threshold; float: logit ≥ threshold).

A two-view firmware (built with -DPV_VIEWS=2u: the INFER result carries the mirror image's logit too)
is compared view by view: both int8 logits bit for bit with the golden model on the image and on its
mirror image, the score and decision (the mean of the two) with the float f's mean over the same views.

Writes ``parity.md``, ``parity.json`` (summary and every image) and ``scatter.png`` (device vs PyTorch
score) to ``--out`` (``--json``: the summary printed as JSON too). Exit code (``pvcore.cli``) 0: bit-exact on
every image and decision agreement ≥ ``--min-agreement`` (default 99.5 %); 3: parity failed; 1: an error (bad
port, unknown user, missing images, …); 2: a wrong command line.

Images: ``--images DIR`` (image files; a 112×112 image is taken as an aligned crop, any other size is
detected and aligned with the dlib pipeline first; or one .npy of uint8 (N, 112, 112, 3)), or
``--dataset lfw``: crops from the aligned-crop cache (``python -m training.align --dataset lfw`` builds
it), a seeded random sample of ``--limit`` aligned images. ``--port`` may be given several times:
the images are shared among the boards (each must hold the user's θ; ``--enroll`` installs it first).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import serial

from codegen.golden import images_to_int8, run_int8_views
from host_tools.enroll import EnrollError, UserBlob, blob_from_file, blob_from_store, enroll, firmware_activations
from host_tools.serial_link import DeviceError, InferResult, Info, LinkError, SerialLink
from pvcore.atomic import atomic_write, atomic_write_bytes
from pvcore.blob import BlobError
from pvcore.cli import EXIT_CHECK_FAILED, EXIT_OK, add_port_args, add_user_store_args, fail, setup_logging
from pvcore.signed import inner_blob, is_signed
from pvcore.user_store import UserStore, UserStoreError
from training.verifier.functional import f_logits_u8

log = logging.getLogger(__name__)

DEFAULT_MIN_AGREEMENT = 99.5  # percent
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".webp", ".tif", ".tiff"}


class ParityError(RuntimeError):
    """Parity could not be measured (bad input, board not ready); the message says why."""


# ---- images ----------------------------------------------------------------------------------------------
def load_image_dir(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """Aligned crops from a folder of images (aligned with the dlib pipeline unless 112×112) or a .npy."""
    p = Path(path)
    if p.is_file() and p.suffix == ".npy":
        arr = np.load(p, allow_pickle=False)
        if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[1:] != (112, 112, 3):
            raise ParityError(f"{p}: expected uint8 (N, 112, 112, 3) crops, got {arr.dtype}{arr.shape}")
        return arr, [f"{p.name}[{i}]" for i in range(len(arr))]
    if not p.is_dir():
        raise ParityError(f"--images {p}: no such folder (or .npy file)")
    files = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
    if not files:
        raise ParityError(f"--images {p}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    from training.face.errors import FaceError
    from training.face.pipeline import FacePipeline, read_image_rgb

    pipe: FacePipeline | None = None
    crops, names, failed = [], [], []
    for f in files:
        try:
            img = read_image_rgb(f)
            if img.shape != (112, 112, 3):
                pipe = pipe or FacePipeline(multi_face="largest")
                img = pipe.process(img).arcface112
        except FaceError as e:
            failed.append(f"{f}: {e}")
            continue
        crops.append(img)
        names.append(str(f.relative_to(p)))
    for msg in failed:
        log.warning("skipped %s", msg)
    if not crops:
        raise ParityError(f"--images {p}: no usable face in {len(files)} files (first: {failed[0]})")
    return np.stack(crops).astype(np.uint8), names


def load_lfw(limit: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """A seeded random sample of ``limit`` aligned LFW crops from the aligned-crop cache."""
    from pvcore.paths import SharedDataMissing
    from training.face.cache import FAILED, PENDING, lfw_cache

    try:
        cache = lfw_cache("dlib")
    except SharedDataMissing as e:
        raise ParityError(f"--dataset lfw needs the LFW images: {e}") from e
    status = cache.status
    ok = np.flatnonzero((status != PENDING) & (status != FAILED))
    if len(ok) == 0:
        raise ParityError(
            f"the LFW aligned-crop cache {cache.dir} is empty: build it with python -m training.align --dataset lfw"
        )
    if len(ok) < limit:
        log.warning("only %d aligned LFW crops in the cache (asked for %d)", len(ok), limit)
    pick = np.sort(np.random.default_rng(seed).choice(ok, size=min(limit, len(ok)), replace=False))
    crops = np.asarray(cache.crops()[pick], np.uint8)
    return crops, [cache.paths[i] for i in pick]


# ---- the comparison --------------------------------------------------------------------------------------
def device_outputs(
    urls: Sequence[str],
    images_u8: np.ndarray,
    *,
    user_id: str,
    timeout: float = 5.0,
    baudrate: int = 115200,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[InferResult], list[Info]]:
    """Runs every image on the boards (shared round-robin, one thread per board); results in image order."""
    q = images_to_int8(images_u8)
    results: list[InferResult | None] = [None] * len(q)
    infos: list[Info] = []
    lock = threading.Lock()

    def work(k: int) -> None:
        with SerialLink(urls[k], baudrate=baudrate, timeout=timeout) as link:
            info = link.info()
            if info.active_slot is None:
                raise ParityError(f"{urls[k]}: the board holds no θ; enroll {user_id!r} first (or pass --enroll)")
            if info.user_id != user_id:
                raise ParityError(
                    f"{urls[k]}: the board holds the θ of {info.user_id!r}, not {user_id!r}; enroll it first "
                    "(or pass --enroll)"
                )
            with lock:
                infos.append(info)
            for i in range(k, len(q), len(urls)):
                results[i] = link.infer(q[i])
                if progress is not None:
                    with lock:
                        progress(1)

    with ThreadPoolExecutor(len(urls)) as ex:
        for fut in [ex.submit(work, k) for k in range(len(urls))]:
            fut.result()
    assert all(r is not None for r in results)
    return results, infos  # type: ignore[return-value]


@dataclass
class ParityResult:
    user_id: str
    n_images: int
    source: str
    blob_source: str
    boards: list[str]
    threshold: float
    min_agreement: float
    bit_exact: int
    golden_decision_agree: int
    float_decision_agree: int
    abs_dscore: dict[str, float]
    abs_dlogit: dict[str, float]
    ticks: dict[str, float]
    tick_hz: int
    seconds: float
    images: list[dict[str, object]] = field(repr=False, default_factory=list)
    views: int = 1  # passes of f per probe on the board (2: the image and its mirror, scored by their mean)

    @property
    def bit_exact_pct(self) -> float:
        return 100.0 * self.bit_exact / self.n_images if self.n_images else 0.0

    @property
    def agreement_pct(self) -> float:
        return 100.0 * self.float_decision_agree / self.n_images if self.n_images else 0.0

    @property
    def passed(self) -> bool:
        return self.n_images > 0 and self.bit_exact == self.n_images and self.agreement_pct >= self.min_agreement

    def summary(self) -> dict[str, object]:
        d = asdict(self)
        d.pop("images")
        d.update(bit_exact_pct=self.bit_exact_pct, agreement_pct=self.agreement_pct, passed=self.passed)
        return d


def _stats(x: np.ndarray) -> dict[str, float]:
    if x.size == 0:
        return {}
    return {
        "mean": float(x.mean()),
        "median": float(np.median(x)),
        "p99": float(np.percentile(x, 99)),
        "max": float(x.max()),
    }


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def compare(
    ub: UserBlob,
    theta: np.ndarray,
    images_u8: np.ndarray,
    names: Sequence[str],
    device: Sequence[InferResult],
    *,
    source: str,
    boards: Sequence[Info],
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    seconds: float = 0.0,
) -> ParityResult:
    views = {len(r.logits) for r in device}
    if len(views) > 1:
        raise ParityError("the boards answer with different view counts (PV_VIEWS): compare them one at a time")
    n_views = views.pop() if views else 1
    golden_q = np.asarray(run_int8_views(ub.qf, images_u8, n_views)).astype(np.int64)  # (N, views)
    fl = f_logits_u8(theta, images_u8, n_views)
    if n_views == 2:
        golden_dec = ub.qf.decide_mean2(golden_q[:, 0], golden_q[:, 1], ub.threshold)
    else:
        golden_dec = ub.qf.decide(golden_q[:, 0], ub.threshold)
    fl_score = _sigmoid(fl)
    fl_dec = fl >= np.float32(ub.threshold)
    dev_q = np.array([r.logits for r in device], np.int64).reshape(len(device), n_views)
    dev_real = np.array([r.logit_real for r in device], np.float64)
    dev_score = np.array([r.score for r in device], np.float64)
    dev_dec = np.array([r.decision for r in device], bool)
    ticks = np.array([r.ticks for r in device], np.float64)
    tick_hz = boards[0].tick_hz if boards else 0
    rows = [
        {
            "name": names[i],
            "device_q": [int(v) for v in dev_q[i]] if n_views == 2 else int(dev_q[i, 0]),
            "golden_q": [int(v) for v in golden_q[i]] if n_views == 2 else int(golden_q[i, 0]),
            "device_logit": float(dev_real[i]),
            "device_score": float(dev_score[i]),
            "device_decision": bool(dev_dec[i]),
            "float_logit": float(fl[i]),
            "float_score": float(fl_score[i]),
            "float_decision": bool(fl_dec[i]),
            "ticks": int(ticks[i]),
        }
        for i in range(len(device))
    ]
    return ParityResult(
        user_id=ub.user_id,
        n_images=len(device),
        source=source,
        blob_source=ub.source,
        boards=[f"{b.board} fw {b.fw_version} arch {b.arch_hash}" for b in boards],
        threshold=float(ub.threshold),
        min_agreement=min_agreement,
        bit_exact=int((dev_q == golden_q).all(axis=1).sum()),
        golden_decision_agree=int((dev_dec == golden_dec).sum()),
        float_decision_agree=int((dev_dec == fl_dec).sum()),
        abs_dscore=_stats(np.abs(dev_score - fl_score)),
        abs_dlogit=_stats(np.abs(dev_real - fl)),
        ticks={"mean": float(ticks.mean()), "min": float(ticks.min()), "max": float(ticks.max())} if len(ticks) else {},
        tick_hz=tick_hz,
        seconds=seconds,
        images=rows,
        views=n_views,
    )


def run_parity(
    urls: Sequence[str],
    ub: UserBlob,
    theta: np.ndarray,
    images_u8: np.ndarray,
    names: Sequence[str],
    *,
    source: str,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    timeout: float = 5.0,
    baudrate: int = 115200,
    show_progress: bool = True,
) -> ParityResult:
    """Device outputs for every image, compared with golden and float f."""
    from tqdm import tqdm

    if len(images_u8) == 0:
        raise ParityError("no images to compare")
    t0 = time.monotonic()
    with tqdm(total=len(images_u8), unit="img", desc="parity", disable=not show_progress) as bar:
        device, infos = device_outputs(urls, images_u8, user_id=ub.user_id, timeout=timeout, baudrate=baudrate,
                                       progress=bar.update)
    dt = time.monotonic() - t0
    blob_bytes = len(inner_blob(ub.blob)) if is_signed(ub.blob) else len(ub.blob)  # the board reports the θ blob
    for info in infos:
        if info.theta_bytes != blob_bytes or np.float32(info.threshold_logit) != np.float32(ub.threshold):
            log.warning(
                "the board's θ (%d bytes, threshold %.6g) is not the blob compared against (%d bytes, %.6g)",
                info.theta_bytes, info.threshold_logit, blob_bytes, ub.threshold,
            )  # fmt: skip
    return compare(
        ub, theta, images_u8, names, device, source=source, boards=infos, min_agreement=min_agreement, seconds=dt
    )


# ---- reports ---------------------------------------------------------------------------------------------
def markdown(r: ParityResult) -> str:
    s, lg = r.abs_dscore, r.abs_dlogit
    ms = r.ticks.get("mean", 0.0) / r.tick_hz * 1e3 if r.tick_hz else float("nan")
    lines = [
        f"# Parity of user `{r.user_id}`: {'PASSED' if r.passed else 'FAILED'}",
        "",
        f"- images: {r.n_images} ({r.source}); θ blob: {r.blob_source}",
        f"- boards: {'; '.join(r.boards)}",
        f"- threshold (logit): {r.threshold:.6g}; required decision agreement ≥ {r.min_agreement} %",
        f"- views per probe: {r.views}" + (" (the image and its mirror image; score = their mean, float alike)"
                                            if r.views == 2 else ""),
        f"- wall time on the link: {r.seconds:.1f} s ({r.n_images / max(r.seconds, 1e-9):.2f} images/s)",
        "",
        "| check | result |",
        "|---|---|",
        f"| int8 logit bit-exact with the golden model | {r.bit_exact}/{r.n_images} ({r.bit_exact_pct:.2f} %) |",
        f"| decision = golden int8 decision | {r.golden_decision_agree}/{r.n_images} |",
        f"| decision = PyTorch float decision | {r.float_decision_agree}/{r.n_images} ({r.agreement_pct:.2f} %) |",
        f"| \\|Δscore\\| vs float: mean / median / p99 / max | {s.get('mean', 0):.4f} / {s.get('median', 0):.4f} / "
        f"{s.get('p99', 0):.4f} / {s.get('max', 0):.4f} |",
        f"| \\|Δlogit\\| vs float: mean / max | {lg.get('mean', 0):.4f} / {lg.get('max', 0):.4f} |",
        f"| board ticks per inference: mean (min–max) | {r.ticks.get('mean', 0):.0f} ({r.ticks.get('min', 0):.0f}–"
        f"{r.ticks.get('max', 0):.0f}) at {r.tick_hz} Hz = {ms:.2f} ms |",
    ]
    bad = [
        row for row in r.images if row["device_q"] != row["golden_q"] or row["device_decision"] != row["float_decision"]
    ]
    if bad:
        lines += ["", "## Images that differ (first 30)", ""]
        lines += ["| image | device q | golden q | device score | float score |", "|---|---|---|---|---|"]
        for row in bad[:30]:
            lines.append(
                f"| {row['name']} | {row['device_q']} | {row['golden_q']} | {row['device_score']:.4f} "
                f"| {row['float_score']:.4f} |"
            )
    return "\n".join(lines) + "\n"


def scatter(r: ParityResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dev = np.array([row["device_score"] for row in r.images], float)
    flt = np.array([row["float_score"] for row in r.images], float)
    agree = np.array([row["device_decision"] == row["float_decision"] for row in r.images], bool)
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.plot([0, 1], [0, 1], color="0.7", lw=1)
    t = 1.0 / (1.0 + math.exp(-r.threshold))
    ax.axvline(t, color="0.5", ls="--", lw=0.8)
    ax.axhline(t, color="0.5", ls="--", lw=0.8)
    ax.scatter(flt[agree], dev[agree], s=10, alpha=0.7, label="same decision")
    if (~agree).any():
        ax.scatter(flt[~agree], dev[~agree], s=25, color="red", marker="x", label="different decision")
    ax.set_xlabel("PyTorch float f: score")
    ax.set_ylabel("device int8: score")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(
        f"{r.user_id}: {r.n_images} images, agreement {r.agreement_pct:.1f} %, bit-exact {r.bit_exact_pct:.1f} %"
    )
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)


def write_reports(r: ParityResult, out: Path) -> dict[str, Path]:
    paths = {"md": out / "parity.md", "json": out / "parity.json", "png": out / "scatter.png"}
    atomic_write_bytes(paths["md"], markdown(r).encode())
    report = json.dumps({"summary": r.summary(), "images": r.images}, indent=2) + "\n"
    atomic_write_bytes(paths["json"], report.encode())
    scatter(r, paths["png"])
    return paths


def print_summary(r: ParityResult) -> None:
    s = r.abs_dscore
    print(
        f"parity {r.user_id}: {r.n_images} images | bit-exact with golden {r.bit_exact}/{r.n_images} "
        f"({r.bit_exact_pct:.2f} %) | decisions = float {r.float_decision_agree}/{r.n_images} "
        f"({r.agreement_pct:.2f} %, need ≥ {r.min_agreement} %) | |Δscore| mean {s.get('mean', 0):.4f} "
        f"max {s.get('max', 0):.4f} | {'PASSED' if r.passed else 'FAILED'}"
    )


# ---- CLI -------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m host_tools.parity",
        description="Device outputs (int8, or a 16x8 model's int16) vs the golden model (bit-exact) and PyTorch "
        "float f (decisions).",
    )
    ap.add_argument("--user", required=True, help="user id in the user store (θ, threshold)")
    add_port_args(ap, multiple=True, timeout=5.0)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", type=Path, help="folder of images (or a .npy of uint8 (N,112,112,3) crops)")
    src.add_argument("--dataset", choices=("lfw",), help="aligned crops from the dataset's cache")
    ap.add_argument("--limit", type=int, help="at most N images (lfw default: 200)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the dataset sample")
    ap.add_argument("--blob", type=Path, help="the θ blob the board holds (default: built from the user store)")
    add_user_store_args(ap)
    ap.add_argument("--activations", choices=("auto", "int8", "int16"), default="auto",
                    help="the θ built from the store: int8 (blob format 4) or int16 (16x8, format 3: a firmware "
                         "built with PV_WITH_16X8=1); auto (default): int16 when the first board's INFO says "
                         "its firmware runs 16x8 (codegen.emit's default build), else int8")
    ap.add_argument("--enroll", action="store_true", help="install the user's θ on every board first")
    ap.add_argument("--min-agreement", type=float, default=DEFAULT_MIN_AGREEMENT, help="percent (default 99.5)")
    ap.add_argument("--out", type=Path, help="report folder (default runs/parity/USER)")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON (instead of one line)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    setup_logging()
    if args.limit is not None and args.limit < 1:
        ap.error("--limit must be ≥ 1")
    try:
        UserStore(args.users).load(args.user)  # bad input first: an unknown user, then the images
        if args.dataset == "lfw":
            images, names = load_lfw(args.limit or 200, args.seed)
            source = f"LFW aligned crops, seeded sample (seed {args.seed})"
        else:
            images, names = load_image_dir(args.images)
            if args.limit:
                images, names = images[: args.limit], names[: args.limit]
            source = str(args.images)
        acts = args.activations
        if acts == "auto" and args.blob is None:
            acts = firmware_activations(args.port[0], baudrate=args.baud, timeout=args.timeout)
        ub, theta, _meta = blob_from_store(args.user, args.users, activations="int8" if acts == "auto" else acts)
        if args.blob is not None:
            ub = blob_from_file(args.blob)
            if ub.user_id != args.user:
                raise ParityError(f"{args.blob} holds the θ of {ub.user_id!r}, not of {args.user!r}")
        if args.enroll:
            for url in args.port:
                with SerialLink(url, baudrate=args.baud, timeout=args.timeout) as link:
                    enroll(link, ub)
        r = run_parity(
            args.port, ub, theta, images, names, source=source, min_agreement=args.min_agreement,
            timeout=args.timeout, baudrate=args.baud, show_progress=not args.no_progress,
        )  # fmt: skip
    except (ParityError, EnrollError, UserStoreError, LinkError, DeviceError, BlobError, serial.SerialException) as e:
        fail(str(e))
    out = args.out or Path("runs") / "parity" / args.user
    paths = write_reports(r, out)
    if args.json:
        print(json.dumps({**r.summary(), "reports": {k: str(p) for k, p in paths.items()}}, indent=2))
    else:
        print_summary(r)
        print(f"reports: {paths['md']}, {paths['json']}, {paths['png']}")
    return EXIT_OK if r.passed else EXIT_CHECK_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
