"""Replies sent later: ``1 at 9:00`` and ``cancel`` (docs/design.md, "Send later").

An approval with a time moves the draft to ``user_approved`` with
``send_at`` and no ``replies.approved`` (:func:`handlers.decisions.decide_command`);
the draft gives the phone up at once (:func:`free_the_phone`). The sweep
queues ``replies.approved`` for each reply whose time has come, once, in the
transaction that marks it (:func:`release_due_sends`); the send stage then
sends it as any approved reply, with the same claim, Message-ID and Sent
folder checks, and never before ``send_at``. All of it lives in PostgreSQL,
so a restart changes nothing.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from zoneinfo import ZoneInfo

from handlers.commands import Command
from handlers.emails import sender_name
from handlers.messages import PhoneFreed, ReplyApproved
from handlers.schedule import format_send_time
from handlers.sms_text import (
    NOTHING_SCHEDULED_SMS,
    render_already_sending_sms,
    render_already_sent_sms,
    render_cancelled_sms,
    render_not_scheduled_sms,
    render_which_scheduled_sms,
)
from handlers.workflow import WorkflowState, is_terminal
from streams.stages.context import StageContext
from streams.storage.protocol import RepositoryTransaction
from streams.storage.records import Workflow

S = WorkflowState
log = logging.getLogger(__name__)

#: The most scheduled replies one sweep releases; the next sweep goes on.
RELEASE_LIMIT = 100


def is_scheduled(wf: Workflow) -> bool:
    """A reply approved for later that no send has begun on: ``cancel`` may take it back."""
    return wf.current_state is S.USER_APPROVED and wf.send_at is not None and wf.send_attempted_at is None


def sends_at(ctx: StageContext, wf: Workflow) -> str | None:
    """When a scheduled reply leaves, as the ``list`` SMS says it (``Wed 09:00``)."""
    if not is_scheduled(wf) or wf.send_at is None:
        return None
    return format_send_time(wf.send_at, ctx.clock.now(), ctx.zone)


async def free_the_phone(tx: RepositoryTransaction, message_id: str) -> None:
    """A draft approved for later is decided as far as the phone goes: it
    gives the phone up and ``phone.freed`` is queued, as a decision's
    transition does (streams/storage/transitions.py), so the next draft comes."""
    for phone, freed in await tx.phone.release([message_id]):
        await tx.publish(PhoneFreed(phone_number=phone, message_id=freed, to_state=S.USER_APPROVED.value))


async def release_due_sends(ctx: StageContext) -> int:
    """The sweep's step: queue ``replies.approved`` for every scheduled reply
    whose time has come, marking each in the same transaction, so each is
    queued once; returns how many. Quiet hours do not hold them: the person
    chose the time."""
    async with ctx.repo.transaction() as tx:
        due = await tx.claim_due_sends(RELEASE_LIMIT)
        await tx.publish_many([ReplyApproved(message_id=message_id) for message_id in due])
    return len(due)


async def cancel(ctx: StageContext, tx: RepositoryTransaction, cmd: Command,
                 wf: Workflow | None) -> tuple[str, str | None]:
    """``cancel`` (or ``K7 cancel``): take a scheduled reply back before it
    leaves; returns the outcome to record and the SMS to text. A bare
    ``cancel`` means the one reply scheduled (the draft on the phone, if it
    is one); with several, the person is asked for the code."""
    if cmd.code is None and (wf is None or not is_scheduled(wf)):
        scheduled = [d for d in await tx.phone.open_drafts(person=ctx.person_id) if is_scheduled(d)]
        if not scheduled:
            return "nothing_scheduled", NOTHING_SCHEDULED_SMS
        if len(scheduled) > 1:
            return "which_scheduled", render_which_scheduled_sms([d.draft_code or "?" for d in scheduled])
        wf = scheduled[0]
    assert wf is not None  # a code that names no open draft was answered before
    return await _cancel_one(ctx, tx, wf)


async def _cancel_one(ctx: StageContext, tx: RepositoryTransaction, named: Workflow) -> tuple[str, str | None]:
    """Take ``named`` back to waiting for an answer, if it is a scheduled
    reply no send has begun on. The row is locked first: a send stage that
    claims it meanwhile either went first (it is being sent: too late) or
    finds it waiting for an answer and sends nothing."""
    wf = await tx.get(named.message_id, for_update=True) or named
    code = wf.draft_code or named.draft_code
    if wf.current_state is S.REPLY_SENT:
        return "already_sent", render_already_sent_sms(code, sender_name(wf.email_from or "?"))
    if wf.current_state is S.USER_APPROVED and not is_scheduled(wf):
        return "already_sending", render_already_sending_sms(code)
    if not is_scheduled(wf):
        return "not_scheduled", render_not_scheduled_sms(code)
    now = ctx.clock.now()
    if not await tx.transition(wf.message_id, S.USER_APPROVED, S.AWAITING_USER,
                               "scheduled send cancelled by SMS: it waits for an answer again",
                               send_at=None, send_released_at=None, user_command="cancel",
                               timeout_at=now + timedelta(seconds=ctx.settings.user_response_timeout)):
        return "already_sending", render_already_sending_sms(code)
    holder = await tx.phone.lock(ctx.phone)
    if holder is None or is_terminal(holder.current_state):
        await tx.phone.assign(ctx.phone, wf.message_id)  # the phone is free: a bare answer means it again
    log.info("%s: its reply scheduled for %s was cancelled", wf.message_id, wf.send_at)
    return "cancelled", render_cancelled_sms(code)
