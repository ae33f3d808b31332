"""The answers that are about the conversation rather than one decision:
``list``, a code alone (text that draft), ``all 3`` and its ``yes``
(docs/contracts.md §5). Each runs inside the command's transaction, under the
phone's lock, and returns the SMS to text once it commits."""

from __future__ import annotations

from datetime import timedelta

from handlers.emails import sender_name
from handlers.messages import DraftReady
from handlers.sms_text import (
    ListedDraft,
    render_being_drafted_sms,
    render_confirm_all_sms,
    render_ignored_all_sms,
    render_list_sms,
)
from handlers.workflow import READY_STATE, WorkflowState
from streams.stages.context import StageContext
from streams.stages.notify import draft_sms, next_up
from streams.stages.scheduling import sends_at
from streams.storage.protocol import RepositoryTransaction
from streams.storage.records import Workflow

S = WorkflowState

_STATUS = {S.AWAITING_USER: "on phone", S.SMS_SENDING: "on phone", READY_STATE: "waiting"}


async def list_drafts(ctx: StageContext, tx: RepositoryTransaction) -> str:
    """One SMS of the open drafts, oldest email first: code, sender, subject,
    age; a reply scheduled for later says when it leaves instead."""
    now = ctx.clock.now()
    drafts = [ListedDraft(d.draft_code or "?", sender_name(d.email_from or "?"), d.email_subject,
                          now - (d.email_received_at or d.created_at or now),
                          _STATUS.get(d.current_state, "drafting"), vip=d.priority > 0,
                          sends=sends_at(ctx, d))
              for d in await tx.phone.open_drafts(person=ctx.person_id)]
    return render_list_sms(drafts)


async def show(ctx: StageContext, tx: RepositoryTransaction, wf: Workflow) -> tuple[str, str | None]:
    """A code alone: text that draft again (it becomes the latest, which a
    bare answer means), or, if it waits for the phone, text it now. Returns
    the outcome to record and the SMS to text."""
    if wf.current_state is S.AWAITING_USER:
        await tx.phone.assign(ctx.phone, wf.message_id)
        return "shown", draft_sms(ctx, wf, await tx.phone.count_waiting(person=ctx.person_id))
    if wf.current_state is READY_STATE and await tx.phone.request_presentation(wf.message_id):
        await tx.publish(DraftReady(message_id=wf.message_id, iteration=wf.edit_iteration))
        return "show_requested", None  # the notify stage texts it, even over another draft
    if wf.current_state is S.SMS_SENDING:
        return "being_texted", None
    return "drafting", render_being_drafted_sms(wf.draft_code or "?")


async def confirm_ignore_all(ctx: StageContext, tx: RepositoryTransaction) -> str:
    """``all 3``: remember which drafts it would ignore (those texted to the
    phone and awaiting an answer: the person has read them) and ask for a
    ``yes``. Only those are ignored: a draft that comes after the question,
    or one not yet texted, is not."""
    ids = [d.message_id for d in await tx.phone.open_drafts(person=ctx.person_id) if d.current_state is S.AWAITING_USER]
    if not ids:
        return "No drafts on your phone to ignore."
    await tx.phone.ask_confirmation(ctx.phone, ids,
                                    ctx.clock.now() + timedelta(seconds=ctx.settings.confirm_window))
    return render_confirm_all_sms(len(ids))


async def ignore_all(ctx: StageContext, tx: RepositoryTransaction, message_ids: list[str]) -> str:
    """The ``yes`` to ``all 3``: ignore those drafts still awaiting an answer
    (one answered meanwhile is left as it is); says what comes next."""
    moved = await tx.transition_many(message_ids, S.AWAITING_USER, S.USER_IGNORED,
                                     "ignored by SMS (all 3, confirmed)",
                                     user_command="all 3", user_responded_at=ctx.clock.now())
    return render_ignored_all_sms(len(moved), *await next_up(ctx, tx))
