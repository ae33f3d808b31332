"""VIP drafts jump the queue, on the real worker, Kafka and PostgreSQL: a
sender of VIP_SENDERS, or one marked on the dashboard (in Chromium), has
their draft put on the phone before older ones and generated before older
ones, and the SMS begins ``VIP`` (docs/design.md, "Senders who come first")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from tests.support.browser import Browser
from tests.support.harness import Pipeline, eventually

START = datetime.now(UTC) - timedelta(hours=2)


def email(sender: str, subject: str, minutes: int) -> dict[str, Any]:
    return {"from_address": sender, "subject": subject, "received_at": START + timedelta(minutes=minutes)}


async def all_in(p: Pipeline, mids: list[str], state: str) -> None:
    for mid in mids:
        await p.reaches(mid, state, timeout=60)


async def mark_on_the_dashboard(p: Pipeline, typed: str, kept: str) -> None:
    b = Browser(p.base_url)
    try:
        await b.open("/vips")
        await b.wait_for_text("No sender is marked VIP here.")
        assert "*@boss.example" in await b.text()  # VIP_SENDERS, shown as the settings give it
        await b.type_and_send("#add-vip input[name=pattern]", typed, "#add-vip button")
        await b.wait_for_text("Marked VIP: this sender's drafts now come first", 20)
        assert kept in await b.text()
        await b.shot("dashboard-vip-senders")
    finally:
        b.close()
    assert await p.query("SELECT pattern FROM vip_senders") == [{"pattern": kept}]
    forged = await p.http.post("/vips/add", data={"pattern": "*"})  # no CSRF token: refused, nothing marked
    assert forged.status_code == 403 and await p.query("SELECT pattern FROM vip_senders") == [{"pattern": kept}]


async def drafts(p: Pipeline, n: int) -> list[str]:
    """The draft SMS at the gateway (an answer's own SMS left out), once there are ``n``."""
    def found() -> list[str]:
        return [t for t in p.sms.messages if "1=Send" in t]

    await p._at_least(found, n, 30, "draft SMS")
    return found()


async def test_vip_drafts_jump_the_queue_on_the_phone_and_say_vip(make_pipeline: Any) -> None:
    p: Pipeline = await make_pipeline(VIP_SENDERS="*@boss.example")
    await mark_on_the_dashboard(p, "Carol <Carol@Partner.example>", "carol@partner.example")
    ordinary = await p.new_emails(*(email(f"Person {n} <p{n}@example.com>", f"Ordinary {n}", n) for n in range(3)))
    await eventually(p.awaiting_one, 30, "a draft on the phone")  # one at a time: the first drafted,
    on_phone = await p.awaiting_one()
    waiting = [m for m in ordinary if m != on_phone]
    await all_in(p, waiting, "ai_generated")  # the other two drafted and waiting

    boss = await p.new_email(**email("The Boss <boss@boss.example>", "Budget", 60))
    await p.reaches(boss, "ai_generated")
    await p.reply_sms("1")  # the oldest sent: the next on the phone is the boss's, not the older ones
    await p.reaches(boss, "awaiting_user")
    texts = await drafts(p, 2)
    assert texts[0].startswith("Person ") and texts[1].startswith("VIP The Boss: Budget"), texts
    assert [await p.state(m) for m in waiting] == ["ai_generated", "ai_generated"]

    carol = await p.new_email(**email("Carol <carol@partner.example>", "Contract", 61))  # marked on the dashboard
    await p.reaches(carol, "ai_generated")
    before = len(p.sms.messages)
    await p.reply_sms("list")
    listed = (await p.sms_at_least(before + 1))[before]
    assert listed.startswith("4 open: (*VIP)"), listed
    assert [line[0] == "*" for line in listed.splitlines()[1:5]] == [False, False, True, True], listed
    await p.reply_sms("1")  # the boss's sent: Carol's comes next
    await p.reaches(carol, "awaiting_user")
    assert (await drafts(p, 3))[2].startswith("VIP Carol: Contract")
    await p.reply_sms("1")  # then the oldest ordinary one waiting, not marked
    await p.reaches(waiting[0], "awaiting_user")
    n = ordinary.index(waiting[0])
    assert (await drafts(p, 4))[3].startswith(f"Person {n}: Ordinary {n}")
    trail = (await p.http.get(p.workflow_path(carol))).json()["audit_trail"]
    assert trail[0]["transition_reason"] == "picked up by the poller; VIP sender (carol@partner.example)"
    await p.emails(3)

    # A workflow's page marks its sender: the email still waiting moves up at once.
    last = waiting[1]
    b = Browser(p.base_url)
    try:
        await b.open("/workflows/" + quote(last, safe=""))
        await b.wait_for_text("Mark this sender VIP")
        await b.click("#mark-vip button")
        await b.wait_for_text("VIP sender: this draft comes first", 20)
    finally:
        b.close()
    n = ordinary.index(last)
    assert await p.query("SELECT pattern FROM vip_senders ORDER BY pattern") == [
        {"pattern": "carol@partner.example"}, {"pattern": f"p{n}@example.com"}]
    assert await p.query("SELECT priority FROM workflow_state WHERE message_id = %s", last) == [{"priority": 1}]


async def test_a_vip_email_queued_behind_many_is_generated_first(make_pipeline: Any) -> None:
    p: Pipeline = await make_pipeline(VIP_SENDERS="*@boss.example", GENERATION_CONCURRENCY="1")
    p.ai.delay = 2.0
    ordinary = await p.new_emails(*(email(f"Person {n} <p{n}@example.com>", f"Ordinary {n}", n) for n in range(5)))
    await eventually(lambda: _at_least(p, 1), 30, "the first draft asked for")
    boss = await p.new_email(**email("The Boss <boss@boss.example>", "Budget", 60))
    await eventually(lambda: _at_least(p, 6), 60, "six drafts asked for")
    order = [r["email_message_id"] for r in p.ai.requests]
    # One was being generated when the boss's email came: the boss's is next, not sixth; then the oldest first.
    assert len(order) == 6 and order[0] in ordinary and order[1] == boss, order
    assert order[2:] == [m for m in ordinary if m != order[0]], order


async def _at_least(p: Pipeline, n: int) -> bool:
    return len(p.ai.requests) >= n
