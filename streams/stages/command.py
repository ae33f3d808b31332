"""The command stage: act on one answer from the person, once.

An answer comes by SMS or from the dashboard (a second phone) and names its
draft: by code (``K7 1``), by Message-ID (the dashboard), or, bare, the draft
texted most recently (docs/contracts.md §5).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from handlers.commands import Command, CommandKind, parse_command
from handlers.decisions import Answer, DraftOnPhone, decide_command, is_late
from handlers.emails import sender_name
from handlers.messages import InboundSms
from handlers.sms_text import (
    NOT_IGNORED_SMS,
    QUESTION_LAPSED_SMS,
    draft_label,
    render_edit_from_dashboard_sms,
    render_late_answer_sms,
    render_ignored_sms,
    render_unknown_code_sms,
    render_which_draft_sms,
)
from handlers.workflow import DECIDABLE_STATES, WorkflowState
from streams.stages import lessons, scheduling
from streams.stages.context import StageContext
from streams.stages.conversation import confirm_ignore_all, ignore_all, list_drafts, show
from streams.stages.notify import next_up, settle_cut_off_presentation
from streams.storage.protocol import RepositoryTransaction
from streams.storage.records import Workflow

S = WorkflowState
log = logging.getLogger(__name__)

#: How often an answer that arrived mid-presentation looks again.
PRESENTATION_POLL = 0.1


class _BeingTexted(Exception):
    """The draft the answer is for is being texted by a live worker right now."""


async def command(ctx: StageContext, sms: InboundSms) -> None:
    """Act on one answer from the person, once. An answer that arrives while
    its draft is still being texted (the person can be quicker than the
    gateway's reply) waits for that presentation to be recorded."""
    person = await ctx.person_of_phone(sms.phone_number)  # each phone answers only its person's drafts
    mine = ctx.for_person(person) if person is not None else ctx
    waited = 0.0
    while True:
        try:
            reply = await _command(mine, sms, known=person is not None,
                                   wait_for_presentation=waited < presentation_bound(ctx))
            break
        except _BeingTexted:
            await ctx.sleep(PRESENTATION_POLL)
            waited += PRESENTATION_POLL
    await mine.tell_person(reply)


def presentation_bound(ctx: StageContext) -> float:
    """The longest a live worker can take to text a draft (every attempt timing out)."""
    s = ctx.settings
    return s.max_retry_attempts * (s.http_timeout + s.retry_backoff_max)


async def _command(ctx: StageContext, sms: InboundSms, *, known: bool, wait_for_presentation: bool) -> str | None:
    """:func:`command`'s transaction, for the person ``ctx`` works for
    (``known``: the phone is a person's); returns the SMS to text once it
    commits. Raises :class:`_BeingTexted` (nothing written) while a live
    worker is texting the draft the answer is for."""
    async with ctx.repo.transaction() as tx:
        if not await tx.sms.claim(sms.sms_id, sms.phone_number, sms.text, sms.received_at):
            return None  # handled before: a redelivery
        if not known:
            await tx.sms.settle(sms.sms_id, "foreign_number", None)
            return None
        latest = await tx.phone.lock(ctx.phone)  # serialises answers and presentations
        if latest is not None and latest.current_state is S.SMS_SENDING:
            # Every answer waits for the draft being texted: it may become what the answer means.
            if await tx.presenter_gone(latest.message_id):
                await settle_cut_off_presentation(ctx, tx, latest, tell=False)  # it reached them
                latest = await tx.get(latest.message_id)
            elif wait_for_presentation:
                raise _BeingTexted(latest.message_id)
        cmd = parse_command(sms.text)
        if sms.source == "sms" and cmd.kind is not CommandKind.IGNORE_ALL:
            said = await _answer_to_question(ctx, tx, sms, cmd)
            if said is not None:
                return said
        if cmd.kind is CommandKind.LIST:
            await tx.sms.settle(sms.sms_id, "listed", None)
            return await list_drafts(ctx, tx)
        if cmd.kind is CommandKind.IGNORE_ALL:
            await tx.sms.settle(sms.sms_id, "confirm_asked", None)
            return await confirm_ignore_all(ctx, tx)
        found = await _target(ctx, tx, sms, cmd, latest)
        if isinstance(found, str):
            return found
        wf, outcome_if_none = found
        if wf is not None and wf.current_state is S.SMS_SENDING:
            if await tx.presenter_gone(wf.message_id):
                # Its worker died while texting it, and the person answers it: it reached them.
                await settle_cut_off_presentation(ctx, tx, wf, tell=False)
                wf = await tx.get(wf.message_id)
            elif wait_for_presentation:
                raise _BeingTexted(wf.message_id)
        if wf is None and outcome_if_none is not None:
            await tx.sms.settle(sms.sms_id, outcome_if_none[0], None)
            return outcome_if_none[1]
        if cmd.kind in (CommandKind.REMEMBER, CommandKind.FORGET):
            late = await _late(ctx, tx, sms, wf, bare=cmd.code is None)
            if late is not None:
                await tx.sms.settle(sms.sms_id, "late", wf.message_id if wf else None)
                return late
            outcome, said = await lessons.answer(ctx, tx, cmd, wf)
            await tx.sms.settle(sms.sms_id, outcome, wf.message_id if wf else None)
            return said
        if cmd.kind is CommandKind.CANCEL:
            outcome, said = await scheduling.cancel(ctx, tx, cmd, wf)
            await tx.sms.settle(sms.sms_id, outcome, wf.message_id if wf else None)
            return said
        if cmd.kind is CommandKind.SHOW and wf is not None:
            outcome, shown = await show(ctx, tx, wf)
            await tx.sms.settle(sms.sms_id, outcome, wf.message_id)
            return shown
        return await _decide(ctx, tx, sms, cmd, wf, bare=cmd.code is None and sms.message_id is None)


async def _target(ctx: StageContext, tx: RepositoryTransaction, sms: InboundSms, cmd: Command,
                  latest: Workflow | None) -> tuple[Workflow | None, tuple[str, str | None] | None] | str:
    """The draft the answer is for, and what to record and say when there is
    none (or, settled already, the SMS to text)."""
    if sms.message_id is not None:  # the dashboard names its draft (one of this person's)
        named = await tx.get(sms.message_id)
        return (named if named is not None and named.person_id == ctx.person_id else None), ("unknown_draft", None)
    if cmd.code is not None:
        wf = await tx.phone.by_code(cmd.code, person=ctx.person_id)
        if wf is None:
            log.info("answer %r names %s, which no open draft has", sms.sms_id, cmd.code)
        return wf, ("unknown_code", render_unknown_code_sms(cmd.code))
    if cmd.kind in (CommandKind.APPROVE, CommandKind.EDIT, CommandKind.IGNORE):
        waiting = [d.draft_code for d in await tx.phone.open_drafts(person=ctx.person_id)
                   if d.current_state is S.AWAITING_USER and d.draft_code]
        no_latest = latest is None or latest.current_state is not S.AWAITING_USER  # decided, or being redrafted
        if waiting and (no_latest or len(waiting) > 1 and await _just_changed(ctx, tx, sms)):
            # No draft is the latest, or it changed as the answer was written
            # while others wait: the answer must name its draft.
            await tx.sms.settle(sms.sms_id, "which_draft", None)
            return render_which_draft_sms(waiting)
    return latest, None


#: With PHONE_MODE=each, drafts reach the phone on their own: a bare answer
#: written this close to the latest one being texted (beyond the clock skew)
#: may have been meant for the one before, and is not guessed.
EACH_MODE_GRACE = timedelta(seconds=10)
#: How long a `yes` or `no` is read as the answer to an `all 3`, even once
#: the minute to confirm it is over (it then confirms nothing).
QUESTION_MEMORY = timedelta(minutes=10)


async def _just_changed(ctx: StageContext, tx: RepositoryTransaction, sms: InboundSms) -> bool:
    """PHONE_MODE=each: whether the latest draft was texted so close to when
    the answer was written that the answer may mean the one before."""
    presented = await tx.phone.presented_at(ctx.phone)
    written = sms.received_at
    if ctx.me.phone_mode != "each" or presented is None or written is None or written.tzinfo is None:
        return False
    return written < presented + timedelta(seconds=ctx.settings.answer_clock_skew) + EACH_MODE_GRACE


async def _late(ctx: StageContext, tx: RepositoryTransaction, sms: InboundSms, wf: Workflow | None, *,
                bare: bool) -> str | None:
    """The SMS that says an answer came before the draft it would act on was
    texted (and so is not applied), or None when it is in time."""
    if wf is None:
        return None
    presented = (await tx.phone.presented_at(ctx.phone) if bare else None) or wf.presented_at
    if not is_late(sms.received_at, presented, timedelta(seconds=ctx.settings.answer_clock_skew)):
        return None
    return render_late_answer_sms(sms.text.strip(), sender_name(wf.email_from or "?"))


async def _answer_to_question(ctx: StageContext, tx: RepositoryTransaction, sms: InboundSms,
                              cmd: Command) -> str | None:
    """Any answer uses a pending ``all 3`` up; a plain ``yes`` straight after
    it, within the minute, confirms it. A ``yes`` or ``no`` that comes later,
    or after another answer, still answers the question (for
    :data:`QUESTION_MEMORY`) and acts on no draft. Returns the SMS to text
    when the answer was about the question, else None."""
    question = await tx.phone.take_confirmation(ctx.phone)
    now = ctx.clock.now()
    if question is None or not (cmd.confirms or cmd.declines) or now - question.asked_at > QUESTION_MEMORY:
        return None
    await tx.phone.end_question(ctx.phone)
    if cmd.confirms and question.ids and now <= question.until:
        await tx.sms.settle(sms.sms_id, "ignored_all", None)
        return await ignore_all(ctx, tx, question.ids)
    await tx.sms.settle(sms.sms_id, "question_declined" if cmd.declines else "question_lapsed", None)
    return NOT_IGNORED_SMS if cmd.declines else QUESTION_LAPSED_SMS


async def _decide(ctx: StageContext, tx: RepositoryTransaction, sms: InboundSms, cmd: Command,
                  wf: Workflow | None, *, bare: bool) -> str | None:
    """Apply a decision (send, edit, ignore) to ``wf``; returns the SMS to text."""
    presented_at = wf.presented_at if wf is not None else None
    if bare and wf is not None:
        # A bare answer means the draft texted most recently, since it became so.
        presented_at = await tx.phone.presented_at(ctx.phone) or presented_at
    on_phone = None if wf is None else DraftOnPhone(
        wf.message_id, wf.current_state, wf.edit_iteration, presented_at=presented_at,
        sender=sender_name(wf.email_from or "?"), code=wf.draft_code, subject=wf.email_subject,
        edit_history=tuple(wf.edit_history))
    answer = Answer(source=sms.source, written_at=sms.received_at, seen_iteration=sms.seen_iteration,
                    reply_text=sms.reply_text, named=cmd.code is not None)
    effect = decide_command(cmd, sms.text, on_phone, ctx.settings.max_edit_iterations, ctx.clock.now(),
                            written_at=sms.received_at,
                            clock_skew=timedelta(seconds=ctx.settings.answer_clock_skew), answer=answer,
                            zone=ctx.zone)
    if effect.outcome == "late" and on_phone is not None:
        log.warning("answer %r, received by the gateway at %s, is older than the draft of %s"
                    " (texted from %s): not applied, the person is asked again",
                    sms.sms_id, sms.received_at, on_phone.message_id, on_phone.presented_at)
    if effect.outcome == "changed" and on_phone is not None:
        log.info("dashboard action %r on %s not applied: the draft changed since the page showed it",
                 sms.sms_id, on_phone.message_id)
    reply = effect.reply_sms
    dashboard = sms.source == "dashboard"
    if wf is not None and effect.target is not None and wf.current_state in DECIDABLE_STATES:
        if not await tx.transition(wf.message_id, wf.current_state, effect.target, effect.reason, **effect.fields):
            await tx.sms.settle(sms.sms_id, "moved_on", wf.message_id)
            return None
        if effect.follow_up is not None:
            await tx.publish(effect.follow_up)
        if effect.frees_the_phone:  # sent later: decided, as far as the phone goes (docs/design.md, "Send later")
            await scheduling.free_the_phone(tx, wf.message_id)
        await lessons.learn(ctx, tx, wf, effect.target, effect.fields)  # docs/design.md, "It learns from you"
        sender = sender_name(wf.email_from or "?")
        if effect.tell_what_is_next:
            reply = render_ignored_sms(sender, *await next_up(ctx, tx), code=wf.draft_code, from_dashboard=dashboard)
        elif dashboard and effect.target is S.USER_EDIT_REQUESTED and cmd.instructions:
            reply = render_edit_from_dashboard_sms(draft_label(wf.draft_code, sender, wf.email_subject),
                                                   cmd.instructions)
    await tx.sms.settle(sms.sms_id, effect.outcome, wf.message_id if wf else None)
    return reply
