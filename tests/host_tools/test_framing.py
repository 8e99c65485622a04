"""Framing: COBS + CRC round trips in Python, and the C codec (compiled with gcc on this machine, run
as a subprocess) agreeing with Python byte for byte and status for status."""

from __future__ import annotations

import random
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from host_tools.qemu import build_host_sim
from host_tools.serial_link import (
    Frame,
    FrameDecoder,
    FrameError,
    FrameStatus,
    cobs_decode,
    cobs_encode,
    encode_frame,
)

MAX_PAYLOAD = 4096  # PV_FRAME_MAX_PAYLOAD of the C build


@pytest.fixture(scope="module")
def frame_tool() -> Path:
    return build_host_sim().parent / "pv_frame_tool"


def c_decode(tool: Path, stream: bytes) -> list[Frame | FrameError]:
    out = subprocess.run([str(tool), "decode"], input=stream, capture_output=True, check=True).stdout
    events: list[Frame | FrameError] = []
    for line in out.decode().splitlines():
        parts = line.split()
        if parts[0] == "OK":
            events.append(
                Frame(int(parts[1]), int(parts[2]), bytes.fromhex(parts[4] if len(parts) > 4 else ""))
            )
        else:
            events.append(FrameError(FrameStatus(int(parts[1])), int(parts[2]), int(parts[3])))
    return events


def c_encode(tool: Path, cmd: int, seq: int, payload: bytes) -> bytes:
    return subprocess.run(
        [str(tool), "encode", str(cmd), str(seq), payload.hex()], capture_output=True, check=True
    ).stdout


def payloads() -> list[bytes]:
    rng = random.Random(1)
    out = [b"", b"\x00", b"\x00" * 300, b"\x01" * 254, b"\x01" * 253, b"\x01" * 255, bytes(range(256)) * 3]
    out += [
        bytes(rng.randrange(256) for _ in range(n)) for n in (1, 7, 253, 254, 255, 508, 1000, MAX_PAYLOAD)
    ]
    out += [bytes(rng.choice((0, 0, 1, 255)) for _ in range(n)) for n in (10, 600)]
    return out


@pytest.mark.parametrize("data", payloads(), ids=lambda d: f"{len(d)}B")
def test_cobs_round_trip(data: bytes) -> None:
    enc = cobs_encode(data)
    assert b"\x00" not in enc
    assert len(enc) <= len(data) + len(data) // 254 + 1
    assert cobs_decode(enc) == data


def test_python_frame_round_trip() -> None:
    dec = FrameDecoder(MAX_PAYLOAD)
    stream = b"".join(
        encode_frame(i % 9, i, p, leading_delimiter=bool(i % 2)) for i, p in enumerate(payloads())
    )
    events = dec.feed(stream)
    assert events == [Frame(i % 9, i, p) for i, p in enumerate(payloads())]


def test_python_decoder_byte_by_byte_and_resync() -> None:
    dec = FrameDecoder(MAX_PAYLOAD)
    # garbage glued to a frame spoils it: senders lead with a delimiter, and the garbage becomes an error
    stream = b"\x13\x37garbage" + encode_frame(1, 5, b"abc", leading_delimiter=True) + b"\xff\xfe\x00"
    stream += encode_frame(2, 6, b"\x00\x00")
    events: list[Frame | FrameError] = []
    for b in stream:
        events += dec.feed(bytes([b]))
    frames = [e for e in events if isinstance(e, Frame)]
    assert frames == [Frame(1, 5, b"abc"), Frame(2, 6, b"\x00\x00")]
    assert all(isinstance(e, FrameError) for e in events if not isinstance(e, Frame))


@pytest.mark.parametrize("data", payloads(), ids=lambda d: f"{len(d)}B")
def test_c_encoder_equals_python(frame_tool: Path, data: bytes) -> None:
    assert c_encode(frame_tool, 0x42, 200, data) == encode_frame(0x42, 200, data)


