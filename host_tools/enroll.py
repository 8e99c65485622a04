"""Enroll a user on a board over the serial link: send the θ blob in chunks, COMMIT, confirm with INFO.

    python -m host_tools.enroll --user alice --port socket://127.0.0.1:4321
    python -m host_tools.enroll --user alice --port /dev/ttyUSB0 --blob out/alice/theta.blob

The blob is built from the user store (``pvcore.user_store``: θ and threshold) by ``codegen.quantize``
and ``pvcore.blob.pack_blob``, or read from ``--blob`` (e.g. what ``codegen.emit`` wrote). The board
writes it into its inactive θ slot and switches only after COMMIT has checked it, so a transfer that
fails half-way leaves the board answering with its previous θ.

When the board loses the open transfer (it was reset in the middle: the next chunk or COMMIT is refused
with BAD_STATE, or the link goes silent and the board comes back with READY), the whole transfer is
started again, up to ``--attempts`` times, with chunks half as long each time (a noisy line damages
long frames most); then the tool fails and says so. Refusals that a retry cannot
fix (another architecture, a corrupt blob) fail at once.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import serial

from host_tools.serial_link import DeviceError, ErrorCode, Info, LinkError, LinkLost, SerialLink
from pvcore.blob import BlobError, pack_blob, unpack_blob
from pvcore.cli import add_port_args, add_user_store_args, fail, setup_logging
from pvcore.keys import Keyring, KeyringError
from pvcore.qtheta import QuantizedF
from pvcore.signed import SignatureError, inner_blob, is_signed
from pvcore.user_store import UserMeta, UserStore, UserStoreError

log = logging.getLogger(__name__)


MIN_CHUNK = 512


class EnrollError(RuntimeError):
    """Enrollment over the link failed; the message says why and what to do."""


@dataclass
class UserBlob:
    """One user's deployable θ: the blob the board receives and the int8 model it encodes."""

    user_id: str
    blob: bytes
    qf: QuantizedF
    threshold: float
    source: str  # where the blob came from (for reports)


def blob_from_store(
    user_id: str, store: UserStore | str | Path | None = None, *, enroll_u8: np.ndarray | None = None,
    activations: str = "int8",
) -> tuple[UserBlob, np.ndarray, UserMeta]:
    """Quantizes the user's stored θ and packs its blob. Returns (blob, float θ, metadata).

    Calibration as ``codegen.emit`` does it: package faces plus the user's aligned enrollment crop
    (``enroll_u8``, default: the one kept in the store entry). The quantization is deterministic, so
    this gives the same blob as ``codegen.emit`` for the same entry. ``activations`` "int16": the 16x8 blob
    (format 3) that ``codegen.emit --activations int16`` writes, for a PV_WITH_16X8 firmware.
    """
    from codegen.quantize import QuantConfig, quantize  # PyTorch: only this path needs it (a --blob file does not)

    st = store if isinstance(store, UserStore) else UserStore(store)
    theta, meta = st.load(user_id)
    if enroll_u8 is None:
        enroll_u8 = st.load_crop(user_id)
    qf = quantize(theta, enroll_u8, cfg=QuantConfig(activations=activations))
    blob = pack_blob(qf, user_id, meta.threshold)
    return UserBlob(user_id, blob, qf, meta.threshold, f"user store {st.root}"), theta, meta


def firmware_activations(port: str, *, baudrate: int = 115200, timeout: float = 3.0) -> str:
    """The θ a board's firmware runs by default: "int16" (16x8) when it was built with PV_WITH_16X8=1 (INFO
    flag bit 4: codegen.emit's default for every fixed-kernel target), else "int8". For ``--activations
    auto``."""
    with SerialLink(port, baudrate=baudrate, timeout=timeout) as link:
        return "int16" if link.info().runs_16x8 else "int8"


