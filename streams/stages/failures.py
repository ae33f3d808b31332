"""Giving up: every failure ends in a written decision.

``failed`` with the stage and error, a dead-letter record and one SMS to the
person, texted once the failure is committed. The dead letter is queued in
the same transaction as ``failed``. It keeps the record that set the stage
going when the message loop handed one over (``source``); else it holds the
message that sets the stage going again (a draft is driven from the database,
a sweep has no record).
"""

from __future__ import annotations

from typing import Any

from handlers.emails import sender_name
from handlers.messages import (
    STAGE_TOPIC,
    DeadLetter,
    DraftReady,
    EditRequested,
    EmailPending,
    ReplyApproved,
    SourceRecord,
    TopicMessage,
)
from handlers.sms_text import render_failed_sms
from handlers.workflow import Stage, WorkflowState, is_terminal
from streams.stages.context import StageContext
from streams.stages.retrying import Exhausted
from streams.storage.protocol import RepositoryTransaction
from streams.storage.records import Workflow

S = WorkflowState


async def fail_workflow(ctx: StageContext, wf: Workflow, expected: WorkflowState, stage: Stage, error: Exception,
                        *, source: SourceRecord | None = None, letter: bool = True, **fields: Any) -> None:
    """Record that ``wf`` gave up at ``stage``; dead-letter it (unless
    ``letter`` is False: already done); tell the person."""
    ctx = await ctx.about(wf) or ctx  # the person whose email it is is told
    async with ctx.repo.transaction() as tx:
        failure_sms = await fail_in(ctx, tx, wf, expected, stage, error, source=source, letter=letter, **fields)
    await ctx.tell_person(failure_sms)


async def fail_unexpected(ctx: StageContext, message_id: str, stage: Stage, error: Exception,
                          source: SourceRecord | None = None) -> None:
    """A bug, not a peer, stopped ``message_id``: fail it (if it is still live)
    so it is visible, retryable and not silently stuck mid-stage. A record
    handed over (``source``) has been dead-lettered by the message loop
    already, whatever this finds: the failure writes no second dead letter
    for it (one dead letter per record given up on)."""
    wf = await ctx.repo.get(message_id)
    if wf is None or is_terminal(wf.current_state) or wf.current_state is S.AWAITING_USER:
        return
    await fail_workflow(ctx, wf, wf.current_state, stage, error, source=source, letter=source is None)


async def fail_in(ctx: StageContext, tx: RepositoryTransaction, wf: Workflow, expected: WorkflowState,
                  stage: Stage, error: Exception, *, source: SourceRecord | None = None, letter: bool = True,
                  **fields: Any) -> str | None:
    """Fail ``wf`` inside ``tx`` (with its dead letter, unless ``letter`` is
    False); return the SMS to text once ``tx`` has committed (None when the
    workflow had already moved on)."""
    attempts = error.attempts if isinstance(error, Exhausted) else 1
    text = str(error)
    if not await tx.transition(wf.message_id, expected, S.FAILED, f"{stage} failed", error=text,
                               failed_stage=stage.value, error_message=text,
                               retry_count=wf.retry_count + attempts - 1, **fields):
        return None
    if letter:
        await tx.publish(dead_letter(wf, stage, error, source))
    return render_failed_sms(sender_name(wf.email_from or "?"), wf.email_subject, reason(error))


def dead_letter(wf: Workflow, stage: Stage, error: Exception, source: SourceRecord | None) -> DeadLetter:
    """The dead letter of ``wf`` given up at ``stage``: of ``source`` when it
    is the record that set this stage going for ``wf``, else of the message
    that sets the stage going again."""
    if (source is None or source.topic != STAGE_TOPIC[stage]
            or (stage is not Stage.COMMAND and source.key != wf.message_id.encode())):
        restart = restart_message(stage, wf)
        source = SourceRecord(restart.topic, wf.message_id.encode(), restart.to_json().encode())
    if isinstance(error, Exhausted):
        return source.dead_letter(stage, "exhausted", error, error.attempts, cause=error.last)
    return source.dead_letter(stage, "permanent", error)


def restart_message(stage: Stage, wf: Workflow) -> TopicMessage:
    """The message that sets ``stage`` going again for ``wf``."""
    if stage is Stage.DRAFT:
        return EmailPending(message_id=wf.message_id, from_address=wf.email_from, subject=wf.email_subject,
                            received_at=wf.email_received_at, person_id=wf.person_id or 0)
    if stage is Stage.NOTIFY:
        return DraftReady(message_id=wf.message_id, iteration=wf.edit_iteration)
    if stage is Stage.SEND:
        return ReplyApproved(message_id=wf.message_id)
    raise ValueError(f"stage {stage} is not restarted by a message of its own")


def redrive_message(wf: Workflow) -> TopicMessage:
    """The message that moves ``wf`` on from ``pending``, ``user_edit_requested``
    or ``user_approved`` when the record that should have was lost (the
    sweep sends it again; the stage it reaches does nothing twice)."""
    if wf.current_state is S.USER_EDIT_REQUESTED:
        return EditRequested(message_id=wf.message_id, instructions=wf.user_edit_instructions or "-",
                             iteration=max(1, wf.edit_iteration))
    if wf.current_state is S.USER_APPROVED:
        return restart_message(Stage.SEND, wf)
    return restart_message(Stage.DRAFT, wf)


def reason(error: Exception) -> str:
    if isinstance(error, Exhausted):
        error = error.last
    return str(error)
