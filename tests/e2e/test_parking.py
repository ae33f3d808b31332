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

    async def all_parked() -> dict[str, Any] | None:
        report = (await p.http.get("/health")).json()
        return report if report["parked"].get("count") == 3 else None

    report = await eventually(all_parked, 30, "three workflows parked")
    assert report["status"] == "ok"  # an outage of a peer is not the worker's illness
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

    await asyncio.sleep(max(0.0, 120 - (time.monotonic() - down_at)))
    assert {await p.state(mid) for mid in ids} == {"ai_generating"}
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
