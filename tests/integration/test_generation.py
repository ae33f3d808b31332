"""The generation pool on real PostgreSQL with a slow generator on loopback:
many calls in flight (bounded), a dead worker's drafts taken over when its
lease lapses, and a Retry-After that slows the whole pool."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from handlers.clock import OffsetClock
from handlers.messages import EmailPending
from handlers.workflow import WorkflowState
from standins import AiGeneratorStub
from streams.pipeline.generation import GenerationPool
from streams.storage.repository import Pool, WorkflowRepository

from tests.support.factories import start_workflow
from tests.support.harness import eventually

S = WorkflowState


@pytest.fixture
async def generator() -> AsyncIterator[AiGeneratorStub]:
    stub = AiGeneratorStub()
    await stub.start()
    yield stub
    await stub.stop()


async def requested(repo: WorkflowRepository, pool: Pool, stages: Any, n: int) -> list[str]:
    """``n`` emails whose drafts the draft agent has asked for."""
    ids = []
    for _ in range(n):
        mid = await start_workflow(repo, pool)
        await stages.draft([EmailPending(message_id=mid)])
        ids.append(mid)
    return ids


async def states(repo: WorkflowRepository, ids: list[str]) -> set[WorkflowState]:
    return {(await repo.get(mid)).current_state for mid in ids}  # type: ignore[union-attr]


@contextlib.asynccontextmanager
async def running(pool: GenerationPool) -> AsyncIterator[None]:
    """``pool`` runs for the body of the ``async with``, then stops."""
    task = asyncio.create_task(pool.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def until_drafted(repo: WorkflowRepository, ids: list[str], timeout: float) -> None:
    async def all_drafted() -> bool:
        return await states(repo, ids) == {S.AI_GENERATED}

    await eventually(all_drafted, timeout, f"{len(ids)} drafts")


async def test_many_slow_generations_are_in_flight_at_once_but_no_more_than_allowed(
    repo: WorkflowRepository, pool: Pool, database: str, make_stages: Any, generator: AiGeneratorStub
) -> None:
    generator.delay = 0.5
    stages = make_stages(ai_reply_generator_url=generator.url)
    ids = await requested(repo, pool, stages, 40)
    workers = GenerationPool(stages, repo, database, concurrency=16, lease_seconds=30)
    async with running(workers):
        await until_drafted(repo, ids, 60)
    assert generator.max_in_flight == 16
    assert sorted(r["email_message_id"] for r in generator.requests) == sorted(ids)  # each once


async def test_a_dead_workers_drafts_are_taken_over_when_its_lease_lapses(
    repo: WorkflowRepository, pool: Pool, clock: OffsetClock, database: str, make_stages: Any,
    generator: AiGeneratorStub
) -> None:
    stages = make_stages(ai_reply_generator_url=generator.url)
    ids = await requested(repo, pool, stages, 3)
    assert len(await repo.lease_drafts(10, 30)) == 3  # a worker took them, then died
    survivor = GenerationPool(stages, repo, database, concurrency=4, lease_seconds=30)
    assert await survivor.fill() == 0  # leased elsewhere
    clock.advance(timedelta(seconds=31))
    assert await survivor.fill() == 3
    await asyncio.gather(*survivor.in_flight.values())
    assert await states(repo, ids) == {S.AI_GENERATED}


async def test_a_lease_is_renewed_while_the_call_runs(
    repo: WorkflowRepository, pool: Pool, database: str, make_stages: Any, generator: AiGeneratorStub
) -> None:
    """A call that outlasts the lease: the lease moves forward while it runs,
    so neither this pool nor another worker's takes the draft again."""
    generator.delay = 4.0  # the call lasts more than twice the lease
    stages = make_stages(ai_reply_generator_url=generator.url)
    [mid] = await requested(repo, pool, stages, 1)
    mine = GenerationPool(stages, repo, database, concurrency=4, lease_seconds=1.5, poll_interval=0.2)
    theirs = GenerationPool(stages, repo, database, concurrency=4, lease_seconds=1.5, poll_interval=0.2)
    async with running(mine), running(theirs):
        first = await eventually(lambda: _lease(repo, mid), 10, "the draft leased")
        await eventually(lambda: _asyncly(len(generator.requests) == 1), 10, "the call to the generator")
        await eventually(lambda: _lease(repo, mid, later_than=first), 3, "the lease renewed while the call runs")
        await until_drafted(repo, [mid], 15)
    assert len(generator.for_email(mid)) == 1  # one generation: the lease never lapsed
    assert mine.finished + theirs.finished == 1


