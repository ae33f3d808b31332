"""The poller on real PostgreSQL: pending emails become workflows, oldest
first, each once, with the emails.pending message beside them in the outbox;
POLL_LIMIT caps a poll and POLL_ON_NOTIFY=false leaves only the sweeps."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from streams.pipeline.poller import EmailPoller
from streams.storage.repository import Pool, WorkflowRepository

from tests.support.factories import insert_email
from tests.support.harness import eventually


async def outbox(pool: Pool, topic: str) -> list[str]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT payload::jsonb ->> 'message_id' AS m FROM kafka_outbox WHERE topic = %s"
                                 " ORDER BY id", (topic,))
        return [r["m"] for r in await cur.fetchall()]


async def test_a_poll_takes_everything_pending_oldest_first_in_one_go(
        repo: WorkflowRepository, pool: Pool, database: str) -> None:
    now = datetime.now(UTC)
    async with pool.connection() as conn:
        ids = [await insert_email(conn, received_at=now - timedelta(minutes=n)) for n in range(1200)]
    poller = EmailPoller(repo, database, interval=60)
    assert await poller.poll_once() == 1200  # three claims of 500, 500 and 200
    assert await outbox(pool, "emails.pending") == ids[::-1]
    assert await poller.poll_once() == 0  # each once


async def test_poll_limit_caps_each_poll(repo: WorkflowRepository, pool: Pool, database: str) -> None:
    async with pool.connection() as conn:
        ids = [await insert_email(conn) for _ in range(5)]
    poller = EmailPoller(repo, database, interval=60, limit=2)
    assert [await poller.poll_once() for _ in range(4)] == [2, 2, 1, 0]
    assert await outbox(pool, "emails.pending") == ids


async def test_without_notify_only_the_sweeps_take_emails(repo: WorkflowRepository, pool: Pool, database: str) -> None:
    poller = EmailPoller(repo, database, interval=1.5, on_notify=False)
    task = asyncio.create_task(poller.run())
    try:
        await eventually(lambda: _is(poller.last_poll_at is not None), 10, "the first sweep")
        first = poller.last_poll_at
        async with pool.connection() as conn:
            mid = await insert_email(conn)
        await eventually(lambda: _taken(pool, mid), 5, "the next sweep")
        # Taken by the sweep due an interval after the first, not by a wake-up at the INSERT
        # (that poll would have come at once, well inside the interval).
        assert poller.last_poll_at is not None and first is not None and poller.last_poll_at - first >= 1.4
    finally:
        task.cancel()


async def _taken(pool: Pool, mid: str) -> bool:
    return await outbox(pool, "emails.pending") == [mid]


async def _is(value: bool) -> bool:
    return value
