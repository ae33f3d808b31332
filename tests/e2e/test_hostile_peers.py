"""Peers and a gateway that misbehave never stall the worker nor act for the
person: an answer forwarded late is not applied to a draft texted after it
was written; a ``Retry-After`` of any size waits at most RETRY_AFTER_MAX; an
informational SMS never holds the next answer; a reminder's SMS call holds
no lock (issue 17, items 6, 10, 11)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from handlers.sms_text import HELP_SMS
from standins import webhook_body, webhook_headers

from tests.support.harness import PHONE, Pipeline, eventually


def too_many_requests(retry_after: str) -> web.Response:
    return web.json_response({"detail": "slow down"}, status=429, headers={"Retry-After": retry_after})


async def test_an_answer_written_before_its_draft_was_texted_is_not_applied(make_pipeline: Any) -> None:
    """A ``1`` the person wrote for Ann's draft reaches the orchestrator only
    after Ann's draft timed out and Bob's was texted: Bob's is not sent."""
    p: Pipeline = await make_pipeline(USER_RESPONSE_TIMEOUT="3", ANSWER_CLOCK_SKEW="1")
    ann = await p.new_email(from_address="Ann <ann@example.com>", subject="first")
    await p.reaches(ann, "awaiting_user")
    bob = await p.new_email(from_address="Bob <bob@example.com>", subject="second")
    assert p.sms.messages[0].startswith("Ann: first")
    written = p.sms.sent_at[0]  # the person answers Ann's draft as it arrives
    await p.reaches(ann, "timeout", timeout=15)
    await p.reaches(bob, "awaiting_user")
    assert p.sms.messages[1].startswith("Bob: second")
    body = json.dumps(webhook_body("1", PHONE, sms_id="m-late",
                                   received_at=written.isoformat(timespec="milliseconds"))).encode()
    response = await p.http.post("/orchestrator/sms-response", content=body, headers=webhook_headers(body, None))
    assert response.json()["status"] == "accepted"
    told = (await p.sms_count(3))[2]
    assert told == ("Your answer '1' was written before the draft reply to Bob was texted, so it was not "
                    "applied. Answer again: 1=Send 2=Edit 3=Ignore")
    assert await p.state(bob) == "awaiting_user"
    [row] = await p.query("SELECT outcome, message_id FROM inbound_sms WHERE sms_id = 'm-late'")
    assert row == {"outcome": "late", "message_id": bob}
    await p.emails(0)
    await p.reply_sms("1")  # written now, after Bob's draft reached the phone
    await p.reaches(bob, "reply_sent")
    [email] = await p.emails(1)
    assert email["To"].startswith("Bob")


async def test_a_huge_retry_after_from_the_generator_waits_at_most_retry_after_max(make_pipeline: Any) -> None:
    p: Pipeline = await make_pipeline(RETRY_AFTER_MAX="2")
    p.ai.failures, p.ai.retry_after = [429], "inf"
    mid = await p.new_email()
    await p.reaches(mid, "awaiting_user", timeout=20)
    [(refused_at, status), (answered_at, _)] = p.ai.answered
    assert status == 429 and answered_at - refused_at < 10
    assert len(p.ai.for_email(mid)) == 2


async def test_a_429_on_an_informational_sms_does_not_hold_the_next_answer(make_pipeline: Any) -> None:
    """The gateway answers the help SMS with 429 and ``Retry-After: 1e9``:
    the next ``1`` still sends the reply at once, and the help SMS goes out
    once the gateway takes it again (RETRY_AFTER_MAX later), not lost."""
    p: Pipeline = await make_pipeline(RETRY_AFTER_MAX="8")
    mid = await p.new_email()
    await p.reaches(mid, "awaiting_user")
    refused: list[float] = []

    def refuse_help_once(message: str) -> web.Response | None:
        if message == HELP_SMS and not refused:
            refused.append(time.monotonic())
            return too_many_requests("1e9")
        return None

    p.sms.refuse = refuse_help_once
    await p.reply_sms("what is this?")
    await eventually(lambda: asyncio.sleep(0, bool(refused)), 10, "the help SMS refused with 429")
    await p.reply_sms("1")
    await p.emails_at_least(1, timeout=10)
    assert time.monotonic() - refused[0] < 8, "the answer waited for the refused SMS's Retry-After"
    await p.reaches(mid, "reply_sent")
    texts = await p.sms_count(3, timeout=20)  # the draft, "Sent to ...", and the help SMS in the end
    assert texts[0].startswith("John Smith: ") and HELP_SMS in texts[1:]
    assert any(t.startswith("Sent to John Smith") for t in texts[1:])


async def test_a_reminder_whose_sms_call_hangs_holds_up_no_answer(make_pipeline: Any) -> None:
    p: Pipeline = await make_pipeline(REMINDER_AFTER="1")
    hang = 10.0
    p.sms.hold = lambda message: hang if message.startswith("Reminder: ") else 0.0
    mid = await p.new_email()
    await p.reaches(mid, "awaiting_user")
    [draft, reminder] = await p.sms_at_least(2, timeout=15)
    assert reminder == "Reminder: " + draft
    reminded_at = p.sms.sent_at[1]
    await p.reply_sms("3")  # while the reminder's SMS call hangs
    told = await p.sms_at_least(3, timeout=hang / 2)
    assert told[2] == "Ignored the email from John Smith. Nothing else waiting."
    assert p.sms.sent_at[2] - reminded_at < timedelta(seconds=hang / 2)
    assert await p.state(mid) == "user_ignored"
    await asyncio.sleep(max(0.0, hang - (datetime.now(reminded_at.tzinfo) - reminded_at).total_seconds()) + 1)
    await p.sms_count(3)  # the reminder's call ended; nothing more was texted
