"""The command stage: act on one SMS from the person, once."""

from __future__ import annotations

import logging
from datetime import timedelta

from handlers.commands import parse_command
from handlers.decisions import DraftOnPhone, decide_command
from handlers.emails import sender_name
from handlers.messages import InboundSms
from handlers.sms_text import render_ignored_sms
from handlers.workflow import WorkflowState
from streams.stages.context import StageContext
from streams.stages.notify import next_up, settle_cut_off_presentation

S = WorkflowState
log = logging.getLogger(__name__)

#: How often an answer that arrived mid-presentation looks again.
PRESENTATION_POLL = 0.1


class _BeingTexted(Exception):
    """The draft on the phone is being texted by a live worker right now."""


async def command(ctx: StageContext, sms: InboundSms) -> None:
    """Act on one SMS from the person, once. An answer that arrives while
    the draft is still being texted (the person can be quicker than the
    gateway's reply) waits for that presentation to be recorded."""
    waited = 0.0
    while True:
        try:
            reply = await _command(ctx, sms, wait_for_presentation=waited < presentation_bound(ctx))
            break
        except _BeingTexted:
            await ctx.sleep(PRESENTATION_POLL)
            waited += PRESENTATION_POLL
    await ctx.tell_person(reply)


def presentation_bound(ctx: StageContext) -> float:
    """The longest a live worker can take to text a draft (every attempt timing out)."""
    s = ctx.settings
    return s.max_retry_attempts * (s.http_timeout + s.retry_backoff_max)


async def _command(ctx: StageContext, sms: InboundSms, *, wait_for_presentation: bool) -> str | None:
    """:func:`command`'s transaction; returns the SMS to text once it commits.
    Raises :class:`_BeingTexted` (nothing written) while a live worker is
    texting the draft on the phone."""
    async with ctx.repo.transaction() as tx:
        if not await tx.sms.claim(sms.sms_id, sms.phone_number, sms.text, sms.received_at):
            return None  # handled before: a redelivery
        if sms.phone_number != ctx.phone:
            await tx.sms.settle(sms.sms_id, "foreign_number", None)
            return None
        wf = await tx.phone.lock(ctx.phone)
        if wf is not None and wf.current_state is S.SMS_SENDING:
            if await tx.presenter_gone(wf.message_id):
                # Its worker died while texting it, and the person answers it: it reached them.
                await settle_cut_off_presentation(ctx, tx, wf, tell=False)
                wf = await tx.get(wf.message_id)
            elif wait_for_presentation:
                raise _BeingTexted(wf.message_id)
        on_phone = None if wf is None else DraftOnPhone(
            wf.message_id, wf.current_state, wf.edit_iteration, presented_at=await tx.phone.presented_at(ctx.phone),
            sender=sender_name(wf.email_from or "?"))
        effect = decide_command(parse_command(sms.text), sms.text, on_phone,
                                ctx.settings.max_edit_iterations, ctx.clock.now(), written_at=sms.received_at,
                                clock_skew=timedelta(seconds=ctx.settings.answer_clock_skew))
        if effect.outcome == "late" and on_phone is not None:
            log.warning("answer %r, received by the gateway at %s, is older than the draft of %s on the phone"
                        " (texted from %s): not applied, the person is asked again",
                        sms.sms_id, sms.received_at, on_phone.message_id, on_phone.presented_at)
        reply = effect.reply_sms
        if wf is not None and effect.target is not None:
            await tx.transition(wf.message_id, S.AWAITING_USER, effect.target, effect.reason,
                                **effect.fields)
            if effect.follow_up is not None:
                await tx.publish(effect.follow_up)
            if effect.tell_what_is_next:
                reply = render_ignored_sms(sender_name(wf.email_from or "?"), *await next_up(tx))
        await tx.sms.settle(sms.sms_id, effect.outcome, wf.message_id if wf else None)
    return reply
