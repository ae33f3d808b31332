"""The analytics page's reads (README, "Dashboard"): replies sent, ignored
and timed out per week, the edits behind the replies sent, the time from an
email to its reply, and the top senders. Nothing here writes.

Everything is counted in PostgreSQL and bounded: the last ``WEEKS`` calendar
weeks (Monday to Monday in ``timezone``, the current one included; every week
is returned, empty ones as zeros) and the ``TOP_SENDERS`` busiest senders.

Where each figure comes from:

- *sent*: workflows in ``reply_sent``, by the week of ``reply_sent_at``;
- *ignored* / *timed out*: the audit rows into ``user_ignored`` / ``timeout``,
  by the week they were written (a workflow counts once a week: one timed
  out, put back on the phone and timed out again in a week is one);
- *edits*: for each reply sent, the entries of its ``edit_history`` (each
  redraft asked for, and a reply written by hand), or ``edit_iteration`` for a
  row the deployed service wrote without history, whichever is larger. Counted
  on the sent reply and in the week it was sent, so a week's edit rate is
  edits per reply sent that week; the audit rows would count the edits of
  drafts later ignored or timed out, and put an edit and its send in
  different weeks;
- *time to reply*: ``reply_sent_at - email_received_at`` of the replies sent
  that week, median and 90th percentile (``percentile_cont``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from handlers.analytics import TOP_SENDERS, WEEKS, SenderFigures, WeekFigures
from handlers.clock import Clock
from handlers.workflow import WorkflowState
from streams.storage.base import Pool

S = WorkflowState

#: The Monday 00:00 (in ``tz``) ``back`` weeks before the one ``now`` is in, as a local timestamp.
_FIRST_WEEK = ("(date_trunc('week', %(now)s::timestamptz AT TIME ZONE %(tz)s)"
               " - make_interval(weeks => %(back)s))")

_WEEKS = (
    "WITH bounds AS (SELECT " + _FIRST_WEEK + " AS first_week),"
    " weeks AS (SELECT generate_series(first_week, first_week + make_interval(weeks => %(back)s),"
    "  interval '1 week') AS week FROM bounds),"
    " sent AS (SELECT date_trunc('week', w.reply_sent_at AT TIME ZONE %(tz)s) AS week, count(*) AS sent,"
    "  sum(GREATEST(w.edit_iteration, CASE jsonb_typeof(w.edit_history)"
    "   WHEN 'array' THEN jsonb_array_length(w.edit_history) ELSE 0 END)) AS edits,"
    "  percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM w.reply_sent_at - w.email_received_at))"
    "   FILTER (WHERE w.reply_sent_at >= w.email_received_at) AS median_seconds,"
    "  percentile_cont(0.9) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM w.reply_sent_at - w.email_received_at))"
    "   FILTER (WHERE w.reply_sent_at >= w.email_received_at) AS p90_seconds"
    "  FROM workflow_state w, bounds b WHERE w.current_state = %(sent)s"
    "  AND w.reply_sent_at >= b.first_week AT TIME ZONE %(tz)s GROUP BY 1),"
    " decided AS (SELECT date_trunc('week', a.created_at AT TIME ZONE %(tz)s) AS week,"
    "  count(DISTINCT a.message_id) FILTER (WHERE a.to_state = %(ignored)s) AS ignored,"
    "  count(DISTINCT a.message_id) FILTER (WHERE a.to_state = %(timed_out)s) AS timed_out"
    "  FROM workflow_audit_log a, bounds b WHERE a.to_state IN (%(ignored)s, %(timed_out)s)"
    "  AND a.created_at >= b.first_week AT TIME ZONE %(tz)s GROUP BY 1)"
    " SELECT weeks.week::date AS week, COALESCE(sent.sent, 0) AS sent, COALESCE(decided.ignored, 0) AS ignored,"
    "  COALESCE(decided.timed_out, 0) AS timed_out, COALESCE(sent.edits, 0) AS edits,"
    "  sent.median_seconds, sent.p90_seconds"
    " FROM weeks LEFT JOIN sent USING (week) LEFT JOIN decided USING (week) ORDER BY weeks.week"
)

#: The address in ``Name <address>``, else the whole value (lower-cased, so one sender is one row).
ADDRESS = r"<([^<>]+)>\s*$"

_SENDERS = (
    "SELECT lower(btrim(COALESCE(substring(w.email_from FROM %(address)s), w.email_from))) AS sender,"
    " count(*) AS emails, count(*) FILTER (WHERE w.current_state = %(sent)s) AS replied,"
    " count(*) FILTER (WHERE w.current_state = %(ignored)s) AS ignored"
    " FROM workflow_state w WHERE w.email_from IS NOT NULL AND btrim(w.email_from) <> ''"
    " AND COALESCE(w.email_received_at, w.created_at) >= " + _FIRST_WEEK + " AT TIME ZONE %(tz)s"
    " GROUP BY 1 ORDER BY emails DESC, sender LIMIT %(limit)s"
)


class AnalyticsReads:
    """The analytics page's figures, over a connection pool; ``now`` is the clock's."""

    def __init__(self, pool: Pool, clock: Clock) -> None:
        self.pool = pool
        self.clock = clock

    def _params(self, timezone: str, weeks: int) -> dict[str, Any]:
        now: datetime = self.clock.now()
        return {"now": now, "tz": timezone, "back": max(1, weeks) - 1, "sent": S.REPLY_SENT.value,
                "ignored": S.USER_IGNORED.value, "timed_out": S.TIMEOUT.value}

    async def weeks(self, timezone: str, weeks: int = WEEKS) -> list[WeekFigures]:
        """The last ``weeks`` calendar weeks in ``timezone`` (an IANA name), oldest first."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(_WEEKS, self._params(timezone, weeks))
            return [WeekFigures(week=r["week"], sent=int(r["sent"]), ignored=int(r["ignored"]),
                                timed_out=int(r["timed_out"]), edits=int(r["edits"]),
                                median_seconds=_seconds(r["median_seconds"]), p90_seconds=_seconds(r["p90_seconds"]))
                    for r in await cur.fetchall()]

    async def top_senders(self, timezone: str, weeks: int = WEEKS, limit: int = TOP_SENDERS) -> list[SenderFigures]:
        """The senders of the most emails received in those weeks (most first, then by address)."""
        params = self._params(timezone, weeks) | {"address": ADDRESS, "limit": limit}
        async with self.pool.connection() as conn:
            cur = await conn.execute(_SENDERS, params)
            return [SenderFigures(sender=r["sender"], emails=int(r["emails"]), replied=int(r["replied"]),
                                  ignored=int(r["ignored"])) for r in await cur.fetchall()]


def _seconds(value: float | None) -> float | None:
    return None if value is None else float(value)
