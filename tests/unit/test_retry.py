"""When a parked workflow is tried again: doubling from RETRY_PARK_BASE,
capped at RETRY_PARK_MAX, never past RETRY_DEADLINE. And how long a peer's
Retry-After can make an in-call retry wait: RETRY_AFTER_MAX at most."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from handlers.retry import ParkPolicy, RetryPolicy, bounded_retry_after

SINCE = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def waits(policy: ParkPolicy, parks: int) -> list[float]:
    """The wait before each of ``parks`` tries, each counted from the try before."""
    now, found = SINCE, []
    for n in range(parks):
        at = policy.next_attempt(n, SINCE, now)
        assert at is not None
        found.append((at - now).total_seconds())
        now = at
    return found


def test_waits_double_from_the_base_up_to_the_cap() -> None:
    policy = ParkPolicy(base=30, cap=300, deadline=86400)
    assert waits(policy, 8) == [30, 60, 120, 240, 300, 300, 300, 300]


def test_the_cap_holds_however_many_times_it_parked() -> None:
    policy = ParkPolicy(base=30, cap=3600, deadline=10**9)
    at = policy.next_attempt(10_000, SINCE, SINCE)
    assert at == SINCE + timedelta(hours=1)


def test_the_last_try_lands_on_the_deadline_then_it_gives_up() -> None:
    policy = ParkPolicy(base=30, cap=3600, deadline=100)
    now = SINCE + timedelta(seconds=90)
    assert policy.next_attempt(3, SINCE, now) == SINCE + timedelta(seconds=100)
    assert policy.next_attempt(4, SINCE, SINCE + timedelta(seconds=100)) is None


def test_a_deadline_of_zero_turns_parking_off() -> None:
    assert ParkPolicy(base=30, cap=3600, deadline=0).next_attempt(0, SINCE, SINCE) is None


@pytest.mark.parametrize(("asked", "obeyed"), [
    (None, None), (float("nan"), None), (float("inf"), None), (float("-inf"), None), (-1.0, None),
    (0.0, 0.0), (2.5, 2.5), (300.0, 300.0), (1e9, 300.0), (1e308, 300.0),
])
def test_a_retry_after_is_obeyed_up_to_the_cap_and_nonsense_is_no_retry_after(
        asked: float | None, obeyed: float | None) -> None:
    assert bounded_retry_after(asked, 300.0) == obeyed


def test_an_in_call_retry_waits_for_the_backoff_or_the_peer_never_past_the_cap() -> None:
    policy = RetryPolicy(attempts=3, base=1.0, cap=60.0, retry_after_max=120.0)
    rng = random.Random(7)
    assert policy.wait(1, 1e9, rng) == 120.0
    assert policy.wait(1, 90.0, rng) == 90.0
    for asked in (None, float("inf"), float("nan"), -5.0):
        assert 0 <= policy.wait(1, asked, rng) < 1.0  # the backoff alone