async def _lease(repo: WorkflowRepository, mid: str, later_than: datetime | None = None) -> datetime | None:
    """The draft's lease while it is being generated, when it ends after ``later_than``."""
    wf = await repo.get(mid)
    if wf is None or wf.current_state is not S.AI_GENERATING or wf.lease_until is None:
        return None
    return wf.lease_until if later_than is None or wf.lease_until > later_than else None


def pushing_back(generator: AiGeneratorStub, make_stages: Any, status: int, *, retry_after: str,
                 delay: float) -> Any:
    """Stages whose generator first answers ``status`` with ``Retry-After``,
    then drafts in ``delay`` seconds."""
    generator.failures = [status]
    generator.retry_after = retry_after
    generator.delay = delay
    return make_stages(ai_reply_generator_url=generator.url, retry_backoff_base=0.01, retry_backoff_max=0.02)


async def test_retry_after_slows_the_whole_pool(
    repo: WorkflowRepository, pool: Pool, database: str, make_stages: Any, generator: AiGeneratorStub
) -> None:
    stages = pushing_back(generator, make_stages, 503, retry_after="2", delay=0.05)
    ids = await requested(repo, pool, stages, 6)
    workers = GenerationPool(stages, repo, database, concurrency=2, lease_seconds=30)
    async with running(workers):
        await until_drafted(repo, ids, 30)
    [(told_at, _)] = [a for a in generator.answered if a[1] == 503]
    later = [at for at, code in generator.answered if code == 200 and at > told_at]
    # The other call in flight may finish, but nothing new starts until the gate opens: a lower
    # bound, which is the behaviour itself (Retry-After: 2), and which a slow machine only widens.
    started_after = sorted(later)[1:]
    assert started_after and min(started_after) - told_at >= 1.9


async def test_pushback_halves_the_calls_in_flight_and_successes_earn_them_back(
    repo: WorkflowRepository, pool: Pool, database: str, make_stages: Any, generator: AiGeneratorStub
) -> None:
    stages = pushing_back(generator, make_stages, 429, retry_after="0.5", delay=0.3)
    ids = await requested(repo, pool, stages, 60)
    workers = GenerationPool(stages, repo, database, concurrency=8, lease_seconds=30)
    async with running(workers):
        await until_drafted(repo, ids, 60)
    [(told_at, _)] = [a for a in generator.answered if a[1] == 429]
    assert generator.max_in_flight == 8
    # Counted at each call's arrival, not sampled on a clock (a slow machine cannot move these
    # counts): the pool's eight calls after the pushback never find eight in flight, as they
    # would without the halving; at most half the pool, plus what the successes of the calls
    # already in flight earned back.
    first_after = [n for at, n in generator.started if at > told_at][:8]
    assert len(first_after) == 8 and max(first_after) <= 6
    assert workers.limit == 8  # and earned back by the 60 successes that followed


async def test_the_limit_halves_per_pushback_and_grows_by_one_per_window_of_successes(
    repo: WorkflowRepository, database: str, make_stages: Any
) -> None:
    stages = make_stages()
    workers = GenerationPool(stages, repo, database, concurrency=64, lease_seconds=30)
    stages.generator_gate.hold(0)
    stages.generator_gate.hold(0)  # two calls told at once: one pushback
    workers._adapt(succeeded=False)
    assert workers.limit == 32
    for _ in range(32):
        workers._adapt(succeeded=True)
    assert 32.9 < workers.limit < 33.1  # one more call after a window of 32 successes
    for _ in range(5):
        stages.generator_gate.hold(0)
        workers._adapt(succeeded=False)
    assert 1 <= workers.limit < 1.1  # halved five times (33 / 32), never below one call


async def _asyncly(value: bool) -> bool:
    return value
