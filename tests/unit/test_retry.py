"""When a parked workflow is tried again: doubling from RETRY_PARK_BASE,
capped at RETRY_PARK_MAX, never past RETRY_DEADLINE."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from handlers.retry import ParkPolicy

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
