"""A reply whose send was cut off (worker died mid-SMTP) is never resent
blindly: the workflow fails with "outcome unknown" for a person to decide.
A reply to an email whose headers smuggle a line break goes out, once, with
no header or recipient the sender added."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from handlers.workflow import WorkflowState
from standins import Inbox, free_port
from streams.peers.smtp import SmtpSender
from streams.storage.repository import Pool, WorkflowRepository

from tests.support.factories import start_workflow

S = WorkflowState


async def test_a_cut_off_send_fails_as_outcome_unknown_without_touching_smtp(
    repo: WorkflowRepository, pool: Pool, make_stages: Any
) -> None:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        stages = make_stages(smtp=SmtpSender("127.0.0.1", port, "plain", "", ""), retry_backoff_base=0.01)
        mid = await start_workflow(repo, pool)
        for a, b in [(S.PENDING, S.AI_GENERATING), (S.AI_GENERATING, S.AI_GENERATED),
                     (S.AI_GENERATED, S.SMS_SENDING), (S.SMS_SENDING, S.AWAITING_USER),
                     (S.AWAITING_USER, S.USER_APPROVED)]:
            assert await repo.transition(mid, a, b, "test", ai_reply_text="Hello")
        async with repo.transaction() as tx:  # the state a crash mid-send leaves behind
            assert await tx.claim_send(mid, "<r1@example.com>")

        await stages.send(mid)  # the redelivered replies.approved message

        wf = await repo.get(mid)
        assert wf is not None and wf.current_state is S.FAILED and wf.failed_stage == "send"
        assert wf.error_message is not None and "may or may not have gone out" in wf.error_message
        assert wf.send_attempted_at is not None and wf.reply_message_id == "<r1@example.com>"
        assert inbox.attempts == 0 and inbox.messages == []
        await stages.send(mid)  # and again: still nothing
        assert inbox.attempts == 0
    finally:
        controller.stop()


HOSTILE = "\r\nBcc: victim@example.com"


@pytest.mark.parametrize("hostile", [
    {"subject": "Hi" + HOSTILE, "message_id": "<hostile-{n}@mail.example>" + HOSTILE},
    {"from_address": "John <john@example.com>" + HOSTILE, "in_reply_to": "<a@x>" + HOSTILE + " <b@x>"},
])
async def test_a_header_that_smuggles_a_line_is_cleaned_and_the_reply_goes_out_once(
    repo: WorkflowRepository, pool: Pool, make_stages: Any, hostile: dict[str, str]
) -> None:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        stages = make_stages(smtp=SmtpSender("127.0.0.1", port, "plain", "", ""), retry_backoff_base=0.01)
        email = {k: v.replace("{n}", uuid.uuid4().hex) for k, v in hostile.items()}
        mid = await approved(repo, pool, **email)

        await stages.send(mid)
        await stages.send(mid)  # a redelivery sends nothing more

        wf = await repo.get(mid)
        assert wf is not None
        assert wf.current_state is S.REPLY_SENT, wf.error_message
        [message] = inbox.messages
        assert inbox.envelopes[0][1] == ["john@example.com"] and inbox.attempts == 1
        assert sorted(message.keys()) == sorted([
            "From", "To", "Subject", "In-Reply-To", "References", "Message-ID", "Date",
            "Content-Type", "Content-Transfer-Encoding", "MIME-Version"])
        assert [a.addr_spec for a in message["To"].addresses] == ["john@example.com"]
        assert "victim" not in message["In-Reply-To"]
        assert "victim" not in message["References"] and "\n" not in str(message["Subject"])
    finally:
        controller.stop()


async def approved(repo: WorkflowRepository, pool: Pool, **email: object) -> str:
    mid = await start_workflow(repo, pool, **email)
    for a, b in [(S.PENDING, S.AI_GENERATING), (S.AI_GENERATING, S.AI_GENERATED),
                 (S.AI_GENERATED, S.SMS_SENDING), (S.SMS_SENDING, S.AWAITING_USER),
                 (S.AWAITING_USER, S.USER_APPROVED)]:
        assert await repo.transition(mid, a, b, "test", ai_reply_text="Hello")
    return mid
