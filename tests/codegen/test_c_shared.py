"""The generated C headers of what host and firmware share (codegen/c_shared.py): up to date, ``--check``
failing on a stale header and passing on a fresh one, and the host's serial link using the same source."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from codegen import c_shared
from pvcore import blob, protocol, store_format


def test_generated_headers_are_up_to_date() -> None:
    assert c_shared.stale() == [], "stale generated header: run `python -m codegen.c_shared`"


def test_check_fails_on_a_stale_header_and_passes_on_a_fresh_one(tmp_path: Path, capsys) -> None:
    for name in c_shared.HEADERS:
        shutil.copy(c_shared.COMMON / name, tmp_path / name)
    assert c_shared.main(["--check", "--dir", str(tmp_path)]) == 0
    ids = tmp_path / "pv_protocol_ids.h"
    ids.write_text(ids.read_text().replace("PV_E_BAD_ARG = 9", "PV_E_BAD_ARG = 19"))
    assert c_shared.main(["--check", "--dir", str(tmp_path)]) == 1
    assert "pv_protocol_ids.h is stale" in capsys.readouterr().err
    (tmp_path / "pv_blob_format.h").unlink()
    assert c_shared.main(["--check", "--dir", str(tmp_path)]) == 1
    assert c_shared.main(["--dir", str(tmp_path)]) == 0  # regenerate
    assert c_shared.main(["--check", "--dir", str(tmp_path)]) == 0
    assert "PV_E_BAD_ARG = 9," in ids.read_text()


@pytest.mark.parametrize(
    "line",
    [
        "PV_CMD_INFER_BULK = 0x07,",
        "PV_CMD_ERROR = 0xFF,",
        "PV_E_INFER_FAILED = 11",
        "PV_FRAME_ERR_COBS = -5",
        "#define PV_INFO_BYTES 108u",
        "#define PV_INFO_OFF_STACK_USED 100u",
        "#define PV_INFO_FLAG_RUNS_16X8 0x10u",
        "#define PV_RESULT_LOGIT16 0x04u",
    ],
)
def test_protocol_header_holds_the_numbers(line: str) -> None:
    assert line in c_shared.render_protocol()


def test_blob_header_holds_every_format_version() -> None:
    text = c_shared.render_blob_format()
    for name, version in (("", blob.FORMAT_VERSION), ("_REQUANT_POOL", 2), ("_16X8", 3)):
        assert f"#define PV_BLOB_FORMAT_VERSION{name} {version}u" in text
    assert set(blob.FORMAT_VERSIONS) == {2, 3, 4}
    assert "#define PV_BLOB_HDR_PREFIX_ID 60u" in text and "#define PV_BLOB_REC_OFF_WSCALE 52u" in text


def test_store_header_holds_the_slot_layout() -> None:
    text = c_shared.render_store_format()
    for line in ('#define PV_SLOT_MAGIC "PVSL"', "#define PV_SLOT_HEADER_BYTES 32u", "#define PV_SLOT_OFF_COUNTER 4u",
                 "#define PV_SLOT_OFF_BLOB_LEN 8u", "#define PV_SLOT_OFF_BLOB_CRC 12u",
                 "#define PV_SLOT_OFF_HEADER_CRC 28u", "#define PV_BLOB_MAX_BYTES 65536u"):
        assert line in text


def test_serial_link_speaks_pvcore_protocol() -> None:
    from host_tools import serial_link

    assert serial_link.Cmd is protocol.Cmd and serial_link.ErrorCode is protocol.ErrorCode
    assert serial_link.FrameStatus is protocol.FrameStatus and serial_link.Info.FMT is protocol.INFO_STRUCT
    assert protocol.INFO_BYTES == 108 and protocol.RESULT_BYTES == 16
    assert serial_link.BLOB_MAX_BYTES is store_format.BLOB_MAX_BYTES
