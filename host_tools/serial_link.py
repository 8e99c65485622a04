"""Serial link to a board running the pv firmware (real UART, emulated board or host simulator).

Framing is the C side's (``firmware_templates/common/pv_frame.h``): a frame
``[u8 cmd][u8 seq][u16 len][payload][u32 CRC-32]`` is COBS-encoded and ends with 0x00. Requests are
answered with the same seq; replies carry ``cmd | 0x80``, refusals are ERROR frames (0xFF). The link is
stop-and-wait: one request in flight, resent with the same seq after a timeout or a frame-level error
(the board answers a repeated request from its reply cache, so a retry never runs a command twice).

Any pyserial URL works: ``/dev/ttyUSB0``, ``socket://127.0.0.1:PORT``, ``rfc2217://host:port``.

    with SerialLink("socket://127.0.0.1:4321") as link:
        print(link.info())
        link.install_theta(blob)
        result = link.infer(image)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import math
import random
import socket
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import serial

from pvcore.protocol import (
    ERRF_FRAME,
    FRAME_MAX_PAYLOAD,
    FRAME_OVERHEAD,
    INFO_FIELDS,
    INFO_STRUCT,
    REPLY,
    RESULT_STRUCT,
    Cmd,
    ErrorCode,
    FrameStatus,
    InfoFlag,
    ResultFlag,
)
from pvcore.spec import F_SPEC
from pvcore.store_format import BLOB_MAX_BYTES

log = logging.getLogger(__name__)

IMAGE_SHAPE = (*F_SPEC.input_hw, F_SPEC.input_ch)
IMAGE_BYTES = math.prod(IMAGE_SHAPE)
DEFAULT_MAX_PAYLOAD = FRAME_MAX_PAYLOAD
_POLL_S = 0.05  # longest single blocking read
FRAME_ERROR_RESENDS = 4  # resends on the board's bad-frame reports, per allowed try
# the protocol's numbers (Cmd, ErrorCode, FrameStatus, REPLY, ERRF_FRAME, the INFO and result records)
# are pvcore.protocol's, which the firmware's pv_protocol_ids.h is generated from
RESULT_DONE, RESULT_MIRROR, RESULT_LOGIT16 = ResultFlag.DONE, ResultFlag.MIRROR, ResultFlag.LOGIT16


# ---- COBS + frames ---------------------------------------------------------------------------------------
def cobs_encode(data: bytes) -> bytes:
    """COBS without the trailing delimiter (same output as the C encoder)."""
    out = bytearray()
    block = bytearray()
    for b in data:
        if b == 0:
            out.append(len(block) + 1)
            out += block
            block.clear()
        else:
            block.append(b)
            if len(block) == 254:
                out.append(0xFF)
                out += block
                block.clear()
    out.append(len(block) + 1)
    out += block
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Inverse of cobs_encode (no delimiter in data); ValueError on a block running past the end."""
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise ValueError("COBS: zero byte inside a frame")
        end = i + code
        if end > n:
            raise ValueError("COBS: block runs past the end of the frame")
        out += data[i + 1 : end]
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


def encode_frame(cmd: int, seq: int, payload: bytes = b"", *, leading_delimiter: bool = False) -> bytes:
    if len(payload) > 0xFFFF:
        raise ValueError(f"payload of {len(payload)} bytes does not fit a frame (max 65535)")
    body = struct.pack("<BBH", cmd, seq & 0xFF, len(payload)) + bytes(payload)
    raw = body + struct.pack("<I", zlib.crc32(body))
    return (b"\x00" if leading_delimiter else b"") + cobs_encode(raw) + b"\x00"


@dataclass(frozen=True)
class Frame:
    cmd: int
    seq: int
    payload: bytes


@dataclass(frozen=True)
class FrameError:
    """A bad frame seen by the decoder (same statuses as the C decoder)."""

    status: FrameStatus
    cmd: int
    seq: int


