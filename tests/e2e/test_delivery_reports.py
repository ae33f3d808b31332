"""Delivery reports end to end: the stand-in gateway posts ``sms:sent``,
``sms:delivered`` and ``sms:failed`` back to the worker's webhook (signed,
the current payload, docs/contracts.md §3) for each SMS it takes, and the
worker records them on the workflow (API, dashboard, audit) and presents
again, once, a draft that never reached the phone (docs/design.md, "Side
effects happen once")."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx

from tests.e2e.test_dashboard import demo  # noqa: F401 - the fixture: ``orchestrator demo`` as a newcomer starts it
from tests.support.harness import Pipeline, eventually

KEY = "a-shared-webhook-key"


async def reporting(make_pipeline: Any, **overrides: str) -> Pipeline:
    """A pipeline whose gateway reports what it texts to the worker's webhook, signed."""
    p: Pipeline = await make_pipeline(SMS_WEBHOOK_SIGNING_KEY=KEY, **overrides)
    p.sms.webhook_url = f"{p.base_url}/orchestrator/sms-response"
    p.sms.signing_key = KEY
    return p


async def api(p: Pipeline, mid: str) -> dict[str, Any]:
    response = await p.http.get(f"/workflow/{quote(mid, safe='')}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def delivery(p: Pipeline, mid: str, status: str) -> dict[str, Any]:
    """The workflow as the API shows it once its draft's status is ``status``."""
    async def shown() -> dict[str, Any] | None:
        body = await api(p, mid)
        return body if body["sms_delivery_status"] == status else None

    found: dict[str, Any] = await eventually(shown, 20, f"{mid}: sms_delivery_status = {status}")
    return found


def answered_2xx(p: Pipeline) -> None:
    assert p.sms.reports and all(200 <= status < 300 for _, _, status in p.sms.reports), p.sms.reports


async def test_a_delivered_draft_shows_on_its_page_and_in_the_api(make_pipeline: Any) -> None:
    p = await reporting(make_pipeline)
    mid = await p.new_email(subject="Lunch on Friday?")
    await p.sms_count(1)
    body = await delivery(p, mid, "delivered")
    assert body["current_state"] == "awaiting_user" and body["sms_message_id"] == "sms-1"
    assert body["sms_delivery_at"] is not None and body["sms_delivery_error"] is None
    reasons = [a["transition_reason"] for a in body["audit_trail"]]
    assert sum(r.startswith("draft delivered to the phone at ") for r in reasons) == 1, reasons
    assert sum(r.startswith("draft SMS sent by the gateway") for r in reasons) == 1, reasons
    page = await p.http.get(f"/workflows/{quote(mid, safe='')}")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "Draft delivered to the phone at " in page.text, page.text
    await p.sms_count(1)  # the reports texted nothing
    assert [event for event, _, _ in p.sms.reports] == ["sms:sent", "sms:delivered"]
    answered_2xx(p)


async def test_a_draft_that_failed_on_the_phone_is_texted_again_once(make_pipeline: Any) -> None:
    p = await reporting(make_pipeline, RETRY_PARK_BASE="1")
    told = itertools.count()

    def report(_: str) -> Sequence[str]:  # the first draft fails, reported twice (the gateway retried)
        return ("sms:sent", "sms:failed", "sms:failed") if next(told) == 0 else ("sms:sent", "sms:delivered")

    p.sms.report = report
    mid = await p.new_email(subject="Budget review")
    first, again = await p.sms_count(2, timeout=40)
    assert again == first  # the same draft, once more; no notice between
    body = await delivery(p, mid, "delivered")
    assert (body["current_state"], body["sms_message_id"]) == ("awaiting_user", "sms-2")
    reasons = [a["transition_reason"] for a in body["audit_trail"]]
    assert sum("did not reach the phone" in r for r in reasons) == 1, reasons
    assert sum(r.startswith("draft SMS failed") for r in reasons) == 1, reasons
    # A failure of the earlier presentation, posted late, does not withdraw the one on the phone now.
    assert await p.sms.post_event("sms:failed", "sms-1", "+15551234567") == 200
    await p.sms_count(2)
    assert (await api(p, mid))["current_state"] == "awaiting_user"
    answered_2xx(p)
    await p.reply_sms("1", key=KEY)
    await p.emails(1)


async def test_reports_of_other_sms_change_nothing_and_order_does_not_matter(make_pipeline: Any) -> None:
    p = await reporting(make_pipeline, REMINDER_AFTER="1")
    told = itertools.count()

    def report(_: str) -> Sequence[str]:  # the draft: in reverse order; the reminder: failed
        return ("sms:delivered", "sms:sent") if next(told) == 0 else ("sms:sent", "sms:failed")

    p.sms.report = report
    mid = await p.new_email(subject="Quarterly numbers")
    draft, reminder = await p.sms_count(2, timeout=40)  # the draft, and its one reminder
    assert reminder != draft
    await eventually(lambda: _reported(p, 4), 20, "four reports posted")
    for event in ("sms:sent", "sms:delivered", "sms:failed"):  # an id the worker never got back
        assert await p.sms.post_event(event, "sms-never-sent", "+15551234567") == 200
    body = await delivery(p, mid, "delivered")
    assert (body["current_state"], body["sms_message_id"], body["sms_delivery_error"]) == \
        ("awaiting_user", "sms-1", None)
    reasons = [a["transition_reason"] for a in body["audit_trail"]]
    assert not any("sent by the gateway" in r or "failed" in r for r in reasons), reasons
    await p.sms_count(2)  # nothing texted again
    answered_2xx(p)


async def _reported(p: Pipeline, n: int) -> bool:
    return len(p.sms.reports) >= n


async def test_the_demo_shows_its_drafts_delivered(demo: str) -> None:  # noqa: F811 - the fixture
    """``orchestrator demo``: its gateway reports back, so a draft's page says it reached the phone."""
    async with httpx.AsyncClient(base_url=demo, timeout=10) as http:
        async def awaiting() -> str | None:
            items = (await http.get("/workflow/pending")).json()["items"]
            return str(items[0]["message_id"]) if items else None

        mid = await eventually(awaiting, 60, "a demo draft on the phone")

        async def delivered() -> bool:
            body = (await http.get(f"/workflow/{quote(mid, safe='')}")).json()
            return bool(body["sms_delivery_status"] == "delivered")

        await eventually(delivered, 30, "the demo draft reported delivered")
        page = await http.get(f"/workflows/{quote(mid, safe='')}")
        assert "Draft delivered to the phone at " in page.text
