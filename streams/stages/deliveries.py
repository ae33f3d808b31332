"""Delivery reports of the draft SMS: recorded on the workflow, and a draft
that never reached the phone presented again (docs/design.md, "Side effects
happen once"; the decisions are :mod:`handlers.deliveries`').

The webhook records a report in its own transaction (:func:`take_report`)
and hands a failed presentation over on ``drafts.undelivered``; the notify
agent withdraws that draft (:func:`withdraw_undelivered`) and parks it under
the rules of an outage, after which it is texted again. A failure report is
kept once, so a redelivered ``sms:failed`` hands over nothing; a redelivered
``drafts.undelivered`` finds the draft already withdrawn.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from handlers.deliveries import DeliveryReport, is_failed_presentation
from handlers.errors import TransientError
from handlers.messages import DraftUndelivered, SourceRecord
from handlers.workflow import READY_STATE, Stage, WorkflowState
from streams.stages.context import StageContext
from streams.stages.failures import fail_in
from streams.storage.protocol import RepositoryTransaction
from streams.storage.records import DeliveryRecorded

S = WorkflowState
log = logging.getLogger(__name__)
#: The peer a draft that did not reach the phone is parked on.
PHONE = "the phone"


@dataclass(frozen=True)
class Taken:
    """What :func:`take_report` did with a report, for the webhook's answer."""

    #: ``recorded`` (about a draft), ``duplicate`` (reported before) or ``ignored`` (not a draft's SMS).
    status: str
    #: Whether the draft on the phone is withdrawn and presented again.
    withdrawn: bool = False


async def take_report(tx: RepositoryTransaction, report: DeliveryReport) -> Taken:
    """Record ``report`` in ``tx``; a failure of the draft on the phone is handed over."""
    recorded = await tx.record_delivery(report)
    if not recorded.fresh:
        return Taken("duplicate")
    if recorded.workflow is None:
        return Taken("ignored")
    return Taken("recorded", withdrawn=await hand_over(tx, recorded))


async def hand_over(tx: RepositoryTransaction, recorded: DeliveryRecorded) -> bool:
    """Queue ``drafts.undelivered`` when what was just recorded is a failure
    of the draft SMS the person is answering now; whether it did."""
    wf, failed = recorded.workflow, recorded.failed
    if not recorded.fresh or wf is None or failed is None \
            or not is_failed_presentation(failed, wf.current_state, wf.sms_message_id):
        return False
    await tx.publish(DraftUndelivered(message_id=wf.message_id, sms_message_id=failed.sms_id, reason=failed.reason,
                                      failures=max(1, recorded.failures), first_failure_at=recorded.first_failure_at))
    return True


async def withdraw_undelivered(ctx: StageContext, message: DraftUndelivered,
                               source: SourceRecord | None = None) -> None:
    """The draft SMS ``message`` names did not reach the phone: if that is
    still the presentation the person is to answer, withdraw it (the phone is
    free again) and park it, to be texted again after RETRY_PARK_BASE
    seconds, doubling, and failed past RETRY_DEADLINE (counted from the first
    failure report), as a draft the gateway would not take."""
    wf = await ctx.repo.get(message.message_id)
    ctx = (await ctx.about(wf) if wf is not None else None) or ctx  # the phone the draft was texted to
    async with ctx.repo.transaction() as tx:
        notice = await _withdraw(ctx, tx, message, source)
    await ctx.tell_person(notice)


async def _withdraw(ctx: StageContext, tx: RepositoryTransaction, message: DraftUndelivered,
                    source: SourceRecord | None) -> str | None:
    await tx.phone.lock(ctx.phone)  # as presenters and commands do: one of us at a time
    wf = await tx.get(message.message_id, for_update=True)
    if wf is None or wf.current_state is not S.AWAITING_USER or wf.sms_message_id != message.sms_message_id:
        log.info("%s: its draft SMS %s failed, but it is no longer the one on the phone; recorded only",
                 message.message_id, message.sms_message_id)
        return None
    reason = message.reason or "no reason given"
    if not await tx.transition(wf.message_id, S.AWAITING_USER, READY_STATE,
                               f"draft SMS did not reach the phone ({reason}); presenting it again"):
        return None
    await tx.phone.release([wf.message_id])
    error = TransientError(PHONE, f"the draft SMS did not reach it: {reason}")
    now = ctx.clock.now()
    since = message.first_failure_at or now
    next_at = ctx.park_policy.next_attempt(message.failures - 1, since, now)
    if next_at is None:
        return await fail_in(ctx, tx, wf, READY_STATE, Stage.NOTIFY, error, source=source)
    await tx.park(wf.message_id, READY_STATE, stage=Stage.NOTIFY.value, peer=PHONE, reason=str(error),
                  since=since, attempts=message.failures, next_attempt_at=next_at)
    log.warning("%s: its draft SMS did not reach the phone (%s); texted again at %s",
                wf.message_id, reason, next_at.isoformat())
    return None
