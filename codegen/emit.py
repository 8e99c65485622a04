"""``python -m codegen.emit``: one enrolled user's θ → int8 artifacts and, with ``--target``, a firmware project.

    python -m codegen.emit --user alice --target esp32 [--out DIR] [--format all] [--force]
    python -m codegen.emit --list-targets

Reads the user store (``pvcore.user_store``: θ + meta with arch hash and threshold), quantizes θ
(``codegen.quantize``; calibration: package faces plus the enrollment crop — ``--enroll-crop`` or the one
kept in the store entry), and writes

    blob       <user>_theta.bin    the signed θ (pvcore/signed.py: the θ blob of pvcore/blob.py in an Ed25519
                                   envelope by the keyring's active key, --keys): serial link or θ partition
    c-header   <user>_theta.h      const arrays + the signed θ, compiled in
    tflite     <user>.tflite       int8 .tflite (codegen/tflite_writer.py) and <user>_model.h (C array, TFLM);
                                   with --activations int16 the 16x8 one (int16 activations), alone

Atomic: everything is built in a hidden temp folder beside the output and renamed into place at the
end, so an error leaves nothing half-written. Every output folder carries a marker, ``.pv-emit.json`` (tool,
version, user, target, time). An existing output is refused unless ``--force``, and ``--force`` replaces
only a folder with that marker (then only once the new one is complete): never the user store, a folder
emit did not write, a file, the working folder or the repository. Two emits into one new folder: one
writes it, the other is refused. Exit codes (``pvcore.cli``): 0 ok, 1 an error (unknown
user, θ of another architecture, corrupt θ, existing output, …), 2 a wrong command line (unknown target).
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import logging
import os
import shutil
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path

import numpy as np

from codegen.c_arch import kernel16_arena_bytes, kernel_arena_bytes
from codegen.c_header import render_model_header, render_theta_header
from codegen.project import (
    Artifacts,
    ProjectError,
    check_views,
    get_target,
    list_targets,
    render_project,
)
from codegen.quantize import QuantConfig, quantize
from codegen.tflite_writer import TFLM_16X8_NOTE, build_tflite, tflm_arena_bytes
from codegen.trusted_keys import HEADER_NAME, render_keyring
from pvcore.atomic import FolderExists, publish_folder, replace_folder, temp_folder_beside
from pvcore.blob import BlobError, format_version, pack_blob
from pvcore.cli import add_target_arg, add_user_store_args, fail, setup_logging
from pvcore.keys import Keyring, KeyringError
from pvcore.paths import REPO_ROOT
from pvcore.qtheta import ACTIVATIONS, QuantizedF
from pvcore.store_format import SLOT_HEADER_BYTES
from pvcore.targets import TARGETS, Target
from pvcore.user_store import UserStore, UserStoreError

log = logging.getLogger(__name__)

FORMATS = ("c-header", "tflite", "blob", "all")
TFLM_ARENA_MARGIN = 1024  # on top of the Python interpreter's figure, for a board's TFLM bookkeeping


class EmitError(ValueError):
    """Bad input: the message names it and the way out (exit code 1)."""


@dataclass
class EmitResult:
    out: Path
    user_id: str
    target: str | None
    files: list[tuple[Path, int]] = field(default_factory=list)  # (path, bytes)
    theta_flash_bytes: int = 0
    arena_bytes: int = 0
    tflm_arena_bytes: int | None = None
    shared_prefix: str | None = None
    views: int = 1  # PV_VIEWS the project is built for (pvcore.targets.Target.views)
    activations: str = "int8"  # or "int16": 16x8 (blob format 3 for the s16 kernels, or the 16x8 .tflite)
    flash_is_blob: bool = True  # False: --format tflite without a target (the .tflite is the θ in flash)
    blob_format: int = 0  # the θ blob's format version (pvcore.blob.format_version)
    seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # printed to stderr by the command


def _stored_crop(store: UserStore, user_id: str) -> np.ndarray | None:
    """The enrollment crop kept in the user's store entry (newer entries), for calibration."""
    load = getattr(store, "load_crop", None)
    if load is None:
        return None
    try:
        return load(user_id)
    except (OSError, ValueError) as e:
        raise EmitError(f"user {user_id!r}: unreadable enrollment crop in the store ({e})") from None


