"""Helpers shared by tests of several packages (not test modules: pytest collects nothing here)."""

from __future__ import annotations

import os


def in_ci() -> bool:
    """CI sets CI=true: there, a missing tool or data folder fails a test instead of skipping it."""
    return os.environ.get("CI", "").lower() == "true"