class FrameDecoder:
    """Streaming decoder with the C decoder's rules (resync on 0x00, size limit, length and CRC checks)."""

    def __init__(self, max_payload: int = 0xFFFF) -> None:
        self.max_payload = max_payload
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        events: list[Frame | FrameError] = []
        start = 0
        while True:
            z = data.find(b"\x00", start)
            if z < 0:
                self._buf += data[start:]
                limit = 2 * (self.max_payload + FRAME_OVERHEAD) + 16
                if len(self._buf) > limit:  # no delimiter for far too long: keep the tail only
                    del self._buf[: len(self._buf) - limit]
                return events
            self._buf += data[start:z]
            start = z + 1
            if self._buf:
                events.append(self._finish(bytes(self._buf)))
                self._buf.clear()

    def _finish(self, enc: bytes) -> Frame | FrameError:
        try:
            raw = cobs_decode(enc)
        except ValueError:
            return FrameError(FrameStatus.COBS, 0, 0)
        cmd = raw[0] if raw else 0
        seq = raw[1] if len(raw) > 1 else 0
        if len(raw) > self.max_payload + FRAME_OVERHEAD:
            return FrameError(FrameStatus.OVERSIZE, cmd, seq)
        if len(raw) < FRAME_OVERHEAD:
            return FrameError(FrameStatus.TRUNCATED, cmd, seq)
        (declared,) = struct.unpack_from("<H", raw, 2)
        if declared > self.max_payload:
            return FrameError(FrameStatus.OVERSIZE, cmd, seq)
        if len(raw) < declared + FRAME_OVERHEAD:
            return FrameError(FrameStatus.TRUNCATED, cmd, seq)
        if len(raw) > declared + FRAME_OVERHEAD:
            return FrameError(FrameStatus.TOO_LONG, cmd, seq)
        (crc,) = struct.unpack_from("<I", raw, 4 + declared)
        if zlib.crc32(raw[: 4 + declared]) != crc:
            return FrameError(FrameStatus.CRC, cmd, seq)
        return Frame(cmd, seq, raw[4 : 4 + declared])


# ---- records ---------------------------------------------------------------------------------------------
class LinkError(RuntimeError):
    """The link failed: no (valid) answer after all retries."""


class LinkLost(LinkError):
    """The port itself failed (cable pulled, socket closed, device gone): resending cannot help."""


class DeviceError(RuntimeError):
    """The board refused a request with an ERROR frame."""

    def __init__(self, code: int, request_cmd: int, detail: int, frame_level: bool) -> None:
        self.code = code
        self.request_cmd = request_cmd
        self.detail = detail
        self.frame_level = frame_level
        try:
            name = ErrorCode(code).name
        except ValueError:
            name = f"error {code}"
        try:
            req = Cmd(request_cmd).name
        except ValueError:
            req = f"0x{request_cmd:02x}"
        super().__init__(f"board refused {req}: {name} (detail {detail})")

    @property
    def name(self) -> str:
        try:
            return ErrorCode(self.code).name
        except ValueError:
            return str(self.code)


