"""The work each agent does, one method per stage.

Each method reads the workflow, calls a peer under the retry policy, and
records the outcome with a compare-and-set transition whose follow-up
messages go through the outbox in the same transaction. A redelivered message
finds the workflow already moved on and does nothing. Every failure ends in a
written decision: ``failed`` with the stage and error, a dead-letter record,
and one SMS to the person.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from handlers.clock import Clock
from handlers.commands import CommandKind, parse_command
from handlers.decisions import decide_command
from handlers.edits import context_instructions
from handlers.emails import Reply, build_reply, new_message_id, sender_name
from handlers.errors import OutcomeUnknownError, PeerError, PermanentError
from handlers.links import draft_url
from handlers.messages import (
    DeadLetter,
    DraftReady,
    EditRequested,
    InboundSms,
    ReplyApproved,
)
from handlers.retry import RetryPolicy
from handlers.sms_text import (
    DraftSms,
    render_draft_sms,
    render_failed_sms,
    render_ignored_sms,
    render_sent_sms,
)
from handlers.workflow import WorkflowState, is_terminal

from . import topics
from .peers.ai import AiReplyGenerator
from .peers.sms import SmsGateway
from .peers.smtp import SmtpSender
from .repository import Email, Transaction, Workflow, WorkflowRepository
from .retrying import Exhausted, call_with_retries
from .settings import Settings

S = WorkflowState
log = logging.getLogger(__name__)


@dataclass
class Stages:
    settings: Settings
    repo: WorkflowRepository
    ai: AiReplyGenerator
    sms: SmsGateway
    smtp: SmtpSender
    clock: Clock

    @property
    def policy(self) -> RetryPolicy:
        s = self.settings
        return RetryPolicy(s.max_retry_attempts, s.retry_backoff_base, s.retry_backoff_max)

    @property
    def phone(self) -> str:
        return self.settings.your_phone_number

    # ------------------------------------------------------------------ draft

    async def draft(self, message_id: str) -> None:
        """Generate (or regenerate after an edit) the draft of ``message_id``."""
        wf = await self.repo.get(message_id)
        if wf is None:
            log.warning("draft: no workflow for %s", message_id)
            return
        if wf.current_state in (S.PENDING, S.USER_EDIT_REQUESTED):
            reason = "edit requested" if wf.current_state is S.USER_EDIT_REQUESTED else "draft requested"
            if not await self.repo.transition(message_id, wf.current_state, S.AI_GENERATING, reason):
                return
        elif wf.current_state is not S.AI_GENERATING:
            return  # already past this stage: a redelivery
        history = list(wf.edit_history)
        is_edit = wf.edit_iteration > len(history)
        context = None
        if is_edit:
            instructions = [h["instructions"] for h in history] + [wf.user_edit_instructions or ""]
            context = context_instructions(wf.ai_reply_text, instructions)
        try:
            draft, _ = await call_with_retries(
                lambda: self.ai.generate(
                    message_id,
                    tone=self.settings.ai_reply_tone,
                    max_length=self.settings.ai_reply_max_length,
                    context_instructions=context,
                ),
                self.policy,
                f"draft for {message_id}",
            )
        except (Exhausted, PermanentError) as exc:
            await self.fail(wf, S.AI_GENERATING, "draft", exc, topics.EMAILS_PENDING)
            return
        if is_edit:
            history.append({"instructions": wf.user_edit_instructions, "draft": draft.full_draft})
        async with self.repo.transaction() as tx:
            if await tx.transition(
                message_id, S.AI_GENERATING, S.AI_GENERATED,
                "draft regenerated" if is_edit else "draft generated",
                ai_reply_text=draft.full_draft,
                ai_draft_id=draft.draft_id,
                ai_model_version=draft.model_version,
                ai_reply_generated_at=self.clock.now(),
                edit_history=history,
                error_message=None,
            ):
                await tx.publish(topics.DRAFTS_READY, message_id,
                                 DraftReady(message_id=message_id, iteration=wf.edit_iteration))

    # ---------------------------------------------------------------- present

    async def present(self) -> None:
        """Put the right draft on the phone, if the phone is free.

        The phone holds one draft at a time: the one most recently presented,
        until it reaches a decision. An edited draft keeps the phone. The slot
        row stays locked while the SMS goes out, so presenters in several
        workers never present twice.
        """
        async with self.repo.transaction() as tx:
            holder = await self._lock_slot(tx)
            if holder is not None and holder.current_state is S.AI_GENERATED:
                candidate: Workflow | None = holder
            elif holder is not None and not is_terminal(holder.current_state):
                return  # the person has a draft to answer, or it is being worked on
            else:
                candidate = await self._oldest_ready(tx)
            if candidate is None:
                return
            waiting = await self._count_ready(tx, exclude=candidate.message_id)
            await tx.transition(candidate.message_id, S.AI_GENERATED, S.SMS_SENDING,
                                "presenting the draft", sms_phone_number=self.phone)
            await tx.conn.execute(
                "UPDATE phone_conversation SET message_id = %s, presented_at = %s, updated_at = %s"
                " WHERE phone_number = %s",
                (candidate.message_id, self.clock.now(), self.clock.now(), self.phone),
            )
            text = render_draft_sms(
                DraftSms(
                    sender=sender_name(candidate.email_from or "unknown sender"),
                    subject=candidate.email_subject,
                    preview=candidate.email_body_preview or "",
                    draft=candidate.ai_reply_text or "",
                    waiting=waiting,
                    link=draft_url(str(self.settings.orchestrator_base_url),
                                   self.settings.draft_link_key, candidate.message_id),
                ),
                self.settings.sms_format,
            )
            try:
                sms_id, _ = await call_with_retries(
                    lambda: self.sms.send(self.phone, text), self.policy, "draft SMS")
            except (Exhausted, PermanentError) as exc:
                await self._fail_in(tx, candidate, S.SMS_SENDING, "notify", exc, topics.DRAFTS_READY)
            else:
                now = self.clock.now()
                await tx.transition(
                    candidate.message_id, S.SMS_SENDING, S.AWAITING_USER, "draft sent by SMS",
                    sms_message_id=sms_id, sms_sent_at=now,
                    timeout_at=now + timedelta(seconds=self.settings.user_response_timeout),
                )
        await self._after_failure_sms(tx)

    async def _lock_slot(self, tx: Transaction) -> Workflow | None:
        await tx.conn.execute(
            "INSERT INTO phone_conversation (phone_number) VALUES (%s) ON CONFLICT DO NOTHING",
            (self.phone,),
        )
        cur = await tx.conn.execute(
            "SELECT message_id FROM phone_conversation WHERE phone_number = %s FOR UPDATE", (self.phone,)
        )
        row = await cur.fetchone()
        return await tx.get(row["message_id"]) if row and row["message_id"] else None

    async def _oldest_ready(self, tx: Transaction) -> Workflow | None:
        cur = await tx.conn.execute(
            "SELECT message_id FROM workflow_state WHERE current_state = 'ai_generated'"
            " ORDER BY email_received_at NULLS LAST, created_at, id LIMIT 1"
        )
        row = await cur.fetchone()
        return await tx.get(row["message_id"]) if row else None

    async def _count_ready(self, tx: Transaction, exclude: str | None = None) -> int:
        """How many emails wait for the phone: drafted or still being drafted."""
        cur = await tx.conn.execute(
            "SELECT count(*) AS n FROM workflow_state"
            " WHERE current_state IN ('pending', 'ai_generating', 'ai_generated')"
            " AND message_id IS DISTINCT FROM %s",
            (exclude,),
        )
        row = await cur.fetchone()
        return int(row["n"]) if row else 0

    # --------------------------------------------------------------- commands

    async def command(self, sms: InboundSms) -> None:
        """Act on one SMS from the person, once."""
        reply: str | None = None
        async with self.repo.transaction() as tx:
            cur = await tx.conn.execute(
                "INSERT INTO inbound_sms (sms_id, phone_number, body, received_at, handled_at)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (sms_id) DO UPDATE"
                " SET handled_at = EXCLUDED.handled_at WHERE inbound_sms.handled_at IS NULL"
                " RETURNING sms_id",
                (sms.sms_id, sms.phone_number, sms.text, sms.received_at, self.clock.now()),
            )
            if await cur.fetchone() is None:
                return  # handled before: a redelivery
            if sms.phone_number != self.phone:
                await self._sms_outcome(tx, sms, "foreign_number", None)
                return
            command = parse_command(sms.text)
            wf = await self._lock_slot(tx)
            decision = decide_command(
                command, wf.current_state if wf else None,
                wf.edit_iteration if wf else 0, self.settings.max_edit_iterations,
            )
            reply = decision.reply_sms
            now = self.clock.now()
            if wf is not None and decision.target is S.USER_APPROVED:
                await tx.transition(wf.message_id, S.AWAITING_USER, S.USER_APPROVED, "approved by SMS",
                                    user_command=sms.text.strip()[:50], user_responded_at=now)
                await tx.publish(topics.REPLIES_APPROVED, wf.message_id, ReplyApproved(message_id=wf.message_id))
            elif wf is not None and decision.target is S.USER_EDIT_REQUESTED:
                assert command.kind is CommandKind.EDIT and command.instructions
                iteration = wf.edit_iteration + 1
                await tx.transition(wf.message_id, S.AWAITING_USER, S.USER_EDIT_REQUESTED,
                                    f"edit {iteration} requested by SMS",
                                    user_command="edit", user_edit_instructions=command.instructions,
                                    user_responded_at=now, edit_iteration=iteration)
                await tx.publish(topics.EDITS_REQUESTED, wf.message_id,
                                 EditRequested(message_id=wf.message_id,
                                               instructions=command.instructions, iteration=iteration))
            elif wf is not None and decision.target is S.USER_IGNORED:
                await tx.transition(wf.message_id, S.AWAITING_USER, S.USER_IGNORED, "ignored by SMS",
                                    user_command=sms.text.strip()[:50], user_responded_at=now)
                nxt = await self._oldest_ready(tx)
                reply = render_ignored_sms(sender_name(wf.email_from or "?"),
                                           sender_name(nxt.email_from or "?") if nxt else None,
                                           await self._count_ready(tx))
            await self._sms_outcome(tx, sms, decision.outcome, wf.message_id if wf else None)
        if reply:
            await self.tell_person(reply)

    async def _sms_outcome(self, tx: Transaction, sms: InboundSms, outcome: str, message_id: str | None) -> None:
        await tx.conn.execute(
            "UPDATE inbound_sms SET outcome = %s, message_id = %s WHERE sms_id = %s",
            (outcome, message_id, sms.sms_id),
        )

    # ------------------------------------------------------------------- send

    async def _claim_send(self, message_id: str) -> tuple[Workflow, Email, str] | None:
        """Record the intent to send (our Message-ID, ``send_attempted_at``)
        before any SMTP traffic. Returns what the send needs, or None when
        there is nothing to send: not approved (a redelivery), or a previous
        attempt was cut off mid-send, which fails the workflow as "outcome
        unknown" for a person to resolve."""
        async with self.repo.transaction() as tx:
            wf = await tx.get(message_id, for_update=True)
            if wf is None or wf.current_state is not S.USER_APPROVED:
                return None
            if wf.send_attempted_at is None:
                reply_id = wf.reply_message_id or new_message_id(self.settings.email_address)
                await tx.conn.execute(
                    "UPDATE workflow_state SET reply_message_id = %s, send_attempted_at = %s"
                    " WHERE message_id = %s",
                    (reply_id, self.clock.now(), message_id),
                )
                email = await tx.email(message_id)
                assert email is not None  # workflow_state references processed_emails
                return wf, email, reply_id
            unknown = OutcomeUnknownError(
                "SMTP", "a worker stopped while this reply was being sent; it may or may not "
                "have gone out. Check the Sent folder, then retry to send it again")
            await self._fail_in(tx, wf, S.USER_APPROVED, "send", unknown, topics.REPLIES_APPROVED)
        await self._after_failure_sms(tx)
        return None

    async def send(self, message_id: str) -> None:
        """Send the approved reply, at most once."""
        claimed = await self._claim_send(message_id)
        if claimed is None:
            return
        wf, email, reply_id = claimed
        body = wf.ai_reply_text or ""
        message = build_reply(Reply(
            from_address=self.settings.email_address,
            original_from=email.from_address,
            original_subject=email.subject,
            original_message_id=message_id,
            original_references=email.in_reply_to,
            body=body,
            message_id=reply_id,
            date=self.clock.now(),
        ))
        try:
            _, attempts = await call_with_retries(lambda: self.smtp.send(message), self.policy,
                                                  f"reply to {message_id}")
        except OutcomeUnknownError as exc:
            await self.fail(wf, S.USER_APPROVED, "send", exc, topics.REPLIES_APPROVED)
            return
        except (Exhausted, PermanentError) as exc:
            # The server refused it: nothing went out, a retry may send again.
            await self.fail(wf, S.USER_APPROVED, "send", exc, topics.REPLIES_APPROVED,
                            send_attempted_at=None)
            return
        async with self.repo.transaction() as tx:
            await tx.transition(message_id, S.USER_APPROVED, S.REPLY_SENT, "reply sent",
                                reply_sent_at=self.clock.now(), retry_count=wf.retry_count + attempts - 1)
            await tx.conn.execute("UPDATE processed_emails SET reply_draft = %s WHERE message_id = %s",
                                  (body, message_id))
            nxt = await self._oldest_ready(tx)
            waiting = await self._count_ready(tx)
        await self.tell_person(render_sent_sms(sender_name(email.from_address),
                                               sender_name(nxt.email_from or "?") if nxt else None,
                                               waiting))

    # --------------------------------------------------------------- timeouts

    async def expire_timeouts(self) -> int:
        """Time out every draft the person has not answered by its ``timeout_at``."""
        async with self.repo.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT message_id FROM workflow_state WHERE current_state = 'awaiting_user'"
                " AND timeout_at <= %s ORDER BY timeout_at",
                (self.clock.now(),),
            )
            due = [row["message_id"] for row in await cur.fetchall()]
        expired = 0
        for message_id in due:
            expired += await self.repo.transition(
                message_id, S.AWAITING_USER, S.TIMEOUT,
                f"no answer within {self.settings.user_response_timeout:g}s")
        return expired

    # --------------------------------------------------------------- failures

    async def fail(self, wf: Workflow, expected: WorkflowState, stage: str, error: Exception,
                   source_topic: str, **fields: Any) -> None:
        """Record that ``wf`` gave up at ``stage``; dead-letter it; tell the person."""
        async with self.repo.transaction() as tx:
            await self._fail_in(tx, wf, expected, stage, error, source_topic, **fields)
        await self._after_failure_sms(tx)

    async def fail_unexpected(self, message_id: str, stage: str, error: Exception) -> None:
        """A bug, not a peer, stopped ``message_id``: fail it (if it is still live)
        so it is visible, retryable and not silently stuck mid-stage."""
        wf = await self.repo.get(message_id)
        if wf is None or is_terminal(wf.current_state) or wf.current_state is S.AWAITING_USER:
            return
        await self.fail(wf, wf.current_state, stage, error, stage)

    async def _fail_in(self, tx: Transaction, wf: Workflow, expected: WorkflowState, stage: str,
                       error: Exception, source_topic: str, **fields: Any) -> None:
        attempts = error.attempts if isinstance(error, Exhausted) else 1
        text = str(error)
        if await tx.transition(wf.message_id, expected, S.FAILED, f"{stage} failed", error=text,
                               failed_stage=stage, error_message=text,
                               retry_count=wf.retry_count + attempts - 1, **fields):
            await tx.publish(topics.DEADLETTER, wf.message_id, DeadLetter(
                source_topic=source_topic, key=wf.message_id,
                value=wf.message_id, error=text,
                error_kind="exhausted" if isinstance(error, Exhausted) else "permanent",
                stage=stage, attempts=attempts, at=self.clock.now()))
            tx.sms_after_commit.append(render_failed_sms(
                sender_name(wf.email_from or "?"), wf.email_subject, _reason(error)))

    async def _after_failure_sms(self, tx: Transaction) -> None:
        for text in tx.sms_after_commit:
            await self.tell_person(text)

    async def tell_person(self, text: str) -> None:
        """Best effort: an informational SMS that fails is logged, not retried forever."""
        try:
            await call_with_retries(lambda: self.sms.send(self.phone, text), self.policy, "SMS")
        except (Exhausted, PeerError) as exc:
            log.warning("could not text the person: %s", exc)


def _reason(error: Exception) -> str:
    if isinstance(error, Exhausted):
        error = error.last
    return str(error)
