"""Outages ride out on their own: a generator down for two minutes parks the
workflows in PostgreSQL, a worker restart changes nothing, the person gets
one SMS about it, and everything completes when the generator is back."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.support.harness import Pipeline, eventually

OUTAGE_SMS = ("AI Reply Generator is not answering. Your emails wait and go ahead on their own when it is "
              "back; nothing to do.")


async def test_generator_down_for_two_minutes_rides_out_with_no_hand(make_pipeline: Any) -> None:
    # Default retry settings but a 1 s first park (30 s by default): tries at
    # about 1, 3, 7, 15, 31, 63 and 127 s after the first failure.
    p: Pipeline = await make_pipeline(RETRY_PARK_BASE="1")
    await p.ai.stop()
    down_at = time.monotonic()
    ids = await p.new_emails({"from_address": "Ann <ann@example.com>", "subject": "One"},
                             {"from_address": "Bob <bob@example.com>", "subject": "Two"},
                             {"from_address": "Cy <cy@example.com>", "subject": "Three"})

    async def all_parked() -> tuple[int, dict[str, Any]] | None:
        response = await p.http.get("/health")
        report: dict[str, Any] = response.json()
        return (response.status_code, report) if report["parked"].get("count") == 3 else None

    status, report = await eventually(all_parked, 30, "three workflows parked")
    assert (status, report["status"]) == (200, "ok")  # an outage of a peer is not the worker's illness
    outage = report["parked"]["by_peer"]["AI Reply Generator"]
    assert outage["count"] == 3 and outage["attempts"] >= 1 and outage["next_attempt_at"]
    detail = (await p.http.get(p.workflow_path(ids[0]))).json()
    assert detail["current_state"] == "ai_generating" and detail["park_stage"] == "draft"
    assert "AI Reply Generator" in detail["park_reason"] and detail["park_attempts"] >= 1
    assert [a["transition_reason"] for a in detail["audit_trail"]][-1].startswith("parked: AI Reply Generator")
    assert await p.sms_count(1) == [OUTAGE_SMS]
    page = (await p.http.get("/")).text  # the dashboard says the same, in words
    assert "Held by a peer outage (3)" in page and "<td>AI Reply Generator</td><td>3</td>" in page

    await asyncio.sleep(max(0.0, 50 - (time.monotonic() - down_at)))
    p.worker.stop()  # a restart while parked: the schedule lives in PostgreSQL
    p.worker.start()
    await p.wait_healthy()
    assert (await p.http.get("/health")).json()["parked"]["count"] == 3

    await asyncio.sleep(max(0.0, 120 - (time.monotonic() - down_at)))  # the outage lasts 2 minutes
    report = (await p.http.get("/health")).json()
    assert report["parked"]["count"] == 3 and report["parked"]["by_peer"]["AI Reply Generator"]["attempts"] >= 5
    await p.ai.start()

    approved: list[str] = []

    async def next_on_phone() -> str | None:
        mid = await p.awaiting_one()
        return mid if mid not in approved else None

    for n in range(3):
        approved.append(await eventually(next_on_phone, 90, f"draft {n + 1} on the phone"))
        await p.reply_sms("1")
    assert sorted(approved) == sorted(ids)
    for mid in ids:
        await p.reaches(mid, "reply_sent")
    assert len(await p.emails(3)) == 3
    assert p.sms.messages.count(OUTAGE_SMS) == 1  # one SMS about the outage, not one per email
    assert (await p.http.get("/health")).json()["parked"]["count"] == 0
    for mid in ids:
        assert [a["to_state"] for a in (await p.http.get(p.workflow_path(mid))).json()["audit_trail"]][-1] \
            == "reply_sent"


def outage_sms(peer: str) -> str:
    return f"{peer} is not answering. Your emails wait and go ahead on their own when it is back; nothing to do."


async def parked_at(p: Pipeline, mid: str, stage: str) -> dict[str, Any]:
    """``GET /workflow/{mid}`` once the workflow is parked at ``stage``."""
    async def parked() -> dict[str, Any] | None:
        detail: dict[str, Any] = (await p.http.get(p.workflow_path(mid))).json()
        return detail if detail.get("park_stage") == stage else None

    return await eventually(parked, 30, f"{mid} parked at {stage}")


async def outage_reported(p: Pipeline, peer: str) -> dict[str, Any]:
    """The parked workflow as /health reports it (a report is at most a second old)."""
    async def reported() -> dict[str, Any] | None:
        report: dict[str, Any] = (await p.http.get("/health")).json()
        return report if report["parked"]["count"] == 1 else None

    report = await eventually(reported, 5, "/health reports the parked workflow")
    assert report["status"] == "ok", report
    by_peer: dict[str, Any] = report["parked"]["by_peer"]
    assert set(by_peer) == {peer} and by_peer[peer]["count"] == 1, report
    return by_peer


async def nothing_parked(p: Pipeline) -> bool:
    return bool((await p.http.get("/health")).json()["parked"]["count"] == 0)


async def test_an_smtp_outage_parks_the_send_and_it_goes_out_once_when_back(make_pipeline: Any) -> None:
    p: Pipeline = await make_pipeline(RETRY_PARK_BASE="1")
    mid = await p.new_email(subject="Send me")
    await p.reaches(mid, "awaiting_user")
    p.smtp.stop()
    assert (await p.reply_sms("1")).json()["status"] == "accepted"

    detail = await parked_at(p, mid, "send")
    assert detail["current_state"] == "user_approved" and "SMTP" in detail["park_reason"]
    assert detail["audit_trail"][-1]["transition_reason"].startswith("parked: SMTP")
    # Nothing went out, so the claim on the send is released: it is sent afresh, not "cut off".
    [row] = await p.query("SELECT send_attempted_at FROM workflow_state WHERE message_id = %s", mid)
    assert row["send_attempted_at"] is None
    await outage_reported(p, "SMTP")
    await p.sms_at_least(2)
    assert p.sms.messages[1] == outage_sms("SMTP")

    p.smtp.controller.loop = asyncio.new_event_loop()  # aiosmtpd closed its own when it stopped
    p.smtp.start()
    await p.reaches(mid, "reply_sent")
    [email] = await p.emails(1)
    assert email["In-Reply-To"] == mid
    await eventually(lambda: nothing_parked(p), 30, "nothing parked any more")
    texts = await p.sms_count(3)  # the draft, the outage (once), "Sent to ..."
    assert texts.count(outage_sms("SMTP")) == 1 and texts[2].startswith("Sent to John Smith")


async def test_a_gateway_outage_parks_the_draft_unpresented_until_it_is_back(make_pipeline: Any) -> None:
    p: Pipeline = await make_pipeline(RETRY_PARK_BASE="1")
    await p.sms.stop()
    mid = await p.new_email(subject="Text me")

    detail = await parked_at(p, mid, "notify")
    assert detail["current_state"] == "ai_generated" and "SMS Gateway" in detail["park_reason"]
    trail = [(a["from_state"], a["to_state"]) for a in detail["audit_trail"]]
    assert trail[-3:] == [("ai_generated", "sms_sending"), ("sms_sending", "ai_generated"),
                          ("ai_generated", "ai_generated")]  # presented, withdrawn, parked
    assert detail["audit_trail"][-1]["transition_reason"].startswith("parked: SMS Gateway")
    await outage_reported(p, "SMS Gateway")

    async def parked_twice() -> bool:
        return bool((await p.http.get(p.workflow_path(mid))).json()["park_attempts"] >= 2)

    # Tried again (1 s later) and parked again: the outage notice's own retries are long over.
    await eventually(parked_twice, 30, "a second try, parked again")
    assert p.sms.sent == []  # the outage notice cannot go out: the gateway is what is down

    await p.sms.start()
    await p.reaches(mid, "awaiting_user")
    [draft] = await p.sms_count(1)  # presented once, when the gateway is back
    assert draft.startswith("John Smith: Text me\nDraft: ")
    await eventually(lambda: nothing_parked(p), 30, "nothing parked any more")
