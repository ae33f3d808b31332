"""The analytics page's SQL (streams/storage/analytics.py) on real PostgreSQL:
rows spread over several weeks, counted per calendar week in TIMEZONE, every
figure checked exactly."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from handlers.analytics import SenderFigures, WeekFigures
from handlers.clock import OffsetClock
from handlers.workflow import WorkflowState
from streams.storage.analytics import AnalyticsReads
from streams.storage.repository import Pool
from tests.support.factories import insert_email, new_message_id

S = WorkflowState
NEW_YORK = "America/New_York"  # EDT from 2025-03-09: UTC-4


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


async def workflow(pool: Pool, sender: str, state: WorkflowState, *, received: str | None,
                   sent: str | None = None, edit_iteration: int = 0, history: int = 0,
                   into: tuple[tuple[WorkflowState, str], ...] = ()) -> str:
    """One workflow as the worker leaves it: its row, and audit rows into ``into`` (state, at)."""
    async with pool.connection() as conn:
        mid = await insert_email(conn, message_id=new_message_id(), from_address=sender,
                                 received_at=utc(received or "2025-01-01T00:00:00"), commit=False)
        await conn.execute(
            "INSERT INTO workflow_state (message_id, email_from, current_state, email_received_at, reply_sent_at,"
            " edit_iteration, edit_history) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (mid, sender, state.value, utc(received) if received else None, utc(sent) if sent else None,
             edit_iteration, json.dumps([{"instructions": f"edit {n}", "draft": "..."} for n in range(history)])))
        for to_state, at in into:
            await conn.execute("INSERT INTO workflow_audit_log (message_id, to_state, transition_reason, created_at)"
                               " VALUES (%s, %s, 'test', %s)", (mid, to_state.value, utc(at)))
        await conn.commit()
    return mid


async def spread_over_weeks(pool: Pool) -> None:
    john, maria, tom = "John Smith <john@example.com>", "Maria <maria@example.com>", "Tom <TOM@Example.com>"
    # Week of 2025-03-03 in New York (Sunday 22:00 EDT is 02:00 UTC on Monday: still that week there).
    await workflow(pool, john, S.REPLY_SENT, received="2025-03-10T01:00:00", sent="2025-03-10T02:00:00",
                   edit_iteration=2, history=2)  # 3600 s, 2 edits
    await workflow(pool, john, S.REPLY_SENT, received="2025-03-03T14:00:00", sent="2025-03-03T14:10:00")  # 600 s
    await workflow(pool, john, S.TIMEOUT, received="2025-03-08T10:00:00",
                   into=((S.TIMEOUT, "2025-03-10T03:59:00"),))  # Sunday 23:59 EDT
    # Timed out twice in the week of 03-03 (put back on the phone between), sent the next week.
    await workflow(pool, john, S.REPLY_SENT, received="2025-03-03T12:00:00", sent="2025-03-11T12:00:00",
                   into=((S.TIMEOUT, "2025-03-04T12:00:00"), (S.TIMEOUT, "2025-03-05T12:00:00"),
                         (S.REPLY_SENT, "2025-03-11T12:00:00")))  # 8 days
    # Week of 2025-03-10: a redraft and a reply written by hand (history 2, iteration 1).
    await workflow(pool, maria, S.REPLY_SENT, received="2025-03-11T09:00:00", sent="2025-03-11T10:00:00",
                   edit_iteration=1, history=2)
    await workflow(pool, maria, S.USER_IGNORED, received="2025-03-11T08:00:00",
                   into=((S.USER_IGNORED, "2025-03-11T08:30:00"),))
    # Week of 2025-02-10: a row of the deployed service (iteration 3, no history), and one without a received time.
    await workflow(pool, tom, S.REPLY_SENT, received="2025-02-12T10:00:00", sent="2025-02-12T12:00:00",
                   edit_iteration=3)
    await workflow(pool, tom, S.REPLY_SENT, received=None, sent="2025-02-13T10:00:00")
    # Week of 2025-01-06.
    await workflow(pool, tom, S.USER_IGNORED, received="2025-01-07T10:00:00",
                   into=((S.USER_IGNORED, "2025-01-08T10:00:00"),))
    await workflow(pool, "  Ann@Example.com ", S.PENDING, received="2025-03-12T07:00:00")
    # Before the 12 weeks (they begin on Monday 2024-12-23 in New York): not counted anywhere.
    await workflow(pool, "old@example.com", S.REPLY_SENT, received="2024-12-20T10:00:00",
                   sent="2024-12-22T10:00:00", edit_iteration=5, history=5)
    await workflow(pool, "old@example.com", S.USER_IGNORED, received="2024-12-20T11:00:00",
                   into=((S.USER_IGNORED, "2024-12-21T10:00:00"),))


def week(day: str, sent: int = 0, ignored: int = 0, timed_out: int = 0, edits: int = 0,
         median: float | None = None, p90: float | None = None) -> WeekFigures:
    return WeekFigures(date.fromisoformat(day), sent, ignored, timed_out, edits, median, p90)


async def test_twelve_weeks_in_the_time_zone_counted_exactly(pool: Pool, clock: OffsetClock) -> None:
    await spread_over_weeks(pool)
    clock.jump_to(utc("2025-03-12T12:00:00"))  # Wednesday, 08:00 in New York
    reads = AnalyticsReads(pool, clock)
    weeks = await reads.weeks(NEW_YORK)
    mondays = [date(2024, 12, 23) + timedelta(weeks=n) for n in range(12)]
    assert [w.week for w in weeks] == mondays
    busy = {w.week.isoformat(): w for w in weeks if w.sent or w.ignored or w.timed_out}
    assert busy == {
        "2025-01-06": week("2025-01-06", ignored=1),
        "2025-02-10": week("2025-02-10", sent=2, edits=3, median=7200.0, p90=7200.0),
        "2025-03-03": week("2025-03-03", sent=2, timed_out=2, edits=2, median=2100.0, p90=3300.0),
        "2025-03-10": week("2025-03-10", sent=2, ignored=1, edits=2, median=347400.0, p90=622440.0),
    }
    assert [w.edit_rate for w in weeks if w.sent] == [1.5, 1.0, 1.0]
    assert all(w == week(w.week.isoformat()) and w.edit_rate is None for w in weeks if w.week.isoformat() not in busy)

    # In UTC, Monday 02:00 is the next week: the reply and the timeout at the turn move with it.
    by_week = {w.week.isoformat(): w for w in await reads.weeks("UTC")}
    assert (by_week["2025-03-03"].sent, by_week["2025-03-03"].timed_out) == (1, 1)
    assert (by_week["2025-03-10"].sent, by_week["2025-03-10"].timed_out, by_week["2025-03-10"].edits) == (3, 1, 4)
    assert len(await reads.weeks(NEW_YORK, weeks=2)) == 2


async def test_top_senders_by_emails_with_replied_and_ignored(pool: Pool, clock: OffsetClock) -> None:
    await spread_over_weeks(pool)
    clock.jump_to(utc("2025-03-12T12:00:00"))
    reads = AnalyticsReads(pool, clock)
    assert await reads.top_senders(NEW_YORK) == [
        SenderFigures("john@example.com", emails=4, replied=3, ignored=0),
        # One row without a received time counts from when its workflow was created (now, in the window).
        SenderFigures("tom@example.com", emails=3, replied=2, ignored=1),
        SenderFigures("maria@example.com", emails=2, replied=1, ignored=1),
        SenderFigures("ann@example.com", emails=1, replied=0, ignored=0),
    ]
    assert [s.sender for s in await reads.top_senders(NEW_YORK, limit=2)] == ["john@example.com", "tom@example.com"]


async def test_an_empty_database_gives_twelve_empty_weeks(pool: Pool, clock: OffsetClock) -> None:
    reads = AnalyticsReads(pool, clock)
    weeks: list[Any] = await reads.weeks("Europe/Berlin")
    assert len(weeks) == 12 and all(w.sent == w.ignored == w.timed_out == w.edits == 0 for w in weeks)
    today = clock.now().astimezone(ZoneInfo("Europe/Berlin")).date()
    assert weeks[-1].week == today - timedelta(days=today.weekday())  # this week's Monday there
    assert weeks[0].week == weeks[-1].week - timedelta(weeks=11)
    assert await reads.top_senders("Europe/Berlin") == []
