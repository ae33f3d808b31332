"""Timeouts are driven from the database with an injected clock: a 24-hour
response window is exercised in milliseconds, and a worker that was down for
a day catches up on its first sweep."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from handlers.clock import OffsetClock
from handlers.workflow import WorkflowState
from streams.storage.repository import Pool, WorkflowRepository

from tests.support.factories import start_workflow

S = WorkflowState


async def awaiting(repo: WorkflowRepository, pool: Pool, clock: OffsetClock, **email: object) -> str:
    mid = await start_workflow(repo, pool, **email)
    for a, b in [(S.PENDING, S.AI_GENERATING), (S.AI_GENERATING, S.AI_GENERATED),
                 (S.AI_GENERATED, S.SMS_SENDING)]:
        assert await repo.transition(mid, a, b, "test")
    assert await repo.transition(mid, S.SMS_SENDING, S.AWAITING_USER, "sms sent",
                                 timeout_at=clock.now() + timedelta(seconds=86400))
    return mid


async def test_a_day_later_the_draft_times_out(repo: WorkflowRepository, pool: Pool, clock: OffsetClock,
                                               make_stages: Any) -> None:
    stages = make_stages()
    mid = await awaiting(repo, pool, clock)
    clock.advance(timedelta(hours=23, minutes=59))
    assert await stages.expire_timeouts() == 0
    assert (await repo.get(mid)).current_state is S.AWAITING_USER  # type: ignore[union-attr]
    clock.advance(timedelta(minutes=1))
    assert await stages.expire_timeouts() == 1
    wf = await repo.get(mid)
    assert wf is not None and wf.current_state is S.TIMEOUT
    trail = await repo.audit_trail(mid)
    assert (trail[-1].from_state, trail[-1].to_state, trail[-1].transition_reason) == (
        "awaiting_user", "timeout", "no answer within 86400s")
    assert await stages.expire_timeouts() == 0  # once


async def test_a_worker_down_for_days_catches_up_at_once(repo: WorkflowRepository, pool: Pool,
                                                         clock: OffsetClock, make_stages: Any) -> None:
    stages = make_stages()
    ids = [await awaiting(repo, pool, clock) for _ in range(5)]
    clock.advance(timedelta(days=3))
    assert await stages.expire_timeouts() == 5
    for mid in ids:
        assert (await repo.get(mid)).current_state is S.TIMEOUT  # type: ignore[union-attr]
