"""The serial protocol's numbers: the one source that the host and the firmware share.

``host_tools/serial_link.py`` uses them directly; the firmware gets them from
``firmware_templates/common/pv_protocol_ids.h``, which ``python -m codegen.c_shared`` generates from this
module (CI runs its ``--check``, which fails on a stale header). Change a number here, regenerate, and
both sides agree.

Here: the frame format's sizes and the decoder's statuses (pv_frame.h), the command ids, the error codes
and the error frame's flag, the reset modes, the INFO reply's layout and flags, and the 16-byte inference
result's layout and flags (pv_protocol.h). Every value carries its one-line meaning (``.doc``), which the
C header repeats. The prose is docs/serial_protocol.md.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass


class DocEnum(enum.IntEnum):
    """An IntEnum whose members carry a one-line meaning: ``NAME = value, "meaning"``."""

    doc: str

    def __new__(cls, value: int, doc: str = "") -> DocEnum:
        obj = int.__new__(cls, value)
        obj._value_ = value
        obj.doc = doc
        return obj


PROTO_VERSION = 1

# ---- frames (pv_frame.h) ------------------------------------------------------------------------------
FRAME_HEADER_BYTES = 4  # cmd, seq, u16 len
FRAME_CRC_BYTES = 4
FRAME_OVERHEAD = FRAME_HEADER_BYTES + FRAME_CRC_BYTES
FRAME_MAX_PAYLOAD = 4096  # the firmware's default decoder limit (a board may build with another)


class FrameStatus(DocEnum):
    """What the frame decoder reports for a byte (pv_frame_status_t)."""

    NONE = 0, "byte consumed, no frame yet"
    OK = 1, "a good frame is complete"
    CRC = -1, "CRC mismatch"
    OVERSIZE = -2, "more bytes than the buffer holds, or len field > max payload"
    TRUNCATED = -3, "fewer bytes than the header + len field + CRC"
    TOO_LONG = -4, "more bytes than the header + len field + CRC"
    COBS = -5, "a COBS block runs past the delimiter"


# ---- commands -----------------------------------------------------------------------------------------
class Cmd(DocEnum):
    INFO = 0x01
    LOAD_THETA = 0x02
    COMMIT = 0x03
    INFER = 0x04
    BENCH = 0x05
    RESET = 0x06
    INFER_BULK = 0x07
    PING = 0x08
    READY = 0xFE, "sent once after boot/reset, seq 0, payload = INFO's"
    ERROR = 0xFF, "a refusal: [u8 code][u8 request cmd][u8 flags][u8 0][i32 detail]"


REPLY = 0x80  # reply cmd = request cmd | REPLY


class ErrorCode(DocEnum):
    BAD_CRC = 1, "frame CRC wrong or COBS broken (frame-level)"
    BAD_LENGTH = 2, "frame shorter/longer than its len field or too big; payload size wrong"
    UNKNOWN_CMD = 3
    ARCH_MISMATCH = 4, "θ built for another architecture (arch hash differs)"
    BAD_IMAGE_SIZE = 5, "INFER image size is not the input's, or data past its end"
    NO_THETA = 6, "no committed θ"
    BAD_STATE = 7, "out of order: chunk gap, COMMIT without complete transfer, BENCH no image"
    BLOB_INVALID = 8, "θ blob header/CRC/content refused"
    BAD_ARG = 9, "argument out of range (bench count, bulk range, reset mode)"
    STORE = 10, "flash erase/write/verify failed"
    INFER_FAILED = 11, "the kernel returned an error (detail: its code)"
    UNSIGNED = 12, "θ without a signed envelope: this firmware installs signed θ only"
    UNTRUSTED_KEY = 13, "θ signed by a key this firmware does not trust"
    BAD_SIGNATURE = 14, "signature wrong: the θ was changed after signing (or forged)"
    REPLAY = 15, "θ counter lower than the active θ's (detail: the active counter)"


ERRF_FRAME = 0x01  # error frame flag: the frame itself was bad (seq/cmd are best effort)


class ResetMode(DocEnum):
    REBOOT = 0
    EXIT = 1, "leave the emulator / host process with an exit code"


# ---- INFO and the inference result: fixed little-endian records ----------------------------------------
@dataclass(frozen=True)
class Field:
    name: str
    fmt: str  # struct code
    offset: int
    doc: str = ""

    @property
    def size(self) -> int:
        return struct.calcsize("<" + self.fmt)


def _layout(*fields: tuple[str, str] | tuple[str, str, str]) -> tuple[Field, ...]:
    out, off = [], 0
    for name, fmt, *doc in fields:
        out.append(Field(name, fmt, off, *doc))
        off += struct.calcsize("<" + fmt)
    return tuple(out)


INFO_FIELDS = _layout(
    ("proto_version", "B"),
    ("fw_major", "B"),
    ("fw_minor", "B"),
    ("fw_patch", "B"),
    ("arch_hash", "8s", "the 8 raw bytes of the firmware's arch hash"),
    ("active_slot", "B", "0xFF: no θ committed"),
    ("flags", "B", "the INFO flags (InfoFlag)"),
    ("max_payload", "H"),
    ("commit_counter", "I"),
    ("user_id", "32s", "NUL-padded"),
    ("threshold_logit", "f"),
    ("theta_bytes", "I"),
    ("free_ram", "I"),
    ("arena_bytes", "I"),
    ("image_bytes", "I"),
    ("tick_hz", "I"),
    ("bulk_images", "I"),
    ("transfer_received", "I"),
    ("frames_ok", "I"),
    ("frames_bad", "I"),
    ("board", "8s", "NUL-padded"),
    ("stack_used", "I", "stack high-water mark in bytes (0: not measured)"),
    ("static_ram", "I", ".data + .bss bytes of the firmware (0: not reported)"),
)
INFO_STRUCT = struct.Struct("<" + "".join(f.fmt for f in INFO_FIELDS))
INFO_BYTES = INFO_STRUCT.size


class InfoFlag(DocEnum):
    BULK = 0x01, "preloaded images for INFER_BULK"
    XFER_OPEN = 0x04, "a θ transfer is open"
    MIRROR = 0x08, "PV_VIEWS 2: results are the mean over the image and its mirror"
    RUNS_16X8 = 0x10, "the firmware runs 16x8 θ blobs (format version 3) too"


RESULT_FIELDS = _layout(
    ("decision", "B"),
    ("logit", "b", "int8 logit; a 16x8 model: the int16 logit's low byte"),
    ("flags", "B", "the result flags (ResultFlag)"),
    ("logit_b", "b", "two views: the mirror view's int8 logit; a 16x8 model: the int16 logit's high byte"),
    ("logit_real", "f"),
    ("score", "f"),
    ("ticks", "I"),
)
RESULT_STRUCT = struct.Struct("<" + "".join(f.fmt for f in RESULT_FIELDS))
RESULT_BYTES = RESULT_STRUCT.size


class ResultFlag(DocEnum):
    DONE = 0x01, "INFER: the image is complete"
    MIRROR = 0x02, "two views: logit_b is the mirror view's logit; real, score and decision are the mean"
    LOGIT16 = 0x04, "a 16x8 model's int16 logit: low byte in logit, high byte in logit_b"


def field(fields: tuple[Field, ...], name: str) -> Field:
    return next(f for f in fields if f.name == name)
