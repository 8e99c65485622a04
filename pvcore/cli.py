"""The command-line convention every entry point follows (training, codegen, host_tools alike).

Exit status: ``EXIT_OK`` 0 done; ``EXIT_ERROR`` 1 an error (bad input the message names, a missing
file, a board that does not answer); ``EXIT_USAGE`` 2 the command line itself is wrong (argparse's own
errors exit 2 too); ``EXIT_CHECK_FAILED`` 3 the tool ran and the thing it checks did not hold (parity
not bit-exact, a probe that does not match).

Reports: ``--json`` prints the report as JSON on stdout; ``--out PATH`` is where a report (or a tool's
output folder) is written, atomically (``pvcore.atomic``).

Shared arguments: :func:`add_port_args` (the serial link), :func:`add_user_store_args` (``--users``),
:func:`add_target_arg` (``--target``, names from ``pvcore.targets``). Logging: :func:`setup_logging`, to
stderr, so stdout carries only the tool's output.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import NoReturn

from pvcore.targets import UnknownTarget, get_target, target_names

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CHECK_FAILED = 3


def setup_logging(verbose: bool = False, *, quiet: bool = False) -> None:
    """INFO to stderr (DEBUG with ``verbose``; WARNING with ``quiet``, for tools whose stdout is their report)."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """Print an error naming the bad input and the way out, and exit (``EXIT_ERROR`` unless said)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def add_port_args(ap: argparse.ArgumentParser, *, required: bool = True, multiple: bool = False,
                  positional: bool = False, baud: int = 115200, timeout: float | None = 3.0,
                  port_help: str | None = None) -> argparse._ArgumentGroup:
    """``--port URL`` (repeatable with ``multiple``; a positional ``port`` with ``positional``), ``--baud``
    and ``--timeout`` (left out with ``timeout=None``): the serial link to a board."""
    g = ap.add_argument_group("serial link")
    text = port_help or "pyserial URL: /dev/ttyUSB0, socket://127.0.0.1:PORT, rfc2217://host:port"
    if positional:
        g.add_argument("port", metavar="URL", help=text)
    else:
        g.add_argument("--port", required=required, action="append" if multiple else "store", metavar="URL",
                       help=text + ("; repeat to use several boards" if multiple else ""))
    g.add_argument("--baud", type=int, default=baud, help=f"baud rate (default {baud})")
    if timeout is not None:
        g.add_argument("--timeout", type=float, default=timeout,
                       help=f"seconds to wait for each answer (default {timeout:g})")
    return g


def add_user_store_args(ap: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """``--users ROOT``: the user store (None: ``$FACEVERIF_USERS`` or users/ in the repository)."""
    from pathlib import Path

    g = ap.add_argument_group("user store")
    g.add_argument("--users", type=Path, default=None, metavar="ROOT",
                   help="user-store folder (default: $FACEVERIF_USERS or ./users)")
    return g


def add_target_arg(ap: argparse.ArgumentParser, *, families: tuple[str, ...] | None = None,
                   required: bool = False, default: str | None = None, allow_none: bool = False,
                   help: str | None = None) -> argparse.Action:
    """``--target NAME`` from the target registry (``pvcore.targets``; ``families`` narrows it). The value is
    the target's name (a deprecated alias warns and resolves); ``allow_none``: the word ``none`` gives None."""
    names = target_names(families)

    def target(text: str) -> str | None:
        if allow_none and text == "none":
            return None
        try:
            return get_target(text, families).name
        except UnknownTarget as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    listed = ", ".join(names) + (", none" if allow_none else "")
    return ap.add_argument("--target", type=target, required=required, default=default, metavar="TARGET",
                           help=(help + f" ({listed})") if help else f"one of: {listed}")
