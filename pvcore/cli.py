"""Small helpers shared by the command-line entry points."""

from __future__ import annotations

import logging
import sys
from typing import NoReturn


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print an error naming the bad input and the way out, and exit non-zero."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)
