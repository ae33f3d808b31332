"""The figures of the analytics page (README, "Dashboard"), as plain
data, and the little arithmetic on them: no I/O. ``streams/storage/analytics.py``
reads them from PostgreSQL; ``streams/web/analytics.py`` draws them.

A week is a calendar week (Monday 00:00 to Monday 00:00) in TIMEZONE.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

#: How many weeks the page looks back (the current week included), and how many senders it lists.
WEEKS = 12
TOP_SENDERS = 10


@dataclass(frozen=True)
class WeekFigures:
    """One week: the replies sent in it (and the edits behind them), the drafts
    the person ignored and the drafts that timed out in it, and how long the
    replies sent in it took from the email's arrival (seconds; None without any)."""

    week: date
    sent: int
    ignored: int
    timed_out: int
    #: Edits behind the replies sent this week: each redraft asked for, and a reply written by hand.
    edits: int
    median_seconds: float | None
    p90_seconds: float | None

    @property
    def edit_rate(self) -> float | None:
        """Edits per sent reply (None in a week without one): what learning should push down."""
        return self.edits / self.sent if self.sent else None


@dataclass(frozen=True)
class SenderFigures:
    """A sender's emails in the weeks shown, and how many were replied to or ignored."""

    sender: str
    emails: int
    replied: int
    ignored: int


#: Units a duration is shown in: (name, seconds), smallest first.
UNITS: tuple[tuple[str, float], ...] = (("minutes", 60.0), ("hours", 3600.0), ("days", 86400.0))


def duration_unit(seconds: Iterable[float | None]) -> tuple[str, float]:
    """The unit the durations read best in: the largest in which the longest is at least 2."""
    longest = max((s for s in seconds if s is not None), default=0.0)
    chosen = UNITS[0]
    for unit in UNITS:
        if longest >= 2 * unit[1]:
            chosen = unit
    return chosen


def in_unit(seconds: float | None, unit: tuple[str, float]) -> float | None:
    return None if seconds is None else seconds / unit[1]


def totals(weeks: Sequence[WeekFigures]) -> dict[str, int]:
    """Sent, ignored, timed out and edits over all ``weeks``."""
    return {"sent": sum(w.sent for w in weeks), "ignored": sum(w.ignored for w in weeks),
            "timed_out": sum(w.timed_out for w in weeks), "edits": sum(w.edits for w in weeks)}
