"""Reading a send-later time (pure): the forms, a past time rolls forward,
weekdays, daylight saving, and anything else refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from handlers.schedule import format_send_time, send_time

BERLIN = ZoneInfo("Europe/Berlin")
#: Wednesday 25 November 2026, 08:15 in Berlin (UTC+1).
NOW = datetime(2026, 11, 25, 8, 15, tzinfo=BERLIN)


def local(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=BERLIN)


@pytest.mark.parametrize("when, expected", [
    ("at 9:00", local(25, 9)),
    ("9am", local(25, 9)),
    ("9 am", local(25, 9)),
    ("9a.m.", local(25, 9)),
    ("9:30", local(25, 9, 30)),
    ("10 pm", local(25, 22)),
    ("10PM", local(25, 22)),
    ("12pm", local(25, 12)),
    ("at 9", local(25, 9)),
    ("21:45", local(25, 21, 45)),
    ("tomorrow 8am", local(26, 8)),
    ("tmrw 8:00", local(26, 8)),
    ("Tomorrow at 8", local(26, 8)),
    ("9am tomorrow", local(26, 9)),
    ("today 17:00", local(25, 17)),
    ("tonight 9", local(25, 21)),
    ("tonight 9:30pm", local(25, 21, 30)),
    ("mon 9", local(30, 9)),
    ("monday at 9:30", local(30, 9, 30)),
    ("on fri 8am", local(27, 8)),
    ("Fri, 8am", local(27, 8)),
    ("8:00 on fri", local(27, 8)),
    ("thurs 14:00", local(26, 14)),
    ("wed 17:00", local(25, 17)),  # today's, still ahead
    ("wed 8:00", local(2, 8, month=12)),  # today's has passed: next week's
    ("at 12am", local(26, 0)),
])
def test_the_forms(when: str, expected: datetime) -> None:
    assert send_time(when, NOW, BERLIN) == expected


def test_a_time_already_past_today_means_tomorrow() -> None:
    assert send_time("8:00", NOW, BERLIN) == local(26, 8)
    assert send_time("at 8:15", NOW, BERLIN) == local(26, 8, 15)  # now is not ahead
    assert send_time("8:16", NOW, BERLIN) == local(25, 8, 16)


def test_today_or_tonight_already_past_is_refused() -> None:
    assert send_time("today 8:00", NOW, BERLIN) is None
    assert send_time("tonight 9", datetime(2026, 11, 25, 22, 0, tzinfo=BERLIN), BERLIN) is None


def test_the_time_is_read_in_the_persons_zone_whatever_zone_now_is_given_in() -> None:
    now_utc = NOW.astimezone(UTC)  # 07:15 UTC
    at = send_time("9:00", now_utc, BERLIN)
    assert at == local(25, 9) and at is not None and at.astimezone(UTC).hour == 8
    # Late evening in UTC is already tomorrow in Tokyo.
    tokyo = ZoneInfo("Asia/Tokyo")
    at = send_time("tomorrow 9am", datetime(2026, 11, 25, 20, 0, tzinfo=UTC), tokyo)
    assert at == datetime(2026, 11, 27, 9, 0, tzinfo=tokyo)


def test_a_wall_time_the_clocks_skip_is_an_hour_later() -> None:
    # Sunday 29 March 2026: Berlin's clocks go from 02:00 to 03:00.
    saturday = datetime(2026, 3, 28, 20, 0, tzinfo=BERLIN)
    at = send_time("tomorrow 2:30", saturday, BERLIN)
    assert at is not None
    assert at.astimezone(UTC) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 CEST
    assert (at.hour, at.minute, at.utcoffset()) == (3, 30, timedelta(hours=2))


def test_a_wall_time_that_happens_twice_is_the_first_still_ahead() -> None:
    # Sunday 25 October 2026: Berlin's clocks go from 03:00 CEST back to 02:00 CET.
    saturday = datetime(2026, 10, 24, 20, 0, tzinfo=BERLIN)
    at = send_time("tomorrow 2:30", saturday, BERLIN)
    assert at is not None and at.astimezone(UTC) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # CEST
    between = datetime(2026, 10, 25, 0, 45, tzinfo=UTC)  # 02:45 CEST, before the hour repeats
    at = send_time("2:30", between, BERLIN)
    assert at is not None and at.astimezone(UTC) == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # CET
    after = datetime(2026, 10, 25, 1, 45, tzinfo=UTC)  # 02:45 CET: both have passed
    at = send_time("2:30", after, BERLIN)
    assert at is not None and at.astimezone(UTC) == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)


@pytest.mark.parametrize("when", [
    "", "soon", "later", "tomorrow", "mon", "at", "25:00", "9:60", "13pm", "0am", "tonight 9am",
    "next week", "in 2 hours", "9:00 tomorrow please", "tomorrow tomorrow 9", "noon", "9:5", "-1:00",
    "mon 9 tue", "99", "at 9:00:00", "１０:00",
])
def test_anything_else_is_refused(when: str) -> None:
    assert send_time(when, NOW, BERLIN) is None


def test_how_the_time_is_said() -> None:
    assert format_send_time(local(30, 9), NOW, BERLIN) == "Mon 09:00"
    assert format_send_time(local(2, 8, month=12), NOW, BERLIN) == "Wed 2 Dec 08:00"
    assert format_send_time(local(25, 9).astimezone(UTC), NOW, BERLIN) == "Wed 09:00"


@pytest.mark.parametrize(("when", "expected"), [
    ("tonight 12", datetime(2026, 11, 26, 0, 0)),
    ("tonight 12am", datetime(2026, 11, 26, 0, 0)),
    ("tonight 0:30", datetime(2026, 11, 26, 0, 30)),
    ("tonight 2am", datetime(2026, 11, 26, 2, 0)),
    ("tonight 9", datetime(2026, 11, 25, 21, 0)),
    ("tonight 11:30 pm", datetime(2026, 11, 25, 23, 30)),
])
def test_tonight_runs_past_midnight(when: str, expected: datetime) -> None:
    zone = ZoneInfo("Europe/Berlin")
    morning = datetime(2026, 11, 25, 10, 0, tzinfo=zone)
    assert send_time(when, morning, zone) == expected.replace(tzinfo=zone)


@pytest.mark.parametrize("when", ["tonight 12pm", "tonight 9am"])
def test_tonight_is_no_morning_or_noon(when: str) -> None:
    zone = ZoneInfo("Europe/Berlin")
    assert send_time(when, datetime(2026, 11, 25, 10, 0, tzinfo=zone), zone) is None
