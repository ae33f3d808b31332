"""Small SVG charts drawn on the server: no JavaScript, no library to ship.

Every label and tooltip is escaped; sizes are fixed so the dashboard's
layout does not jump as figures change.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 560, 180, 34, 34, 22


def _frame(title: str, body: str) -> str:
    return (f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
            f'aria-label="{html.escape(title)}" xmlns="http://www.w3.org/2000/svg">'
            f'<title>{html.escape(title)}</title>{body}</svg>')


def _axis(top: int) -> str:
    plot = HEIGHT - BOTTOM - TOP
    return "".join(
        f'<line x1="{LEFT}" x2="{WIDTH}" y1="{TOP + plot - plot * f:.1f}" y2="{TOP + plot - plot * f:.1f}" '
        f'stroke="#ddd"/><text x="{LEFT - 4}" y="{TOP + plot - plot * f + 4:.1f}" text-anchor="end" '
        f'font-size="10" fill="#666">{round(top * f)}</text>'
        for f in (0, 0.5, 1))


def stacked_bars(title: str, columns: Sequence[str], series: Sequence[tuple[str, str]],
                 values: Mapping[tuple[str, str], int], column_label: str = "") -> str:
    """One bar per column, stacked by series (name, colour); ``values[(column, series)]``."""
    totals = [sum(values.get((c, s), 0) for s, _ in series) for c in columns]
    top = max(totals + [1])
    plot = HEIGHT - BOTTOM - TOP
    step = (WIDTH - LEFT) / max(1, len(columns))
    parts = [_axis(top)]
    for i, column in enumerate(columns):
        y = float(TOP + plot)
        x = LEFT + i * step + step * 0.15
        for name, colour in series:
            n = values.get((column, name), 0)
            if not n:
                continue
            h = plot * n / top
            y -= h
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{step * 0.7:.1f}" height="{h:.1f}" '
                         f'fill="{colour}"><title>{html.escape(f"{column}: {n} {name}")}</title></rect>')
        if len(columns) <= 16 or i % 2 == 0:
            parts.append(f'<text x="{x + step * 0.35:.1f}" y="{HEIGHT - BOTTOM + 14}" text-anchor="middle" '
                         f'font-size="10" fill="#666">{html.escape(column[-5:] if column_label == "day" else column)}'
                         f'</text>')
    legend_x = LEFT
    for name, colour in series:
        parts.append(f'<rect x="{legend_x}" y="4" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{legend_x + 14}" y="13" font-size="11">{html.escape(name)}</text>')
        legend_x += 16 + 7 * len(name) + 14
    return _frame(title, "".join(parts))


DECISION_BUCKETS: tuple[tuple[str, float], ...] = (
    ("<1 min", 60), ("<5 min", 300), ("<15 min", 900), ("<1 h", 3600), ("<4 h", 14400), ("<1 day", 86400),
    ("longer", float("inf")),
)


def histogram(title: str, seconds: Sequence[float], buckets: Sequence[tuple[str, float]] = DECISION_BUCKETS,
              colour: str = "#4a7bd0") -> str:
    """How many ``seconds`` fall in each bucket (label, upper bound)."""
    counts = {label: 0 for label, _ in buckets}
    for value in seconds:
        label = next(label for label, upper in buckets if value < upper)
        counts[label] += 1
    return stacked_bars(title, [label for label, _ in buckets], [("answers", colour)],
                        {(label, "answers"): n for label, n in counts.items()})