def blob_from_file(path: str | Path) -> UserBlob:
    """A θ blob written by codegen (checked: magic, version, CRC, arch hash, every layer record)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise EnrollError(f"cannot read θ blob {p}: {e.strerror or e}") from e
    try:
        header, qf = unpack_blob(data)
    except BlobError as e:
        raise EnrollError(f"{p}: {e}") from e
    if is_signed(data):  # a signed θ (codegen.emit writes those): sent as it is, signature and counter included
        return UserBlob(header.user_id, data, qf, header.threshold_logit, str(p))
    return UserBlob(header.user_id, data[: header.total_size], qf, header.threshold_logit, str(p))


@dataclass(frozen=True)
class EnrollResult:
    user_id: str
    slot: int
    commit_counter: int
    blob_bytes: int
    attempts: int
    seconds: float
    info: Info


_FATAL = {
    ErrorCode.ARCH_MISMATCH: "the board's firmware was built for another architecture than this θ: "
    "rebuild and flash the firmware from this checkout, or re-enroll the user for the board's architecture",
    ErrorCode.BLOB_INVALID: "the board found the θ blob invalid (CRC or a layer record): regenerate it",
    ErrorCode.BAD_LENGTH: "the board refused the chunk length: its max payload differs from the link's",
    ErrorCode.STORE: "the board's θ store failed to erase/write its flash",
    ErrorCode.UNSIGNED: "the board installs signed θ only: sign it with this host's key (--keys; "
    "python -m host_tools.keys --help)",
    ErrorCode.UNTRUSTED_KEY: "the board does not trust the key that signed this θ: sign with a key its firmware "
    "trusts, or provision this key (emit and flash the firmware from this keyring: docs/signing.md)",
    ErrorCode.BAD_SIGNATURE: "the θ's signature does not match its content: it was changed after signing; "
    "sign it again",
    ErrorCode.REPLAY: "the θ's counter is lower than the active θ's: an older signed θ is refused (replay); "
    "sign the θ again (a fresh counter)",
}


def enroll(
    link: SerialLink,
    ub: UserBlob,
    *,
    attempts: int = 3,
    ready_timeout: float = 30.0,
    progress: Callable[[int, int], None] | None = None,
    signer: Callable[[bytes], bytes] | None = None,
) -> EnrollResult:
    """Installs ``ub`` on the board behind ``link`` and checks with INFO that it is the active θ.

    ``progress``: called as progress(received, total) after every chunk (tqdm-friendly). A bare θ blob is
    signed once first (every attempt resends the same signed θ) by ``signer``, else the link's, else the
    default keyring's active key (pvcore.keys); a signed one is sent as it is.
    """
    t0 = time.monotonic()
    data = ub.blob
    if not is_signed(data):
        try:
            data = (signer or link.signer or Keyring().sign)(data)
        except KeyringError as e:
            raise EnrollError(f"cannot sign the θ of {ub.user_id!r}: {e}") from e
    info = link.info()
    if info.arch_hash != ub.qf.arch_hash:
        raise EnrollError(
            f"the board runs firmware for arch {info.arch_hash}, the θ of {ub.user_id!r} is for "
            f"{ub.qf.arch_hash}: {_FATAL[ErrorCode.ARCH_MISMATCH]}"
        )
    if ub.qf.activations == "int16" and not info.runs_16x8:
        raise EnrollError(
            f"the θ of {ub.user_id!r} is a 16x8 model (blob format 3) and this firmware runs int8 θ only: build it "
            "with PV_WITH_16X8=1 (codegen.emit --activations int16 --target ...) or enroll the int8 θ"
        )
    last: Exception | None = None
    for attempt in range(1, attempts + 1):
        try:
            # a link that keeps damaging long frames gets shorter ones on the next attempt
            chunk = max(MIN_CHUNK, (link.max_payload - 4) >> (attempt - 1))
            link.load_theta(data, chunk=chunk, progress=progress)
            slot, counter = link.commit()
            break
        except DeviceError as e:
            if e.code in _FATAL:
                raise EnrollError(f"{e}: {_FATAL[ErrorCode(e.code)]}") from e
            if e.code != ErrorCode.BAD_STATE:
                raise EnrollError(f"{e}") from e
            last = e
            log.warning("attempt %d: the board lost the transfer (%s); was it reset? starting over", attempt, e)
        except LinkLost as e:
            raise EnrollError(
                f"{e}: the θ transfer of {ub.user_id!r} was cut; the board keeps its previous θ (a θ is only "
                "switched by COMMIT). Reconnect the board and run the enrollment again"
            ) from e
        except LinkError as e:
            last = e
            log.warning("attempt %d: %s; waiting for the board", attempt, e)
            try:
                link.wait_ready(ready_timeout)
            except LinkError as e2:  # LinkLost included
                raise EnrollError(
                    f"the board stopped answering during the θ transfer and did not come back within "
                    f"{ready_timeout:.0f} s ({e2}); its previous θ stays active. Check the cable/power and "
                    "run the enrollment again"
                ) from e2
        link.drain()
    else:
        raise EnrollError(
            f"θ transfer of {ub.user_id!r} failed {attempts} times (last: {last}); the board keeps its "
            "previous θ. Check the link (cable, resets) and run the enrollment again"
        )
    info = link.info()
    if info.active_slot != slot or info.commit_counter != counter or info.user_id != ub.user_id:
        raise EnrollError(
            f"COMMIT answered slot {slot} counter {counter}, but INFO reports slot {info.active_slot}, "
            f"counter {info.commit_counter}, user {info.user_id!r}: the board did not keep the new θ"
        )
    blob_bytes = len(inner_blob(data))
    if info.theta_bytes != blob_bytes or np.float32(info.threshold_logit) != np.float32(ub.threshold):
        raise EnrollError(
            f"INFO reports a {info.theta_bytes}-byte θ with threshold {info.threshold_logit}, "
            f"sent {blob_bytes} bytes with threshold {ub.threshold}"
        )
    return EnrollResult(ub.user_id, slot, counter, len(data), attempt, time.monotonic() - t0, info)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m host_tools.enroll",
        description="Enroll a user on a board over serial: θ blob in chunks, COMMIT, check with INFO.",
    )
    ap.add_argument("--user", required=True, help="user id in the user store")
    add_port_args(ap, baud=115200, timeout=3.0)
    ap.add_argument("--blob", type=Path, help="send this θ blob (from codegen) instead of building it from the store; "
                    "a signed one (codegen.emit writes those) as it is, a bare one signed first")
    ap.add_argument("--keys", type=Path, metavar="DIR",
                    help="the signing keyring whose active key signs the θ (default: $PV_KEYS_DIR or "
                         "~/.config/hyperverif-mcu/keys; python -m host_tools.keys)")
    add_user_store_args(ap)
    ap.add_argument("--activations", choices=("auto", "int8", "int16"), default="auto",
                    help="the θ built from the store: int8 (blob format 4) or int16 (16x8, format 3: a firmware "
                         "built with PV_WITH_16X8=1); auto (default): int16 when the board's INFO says its "
                         "firmware runs 16x8 (codegen.emit's default build), else int8")
    ap.add_argument("--attempts", type=int, default=3, help="whole-transfer attempts when the board loses it")
    ap.add_argument("--wait-ready", action="store_true", help="wait for the board's READY frame first")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    setup_logging()
    try:
        if args.blob is not None:
            ub = blob_from_file(args.blob)
            if ub.user_id != args.user:
                raise EnrollError(f"{args.blob} holds the θ of {ub.user_id!r}, not of {args.user!r}")
        else:
            acts = args.activations
            if acts == "auto":  # ask the board only once the user is known to exist
                UserStore(args.users).load(args.user)
                acts = firmware_activations(args.port, baudrate=args.baud, timeout=args.timeout)
            ub = blob_from_store(args.user, args.users, activations=acts)[0]
        from tqdm import tqdm

        with SerialLink(args.port, baudrate=args.baud, timeout=args.timeout) as link:
            if args.wait_ready:
                link.wait_ready()
            with tqdm(total=len(ub.blob), unit="B", unit_scale=True, desc="θ", disable=args.no_progress) as bar:

                def progress(received: int, total: int) -> None:
                    bar.update(received - bar.n)

                res = enroll(link, ub, attempts=args.attempts, progress=progress, signer=Keyring(args.keys).sign)
    except (EnrollError, UserStoreError, LinkError, DeviceError, BlobError, SignatureError,
            serial.SerialException) as e:
        fail(str(e))
    i = res.info
    print(
        f"{res.user_id} enrolled on {i.board} (firmware {i.fw_version}, arch {i.arch_hash}): slot {res.slot}, "
        f"commit counter {res.commit_counter}, {res.blob_bytes} bytes in {res.seconds:.2f} s "
        f"({res.attempts} attempt{'s' if res.attempts > 1 else ''}), threshold {i.threshold_logit:.4f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