@dataclass(frozen=True)
class Info:
    proto_version: int
    fw_version: str
    arch_hash: str
    active_slot: int | None
    flags: int
    max_payload: int
    commit_counter: int
    user_id: str
    threshold_logit: float
    theta_bytes: int
    free_ram: int
    arena_bytes: int
    image_bytes: int
    tick_hz: int
    bulk_images: int
    transfer_received: int
    frames_ok: int
    frames_bad: int
    board: str
    stack_used: int = 0  # the board's stack high-water mark in bytes (0: not measured)
    static_ram: int = 0  # .data + .bss bytes of the firmware (0: not reported)

    FMT = INFO_STRUCT  # pvcore.protocol.INFO_FIELDS

    @property
    def transfer_open(self) -> bool:
        return bool(self.flags & InfoFlag.XFER_OPEN)

    @property
    def views(self) -> int:
        """Passes of f per probe: 2 when results are the mean over the image and its mirror."""
        return 2 if self.flags & InfoFlag.MIRROR else 1

    @property
    def runs_16x8(self) -> bool:
        """The firmware runs 16x8 θ blobs (format version 3) too (built with PV_WITH_16X8)."""
        return bool(self.flags & InfoFlag.RUNS_16X8)

    @classmethod
    def parse(cls, p: bytes) -> Info:
        if len(p) < cls.FMT.size:
            raise LinkError(f"INFO reply of {len(p)} bytes, expected {cls.FMT.size}")
        f = dict(zip((fd.name for fd in INFO_FIELDS), cls.FMT.unpack_from(p)))
        same = {fd.name: f[fd.name] for fd in dataclasses.fields(cls) if fd.name in f}  # fields taken as sent
        return cls(**{
            **same,
            "fw_version": f"{f['fw_major']}.{f['fw_minor']}.{f['fw_patch']}",
            "arch_hash": f["arch_hash"].hex(),
            "active_slot": None if f["active_slot"] == 0xFF else f["active_slot"],
            "user_id": f["user_id"].rstrip(b"\x00").decode("utf-8", "replace"),
            "board": f["board"].rstrip(b"\x00").decode("ascii", "replace"),
        })


@dataclass(frozen=True)
class InferResult:
    logit: int  # output of the kernel on the image: int8, or int16 for a 16x8 model (logit16)
    logit_real: float  # dequantized logit (two views: the mean of both views' dequantized logits)
    score: float  # sigmoid(logit_real)
    decision: bool  # logit_real >= the θ's threshold_logit
    ticks: int  # board ticks (INFO.tick_hz) the inference took (two views: both passes)
    index: int = -1  # image index (INFER_BULK only)
    logit_mirror: int | None = None  # int8 output on the mirror image (a PV_VIEWS 2 firmware), else None
    logit16: bool = False  # a 16x8 model's int16 logit (bytes 1 and 3 of the result)

    @property
    def logits(self) -> tuple[int, ...]:
        """The int8 logit of every view: (image,) or (image, mirror image)."""
        return (self.logit,) if self.logit_mirror is None else (self.logit, self.logit_mirror)

    @classmethod
    def parse(cls, p: bytes, index: int = -1) -> InferResult:
        decision, q, flags, q_m, real, score, ticks = RESULT_STRUCT.unpack_from(p)  # pvcore.protocol.RESULT_FIELDS
        if flags & RESULT_LOGIT16:  # int16 logit: low byte in logit, high byte in logit_b
            q16 = (q_m << 8) | (q & 0xFF)
            return cls(q16, real, score, bool(decision), ticks, index, None, True)
        mirror = q_m if flags & RESULT_MIRROR else None
        return cls(q, real, score, bool(decision), ticks, index, mirror)


@dataclass(frozen=True)
class BenchResult:
    n: int
    min_ticks: int
    max_ticks: int
    total_ticks: int
    logit: int
    tick_hz: int = 0
    logit_mirror: int = 0  # the mirror view's last logit (0 on a one-view firmware)
    logit16: int = 0  # bytes 20-21 as one int16: the last logit of a 16x8 model

    @property
    def mean_ticks(self) -> float:
        return self.total_ticks / self.n


@dataclass
class LinkStats:
    frames_sent: int = 0
    frames_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    retries: int = 0
    frame_errors: int = 0
    errors_seen: list[FrameError] = field(default_factory=list)


