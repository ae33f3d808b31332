"""The notify stage: the draft on the person's phone, at most once (and a
reminder when it waits too long)."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from handlers.emails import sender_name
from handlers.errors import PermanentError
from handlers.links import draft_url
from handlers.messages import SourceRecord
from handlers.quiet import is_quiet
from handlers.sms_text import (
    DraftSms,
    render_cut_off_sms,
    render_draft_sms,
    render_reminder_sms,
)
from handlers.workflow import READY_STATE, Stage, WorkflowState, is_terminal
from streams.stages.context import StageContext
from streams.stages.deliveries import hand_over
from streams.stages.failures import fail_in
from streams.stages.parking import park_or_fail_in
from streams.stages.retrying import Exhausted, call_with_retries
from streams.storage.protocol import RepositoryTransaction
from streams.storage.records import Workflow

S = WorkflowState
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Presentation:
    """A draft this worker is putting on the phone, and its SMS."""

    wf: Workflow
    text: str


#: The most drafts one call of :func:`notify` texts to one phone
#: (PHONE_MODE=each); the sweep and the next ``drafts.ready`` go on from there.
MAX_PRESENTATIONS = 50
#: How many people's phones one call of :func:`notify` texts at once.
PEOPLE_AT_ONCE = 8


async def notify(ctx: StageContext, source: SourceRecord | None = None,
                 about: Collection[str] | None = None) -> None:
    """Put the right drafts on the phones of the people whose workflows
    ``about`` names (every person with a draft waiting when not given), each
    person's on their own phone, several people at once.

    PHONE_MODE=one: the phone holds one draft at a time, the one most
    recently presented, until it reaches a decision; an edited draft keeps
    the phone. PHONE_MODE=each: every draft is texted as soon as it is ready.
    Either way a draft the person asked for by its code is texted next, even
    over another, and every draft can be answered by its code. Inside
    QUIET_HOURS nothing is presented unless the person asked for it; the
    housekeeping sweep presents it when they end.

    Each draft SMS goes out at most once. The presentation is committed
    first (``sms_sending``, the phone assigned, under the phone's lock, so
    notifiers in several workers never present twice), and the worker
    holds it (an advisory lock on its session) while it texts. A worker
    that dies in between leaves a presentation nobody holds: the next
    notifier settles it without texting the draft again
    (:func:`settle_cut_off_presentation`). The gateway has no idempotency key, so
    texting again could only duplicate it. ``source``: the record that set
    this going, if the message loop handed one over (a failure dead-letters it).
    """
    async with ctx.repo.transaction() as tx:
        people = await (tx.phone.people_of(about) if about is not None else tx.phone.people_waiting())
    gate = asyncio.Semaphore(PEOPLE_AT_ONCE)

    async def for_one(person_id: int) -> None:
        person = await ctx.person(person_id)
        if person is not None:
            async with gate:
                await _notify_person(ctx.for_person(person), source)

    failed = [r for r in await asyncio.gather(*map(for_one, people), return_exceptions=True)
              if isinstance(r, BaseException)]
    if failed:
        raise failed[0]


async def _notify_person(ctx: StageContext, source: SourceRecord | None) -> None:
    """:func:`notify` for the one person ``ctx`` works for (their phone, their quiet hours)."""
    quiet = is_quiet(ctx.me.quiet, ctx.clock.now())
    for _ in range(MAX_PRESENTATIONS):
        if not await _present_one(ctx, source, quiet=quiet):
            return


async def _present_one(ctx: StageContext, source: SourceRecord | None, *, quiet: bool) -> bool:
    """Text the draft that should go on the phone now, if any; whether one was texted."""
    async with ctx.repo.session() as session:
        async with session.transaction() as tx:
            started = await _start_presentation(ctx, tx, quiet=quiet)
        if not isinstance(started, _Presentation):
            await ctx.tell_person(started)
            return False
        wf = started.wf
        try:
            sms_id, _ = await call_with_retries(
                lambda: ctx.sms.send(ctx.phone, started.text), ctx.policy, "draft SMS")
        except (Exhausted, PermanentError) as exc:
            async with session.transaction() as tx:
                notice = await _withdraw_presentation(ctx, tx, wf, exc, source)
            await ctx.tell_person(notice)
            return False
        now = ctx.clock.now()
        async with session.transaction() as tx:
            if await tx.transition(
                    wf.message_id, S.SMS_SENDING, S.AWAITING_USER, "draft sent by SMS",
                    sms_message_id=sms_id, sms_sent_at=now,
                    timeout_at=now + timedelta(seconds=ctx.settings.user_response_timeout)):
                # The gateway may have reported on it already (stages/deliveries.py).
                await hand_over(tx, await tx.adopt_deliveries(wf.message_id, sms_id))
        return True


async def _start_presentation(ctx: StageContext, tx: RepositoryTransaction, *,
                              quiet: bool = False) -> _Presentation | str | None:
    """Under the phone's lock: record the presentation of the draft that
    should go on the phone now and hold it; or settle a presentation cut
    off by a dead worker (returns the SMS that says so); or nothing."""
    holder = await tx.phone.lock(ctx.phone)
    if holder is not None and holder.current_state is S.SMS_SENDING:
        if await tx.presenter_gone(holder.message_id):
            return await settle_cut_off_presentation(ctx, tx, holder)
        return None  # being texted right now
    candidate = await tx.phone.requested(person=ctx.person_id)  # the person asked for it by its code
    if candidate is None and not quiet:
        candidate = await _next_candidate(ctx, tx, holder)
    if candidate is None:
        return None
    if candidate.draft_code is None:  # a workflow from before codes, or taken in while the person had none free
        given = await tx.give_codes([candidate.message_id])
        if not given:  # nothing is changed or texted; the person can still answer the drafts in ``list``
            log.warning("every draft code of person %s is in use: %s waits to be presented until one is freed",
                        ctx.person_id, candidate.message_id)
            return None
        candidate = replace(candidate, draft_code=given[0])
    now = ctx.clock.now()
    if not await tx.transition(candidate.message_id, READY_STATE, S.SMS_SENDING, "presenting the draft",
                               sms_phone_number=ctx.phone, presented_at=now):
        return None  # it moved on since we looked: nothing to text
    await tx.phone.assign(ctx.phone, candidate.message_id)
    if not await tx.hold_presentation(candidate.message_id):
        raise RuntimeError(f"the presentation of {candidate.message_id} is held elsewhere")
    waiting = await tx.phone.count_waiting(person=ctx.person_id, exclude=candidate.message_id)
    return _Presentation(candidate, draft_sms(ctx, candidate, waiting))


async def _next_candidate(ctx: StageContext, tx: RepositoryTransaction, holder: Workflow | None) -> Workflow | None:
    """The draft that goes on the phone next, if one should now."""
    if ctx.me.phone_mode == "each":
        return await tx.phone.oldest_ready(person=ctx.person_id)
    if holder is not None and holder.current_state is READY_STATE:
        if holder.next_attempt_at is not None and holder.next_attempt_at > ctx.clock.now():
            return None  # an edited draft keeps the phone; it waits for the gateway
        candidate: Workflow | None = holder
    elif holder is not None and not is_terminal(holder.current_state):
        return None  # the person has a draft to answer, or it is being worked on
    else:
        candidate = await tx.phone.oldest_ready(person=ctx.person_id)
    return candidate


async def _withdraw_presentation(ctx: StageContext, tx: RepositoryTransaction, wf: Workflow,
                                 error: Exhausted | PermanentError, source: SourceRecord | None) -> str | None:
    """The gateway did not take the draft: it waits for the phone again,
    parked (an outage) or failed; returns the SMS to text once ``tx`` commits."""
    reason = error.last if isinstance(error, Exhausted) else error
    await tx.transition(wf.message_id, S.SMS_SENDING, READY_STATE, f"draft not texted: {reason}")
    await tx.phone.release([wf.message_id])
    if isinstance(error, Exhausted):
        return await park_or_fail_in(ctx, tx, wf, READY_STATE, Stage.NOTIFY, error, source=source)
    return await fail_in(ctx, tx, wf, READY_STATE, Stage.NOTIFY, error, source=source)


async def settle_cut_off_presentation(ctx: StageContext, tx: RepositoryTransaction, wf: Workflow, *,
                                      tell: bool = True) -> str | None:
    """A draft whose worker died while texting it: it may or may not have
    reached the phone. It awaits the person's answer as if texted, and
    (``tell``) the person gets a short SMS saying so, with the draft's
    link, instead of the draft again."""
    now = ctx.clock.now()
    if not await tx.transition(
            wf.message_id, S.SMS_SENDING, S.AWAITING_USER,
            "draft SMS cut off (its worker stopped while texting it); not texted again",
            sms_message_id=None, sms_sent_at=now,
            timeout_at=now + timedelta(seconds=ctx.settings.user_response_timeout)):
        return None
    # The gateway's id of a cut-off SMS was never learnt: no report can be matched to it (docs/design.md).
    await tx.adopt_deliveries(wf.message_id, None)
    log.warning("%s: its draft SMS was cut off by a stopped worker; it awaits an answer", wf.message_id)
    if not tell:
        return None
    return render_cut_off_sms(sender_name(wf.email_from or "unknown sender"), wf.email_subject,
                              draft_url(str(ctx.settings.orchestrator_base_url),
                                        ctx.settings.draft_link_key, wf.message_id))


def draft_sms(ctx: StageContext, wf: Workflow, waiting: int) -> str:
    return render_draft_sms(
        DraftSms(
            sender=sender_name(wf.email_from or "unknown sender"),
            subject=wf.email_subject,
            preview=wf.email_body_preview or "",
            draft=wf.ai_reply_text or "",
            waiting=waiting,
            link=draft_url(str(ctx.settings.orchestrator_base_url),
                           ctx.settings.draft_link_key, wf.message_id),
            code=wf.draft_code,
            vip=wf.priority > 0,
            lessons=len(wf.lesson_ids or []),
        ),
        ctx.me.sms_format,
    )


async def send_reminders(ctx: StageContext) -> int:
    """Text the draft on the phone once more when it has waited
    REMINDER_AFTER seconds for an answer (once; never in QUIET_HOURS).

    The reminder is claimed (``reminded_at``) in a short transaction and
    texted after it commits: no lock is held across the SMS call, so answers
    and presentations never wait for the gateway. A reminder the gateway
    refuses is unclaimed and tried again on the next sweep; a worker that
    stops between the claim and the SMS leaves it unsent (at most once).
    """
    now = ctx.clock.now()
    shortest = min((p.reminder_after for p in await ctx.everyone() if p.reminder_after), default=0.0)
    if not shortest:
        return 0
    sent = 0
    for message_id in await ctx.repo.due_reminders(now - timedelta(seconds=shortest)):
        async with ctx.repo.transaction() as tx:
            wf = await tx.get(message_id)
            mine = await ctx.about(wf) if wf is not None else None
            if mine is None or not _reminder_due(mine, wf, now):
                continue
            text = await _claim_reminder(mine, tx, message_id)
        if text is None:
            continue
        try:
            await call_with_retries(functools.partial(ctx.sms.send, mine.phone, text), ctx.policy, "reminder SMS")
        except (Exhausted, PermanentError) as exc:
            log.warning("reminder for %s not sent (%s); trying again on the next sweep", message_id, exc)
            async with ctx.repo.transaction() as tx:
                await tx.phone.unmark_reminded(message_id, f"reminder not sent: {exc}")
            continue
        sent += 1
    return sent


def _reminder_due(ctx: StageContext, wf: Workflow | None, now: datetime) -> bool:
    """Whether the person ``ctx`` works for is reminded of ``wf`` now (their REMINDER_AFTER and quiet hours)."""
    after = ctx.me.reminder_after
    if wf is None or not after or wf.sms_sent_at is None or is_quiet(ctx.me.quiet, now):
        return False
    return wf.sms_sent_at <= now - timedelta(seconds=after)


async def _claim_reminder(ctx: StageContext, tx: RepositoryTransaction, message_id: str) -> str | None:
    """Under the phone's lock, briefly: claim the reminder of ``message_id``
    if its draft still awaits an answer; returns the SMS to text."""
    await tx.phone.lock(ctx.phone)
    wf = await tx.get(message_id)
    if wf is None or wf.current_state is not S.AWAITING_USER or not await tx.mark_reminded(message_id):
        return None
    return render_reminder_sms(draft_sms(ctx, wf, await tx.phone.count_waiting(person=ctx.person_id)))


async def next_up(ctx: StageContext, tx: RepositoryTransaction) -> tuple[str | None, int, int]:
    """Who sent the draft that goes on the phone next, how many wait for the
    phone, and how many drafts on it still await an answer."""
    nxt = await tx.phone.oldest_ready(person=ctx.person_id)
    awaiting = sum(1 for wf in await tx.phone.open_drafts(person=ctx.person_id)
                   if wf.current_state is S.AWAITING_USER)
    waiting = await tx.phone.count_waiting(person=ctx.person_id)
    return (sender_name(nxt.email_from or "?") if nxt else None), waiting, awaiting