def test_c_decoder_round_trip(frame_tool: Path) -> None:
    stream = b"".join(encode_frame(i % 9, i, p, leading_delimiter=True) for i, p in enumerate(payloads()))
    assert c_decode(frame_tool, stream) == [Frame(i % 9, i, p) for i, p in enumerate(payloads())]


def _raw(cmd: int, seq: int, payload: bytes, *, declared: int | None = None, crc: int | None = None) -> bytes:
    body = struct.pack("<BBH", cmd, seq, len(payload) if declared is None else declared) + payload
    return body + struct.pack("<I", zlib.crc32(body) if crc is None else crc)


def bad_frames() -> dict[str, tuple[bytes, FrameStatus]]:
    good = _raw(1, 9, b"hello")
    return {
        "truncated": (cobs_encode(good[:-2]) + b"\x00", FrameStatus.TRUNCATED),
        "header_only": (cobs_encode(good[:3]) + b"\x00", FrameStatus.TRUNCATED),
        "bad_crc": (cobs_encode(_raw(1, 9, b"hello", crc=0x12345678)) + b"\x00", FrameStatus.CRC),
        "len_field_too_big": (
            cobs_encode(_raw(1, 9, b"hello", declared=60000)) + b"\x00",
            FrameStatus.OVERSIZE,
        ),
        "len_field_too_small": (
            cobs_encode(_raw(1, 9, b"hello", declared=2)) + b"\x00",
            FrameStatus.TOO_LONG,
        ),
        "oversized": (cobs_encode(_raw(1, 9, bytes(MAX_PAYLOAD + 1))) + b"\x00", FrameStatus.OVERSIZE),
        "cobs_broken": (b"\x09abc\x00", FrameStatus.COBS),
    }


@pytest.mark.parametrize("name", list(bad_frames()))
def test_c_and_python_report_the_same_error(frame_tool: Path, name: str) -> None:
    wire, status = bad_frames()[name]
    after = encode_frame(3, 4, b"next")
    c_events = c_decode(frame_tool, wire + after)
    py_events = FrameDecoder(MAX_PAYLOAD).feed(wire + after)
    assert isinstance(c_events[0], FrameError) and c_events[0].status == status
    assert isinstance(py_events[0], FrameError) and py_events[0].status == status
    if status != FrameStatus.COBS:  # the C decoder names the request it refuses
        assert (c_events[0].cmd, c_events[0].seq) == (1, 9) or name == "header_only"
    assert c_events[1:] == py_events[1:] == [Frame(3, 4, b"next")]  # and resynchronises


def test_c_decoder_survives_random_garbage(frame_tool: Path) -> None:
    rng = random.Random(3)
    frames = [
        Frame(rng.randrange(256), i, bytes(rng.randrange(256) for _ in range(rng.randrange(300))))
        for i in range(40)
    ]
    stream = bytearray()
    for f in frames:
        stream += bytes(rng.randrange(1, 256) for _ in range(rng.randrange(50)))  # garbage, no delimiter
        stream += encode_frame(f.cmd, f.seq, f.payload, leading_delimiter=True)
    events = c_decode(frame_tool, bytes(stream))
    assert [e for e in events if isinstance(e, Frame)] == frames


def test_check_blob_reads_the_blob_format() -> None:
    """The link's pre-send check reads pvcore.blob's header: every format version a firmware reads passes,
    any other version, magic or size is refused."""
    import struct
    import zlib

    import pytest

    from host_tools.serial_link import check_blob
    from pvcore import blob

    def make(version: int, magic: bytes = blob.MAGIC) -> bytes:
        body = blob.HEADER_STRUCT.pack(magic, version, blob.HEADER_SIZE, blob.HEADER_SIZE + 4, bytes(8), b"u",
                                       0.0, 0, 0)
        return body + struct.pack("<I", zlib.crc32(body))

    for v in blob.FORMAT_VERSIONS:
        check_blob(make(v))
    for bad in (make(99), make(blob.FORMAT_VERSION, b"XXXX"), make(blob.FORMAT_VERSION)[:-1]):
        with pytest.raises(ValueError):
            check_blob(bad)
