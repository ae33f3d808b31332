"""Exponential backoff with full jitter (pure: the random source is injected)."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all; the wait before try n+1 is uniform in
    [0, min(cap, base * 2**n)) ("full jitter"), so a fleet does not retry in step."""

    attempts: int = 3
    base: float = 1.0
    cap: float = 60.0

    def delay(self, failed_attempts: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.cap, self.base * 2 ** max(0, failed_attempts - 1))
        return (rng or random).uniform(0, ceiling)
