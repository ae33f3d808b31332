"""When a reply approved for later leaves: ``1 at 9:00``, ``1 tomorrow 8am``
(docs/design.md, "Send later"). Pure: no I/O.

Read by hand on purpose, not by a natural-language date library: a few fixed
forms that always mean the same thing, nothing to install, and anything else
is refused (the person is told the forms) rather than guessed. The forms, in
the person's time zone (``TIMEZONE``):

- a time: ``9:30``, ``9am``, ``10 pm``, ``21:00``, ``at 9`` (without am/pm a
  24-hour clock: ``at 9`` is 09:00), optionally after ``at``;
- a day before it, optionally after ``on`` and before ``at``: ``today``,
  ``tonight`` (an hour 1-11 without am/pm is in the evening), ``tomorrow``
  (``tmrw``), a weekday (``mon``, ``monday``, ``tues``, ...), as in
  ``tomorrow 8am``, ``mon 9``, ``monday at 9:30``, ``on fri 8am``;
  or after it: ``9am tomorrow``, ``8:00 on fri``.

The moment is the next one ahead of ``now``: a bare time already past today
means tomorrow; a weekday means the next one, today if the time is still
ahead. ``today`` or ``tonight`` with a time already past is refused (the
person asked for a moment that is gone). A wall time the clocks skip when
summer time begins (02:30 on that night in Europe/Berlin) is taken an hour
later on the wall clock (03:30), the same instant plus the gap; a wall time
that happens twice when it ends is the first of the two still ahead.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

#: The forms the person is told about when a time is not understood.
ACCEPTED_FORMS = "1 at 9:00, 1 9am, 1 tomorrow 8am, 1 mon 9, 1 fri at 17:30"

_WEEKDAYS = {
    "mon": 0, "monday": 0,
    "tue": 1, "tues": 1, "tuesday": 1,
    "wed": 2, "weds": 2, "wednesday": 2,
    "thu": 3, "thur": 3, "thurs": 3, "thursday": 3,
    "fri": 4, "friday": 4,
    "sat": 5, "saturday": 5,
    "sun": 6, "sunday": 6,
}
_DAY = r"(?P<day>today|tonight|tomorrow|tmrw|" + "|".join(sorted(_WEEKDAYS, key=len, reverse=True)) + r")"
_TIME = r"(?P<hour>\d{1,2})(?:[:.](?P<minute>\d{2}))?\s*(?P<half>a\.?m\.?|p\.?m\.?)?"
_DAY_FIRST = re.compile(rf"^(?:on\s+)?{_DAY}\s*,?\s+(?:at\s+)?{_TIME}$", re.ASCII)
_TIME_FIRST = re.compile(rf"^(?:at\s+)?{_TIME}(?:\s+(?:on\s+)?{_DAY})?$", re.ASCII)


def send_time(when: str, now: datetime, tz: ZoneInfo) -> datetime | None:
    """The moment ``when`` names (one of the forms above), the next one after
    ``now`` (timezone-aware), in ``tz``; None for anything else."""
    text = " ".join(when.lower().replace(",", " ").split()).rstrip(".!")
    match = _DAY_FIRST.match(text) or _TIME_FIRST.match(text)
    if match is None:
        return None
    day = match.group("day")
    today = now.astimezone(tz).date()
    if day == "tonight":
        late = _tonight(match.group("hour"), match.group("minute"), match.group("half"))
        if late is None:
            return None
        tonight, after_midnight = late
        return _first_after(today + timedelta(days=1 if after_midnight else 0), tonight, tz, now)
    wall = _wall_time(match.group("hour"), match.group("minute"), match.group("half"), evening=False)
    if wall is None:
        return None
    if day == "today":
        return _first_after(today, wall, tz, now)
    if day in ("tomorrow", "tmrw"):
        return _first_after(today + timedelta(days=1), wall, tz, now)
    if day is not None:  # a weekday: this one if still ahead, else next week's
        ahead = (_WEEKDAYS[day] - today.weekday()) % 7
        return (_first_after(today + timedelta(days=ahead), wall, tz, now)
                or _first_after(today + timedelta(days=ahead + 7), wall, tz, now))
    return _first_after(today, wall, tz, now) or _first_after(today + timedelta(days=1), wall, tz, now)


#: ``tonight`` at these hours (0-4, and 12 without am/pm, or 12am) is after midnight.
AFTER_MIDNIGHT = 5


def _tonight(hour_text: str, minute_text: str | None, half: str | None) -> tuple[time, bool] | None:
    """``tonight`` + a time: the clock time and whether it is after midnight.
    An hour 1-11 without am/pm is in the evening; ``12`` and ``12am`` are
    midnight; 0-4 (or 1-4am) are after midnight; 5-11am is no time tonight."""
    hour, minute = int(hour_text), int(minute_text or 0)
    if minute > 59 or hour > 23:
        return None
    if half is not None and half.startswith("a"):
        if hour == 12 or 1 <= hour < AFTER_MIDNIGHT:
            return time(hour % 12, minute), True
        return None
    if half is None and (hour == 12 or hour < AFTER_MIDNIGHT):
        return time(hour % 12, minute), True
    if half is not None and hour == 12:
        return None  # 12pm is noon: not tonight
    wall = _wall_time(hour_text, minute_text, half, evening=True)
    return (wall, False) if wall is not None else None


def _wall_time(hour_text: str, minute_text: str | None, half: str | None, *, evening: bool) -> time | None:
    """The clock time written, or None when it is no time (25:00, 13pm, tonight 9am)."""
    hour, minute = int(hour_text), int(minute_text or 0)
    if minute > 59:
        return None
    if half is not None:
        if not 1 <= hour <= 12 or (evening and half.startswith("a")):
            return None
        hour = hour % 12 + (12 if half.startswith("p") else 0)
    elif evening and 1 <= hour <= 11:
        hour += 12
    if hour > 23:
        return None
    return time(hour, minute)


def _first_after(day: date, wall: time, tz: ZoneInfo, now: datetime) -> datetime | None:
    """The first instant after ``now`` at which the clocks in ``tz`` show
    ``wall`` on ``day``; a wall time they skip is read with the offset before
    the change (an hour later on the wall clock). None when it has passed."""
    for fold in (0, 1):  # a repeated wall time: the earlier instant first
        moment = datetime.combine(day, wall, tzinfo=tz).replace(fold=fold).astimezone(UTC).astimezone(tz)
        if moment > now:
            return moment
    return None


def format_send_time(moment: datetime, now: datetime, tz: ZoneInfo) -> str:
    """How an SMS says when a reply leaves: ``Wed 09:00``, in ``tz``; with the
    date when it is six days or more ahead (``Wed 9 Dec 09:00``), so next
    week's Wednesday is not read as this one."""
    local = moment.astimezone(tz)
    if moment - now >= timedelta(days=6):
        return f"{local:%a} {local.day} {local:%b %H:%M}"
    return f"{local:%a %H:%M}"
