"""A reply whose send was cut off (worker died mid-SMTP) is never resent
blindly: the workflow fails with "outcome unknown" for a person to decide."""

from __future__ import annotations

import httpx

from handlers.clock import OffsetClock
from handlers.workflow import WorkflowState
from streams.peers.ai import AiReplyGenerator
from streams.peers.sms import SmsGateway
from streams.peers.smtp import SmtpSender
from streams.repository import Pool, WorkflowRepository
from streams.settings import Settings
from streams.stages import Stages

from .peers import _Inbox, free_port
from .test_repository import start_workflow

S = WorkflowState


async def test_a_cut_off_send_fails_as_outcome_unknown_without_touching_smtp(
    repo: WorkflowRepository, pool: Pool, clock: OffsetClock, database: str
) -> None:
    from aiosmtpd.controller import Controller

    inbox, port = _Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings = Settings(database_url=database, email_address="me@example.com",  # type: ignore[arg-type]
                        email_password="pw", your_phone_number="+15551234567", retry_backoff_base=0.01)
    try:
        async with httpx.AsyncClient() as http:
            stages = Stages(settings=settings, repo=repo, clock=clock,
                            ai=AiReplyGenerator(http, "http://127.0.0.1:9"),
                            sms=SmsGateway(http, f"http://127.0.0.1:{free_port()}"),
                            smtp=SmtpSender("127.0.0.1", port, "plain", "", ""))
            mid = await start_workflow(repo, pool)
            for a, b in [(S.PENDING, S.AI_GENERATING), (S.AI_GENERATING, S.AI_GENERATED),
                         (S.AI_GENERATED, S.SMS_SENDING), (S.SMS_SENDING, S.AWAITING_USER),
                         (S.AWAITING_USER, S.USER_APPROVED)]:
                assert await repo.transition(mid, a, b, "test", ai_reply_text="Hello")
            async with repo.transaction() as tx:  # the state a crash mid-send leaves behind
                await tx.conn.execute("UPDATE workflow_state SET send_attempted_at = now(),"
                                      " reply_message_id = '<r1@example.com>' WHERE message_id = %s", (mid,))

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
