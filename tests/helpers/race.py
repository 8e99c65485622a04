"""Racing writers: n calls released at one instant, for the create-or-fail and replace contracts of
pvcore.atomic and the stores and tools built on it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def race(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """fn(i) for i < n in n threads held at a barrier and released together; each one's return value, or
    the exception it raised (BaseException included: a racer that dies is an outcome to assert on)."""
    gate = threading.Barrier(n)
    out: list[Any] = [None] * n

    def run(i: int) -> None:
        gate.wait()
        try:
            out[i] = fn(i)
        except BaseException as e:  # noqa: B036 - collected for the assertions
            out[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def winners(outcomes: list[Any]) -> list[int]:
    """The racers of ``race`` that returned (raised nothing), by index."""
    return [i for i, r in enumerate(outcomes) if not isinstance(r, BaseException)]
