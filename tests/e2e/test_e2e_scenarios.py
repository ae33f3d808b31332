"""The workflow's scenarios end to end: real worker, Kafka, PostgreSQL, peers.

Each assertion reads an effect at a peer (what the gateway or the SMTP
server received) as well as the database.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.support.harness import Pipeline


async def present_first(p: Pipeline, **email: object) -> str:
    mid = await p.new_email(**email)
    await p.reaches(mid, "awaiting_user")
    return mid


async def test_one_edit_then_approve(pipeline: Pipeline) -> None:
    mid = await present_first(pipeline)
    await pipeline.reply_sms("2 Reject the meeting with a Health Reason")
    second = (await pipeline.sms_count(2))[1]
    assert "Revised draft 2 (1. Reject the meeting with a Health Reason)" in second
    [first_call, edit_call] = pipeline.ai.for_email(mid)
    assert "context_instructions" not in first_call
    context = edit_call["context_instructions"]
    assert "Thanks for your email. Yes, that works for me. (draft 1)" in context  # previous draft
    assert "1. Reject the meeting with a Health Reason" in context  # case kept
    assert edit_call["tone"] == "professional"
    await pipeline.reaches(mid, "awaiting_user")
    await pipeline.reply_sms("send")
    [email] = await pipeline.emails(1)
    assert email.get_content().strip() == "Revised draft 2 (1. Reject the meeting with a Health Reason)"
    await pipeline.reaches(mid, "reply_sent")
    [row] = await pipeline.query("SELECT edit_iteration, user_edit_instructions FROM workflow_state"
                                 " WHERE message_id = %s", mid)
    assert row == {"edit_iteration": 1, "user_edit_instructions": "Reject the meeting with a Health Reason"}


async def test_three_edits_accumulate(pipeline: Pipeline) -> None:
    mid = await present_first(pipeline)
    instructions = ["decline politely", "make it shorter", "sign it Anna"]
    for n, text in enumerate(instructions, start=2):
        await pipeline.reply_sms(f"edit {text}")
        await pipeline.sms_count(n)
        await pipeline.reaches(mid, "awaiting_user")
    calls = pipeline.ai.for_email(mid)
    assert len(calls) == 4
    last = calls[-1]["context_instructions"]
    assert "1. decline politely\n2. make it shorter\n3. sign it Anna" in last
    assert "Revised draft 3 (2. make it shorter)" in last  # the previous draft travels too
    await pipeline.reply_sms("1")
    [email] = await pipeline.emails(1)
    assert email.get_content().strip() == "Revised draft 4 (3. sign it Anna)"


async def test_ignore(pipeline: Pipeline) -> None:
    mid = await present_first(pipeline)
    await pipeline.reply_sms("  IGNORE ")
    await pipeline.reaches(mid, "user_ignored")
    assert await pipeline.email_status(mid) == "ignored"
    msgs = await pipeline.sms_count(2)
    assert msgs[1] == "Ignored the email from John Smith. Nothing else waiting."
    await pipeline.emails(0)


async def test_edit_then_ignore(pipeline: Pipeline) -> None:
    mid = await present_first(pipeline)
    await pipeline.reply_sms("2 more casual")
    await pipeline.sms_count(2)
    await pipeline.reaches(mid, "awaiting_user")
    await pipeline.reply_sms("3")
    await pipeline.reaches(mid, "user_ignored")
    assert ("user_edit_requested", "ai_generating") in await pipeline.trail(mid)
    await pipeline.emails(0)


async def test_edit_limit(make_pipeline: Any) -> None:
    p = await make_pipeline(MAX_EDIT_ITERATIONS="1")
    mid = await present_first(p)
    await p.reply_sms("2 shorter")
    await p.sms_count(2)
    await p.reaches(mid, "awaiting_user")
    await p.reply_sms("2 even shorter")
    msgs = await p.sms_count(3)
    assert msgs[2] == "Edit limit (1) reached for this email. Reply 1 to send the draft or 3 to ignore it."
    assert await p.state(mid) == "awaiting_user"
    assert len(p.ai.for_email(mid)) == 2
    await p.reply_sms("1")
    await p.reaches(mid, "reply_sent")


async def test_three_emails_one_conversation_at_a_time(pipeline: Pipeline) -> None:
    ids = await pipeline.new_emails(
        {"from_address": "Ann <ann@example.com>", "subject": "One"},
        {"from_address": "Bob <bob@example.com>", "subject": "Two"},
        {"from_address": "Cy <cy@example.com>", "subject": "Three"},
    )
    names = dict(zip(ids, ["Ann", "Bob", "Cy"]))
    [sms] = await pipeline.sms_count(1)
    assert sms.endswith("1=Send 2=Edit 3=Ignore (+2 waiting)")
    # The first draft ready is presented at once; the others wait, oldest first.
    shown = next(mid for mid in ids if sms.startswith(names[mid] + ":"))
    rest = [mid for mid in ids if mid != shown]
    for mid in rest:
        await pipeline.reaches(mid, "ai_generated")
    await pipeline.sms_count(1)

    await pipeline.reply_sms("1")
    msgs = await pipeline.sms_count(3)
    a, b = (names[mid] for mid in rest)
    assert msgs[1] == f"Sent to {names[shown]} \u2713 Next: {a} (1 more after it)."
    assert msgs[2].startswith(f"{a}: ") and msgs[2].endswith("(+1 waiting)")
    await pipeline.reaches(rest[0], "awaiting_user")

    await pipeline.reply_sms("3")
    msgs = await pipeline.sms_count(5)
    assert msgs[3] == f"Ignored the email from {a}. Next: {b}."
    assert msgs[4].startswith(f"{b}: ") and msgs[4].endswith("1=Send 2=Edit 3=Ignore")
    await pipeline.reply_sms("1")
    await pipeline.reaches(rest[1], "reply_sent")
    msgs = await pipeline.sms_count(6)
    assert msgs[5] == f"Sent to {b} \u2713 Nothing else waiting."
    assert len(msgs) == 6  # never two drafts on the phone at once
    assert [m["To"].split()[0] for m in await pipeline.emails(2)] == [names[shown], b]


async def test_unknown_command_gets_help_and_changes_nothing(pipeline: Pipeline) -> None:
    mid = await present_first(pipeline)
    trail = await pipeline.trail(mid)
    await pipeline.reply_sms("what is this?")
    msgs = await pipeline.sms_count(2)
    assert msgs[1].startswith("Reply 1 to send the draft, 2 <what to change> to edit it")
    await pipeline.reply_sms("2")  # a bare 2 is not an edit
    assert (await pipeline.sms_count(3))[2] == msgs[1]
    assert await pipeline.state(mid) == "awaiting_user"
    assert await pipeline.trail(mid) == trail


async def test_sms_from_another_number_is_ignored_and_recorded(pipeline: Pipeline) -> None:
    mid = await present_first(pipeline)
    response = await pipeline.reply_sms("1", phone="+15559999999")
    assert response.status_code == 200
    assert response.json() == {"status": "ignored", "reason": "sender is not the configured phone"}
    [row] = await pipeline.query("SELECT phone_number, outcome FROM inbound_sms")
    assert row == {"phone_number": "+15559999999", "outcome": "foreign_number"}
    await pipeline.reply_sms("ok")  # the real phone still works afterwards
    await pipeline.reaches(mid, "reply_sent")
    await pipeline.emails(1)


async def test_the_same_webhook_twice_is_acted_on_once(pipeline: Pipeline) -> None:
    mid = await present_first(pipeline)
    first = await pipeline.reply_sms("2 warmer please", sms_id="m-77")
    again = await pipeline.reply_sms("2 warmer please", sms_id="m-77")
    assert (first.json()["status"], again.json()["status"]) == ("accepted", "duplicate")
    await pipeline.sms_count(2)
    await pipeline.reaches(mid, "awaiting_user")
    assert len(pipeline.ai.for_email(mid)) == 2
    [row] = await pipeline.query("SELECT edit_iteration FROM workflow_state WHERE message_id = %s", mid)
    assert row["edit_iteration"] == 1


async def test_the_old_flat_webhook_body_is_accepted(pipeline: Pipeline) -> None:
    mid = await present_first(pipeline)
    response = await pipeline.http.post("/orchestrator/sms-response", json={
        "from": "+1 555 123 4567", "message": "1", "device_id": "d", "timestamp": datetime.now(UTC).isoformat()})
    assert response.json()["status"] == "accepted"
    await pipeline.reaches(mid, "reply_sent")


LONG_DRAFT = ("Dear John,\n\n" + "Thank you for the detailed proposal. " * 30).strip()


async def test_a_long_draft_goes_as_a_link_to_a_readable_page(pipeline: Pipeline) -> None:
    pipeline.ai.draft_for = lambda body, n: LONG_DRAFT
    mid = await present_first(pipeline)
    [sms] = await pipeline.sms_count(1)
    link = next(word for word in sms.split() if word.startswith(pipeline.base_url))
    path = link.removeprefix(pipeline.base_url)
    assert path.startswith(pipeline.draft_path(mid) + "?t=")
    page = await pipeline.http.get(path)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "Thank you for the detailed proposal." in page.text
    assert (await pipeline.http.get(pipeline.draft_path(mid))).status_code == 404
    assert (await pipeline.http.get(pipeline.draft_path(mid) + "?t=0123456789abcdef0123456789abcdef")).status_code == 404
    await pipeline.reply_sms("1")
    [email] = await pipeline.emails(1)
    assert email.get_content().replace("\r\n", "\n").strip() == LONG_DRAFT


@pytest.mark.parametrize(
    ("fields", "expect_subject"),
    [
        ({"subject": None}, "Re: (no subject)"),
        ({"subject": "Re: RE: Budget", "body_text": ""}, "Re: Budget"),
        ({"subject": "HTML only", "body_text": None,
          "body_html": "<html><body><p>Hello <b>there</b></p><script>x()</script></body></html>"}, "Re: HTML only"),
        ({"subject": "Big", "body_text": "lorem ipsum " * 1800}, "Re: Big"),
        ({"subject": "Привет 👋 встреча", "from_address": "Иван Петров <ivan@example.ru>",
          "body_text": "Здравствуйте! 😀"}, "Re: Привет 👋 встреча"),
        ({"subject": "Odd id", "message_id": "<a/b+c%20d@mail.example>"}, "Re: Odd id"),
    ],
    ids=["no-subject", "re-re-empty-body", "html-only", "20kB-body", "cyrillic-emoji", "slash-plus-percent-id"],
)
async def test_awkward_emails(pipeline: Pipeline, fields: dict[str, object], expect_subject: str) -> None:
    mid = await present_first(pipeline, **fields)
    [sms] = await pipeline.sms_count(1)
    assert sms.endswith("1=Send 2=Edit 3=Ignore")
    if "body_html" in fields:
        [row] = await pipeline.query("SELECT email_body_preview FROM workflow_state WHERE message_id = %s", mid)
        assert row["email_body_preview"] == "Hello there"
    await pipeline.reply_sms("1")
    [email] = await pipeline.emails(1)
    assert email["Subject"] == expect_subject
    assert email["In-Reply-To"] == mid
    await pipeline.reaches(mid, "reply_sent")
    status = await pipeline.http.get(f"/health")
    assert status.json()["workflows"] == {"reply_sent": 1}


async def test_pending_emails_are_taken_oldest_first_however_old(pipeline: Pipeline) -> None:
    """Drafts wait for the phone oldest email first, however old (no time
    window). Both are drafted while another draft holds the phone, so which
    generation finished first does not matter: a slow one never holds the
    phone, the oldest *ready* one is presented."""
    from datetime import UTC, datetime, timedelta

    first = await present_first(pipeline, subject="on the phone")
    newer, older = await pipeline.new_emails(
        {"subject": "newer", "received_at": datetime.now(UTC) - timedelta(hours=1)},
        {"subject": "older", "received_at": datetime.now(UTC) - timedelta(days=3)},
    )
    await pipeline.reaches(newer, "ai_generated")
    await pipeline.reaches(older, "ai_generated")
    await pipeline.reply_sms("3")
    await pipeline.reaches(first, "user_ignored")
    await pipeline.reaches(older, "awaiting_user")
    [draft] = [t for t in (await pipeline.sms_count(3))[1:] if "1=Send" in t]
    assert draft.startswith("John Smith: older") and draft.endswith("(+1 waiting)")
    assert await pipeline.state(newer) == "ai_generated"


async def test_machines_newsletters_and_yourself_get_no_draft(make_pipeline: Any) -> None:
    p = await make_pipeline(SKIP_SENDERS="*@news.example.com")
    skipped = await p.new_emails(
        {"from_address": "Weekly Digest <digest@news.example.com>", "subject": "This week"},
        {"from_address": "GitHub <noreply@github.com>", "subject": "[repo] CI passed"},
        {"from_address": "MAILER-DAEMON@mx.example.com", "subject": "Undelivered Mail Returned to Sender"},
        {"from_address": "Me <me@example.com>", "subject": "Note to self"},
    )
    for mid in skipped:
        await p.reaches(mid, "filtered")
        assert await p.email_status(mid) == "filtered"
    real = await p.new_email(from_address="Ann <ann@example.com>", subject="Lunch?")
    [sms] = await p.sms_count(1)
    assert sms.startswith("Ann: Lunch?") and sms.endswith("1=Send 2=Edit 3=Ignore")  # nothing else waits
    await p.reaches(real, "awaiting_user")
    assert [r["email_message_id"] for r in p.ai.requests] == [real]
    detail = (await p.http.get(p.workflow_path(skipped[1]))).json()
    assert detail["current_state"] == "filtered"
    assert detail["audit_trail"][-1]["transition_reason"] == "no draft: automated sender (noreply)"
    reasons = [(await p.http.get(p.workflow_path(m))).json()["audit_trail"][-1]["transition_reason"]
               for m in (skipped[0], skipped[3])]
    assert reasons == ["no draft: SKIP_SENDERS *@news.example.com", "no draft: sent from this account"]
    await p.sms_count(1)
