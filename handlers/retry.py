"""Backoff, pure: in-call retries with full jitter (the random source is
injected), and the durable schedule of a workflow parked by a long outage."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

#: The longest wait a peer's ``Retry-After`` can impose (RETRY_AFTER_MAX's default):
#: a peer that asks for more (``1e9``, an HTTP date years ahead) gets this.
RETRY_AFTER_MAX = 300.0


def bounded_retry_after(seconds: float | None, cap: float = RETRY_AFTER_MAX) -> float | None:
    """A peer's ``Retry-After`` as a wait we obey: at most ``cap`` seconds;
    None (as if absent) when it is not a finite number of seconds >= 0
    (``nan``, ``inf``, negative)."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, cap)


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all; the wait before try n+1 is uniform in
    [0, min(cap, base * 2**n)) ("full jitter"), so a fleet does not retry in step."""

    attempts: int = 3
    base: float = 1.0
    cap: float = 60.0
    #: The most a peer's ``Retry-After`` can add to a wait (:func:`bounded_retry_after`).
    retry_after_max: float = RETRY_AFTER_MAX

    def delay(self, failed_attempts: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.cap, self.base * 2 ** max(0, failed_attempts - 1))
        return (rng or random).uniform(0, ceiling)

    def wait(self, failed_attempts: int, retry_after: float | None, rng: random.Random | None = None) -> float:
        """The wait before the next try: the backoff, or longer when the peer
        asked (``Retry-After``), but never longer than ``retry_after_max``."""
        asked = bounded_retry_after(retry_after, self.retry_after_max)
        return max(self.delay(failed_attempts, rng), asked or 0.0)


@dataclass(frozen=True)
class ParkPolicy:
    """When a workflow parked by an outage is tried again: ``base`` seconds
    after the first park, doubling up to ``cap``, until ``deadline`` seconds
    after the first failure (one last try lands on the deadline itself). A
    ``deadline`` of 0 turns parking off: the workflow fails at once."""

    base: float = 30.0
    cap: float = 3600.0
    deadline: float = 86400.0

    def next_attempt(self, parks_so_far: int, since: datetime, now: datetime) -> datetime | None:
        """The time of the next try, or None when the deadline has passed."""
        give_up_at = since + timedelta(seconds=self.deadline)
        if self.deadline <= 0 or now >= give_up_at:
            return None
        wait = min(self.cap, self.base * 2 ** min(parks_so_far, 32))
        return min(now + timedelta(seconds=wait), give_up_at)
