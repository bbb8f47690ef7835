"""Exponential backoff with jitter: never a busy loop, never a thundering herd."""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None) -> None:
        self.initial = initial
        self.maximum = maximum
        self.attempts = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        """The next delay: half of the capped exponential step fixed, half random, so a
        delay is never near zero yet sites that failed together spread out."""
        step = float(min(self.maximum, self.initial * (2.0**self.attempts)))
        self.attempts = min(self.attempts + 1, 60)
        return step / 2 + self._rng.uniform(0, step / 2)

    def reset(self) -> None:
        self.attempts = 0
