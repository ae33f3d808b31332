"""The analytics page (streams/web/analytics.py) in a real browser (Chromium)
over the real worker, Kafka and PostgreSQL, with the data of a run: drafts
answered by SMS (sent, some after edits, one ignored) and one timed out over
the API; the page, behind the sign-in, shows the counts and draws the charts."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import unquote

from tests.support.browser import Browser
from tests.support.harness import Pipeline, eventually

TOKEN = "analytics-token-Zx81"
ALICE, BOB, CAROL = "Alice <alice@example.com>", "Bob <bob@example.com>", "Carol <carol@example.com>"
#: What the person answers to each email's draft, in turn ("timeout": the API times it out).
PLAN: dict[str, list[str]] = {
    "Offsite agenda": ["2 make it shorter", "1"],  # sent after 1 edit
    "Invoice 42": ["1"],  # sent as drafted
    "Newsletter": ["3"],  # ignored
    "Holiday plans": ["timeout"],
    "Contract review": ["2 warmer please", "2 sign as Jack", "1"],  # sent after 2 edits
}
SENDERS = {"Offsite agenda": ALICE, "Invoice 42": BOB, "Newsletter": ALICE, "Holiday plans": CAROL,
           "Contract review": BOB}


async def answer_every_draft(p: Pipeline, ids: dict[str, str]) -> None:
    """Answer whichever draft is on the phone, as ``PLAN`` says, until every answer is given."""
    left = {ids[subject]: list(answers) for subject, answers in PLAN.items()}
    deadline = time.monotonic() + 180
    for _ in range(sum(len(a) for a in PLAN.values())):
        assert time.monotonic() < deadline, f"answers left: {left}"

        async def on_phone() -> str | None:
            mid = await p.awaiting_one()
            return mid if mid is not None and left.get(mid) else None

        mid = await eventually(on_phone, 60, "a draft on the phone")
        assert mid is not None
        answer = left[mid].pop(0)
        [row] = await p.query("SELECT draft_code, edit_iteration FROM workflow_state WHERE message_id = %s", mid)
        if answer == "timeout":
            timed_out = await p.http.post(f"/workflow/timeout/{mid}", headers={"Authorization": f"Bearer {TOKEN}"})
            assert timed_out.status_code == 200, timed_out.text
        else:
            assert (await p.reply_sms(f"{row['draft_code']} {answer}")).status_code == 200

        async def answered(mid: str = mid, seen: int = row["edit_iteration"]) -> bool:
            rows = await p.query("SELECT current_state, edit_iteration FROM workflow_state WHERE message_id = %s",
                                 mid)
            return bool(rows[0]["current_state"] != "awaiting_user" or rows[0]["edit_iteration"] != seen)
        await eventually(answered, 30, f"{answer!r} applied to {mid}")
    assert not any(left.values()), left


async def test_the_analytics_page_shows_a_runs_counts_and_draws_its_charts(make_pipeline: Any) -> None:
    p: Pipeline = await make_pipeline(API_TOKEN=TOKEN, TIMEZONE="Europe/Berlin")
    made = await p.new_emails(*({"subject": subject, "from_address": SENDERS[subject]} for subject in PLAN))
    ids = dict(zip(PLAN, made, strict=True))
    await answer_every_draft(p, ids)
    await p.emails(3)
    for subject, state in [("Offsite agenda", "reply_sent"), ("Invoice 42", "reply_sent"),
                           ("Newsletter", "user_ignored"), ("Holiday plans", "timeout"),
                           ("Contract review", "reply_sent")]:
        await p.reaches(ids[subject], state)
    [edits] = await p.query("SELECT sum(jsonb_array_length(edit_history)) AS n FROM workflow_state"
                            " WHERE current_state = 'reply_sent'")
    assert edits["n"] == 3  # the run made what the page should count

    anonymous = await p.http.get("/analytics", follow_redirects=False)
    assert anonymous.status_code == 303 and unquote(anonymous.headers["Location"]) == "/signin?next=/analytics"
    b = Browser(p.base_url)
    try:
        await b.open("/analytics")
        assert "/signin?next=" in await b.url()
        await b.type_and_send("input[name=token]", TOKEN, "form[action='/signin'] button")
        page = await b.wait_for_text("Top senders", 20)
        assert (await b.url()).endswith("/analytics")
        assert "Europe/Berlin" in page

        async def figure(name: str) -> str:
            return str((await b.find(f"[data-figure={name}] b")).text)
        assert [await figure(n) for n in ("sent", "ignored", "timed_out", "edits")] == ["3", "1", "1", "3"]
        rows = await b.script(
            "return [...document.querySelectorAll('#analytics-weeks tbody tr')]"
            ".map(r => [...r.cells].map(c => c.textContent))")
        assert len(rows) == 12
        busy = [r for r in rows if r[1:5] != ["0", "0", "0", "0"]]
        # Every answer of the run was given this week (a run across Monday midnight splits in two rows).
        assert sum(int(r[1]) for r in busy) == 3 and sum(int(r[4]) for r in busy) == 3
        if len(busy) == 1:
            assert busy[0][1:6] == ["3", "1", "1", "3", "1.00"] and busy[0][6] and busy[0][7]
        senders = await b.script(
            "return [...document.querySelectorAll('#analytics-senders tbody tr')]"
            ".map(r => [...r.cells].map(c => c.textContent))")
        assert senders == [["alice@example.com", "2", "1", "1"], ["bob@example.com", "2", "2", "0"],
                           ["carol@example.com", "1", "0", "0"]]

        # The charts, as drawn in the browser: three SVGs with their bars and points.
        charts = await b.script(
            "return [...document.querySelectorAll('#analytics-charts svg.chart')].map(s => ({"
            "label: s.getAttribute('aria-label'), width: s.getBoundingClientRect().width,"
            "bars: [...s.querySelectorAll('rect > title')].map(t => t.textContent),"
            "points: [...s.querySelectorAll('circle > title')].map(t => t.textContent),"
            "lines: s.querySelectorAll('polyline').length}))")
        titles = ("Replies sent, ignored and timed out per week", "Edits per sent reply, per week",
                  "Time from the email to the reply sent, per week")
        assert len(charts) == 3 and all(c["label"].startswith(t) for c, t in zip(charts, titles, strict=True))
        assert all(c["width"] > 100 for c in charts)  # rendered, not just present
        outcome, edit_rate, reply_time = charts
        counted = {name: sum(int(t.split(": ")[1].split(" ", 1)[0]) for t in outcome["bars"] if t.endswith(name))
                   for name in ("sent", "ignored", "timed out")}
        assert counted == {"sent": 3, "ignored": 1, "timed out": 1}
        assert all(": median " in t or ": 90th percentile " in t for t in reply_time["points"])
        if len(busy) == 1:  # one point a line, in the run's week
            week = busy[0][0]
            assert edit_rate["points"] == [f"{week}: edit rate 1"]
            assert [t.split(" ", 2)[1] for t in reply_time["points"]] == ["median", "90th"]
            assert reply_time["lines"] == edit_rate["lines"] == 0  # one point is no line
        await b.shot("dashboard-analytics")
        # The header links to it from every page.
        await b.open("/")
        await b.click("header a[href='/analytics']")
        await b.wait_for_text("Top senders", 20)
    finally:
        b.close()
