"""Waiting for something another process does: one polling helper for every test."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    *,
    interval: float = 0.05,
    tolerate: tuple[type[Exception], ...] = (),
) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` after ``timeout`` seconds.

    Exceptions of the ``tolerate`` types (e.g. OSError while a server starts) count as
    "not yet"; the last one is quoted in the failure.
    """
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            if predicate():
                return
        except tolerate as exc:
            last = exc
        if time.monotonic() > deadline:
            cause = f" ({last})" if last is not None else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{cause}")
        time.sleep(interval)
