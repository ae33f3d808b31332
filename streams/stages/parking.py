"""Outages: a peer that outlasts the in-call retries parks the workflow
where it is, to try the stage again later (see
:class:`~handlers.retry.ParkPolicy`); the person is texted once per outage,
and past RETRY_DEADLINE the workflow fails."""

from __future__ import annotations

import logging
from typing import Any

from handlers.messages import SourceRecord
from handlers.sms_text import render_outage_sms
from handlers.workflow import Stage, WorkflowState
from streams.stages.context import StageContext
from streams.stages.failures import fail_in, restart_message
from streams.stages.retrying import Exhausted
from streams.storage.protocol import RepositoryTransaction
from streams.storage.records import Workflow

log = logging.getLogger(__name__)


async def park_or_fail(ctx: StageContext, wf: Workflow, state: WorkflowState, stage: Stage, error: Exhausted,
                       *, source: SourceRecord | None = None, **fail_fields: Any) -> None:
    """A peer outlasted the in-call retries: park ``wf`` in ``state`` and
    try ``stage`` again later, texting the person once per outage; past
    RETRY_DEADLINE, fail it."""
    ctx = await ctx.about(wf) or ctx  # the person whose email it is is told
    async with ctx.repo.transaction() as tx:
        sms = await park_or_fail_in(ctx, tx, wf, state, stage, error, source=source, **fail_fields)
    await ctx.tell_person(sms)


async def park_or_fail_in(ctx: StageContext, tx: RepositoryTransaction, wf: Workflow, state: WorkflowState,
                          stage: Stage, error: Exhausted, *, source: SourceRecord | None = None,
                          **fail_fields: Any) -> str | None:
    """:func:`park_or_fail` inside ``tx``; returns the SMS to text once it commits."""
    now = ctx.clock.now()
    since = wf.parked_since or now
    next_at = ctx.park_policy.next_attempt(wf.park_attempts, since, now)
    if next_at is None:
        return await fail_in(ctx, tx, wf, state, stage, error, source=source, **fail_fields)
    peer = error.last.peer
    if not await tx.park(wf.message_id, state, stage=stage.value, peer=peer, reason=str(error.last),
                         since=since, attempts=wf.park_attempts + 1, next_attempt_at=next_at,
                         release_send="send_attempted_at" in fail_fields):
        return None
    log.warning("%s parked at %s: %s; next try at %s", wf.message_id, stage, error.last, next_at.isoformat())
    return render_outage_sms(peer) if await tx.note_outage(peer, ctx.person_id) else None


async def resume_parked(ctx: StageContext, limit: int = 100) -> int:
    """Set going again every parked stage whose next try is due (through
    its topic, so the partition's owner runs it); forget outages that hold
    nothing parked any more."""
    async with ctx.repo.transaction() as tx:
        due = await tx.claim_due_parked(limit)
        for wf in due:
            if wf.park_stage != Stage.DRAFT.value:  # a due draft is leased by a generation pool
                await tx.publish(restart_message(Stage(wf.park_stage or Stage.DRAFT.value), wf))
        for peer in await tx.end_outages():
            log.info("%s is back: nothing is parked on it any more", peer)
    return len(due)
