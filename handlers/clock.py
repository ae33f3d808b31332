"""Time as a dependency: production reads the system clock, tests move a fake
one, so a 24-hour response timeout is exercised in milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Tells the current time (timezone-aware, UTC)."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class OffsetClock:
    """The real clock shifted by an adjustable offset (for tests and drills)."""

    def __init__(self, offset: timedelta = timedelta(0)) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta

    def jump_to(self, moment: datetime) -> None:
        """Make ``now()`` read ``moment`` (and run on from there)."""
        self.offset = moment - datetime.now(UTC)
