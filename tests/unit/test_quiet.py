"""Quiet hours (pure): ranges that wrap midnight, time zones, daylight saving."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from handlers.quiet import QuietHours, is_quiet


@pytest.mark.parametrize("utc_hour, quiet", [(20, False), (21, True), (23, True), (5, True), (6, False)])
def test_a_range_past_midnight_in_a_zone(utc_hour: int, quiet: bool) -> None:
    hours = QuietHours.parse("22:00-07:00", "Europe/Berlin")  # UTC+1 in November
    assert hours.contains(datetime(2026, 11, 25, utc_hour, 30, tzinfo=UTC)) is quiet


def test_a_range_within_a_day_and_daylight_saving() -> None:
    lunch = QuietHours.parse("12:00-13:30", "America/New_York")
    assert lunch.contains(datetime(2026, 7, 1, 16, 0, tzinfo=UTC))  # 12:00 EDT
    assert not lunch.contains(datetime(2026, 12, 1, 16, 0, tzinfo=UTC))  # 11:00 EST
    assert not lunch.contains(datetime(2026, 7, 1, 17, 30, tzinfo=UTC))  # 13:30 EDT: over
    assert not is_quiet(None, datetime(2026, 7, 1, 16, 0, tzinfo=UTC))


@pytest.mark.parametrize("text", ["", "22-7", "22:00", "07:00-07:00", "24:00-01:00"])
def test_malformed_ranges_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        QuietHours.parse(text, "UTC")
