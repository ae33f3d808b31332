"""The analytics page's pure parts: the figures' arithmetic (handlers/analytics.py)
and its line chart (streams/web/analytics.py), which escapes what it is given."""

from __future__ import annotations

from datetime import date

from handlers.analytics import WeekFigures, duration_unit, in_unit, totals
from streams.web.analytics import draw, duration, lines


def test_edit_rate_is_edits_per_sent_reply_and_none_without_one() -> None:
    assert WeekFigures(date(2025, 3, 3), 4, 1, 0, 2, None, None).edit_rate == 0.5
    assert WeekFigures(date(2025, 3, 3), 0, 1, 1, 0, None, None).edit_rate is None
    weeks = [WeekFigures(date(2025, 3, 3), 4, 1, 0, 2, None, None), WeekFigures(date(2025, 3, 10), 1, 0, 2, 1, 5, 9)]
    assert totals(weeks) == {"sent": 5, "ignored": 1, "timed_out": 2, "edits": 3}


def test_durations_read_in_the_largest_unit_that_keeps_them_above_two() -> None:
    assert duration_unit([None, 30.0]) == ("minutes", 60.0)
    assert duration_unit([7199.0]) == ("minutes", 60.0)
    assert duration_unit([7200.0, None]) == ("hours", 3600.0)
    assert duration_unit([3 * 86400.0]) == ("days", 86400.0)
    assert in_unit(5400.0, ("hours", 3600.0)) == 1.5 and in_unit(None, ("hours", 3600.0)) is None
    assert [duration(s) for s in (None, 45, 180, 3900, 8 * 86400 + 7200)] == ["", "45 s", "3 min", "1 h 05 min",
                                                                              "8 d 2 h"]


def test_the_line_chart_escapes_its_labels_and_breaks_where_a_week_has_no_value() -> None:
    svg = lines("<b>t</b>", ["2025-03-03", "2025-03-10", "2025-03-17", "2025-03-24"],
                [("<script>", "#000", [1.0, 0.5, None, 0.25])])
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "&lt;b&gt;t&lt;/b&gt;" in svg
    assert svg.count("<circle") == 3 and svg.count("<polyline") == 1  # the lone last point has no line
    assert "2025-03-10: &lt;script&gt; 0.5" in svg


def test_the_page_draws_three_charts_from_the_weeks() -> None:
    weeks = [WeekFigures(date(2025, 3, 3), 2, 1, 1, 1, 600.0, 3000.0),
             WeekFigures(date(2025, 3, 10), 0, 0, 0, 0, None, None)]
    drawn = draw(weeks, "Europe/Berlin")
    assert set(drawn) == {"outcome_chart", "edit_chart", "reply_time_chart"}
    assert "2025-03-03: 2 sent" in drawn["outcome_chart"] and "2025-03-03: 1 timed out" in drawn["outcome_chart"]
    assert "2025-03-03: edit rate 0.5" in drawn["edit_chart"]
    assert "(minutes)" in drawn["reply_time_chart"] and "2025-03-03: 90th percentile 50" in drawn["reply_time_chart"]
