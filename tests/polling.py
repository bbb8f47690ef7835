"""Waiting for something another process does: one polling helper for every test."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


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


async def until_async(
    predicate: Callable[[], Awaitable[bool]], timeout: float, what: str, *, interval: float = 0.05
) -> None:
    """:func:`wait_until` for an async ``predicate`` (asked again every ``interval``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)


def until_marker(messages: Iterable[T], is_marker: Callable[[T], bool], what: str) -> list[T]:
    """Every message before the first marker, read from one ordered channel.

    Absence without a timeout: the caller sends the marker through the same channel
    after the thing that must not arrive, so once the marker is here anything that was
    going to come before it has come. ``messages`` ends (or raises) on its own timeout;
    ending without the marker is a failure, never "nothing came".
    """
    heard: list[T] = []
    for message in messages:
        if is_marker(message):
            return heard
        heard.append(message)
    raise AssertionError(f"{what} never came; heard {heard}")


async def until_marker_async(
    receive: Callable[[float], Awaitable[T]],
    is_marker: Callable[[T], bool],
    timeout: float,
    what: str,
) -> list[T]:
    """``until_marker`` for a channel read by ``await receive(seconds_left)``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    heard: list[T] = []
    while True:
        left = deadline - loop.time()
        try:
            message = await receive(max(0.01, left))
        except TimeoutError:
            raise AssertionError(f"{what} never came in {timeout} s; heard {heard}") from None
        if is_marker(message):
            return heard
        heard.append(message)


def queued_datagrams(sock: socket.socket, size: int = 256) -> list[bytes]:
    """Every datagram already in ``sock``'s queue, without waiting for more: once the
    sender has exited (its exit waited for), all it sent is there."""
    out: list[bytes] = []
    sock.setblocking(False)
    try:
        while True:
            out.append(sock.recv(size))
    except BlockingIOError:
        return out
    finally:
        sock.setblocking(True)