# ---- the link --------------------------------------------------------------------------------------------
class SerialLink:
    """Typed requests over one serial port. Use as a context manager."""

    # The signer of links made without one (``signer=``): None in the tools, which sign with the host's
    # keyring themselves (host_tools.enroll); the tests set the TEST key's (tests/conftest.py).
    default_signer: ClassVar[Callable[[bytes], bytes] | None] = None

    def __init__(
        self,
        url: str,
        *,
        baudrate: int = 115200,
        timeout: float = 2.0,
        min_rate: float = 8192.0,
        retries: int = 3,
        seq: int | None = None,
        signer: Callable[[bytes], bytes] | None = None,
    ) -> None:
        """timeout: seconds to wait for an answer, plus one second per `min_rate` bytes sent. signer: turns
        a bare θ blob into its signed envelope before load_theta sends it (pvcore.keys.Keyring.sign)."""
        self.signer = signer if signer is not None else SerialLink.default_signer
        self.url = url
        self.baudrate = baudrate
        self.timeout = timeout
        self.min_rate = min_rate
        self.retries = retries
        self._seq = random.randrange(256) if seq is None else seq & 0xFF
        self._ser: Any = None
        self._is_socket = False
        self._dec = FrameDecoder()
        self._pending: list[Frame | FrameError] = []
        self.stats = LinkStats()
        self.max_payload = DEFAULT_MAX_PAYLOAD
        self.tick_hz = 0
        self._timed_out = False

    # -- port ---------------------------------------------------------------------------------------------
    def open(self) -> SerialLink:
        if self._ser is None:
            kw: dict[str, Any] = {}
            if "://" not in self.url:  # a local device: refuse to share it (flock), as esptool does
                kw["exclusive"] = True
            try:
                self._ser = serial.serial_for_url(
                    self.url, baudrate=self.baudrate, timeout=_POLL_S, write_timeout=30, **kw
                )
            except (serial.SerialException, OSError, ValueError) as e:
                raise LinkError(open_error_message(self.url, e)) from e
            # socket:// reports at most 1 byte in in_waiting; read what is there with a zero timeout instead
            self._is_socket = self.url.startswith("socket://")
            sock = getattr(self._ser, "_socket", None)
            if sock is not None:  # no Nagle on our side either: frames are written whole
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            log.debug("opened %s", self.url)
        return self

    def close(self) -> None:
        if self._ser is not None:
            try:
                self._ser.close()
            finally:
                self._ser = None

    def __enter__(self) -> SerialLink:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def port(self) -> Any:
        if self._ser is None:
            raise LinkError(f"link to {self.url} is not open")
        return self._ser

    def write_raw(self, data: bytes) -> None:
        """Sends bytes as they are (tests use it for garbage and broken frames)."""
        try:
            self.port.write(data)
            self.port.flush()
        except (serial.SerialException, OSError) as e:
            raise LinkLost(f"link to {self.url} lost while sending: {e}") from e
        self.stats.bytes_sent += len(data)

    def read_event(self, deadline: float) -> Frame | FrameError | None:
        """Next decoded frame or frame error, or None at the deadline."""
        while not self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            data = self._read_some(min(remaining, _POLL_S))
            if data:
                self.stats.bytes_received += len(data)
                self._pending.extend(self._dec.feed(data))
        return self._pending.pop(0)

    def _read_some(self, timeout: float) -> bytes:
        """Waits up to timeout for one byte, then takes everything already received."""
        port = self.port
        try:
            if port.timeout != timeout:
                port.timeout = timeout
            data = port.read(1)
            if not data:
                return data
            if self._is_socket:
                # take what the socket holds without pyserial's read(): at EOF that raises and drops the
                # bytes it already collected (a board's last reply before it exits); EOF is reported by
                # the next read instead
                sock = getattr(port, "_socket", None)
                if sock is None:
                    port.timeout = 0
                    return data + port.read(1 << 16)
                try:
                    return data + sock.recv(1 << 16, socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    return data
            waiting = port.in_waiting
            return data + port.read(waiting) if waiting else data
        except (serial.SerialException, OSError) as e:
            raise LinkLost(f"link to {self.url} lost while receiving: {e}") from e

    def read_frame(self, timeout: float) -> Frame | None:
        """Next good frame within timeout (frame errors are counted and skipped)."""
        deadline = time.monotonic() + timeout
        while (ev := self.read_event(deadline)) is not None:
            if isinstance(ev, Frame):
                self.stats.frames_received += 1
                return ev
            self.stats.frame_errors += 1
            self.stats.errors_seen.append(ev)
            log.warning("bad frame from the board: %s", ev)
        return None

    def drain(self, quiet: float = 0.05) -> int:
        """Drops what arrives until the line has been quiet for `quiet` seconds; returns frames dropped."""
        n = 0
        while self.read_frame(quiet) is not None:
            n += 1
        self._pending.clear()
        return n

    def wait_ready(self, timeout: float = 30.0, *, probe_after: float = 1.0) -> Info:
        """Waits for the READY frame the board sends after boot or reset.

        READY can be lost when the port is opened around the moment it is sent (pyserial drops what
        was received before open() returns), so after `probe_after` seconds without it the board is
        asked for INFO instead, which returns the same record.
        """
        deadline = time.monotonic() + timeout
        probe_at = time.monotonic() + probe_after
        probes: set[int] = set()  # a slow board may answer an earlier probe: any of them counts
        while (left := deadline - time.monotonic()) > 0:
            if time.monotonic() >= probe_at:
                probe_at = time.monotonic() + probe_after
                try:
                    return self.info_once(min(probe_after, left), probes)
                except LinkLost:
                    raise
                except LinkError:
                    continue
            f = self.read_frame(min(left, max(probe_at - time.monotonic(), 0.01)))
            if f is not None and (f.cmd == Cmd.READY or (f.cmd == Cmd.INFO | REPLY and f.seq in probes)):
                info = Info.parse(f.payload)
                self._adopt(info)
                return info
        raise LinkError(f"no READY frame (nor an INFO answer) from {self.url} within {timeout:.1f} s")

    def info_once(self, timeout: float, earlier: set[int] | None = None) -> Info:
        """INFO without retries; a READY frame arriving meanwhile counts as the answer, and so does the
        answer to any INFO whose seq is in `earlier` (this one's seq is added to it)."""
        seq = self._next_seq()
        seqs = earlier if earlier is not None else set()
        seqs.add(seq)
        self.write_raw(encode_frame(Cmd.INFO, seq, leading_delimiter=True))
        self.stats.frames_sent += 1
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            f = self.read_frame(left)
            if f is None:
                break
            if f.cmd == Cmd.READY or (f.cmd == Cmd.INFO | REPLY and f.seq in seqs):
                info = Info.parse(f.payload)
                self._adopt(info)
                return info
        raise LinkError(f"no INFO answer from {self.url} within {timeout:.1f} s")

    def _adopt(self, info: Info) -> None:
        self.max_payload = info.max_payload
        self.tick_hz = info.tick_hz

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    # -- requests -----------------------------------------------------------------------------------------
    def request(
        self, cmd: int, payload: bytes = b"", *, timeout: float | None = None, retries: int | None = None
    ) -> Frame:
        """Sends one request and returns its reply; resends with the same seq on timeout/frame errors.

        `retries` bounds the resends after a *timeout*. A frame-level ERROR from the board (it saw a bad
        frame, maybe ours) is answered by resending at once; such resends have their own, larger budget
        (FRAME_ERROR_RESENDS per try), so that one burst of line noise, which makes the board report
        several bad frames, cannot use up the retries of a request whose reply is on its way.
        Raises DeviceError when the board refuses it, LinkError when no answer came.
        """
        seq = self._next_seq()
        wire = encode_frame(cmd, seq, payload, leading_delimiter=True)
        wait = (self.timeout if timeout is None else timeout) + len(wire) / self.min_rate
        tries = 1 + (self.retries if retries is None else retries)
        timeouts = resends = 0
        max_resends = FRAME_ERROR_RESENDS * tries if tries > 1 else 0  # retries=0: never send twice (RESET)
        while True:
            self.write_raw(wire)
            self.stats.frames_sent += 1
            reply = self._await(cmd, seq, time.monotonic() + wait)
            if reply is not None:
                return reply
            if self._timed_out:
                timeouts += 1
            else:
                resends += 1
            if timeouts >= tries or resends > max_resends:
                break
            self.stats.retries += 1
            log.info("retry %d of %s seq %d", timeouts + resends, _cmd_name(cmd), seq)
        raise LinkError(
            f"no answer to {_cmd_name(cmd)} (seq {seq}) from {self.url} after {timeouts + resends + 1} sends "
            f"({timeouts} timeouts of {wait:.1f} s, {resends} bad-frame reports)"
        )

    def _await(self, cmd: int, seq: int, deadline: float) -> Frame | None:
        """The reply to (cmd, seq); None means: resend (`_timed_out` tells a timeout from a bad frame)."""
        self._timed_out = False
        while True:
            f = self.read_frame(deadline - time.monotonic())
            if f is None:
                self._timed_out = True
                return None
            if f.cmd == Cmd.ERROR and len(f.payload) >= 8:
                code, req, flags, _r, detail = struct.unpack_from("<BBBBi", f.payload)
                if flags & ERRF_FRAME:
                    log.info("board saw a bad frame (%s, detail %d)", _err_name(code), detail)
                    return None  # our request may have been hit: resend (the board dedups)
                if f.seq == seq and req == cmd:
                    raise DeviceError(code, req, detail, False)
                continue
            if f.seq != seq or f.cmd != (cmd | REPLY):
                log.debug("dropping stale frame cmd 0x%02x seq %d", f.cmd, f.seq)
                continue
            return f

    # -- typed helpers ------------------------------------------------------------------------------------
    def info(self) -> Info:
        info = Info.parse(self.request(Cmd.INFO).payload)
        self._adopt(info)
        return info

    def ping(self, send: int = 0, reply: int = 4) -> int:
        """PING with `send` filler bytes; the board answers `reply` bytes. Returns the reply length."""
        payload = struct.pack("<H", reply) + bytes((i * 13) & 0xFF for i in range(send))
        r = self.request(Cmd.PING, payload, timeout=self.timeout + reply / self.min_rate)
        (got,) = struct.unpack_from("<I", r.payload)
        if got != len(payload) or len(r.payload) != max(4, reply):
            raise LinkError(f"PING: board saw {got} bytes of {len(payload)}, replied {len(r.payload)}")
        return len(r.payload)

    def load_theta(
        self, blob: bytes, *, chunk: int | None = None, progress: Callable[[int, int], None] | None = None,
        sign: bool = True,
    ) -> None:
        """Sends a signed θ in chunks to the inactive slot (COMMIT makes it active). A bare θ blob is signed
        first by the link's signer (unless ``sign`` is False: then it goes out bare, and a board refuses it
        with ERROR UNSIGNED)."""
        from pvcore.signed import is_signed

        if sign and self.signer is not None and not is_signed(blob):
            blob = self.signer(bytes(blob))
        check_blob(blob)
        step = min(chunk or self.max_payload - 4, self.max_payload - 4)
        for off in range(0, len(blob), step):
            r = self.request(Cmd.LOAD_THETA, struct.pack("<I", off) + blob[off : off + step])
            received, total = struct.unpack_from("<II", r.payload)
            if progress:
                progress(received, total)

    def commit(self) -> tuple[int, int]:
        """Makes the transferred θ active. Returns (slot, commit counter)."""
        r = self.request(Cmd.COMMIT)
        slot, _a, _b, _c, counter = struct.unpack_from("<BBBBI", r.payload)
        return slot, counter

    def install_theta(self, blob: bytes, **kw: Any) -> tuple[int, int]:
        self.load_theta(blob, **kw)
        return self.commit()

    def infer(self, image: Any, *, chunk: int | None = None) -> InferResult:
        """Runs f on one 112×112×3 int8 image (HWC; bytes or a numpy array)."""
        data = image_bytes(image)
        step = min(chunk or self.max_payload - 8, self.max_payload - 8)
        reply = b""
        for off in range(0, max(len(data), 1), step):
            r = self.request(Cmd.INFER, struct.pack("<II", len(data), off) + data[off : off + step])
            reply = r.payload
        if len(reply) < 20 or not reply[2] & RESULT_DONE:
            raise LinkError("INFER: the board did not report a result after the last chunk")
        return InferResult.parse(reply)

    def bench(self, n: int, *, per_inference_s: float = 1.0) -> BenchResult:
        """Runs n inferences on the last image (board-side timing)."""
        r = self.request(Cmd.BENCH, struct.pack("<I", n), timeout=self.timeout + n * per_inference_s)
        n_, mn, mx, lo, hi, q, q_m = struct.unpack_from("<IIIIIbb", r.payload)
        (q16,) = struct.unpack_from("<h", r.payload, 20)
        return BenchResult(n_, mn, mx, lo | (hi << 32), q, self.tick_hz, q_m, q16)

    def infer_bulk(self, start: int, count: int, *, per_inference_s: float = 1.0) -> list[InferResult]:
        """Runs the images preloaded in the board's bulk memory; results stream back one frame each."""
        return list(self.iter_infer_bulk(start, count, per_inference_s=per_inference_s))

    def iter_infer_bulk(
        self, start: int, count: int, *, per_inference_s: float = 1.0
    ) -> Iterator[InferResult]:
        first = self.request(
            Cmd.INFER_BULK, struct.pack("<II", start, count), timeout=self.timeout + per_inference_s
        )
        seq = first.seq
        yield _bulk_result(first)
        for _ in range(count - 1):
            f = self._await(Cmd.INFER_BULK, seq, time.monotonic() + self.timeout + per_inference_s)
            if f is None:
                raise LinkError("INFER_BULK: the result stream stopped")
            yield _bulk_result(f)

    def reset(self, *, wait: bool = True, timeout: float = 30.0) -> Info | None:
        """Reboots the board (the committed θ stays); waits for its READY frame."""
        self.request(Cmd.RESET, b"\x00", retries=0)
        return self.wait_ready(timeout) if wait else None

    def exit(self, code: int = 0) -> None:
        """Ends the emulator/simulator process with `code` (semihosting exit on QEMU)."""
        self.request(Cmd.RESET, bytes([1, code & 0xFF]), retries=0)


def open_error_message(url: str, exc: BaseException) -> str:
    """Why a port could not be opened, and the way out."""
    text = str(exc)
    low = text.lower()
    if "://" not in url and ("no such file" in low or "errno 2]" in low):
        hint = "no such device: is the board plugged in? List ports with `python -m serial.tools.list_ports`"
    elif url.startswith("socket://") and ("refused" in low or "errno 111]" in low):
        hint = (
            "nothing listens there: boot a virtual board first "
            "(python -m host_tools.flash --target cortex-m-qemu | --target host)"
        )
    elif "lock" in low or "busy" in low or "errno 16]" in low or "errno 11]" in low:
        hint = "the port is busy: another program (a serial monitor, another host_tools command) holds it"
    elif "permission" in low or "errno 13]" in low:
        hint = "permission denied: add yourself to the 'dialout' group (then log in again)"
    else:
        hint = "check the port name (a device path, socket://HOST:PORT or rfc2217://HOST:PORT)"
    return f"cannot open {url}: {text} ({hint})"


def _bulk_result(f: Frame) -> InferResult:
    (index,) = struct.unpack_from("<I", f.payload)
    return InferResult.parse(f.payload[4:], index)


def _cmd_name(cmd: int) -> str:
    try:
        return Cmd(cmd).name
    except ValueError:
        return f"0x{cmd:02x}"


def _err_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return str(code)


def image_bytes(image: Any) -> bytes:
    """A 112×112×3 int8 HWC image as bytes (numpy arrays are checked for shape and dtype)."""
    if isinstance(image, bytes | bytearray | memoryview):
        return bytes(image)
    import numpy as np

    arr = np.asarray(image)
    if arr.dtype != np.int8:
        raise ValueError(f"image dtype {arr.dtype}: expected int8 (q = u8 - 128)")
    return np.ascontiguousarray(arr).tobytes()


def check_blob(blob: bytes) -> None:
    """Host-side sanity check of a θ blob, bare or in its signed envelope, before sending it (the board
    checks again, the signature too): size, magic, a format version some firmware reads, header size and
    total size (``pvcore.blob`` and ``pvcore.signed`` define the formats)."""
    from pvcore.blob import CRC_SIZE, FORMAT_VERSIONS, HEADER_SIZE, HEADER_STRUCT, MAGIC
    from pvcore.signed import is_signed, parse

    if len(blob) > BLOB_MAX_BYTES:
        raise ValueError(f"θ of {len(blob)} bytes: a board's slot holds at most {BLOB_MAX_BYTES}")
    if is_signed(blob):
        blob = parse(blob).blob
    if len(blob) < HEADER_SIZE + CRC_SIZE or len(blob) > BLOB_MAX_BYTES:
        raise ValueError(f"θ blob of {len(blob)} bytes: must be {HEADER_SIZE + CRC_SIZE}..{BLOB_MAX_BYTES}")
    magic, version, hsize, total, *_ = HEADER_STRUCT.unpack_from(blob)
    versions = tuple(sorted(FORMAT_VERSIONS))
    if magic != MAGIC or version not in versions or hsize != HEADER_SIZE or total != len(blob):
        raise ValueError(f"not a θ blob of this firmware (magic {MAGIC.decode()}, version {versions}, "
                         f"{HEADER_SIZE}-byte header, total_size = file size; got {magic!r} version {version})")


# ---- CLI -------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    from pvcore.cli import add_port_args, fail, setup_logging

    ap = argparse.ArgumentParser(prog="python -m host_tools.serial_link", description=__doc__.split("\n")[0])
    add_port_args(ap, positional=True, baud=115200, timeout=2.0)
    ap.add_argument("--wait-ready", action="store_true", help="wait for the READY frame first")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("info", help="print the board's INFO")
    p = sub.add_parser("load", help="load a signed θ and commit it (a board refuses a bare blob: sign it with "
                                    "python -m host_tools.keys sign, or use host_tools.enroll)")
    p.add_argument("blob")
    p = sub.add_parser("infer", help="run one image (raw 112*112*3 int8 file)")
    p.add_argument("image")
    p = sub.add_parser("bench", help="run N inferences on the last image")
    p.add_argument("n", type=int)
    p = sub.add_parser("ping", help="measure the link: N pings each way")
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--size", type=int, default=4000)
    sub.add_parser("reset", help="reboot the board")
    args = ap.parse_args(argv)
    setup_logging()
    try:
        with SerialLink(args.port, baudrate=args.baud, timeout=args.timeout) as link:
            if args.wait_ready:
                link.wait_ready()
            if args.cmd == "info":
                for k, v in vars(link.info()).items():
                    print(f"{k}: {v}")
            elif args.cmd == "load":
                link.info()
                with open(args.blob, "rb") as fh:
                    slot, counter = link.install_theta(fh.read())
                print(f"committed to slot {slot}, commit counter {counter}")
            elif args.cmd == "infer":
                link.info()
                with open(args.image, "rb") as fh:
                    print(link.infer(fh.read()))
            elif args.cmd == "bench":
                info = link.info()
                r = link.bench(args.n)
                ms = r.mean_ticks / info.tick_hz * 1e3
                print(
                    f"{r.n} inferences: mean {r.mean_ticks:.0f} ticks ({ms:.3f} ms at {info.tick_hz} Hz), "
                    f"min {r.min_ticks}, max {r.max_ticks}"
                )
            elif args.cmd == "ping":
                link.info()
                for name, send, reply in (("host->device", args.size, 4), ("device->host", 0, args.size)):
                    t0 = time.perf_counter()
                    for _ in range(args.n):
                        link.ping(send, reply)
                    dt = time.perf_counter() - t0
                    nbytes = args.n * max(send, reply)
                    print(f"{name}: {args.n / dt:.1f} frames/s, {nbytes / dt / 1024:.1f} KiB/s")
            elif args.cmd == "reset":
                print(link.reset())
    except (LinkError, DeviceError, ValueError, OSError, serial.SerialException) as e:
        fail(str(e))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