def load_enroll_crop(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:  # the header only: the size is checked before anything is decoded
            if im.size != (112, 112):
                raise EmitError(f"--enroll-crop {path}: an aligned 112×112 crop is needed, got "
                                f"{im.size[0]}×{im.size[1]}")
            return np.asarray(im.convert("RGB"))
    except (OSError, Image.DecompressionBombError) as e:
        raise EmitError(f"--enroll-crop {path}: cannot read the image ({e})") from None


def make_artifacts(qf: QuantizedF, user_id: str, threshold: float, formats: set[str],
                   timings: dict[str, float], personal_blob: bytes | None = None,
                   base_header: tuple[str, bytes] | None = None,
                   keyring: Keyring | None = None) -> tuple[Artifacts, int | None]:
    t = time.perf_counter()
    blob = b""
    try:  # int8: format version 4 (the s8 kernels); 16x8: version 3 (the s16 kernels)
        blob = personal_blob if personal_blob is not None else pack_blob(qf, user_id, threshold)
        if formats & {"blob", "c-header"}:  # what a board installs: signed, with the key's next counter
            blob = (keyring or Keyring()).sign(blob)
    except (BlobError, KeyringError) as e:
        raise EmitError(str(e)) from None
    timings["blob_s"] = time.perf_counter() - t
    theta_h = model_h = tfl = None
    tflm_arena = None
    if "c-header" in formats:
        t = time.perf_counter()
        theta_h = (f"{user_id}_theta.h", render_theta_header(qf, user_id, threshold, blob).encode())
        timings["c_header_s"] = time.perf_counter() - t
    if "tflite" in formats:
        t = time.perf_counter()
        model = build_tflite(qf, user_id=user_id, threshold=threshold)
        timings["tflite_s"] = time.perf_counter() - t
        t = time.perf_counter()
        tflm_arena = tflm_arena_bytes(model)
        timings["tflm_arena_s"] = time.perf_counter() - t
        tfl = (f"{user_id}.tflite", model)
        text = render_model_header(model, qf, user_id, threshold, tflm_arena + TFLM_ARENA_MARGIN)
        model_h = (f"{user_id}_model.h", text.encode())
    art = Artifacts(user_id, threshold, qf.arch_hash, theta_h, model_h,
                    (f"{user_id}_theta.bin", blob) if "blob" in formats else None, tfl, base_header,
                    qf.activations)
    return art, tflm_arena


# ---- the output folder --------------------------------------------------------------------------------------
# emit writes a marker into every folder it emits; --force replaces only a folder that carries it, so a
# mistyped --out (the user store, a project, a file, the working folder) is refused, never deleted.
MARKER = ".pv-emit.json"
MARKER_TOOL = "codegen.emit"
SYSTEM_DIRS = (Path("/proc"), Path("/sys"), Path("/dev"))  # kernel file systems: nothing to write there


def _marker(user_id: str, target: str | None, activations: str) -> bytes:
    try:
        pkg = package_version("hyperverif-mcu")
    except PackageNotFoundError:  # a checkout on sys.path, not installed: the marker still names the tool
        pkg = "unknown"
    return (json.dumps({"tool": MARKER_TOOL, "version": pkg, "user": user_id, "target": target,
                        "activations": activations,
                        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=2) + "\n").encode()


def check_replaceable(path: Path, shown: Path | str) -> None:
    """Raise EmitError unless the existing ``path`` is a folder emit wrote (a real folder with its marker).
    A ``path`` that is gone (another forced emit swapping its folder in at this instant) passes: the caller's
    ``replace_folder`` finds it gone or replaced and handles both. One lstat, so a folder is never taken for a
    file between two checks."""
    why = None
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISLNK(mode):
        why = "is a symbolic link; point --out at a folder itself"
    elif not stat.S_ISDIR(mode):
        why = "is a file, not a folder emit wrote"
    else:
        try:
            if json.loads((path / MARKER).read_text()).get("tool") != MARKER_TOOL:
                why = f"has a {MARKER} of another tool"
        except FileNotFoundError:
            if not os.path.lexists(path):  # swapped out by another forced emit meanwhile
                return
            why = f"was not written by codegen.emit (it has no {MARKER})"
        except (OSError, ValueError, AttributeError):
            why = f"has an unreadable {MARKER}"
    if why is not None:
        raise EmitError(f"--out {shown} {why}: --force replaces only a folder that codegen.emit wrote; choose "
                        "another --out, or move it away yourself")


def check_out(out: Path, force: bool, users_root: Path | None = None) -> Path:
    """``out`` made absolute, once it is a folder emit may write: never the user store or a folder in or around
    it, the file system root, the repository root, the working folder, the home folder or a parent of them,
    or a kernel file system (/proc, /sys, /dev); an existing ``out`` only with ``force`` and only a folder emit
    wrote (its marker). Raises EmitError naming the reason; touches nothing."""
    dest = Path(os.path.abspath(out))
    real = dest.resolve()
    places = [(Path.cwd().resolve(), "the working folder"), (REPO_ROOT.resolve(), "the repository")]
    try:
        places.append((Path.home().resolve(), "the home folder"))
    except RuntimeError:  # no home folder known
        pass
    for place, name in places:
        if place.is_relative_to(real):
            raise EmitError(f"--out {out} is {name} {place}{' or a folder above it' if place != real else ''}: "
                            "emit writes a folder of its own; choose a new one, e.g. out/<user>")
    for store in {UserStore(users_root).root.resolve(), UserStore().root.resolve()}:  # the one given, the default
        if real.is_relative_to(store) or store.is_relative_to(real):
            where = ("is the user store" if real == store else "is in the user store" if real.is_relative_to(store)
                     else "holds the user store")
            raise EmitError(f"--out {out} {where} {store}: choose another --out")
    for sysdir in SYSTEM_DIRS:
        if real.is_relative_to(sysdir):
            raise EmitError(f"--out {out} is under {sysdir}, a kernel file system: choose a folder on disk")
    above = next(p for p in real.parents if p.exists())
    if not above.is_dir():
        raise EmitError(f"--out {out}: {above} is a file, where a folder would have to be made")
    if os.path.lexists(dest):
        if not force:
            raise EmitError(f"output {out} exists; pass --force to replace it (a folder codegen.emit wrote)")
        check_replaceable(dest, out)
    return dest


FORCED_RACE_ATTEMPTS = 8  # forced writers of one folder at once: each retries while another swaps it


def write_output(dest: Path, fill: Callable[[Path], None], marker: bytes, force: bool) -> None:
    """Fill a temp folder beside ``dest``, mark it, and put it in place: create-or-fail, or with ``force`` the
    atomic swap for a folder emit wrote (pvcore.atomic). On any failure ``dest`` is as it was and no temp
    folder is left; an OSError becomes an EmitError naming the path."""
    tmp: Path | None = None
    try:
        tmp = temp_folder_beside(dest)
        fill(tmp)
        (tmp / MARKER).write_bytes(marker)
        os.chmod(tmp, 0o755)
        for _attempt in range(FORCED_RACE_ATTEMPTS):  # a forced emit that lost a race replaces the winner's
            try:
                if os.path.lexists(dest):
                    if not force:
                        raise FolderExists(errno.EEXIST, "exists", str(dest))
                    try:
                        check_replaceable(dest, dest)  # again: it may have changed while the θ was quantized
                    except EmitError:
                        if not os.path.lexists(dest):  # another forced writer is between its two renames
                            continue
                        raise
                    replace_folder(tmp, dest)
                else:
                    publish_folder(tmp, dest)
                return
            except FolderExists:
                if not force:
                    raise EmitError(f"output {dest} was written by another process while this emit ran; nothing "
                                    "written; pass --force to replace it") from None
        raise EmitError(f"output {dest} keeps being written by other processes; nothing written")
    except OSError as e:
        what = f"{e.strerror} ({e.filename})" if e.strerror and e.filename else str(e)
        raise EmitError(f"cannot write {dest}: {what}; choose a folder you can write to") from None
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def emit(user_id: str, target: str | None = None, out: Path | None = None, fmt: str = "all", force: bool = False,
         users_root: Path | None = None, enroll_crop: Path | None = None,
         shared_prefix: str | None = None, views: int | None = None, activations: str | None = None,
         keys: Path | None = None) -> EmitResult:
    """Emit one user's artifacts (and project); raises EmitError on bad input, leaving nothing behind.
    ``shared_prefix`` (a layer name): layers before it are the model's shared prefix, emitted once as
    ``pv_base_theta.h`` (compiled into the firmware), and the θ blob is the user's personal blob.
    ``views``: views per probe of the project's firmware (PV_VIEWS; None: the target's default).
    ``activations``: "int8" (blob format 2 for spec v5, the s8 kernels) or "int16" (16x8: blob format 3, the s16
    kernels, one view, the .tflite 16x8 too); None: the target's default (``Target.activations``: 16x8 for every project
    of the fixed kernel, int8 for the -tflm ones) unless ``views`` 2 or ``shared_prefix`` ask for int8;
    without a target int8 (the full-int8 .tflite the issue asks for, and its blob).
    ``keys``: the keyring (pvcore.keys; None: its default) whose active key signs θ and whose public keys the
    project's firmware trusts (pv_trusted_keys.h)."""
    t0 = time.perf_counter()
    if fmt not in FORMATS:
        raise EmitError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")
    formats = {"c-header", "tflite", "blob"} if fmt == "all" else {fmt}
    if activations is None:  # the target's default, where nothing asked for int8
        default = TARGETS[target].activations if target in TARGETS else "int8"
        activations = "int8" if views == 2 or shared_prefix is not None else default
    if activations not in ACTIVATIONS:
        raise EmitError(f"unknown activations {activations!r}; choose from {', '.join(ACTIVATIONS)}")
    if activations == "int16" and shared_prefix is not None:
        raise EmitError("--activations int16 with --shared-prefix: a 16x8 base blob is not built yet "
                        "(emit the whole 16x8 θ, without --shared-prefix)")
    tgt: Target | None = None
    if target is not None:
        try:
            tgt = get_target(target)
        except ProjectError as e:
            raise EmitError(str(e)) from None
        if tgt.kernel == "tflm" and "tflite" not in formats:
            raise EmitError(f"target {target} runs the .tflite in TFLite Micro: use --format tflite or all")
        if activations == "int16" and tgt.kernel == "tflm" and tgt.family == "esp-idf":
            raise EmitError(f"--activations int16: target {target} runs the .tflite on ESP-NN's kernels, whose "
                            "16x8 results are not verified (TFLM's CMSIS-NN kernels give wrong ones: "
                            f"{TFLM_16X8_NOTE}); use {target.removesuffix('-tflm')} (the fixed kernel runs 16x8 θ "
                            "blobs) or cortex-m-qemu-tflm (TFLM with the grouped int16 convolutions routed to "
                            "the reference kernel)")
        if activations == "int16":
            if views == 2:
                raise EmitError("--activations int16 runs one view per probe (the s16 kernels; its rounding leaves "
                                "nothing for a mirror view to average out): drop --views 2")
            views = 1
        try:
            views = check_views(tgt, views)
        except ProjectError as e:
            raise EmitError(str(e)) from None
    elif views is not None:
        raise EmitError("--views sets the firmware project's build: it needs --target")
    split = 0
    if shared_prefix is not None:
        from codegen.shared_prefix import split_index

        try:
            split = split_index(shared_prefix)
        except ValueError as e:
            raise EmitError(f"--shared-prefix: {e}") from None
        if tgt is not None and not tgt.shared_prefix:
            have = ", ".join(t.name for t in TARGETS.values() if t.shared_prefix)
            raise EmitError(f"--shared-prefix: target {target} has no base-blob build yet; targets that have: "
                            f"{have} (or emit the artifacts only, without --target)")
    out = Path(out) if out is not None else REPO_ROOT / "out" / (f"{user_id}-{target}" if target else user_id)
    dest = check_out(out, force, users_root)  # before the costly part; write_output checks again
    try:
        theta, meta = UserStore(users_root).load(user_id)
    except UserStoreError as e:
        raise EmitError(str(e)) from None
    except (OSError, ValueError) as e:  # anything else a damaged entry can raise
        raise EmitError(f"user {user_id!r}: corrupt entry ({e})") from None
    store = UserStore(users_root)
    crop = load_enroll_crop(enroll_crop) if enroll_crop is not None else _stored_crop(store, user_id)
    res = EmitResult(out, user_id, target, views=views or 1)
    t = time.perf_counter()
    base_header = personal = None
    if split:
        from codegen.shared_prefix import make_base, make_personal, render_base_header

        base, base_blob = make_base(theta, split, meta.threshold)
        try:
            qf, personal = make_personal(theta, crop, base, split, user_id, meta.threshold)
        except ValueError as e:
            raise EmitError(str(e)) from None
        base_header = ("pv_base_theta.h", render_base_header(base_blob, base, split).encode())
    else:
        qf = quantize(theta, enroll_u8=crop, cfg=QuantConfig(activations=activations))
    res.seconds["quantize_s"] = time.perf_counter() - t
    keyring = Keyring(keys)
    art, tflm_arena = make_artifacts(qf, user_id, meta.threshold, formats, res.seconds, personal, base_header,
                                     keyring)
    if tgt is not None:
        try:
            art = dataclasses.replace(art, trusted_keys=(HEADER_NAME, render_keyring(keyring).encode()))
        except KeyringError as e:
            raise EmitError(str(e)) from None

    def fill(folder: Path) -> None:
        if tgt is not None:
            t = time.perf_counter()
            render_project(tgt, art, folder, views)
            res.seconds["project_s"] = time.perf_counter() - t
        else:
            for a in (art.blob, art.theta_header, art.tflite, art.model_header, art.base_header):
                if a:
                    (folder / a[0]).write_bytes(a[1])

    write_output(dest, fill, _marker(user_id, target, activations), force)
    res.files = sorted((p, p.stat().st_size) for p in out.rglob("*") if p.is_file())
    res.flash_is_blob = formats != {"tflite"} or tgt is not None
    if not res.flash_is_blob:  # the .tflite alone (a TFLite Micro app holds it in flash)
        assert art.tflite is not None
        res.theta_flash_bytes = len(art.tflite[1])
    else:
        blob = art.blob[1] if art.blob else pack_blob(qf, user_id, meta.threshold)
        res.theta_flash_bytes = len(blob) + SLOT_HEADER_BYTES
    res.activations = activations
    res.blob_format = format_version(qf)
    res.shared_prefix = shared_prefix
    res.arena_bytes = kernel16_arena_bytes() if activations == "int16" else kernel_arena_bytes()
    res.tflm_arena_bytes = tflm_arena
    if activations == "int16" and art.tflite is not None:
        res.warnings.append(f"the 16x8 {art.tflite[0]} on TFLite Micro with CMSIS-NN or ESP-NN: {TFLM_16X8_NOTE}")
    res.seconds["total_s"] = time.perf_counter() - t0
    return res


def _report(res: EmitResult, verbose: bool) -> str:
    lines = [f"{res.user_id} → {res.out}" + (f" (target {res.target})" if res.target else "")]
    shown = res.files if verbose else [(p, n) for p, n in res.files if "/pv/" not in p.as_posix()]
    for p, n in shown:
        lines.append(f"  {p.relative_to(res.out).as_posix():<40} {n:>9,} B")
    if not verbose and len(shown) < len(res.files):
        lines.append(f"  (+ {len(res.files) - len(shown)} files of the portable core under pv/; -v lists them)")
    int16 = res.activations == "int16"
    kind = "16x8: int16 activations, int8 weights" if int16 else "full int8"
    if res.flash_is_blob:
        lines.append(f"θ flash: {res.theta_flash_bytes:,} B ({'personal ' if res.shared_prefix else ''}blob "
                     f"format {res.blob_format}, {kind}, + {SLOT_HEADER_BYTES} B slot header; an A/B store "
                     "holds two slots)"
                     + (f"; layers before {res.shared_prefix} are in pv_base_theta.h, compiled into the firmware"
                        if res.shared_prefix else ""))
    else:
        lines.append(f"θ flash: {res.theta_flash_bytes:,} B (the .tflite, {kind})")
    if res.target:
        lines.append(f"views per probe: {res.views}" + (" (f on the image and its mirror, the mean decides: "
                                                        "2x MACs, one arena per view)" if res.views == 2 else ""))
    kernel = ("the 16x8 kernel (PV_KERNEL16_ARENA_BYTES; a PV_WITH_16X8 firmware)" if int16
              else f"the fixed kernel ({res.views} x PV_KERNEL_ARENA_BYTES)")
    tflm = f"TFLM needs {res.tflm_arena_bytes:,} B (tflite-micro interpreter)" if res.tflm_arena_bytes else ""
    if res.target in TARGETS and TARGETS[res.target].kernel == "tflm":
        lines.append(f"arena: {tflm} (the firmware runs TFLite Micro)")
    else:
        lines.append(f"arena: {res.arena_bytes * res.views:,} B for {kernel}" + (f"; {tflm}" if tflm else ""))
    lines.append(f"time: {res.seconds['total_s']:.2f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m codegen.emit",
        description="Emit one enrolled user's int8 verifier: θ blob, C header, .tflite, and a firmware project "
                    "for --target. Writes atomically; refuses an existing output folder without --force.",
        epilog="Targets: python -m codegen.emit --list-targets. Exit status: 0 ok, 1 error, 2 usage.",
    )
    ap.add_argument("--user", help="user id in the user store")
    add_target_arg(ap, help="firmware project to render (--list-targets); without it: the artifacts only")
    ap.add_argument("--out", type=Path, help="output folder (default: out/<user>[-<target>])")
    ap.add_argument("--format", default="all", choices=FORMATS, help="which θ artifacts (default: all)")
    ap.add_argument("--force", action="store_true", help="replace an existing output folder")
    add_user_store_args(ap)
    ap.add_argument("--enroll-crop", type=Path, help="the user's aligned 112×112 enrollment crop (image file), "
                                                     "added to the quantizer's calibration set")
    ap.add_argument("--shared-prefix", metavar="LAYER",
                    help="layers before LAYER are the model's shared prefix (a model trained with personal_from="
                         "LAYER; the shipped one: pool): emitted once as pv_base_theta.h for the firmware, and "
                         "the θ blob holds only the user's layers (3 KB instead of 30 KB: A/B slots in 64 KB)")
    ap.add_argument("--views", type=int, choices=(1, 2),
                    help="views per probe the firmware scores: 1 = one pass of f, 2 = the mean of f on the "
                         "image and its mirror (closer int8-vs-float decisions, 2x MACs, +32 KB RAM); "
                         "default: the target's (--list-targets)")
    ap.add_argument("--activations", choices=ACTIVATIONS,
                    help="int8: full int8 (θ blob format 2, the fixed kernel pv_kernel.c); int16: TFLM's 16x8 "
                         "(int16 activations, int8 weights; decisions closer to float: docs/quantization.md): "
                         "θ blob format 3 for the s16 kernels (the project built with PV_WITH_16X8=1, one view) "
                         "and the 16x8 .tflite; not for -tflm targets or --shared-prefix. Default: the target's "
                         "(--list-targets: int16 for the fixed-kernel targets esp32, esp32s3, esp32c3, "
                         "cortex-m-qemu and host, unless --views 2 or --shared-prefix), else int8")
    ap.add_argument("--keys", type=Path, metavar="DIR",
                    help="the signing keyring: its active key signs θ, and the project's firmware trusts its "
                         "public keys (default: $PV_KEYS_DIR or ~/.config/hyperverif-mcu/keys; "
                         "python -m host_tools.keys)")
    ap.add_argument("--list-targets", action="store_true", help="print the targets and exit")
    ap.add_argument("-v", "--verbose", action="store_true", help="list every file written")
    args = ap.parse_args(argv)
    if args.list_targets:
        print(list_targets())
        return 0
    if not args.user:
        ap.error("--user is required (or --list-targets)")
    setup_logging(quiet=True)  # stdout is the report; -v lists the files, not debug logs
    try:
        res = emit(args.user, args.target, args.out, args.format, args.force, args.users, args.enroll_crop,
                   args.shared_prefix, args.views, args.activations, args.keys)
    except EmitError as e:
        fail(str(e))
    print(_report(res, args.verbose))
    for w in res.warnings:
        print(f"WARNING: {w}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
