"""The dashboard's analytics page, ``/analytics`` (README, "Dashboard"):
replies sent, ignored and timed out per week; the edit rate (edits per sent
reply, which remembered instructions should push down); the time from an
email to its reply (median and 90th percentile); the top senders. The last
12 calendar weeks in TIMEZONE; the figures are counted in PostgreSQL
(``streams/storage/analytics.py``) and drawn here as SVG on the server, as
the status page's charts are (``charts.py``).

The figures change slowly, so the page's live part is empty: the reload every
few seconds (``?partial=1``) reads nothing.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from markupsafe import Markup

from handlers.analytics import WeekFigures, duration_unit, in_unit, totals
from streams.storage.analytics import AnalyticsReads
from streams.web import charts
from streams.web.appkeys import REPO, SETTINGS
from streams.web.pages import render

PATH = "/analytics"
OUTCOMES = (("sent", "#2e8b57"), ("ignored", "#999999"), ("timed out", "#e69500"))
EDIT_COLOUR, MEDIAN_COLOUR, P90_COLOUR = "#4a7bd0", "#2e8b57", "#c0392b"

#: One line: its name, colour and a value per column (None: no point that column).
Line = tuple[str, str, Sequence[float | None]]


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".") or "0"


def lines(title: str, columns: Sequence[str], series: Sequence[Line]) -> str:
    """One line per series over the columns, a dot (with its value as a
    tooltip) at each value; a column without a value breaks the line."""
    width, height, left, bottom, top_margin = charts.WIDTH, charts.HEIGHT, charts.LEFT, charts.BOTTOM, charts.TOP
    values = [v for _, _, vs in series for v in vs if v is not None]
    top = max(values + [0.0]) or 1.0
    plot = height - bottom - top_margin
    step = (width - left) / max(1, len(columns))
    parts = [f'<line x1="{left}" x2="{width}" y1="{top_margin + plot - plot * f:.1f}" '
             f'y2="{top_margin + plot - plot * f:.1f}" stroke="#ddd"/><text x="{left - 4}" '
             f'y="{top_margin + plot - plot * f + 4:.1f}" text-anchor="end" font-size="10" fill="#666">'
             f'{_number(top * f)}</text>' for f in (0, 0.5, 1)]
    for i, column in enumerate(columns):
        parts.append(f'<text x="{left + (i + 0.5) * step:.1f}" y="{height - bottom + 14}" text-anchor="middle" '
                     f'font-size="10" fill="#666">{html.escape(column[-5:])}</text>')
    legend_x = left
    for name, colour, vs in series:
        at = {i: (left + (i + 0.5) * step, top_margin + plot - plot * v / top, v)
              for i, v in enumerate(vs) if v is not None}
        runs: list[list[str]] = [[]]
        for i in range(len(vs)):
            if i in at:
                runs[-1].append(f"{at[i][0]:.1f},{at[i][1]:.1f}")
            else:
                runs.append([])
        parts += [f'<polyline class="series" fill="none" stroke="{colour}" stroke-width="2" '
                  f'points="{" ".join(run)}"/>' for run in runs if len(run) > 1]
        parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"><title>'
                  f'{html.escape(f"{columns[i]}: {name} {_number(v)}")}</title></circle>'
                  for i, (x, y, v) in at.items()]
        parts.append(f'<rect x="{legend_x}" y="4" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{legend_x + 14}" y="13" font-size="11">{html.escape(name)}</text>')
        legend_x += 16 + 7 * len(name) + 14
    return (f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="{html.escape(title)}" xmlns="http://www.w3.org/2000/svg">'
            f'<title>{html.escape(title)}</title>{"".join(parts)}</svg>')


def draw(weeks: Sequence[WeekFigures], timezone: str) -> dict[str, Markup]:
    """The page's three charts (each escapes its own labels: markup made here, not given)."""
    columns = [w.week.isoformat() for w in weeks]
    outcomes: dict[tuple[str, str], int] = {}
    for w in weeks:
        outcomes |= {(w.week.isoformat(), "sent"): w.sent, (w.week.isoformat(), "ignored"): w.ignored,
                     (w.week.isoformat(), "timed out"): w.timed_out}
    unit = duration_unit(s for w in weeks for s in (w.median_seconds, w.p90_seconds))
    return {
        "outcome_chart": Markup(charts.stacked_bars(
            f"Replies sent, ignored and timed out per week (weeks from Monday, {timezone})", columns, OUTCOMES,
            outcomes, column_label="day")),
        "edit_chart": Markup(lines("Edits per sent reply, per week", columns,
                                   [("edit rate", EDIT_COLOUR, [w.edit_rate for w in weeks])])),
        "reply_time_chart": Markup(lines(
            f"Time from the email to the reply sent, per week ({unit[0]})", columns,
            [("median", MEDIAN_COLOUR, [in_unit(w.median_seconds, unit) for w in weeks]),
             ("90th percentile", P90_COLOUR, [in_unit(w.p90_seconds, unit) for w in weeks])])),
    }


def duration(seconds: float | None) -> str:
    """A duration for the table: ``1 h 05 min``, ``3 min``, ``45 s``."""
    if seconds is None:
        return ""
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min" if minutes else f"{secs} s"


def rate(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


async def analytics_page(request: web.Request) -> web.Response:
    if request.query.get("partial"):
        return render(request, "analytics.html", "Analytics")  # the live part is empty: nothing to read
    repo, timezone = request.app[REPO], request.app[SETTINGS].timezone
    reads = AnalyticsReads(repo.pool, repo.clock)
    weeks = await reads.weeks(timezone)
    figures: dict[str, Any] = {
        "weeks": list(reversed(weeks)), "totals": totals(weeks), "senders": await reads.top_senders(timezone),
        "timezone": timezone, "duration": duration, "rate": rate, **draw(weeks, timezone)}
    return render(request, "analytics.html", "Analytics", **figures)


ROUTES = [web.get(PATH, analytics_page)]
