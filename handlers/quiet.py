"""Quiet hours: when the person's phone stays silent (pure).

``QUIET_HOURS`` is ``HH:MM-HH:MM`` in ``TIMEZONE`` (an IANA name); a range
whose end is earlier than its start wraps past midnight (``22:00-07:00``).
During it no draft or reminder is texted; they go out when it ends. Answers
the person sends meanwhile are still acted on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo

_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time
    zone: ZoneInfo

    @classmethod
    def parse(cls, text: str, zone: str) -> QuietHours:
        """Raise ValueError with a reason fit for a configuration error."""
        match = _RANGE.match(text)
        if not match:
            raise ValueError("must look like 22:00-07:00")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if not (h1 < 24 and h2 < 24 and m1 < 60 and m2 < 60):
            raise ValueError("hours are 00-23 and minutes 00-59")
        if (h1, m1) == (h2, m2):
            raise ValueError("start and end must differ")
        return cls(time(h1, m1), time(h2, m2), ZoneInfo(zone))

    def contains(self, moment: datetime) -> bool:
        """Whether ``moment`` (timezone-aware) falls inside the quiet hours."""
        local = moment.astimezone(self.zone).time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


def is_quiet(quiet: QuietHours | None, moment: datetime) -> bool:
    return quiet is not None and quiet.contains(moment)
