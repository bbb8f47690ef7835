"""Sign-in throttle: repeated failures per account and per client address get 429.

Every attempt counts as a failure from the moment it starts (so a burst of concurrent
guesses is bounded before any password is hashed) until it succeeds. Over
``max_failures`` attempts for one account, or ``max_per_address`` from one address,
within ``window_s``: 429 with ``Retry-After`` (when the oldest counted attempt leaves
the window), and no password is checked at all. In memory, per API instance.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Final

from api.errors import TooManyRequests

# More keys than this and the ones with nothing left in the window are dropped.
MAX_KEYS: Final = 100_000


class LoginThrottle:
    def __init__(
        self,
        max_failures: int,
        max_per_address: int,
        window_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.max_per_address = max_per_address
        self.window_s = window_s
        self._clock = clock
        self._hits: dict[Hashable, deque[float]] = {}

    def _recent(self, key: Hashable, now: float) -> deque[float]:
        hits = self._hits.get(key)
        if hits is None:
            return deque()
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        return hits

    def begin(self, account: Hashable, address: Hashable) -> float:
        """Count an attempt (raise TooManyRequests when over a limit); the returned
        stamp is given to :meth:`succeeded` when the password was right."""
        now = self._clock()
        wait = 0.0
        for key, limit in (
            (("account", account), self.max_failures),
            (("address", address), self.max_per_address),
        ):
            hits = self._recent(key, now)
            if len(hits) >= limit:
                wait = max(wait, hits[0] + self.window_s - now)
        if wait > 0:
            retry = max(1, math.ceil(wait))
            raise TooManyRequests(
                f"too many failed sign-ins; try again in {retry} s", retry_after=retry
            )
        if len(self._hits) >= MAX_KEYS:
            self._prune(now)
        for key in (("account", account), ("address", address)):
            self._hits.setdefault(key, deque()).append(now)
        return now

    def succeeded(self, account: Hashable, address: Hashable, stamp: float) -> None:
        """The attempt was right: the account's failures are forgiven, the address
        no longer counts this attempt."""
        self._hits.pop(("account", account), None)
        hits = self._hits.get(("address", address))
        if hits is not None:
            with contextlib.suppress(ValueError):
                hits.remove(stamp)

    def _prune(self, now: float) -> None:
        for key in [k for k in self._hits if not self._recent(k, now)]:
            del self._hits[key]
