"""From a processed_emails row to a threaded reply in the inbox, steered by SMS."""

from __future__ import annotations

from tests.support.harness import PHONE, Pipeline


async def test_approve_sends_a_threaded_reply(pipeline: Pipeline) -> None:
    mid = await pipeline.new_email(subject="Meeting tomorrow at 2pm?", in_reply_to="<earlier@mail.example>")
    [draft_sms] = await pipeline.sms_count(1)
    assert pipeline.sms.sent[0]["to"] == PHONE
    assert draft_sms.startswith("John Smith: Meeting tomorrow at 2pm?\nDraft: Thanks for your email.")
    assert draft_sms.endswith("1=Send 2=Edit 3=Ignore")
    await pipeline.reaches(mid, "awaiting_user")

    response = await pipeline.reply_sms("1")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "accepted"

    [email] = await pipeline.emails(1)
    assert email["To"] == "John Smith <john@example.com>"
    assert email["From"] == "me@example.com"
    assert email["Subject"] == "Re: Meeting tomorrow at 2pm?"
    assert email["In-Reply-To"] == mid
    assert email["References"] == f"<earlier@mail.example> {mid}"
    assert email.get_content().strip() == "Thanks for your email. Yes, that works for me. (draft 1)"
    await pipeline.reaches(mid, "reply_sent")
    assert await pipeline.email_status(mid) == "sent"
    [row] = await pipeline.query("SELECT reply_message_id FROM workflow_state WHERE message_id = %s", mid)
    assert row["reply_message_id"] == email["Message-ID"]
    assert await pipeline.trail(mid) == [
        (None, "pending"), ("pending", "ai_generating"), ("ai_generating", "ai_generated"),
        ("ai_generated", "sms_sending"), ("sms_sending", "awaiting_user"),
        ("awaiting_user", "user_approved"),
        ("user_approved", "user_approved"),  # the send claimed: our Message-ID recorded before SMTP
        ("user_approved", "reply_sent"),
    ]
    confirmation = await pipeline.sms_count(2)
    assert confirmation[1] == "Sent to John Smith \u2713 Nothing else waiting."
    assert pipeline.smtp.logins == ["me@example.com"]
