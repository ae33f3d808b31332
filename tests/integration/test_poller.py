"""The poller on real PostgreSQL: pending emails become workflows, oldest
first, each once, with the emails.pending message beside them in the outbox;
POLL_LIMIT caps a poll and POLL_ON_NOTIFY=false leaves only the sweeps; a
backlog is taken in only as fast as the drafts are asked for."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from handlers.workflow import WorkflowState
from streams.pipeline.poller import AHEAD, BATCH, EmailPoller
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
    poller = EmailPoller(repo, database, interval=60, ahead_wait=0)  # no draft agent here to wait for
    assert await poller.poll_once() == 1200  # twelve claims of 100
    assert await outbox(pool, "emails.pending") == ids[::-1]
    assert await poller.poll_once() == 0  # each once


async def test_one_person_alone_has_their_backlog_taken_at_once_oldest_first(
        repo: WorkflowRepository, pool: Pool, database: str) -> None:
    """No people share the deployment: nobody's newcomer can wait behind the
    backlog, so it is neither paced nor ranked by mailbox (as before people)."""
    now = datetime.now(UTC)
    async with pool.connection() as conn:
        ids = [await insert_email(conn, to_addresses=[f"alias{n // 600}@example.com"],
                                  received_at=now - timedelta(minutes=n)) for n in range(1200)]

    async def alone() -> bool:
        return False

    poller = EmailPoller(repo, database, interval=60, ahead_wait=60, shared=alone)  # no draft agent: pacing would wait
    assert await asyncio.wait_for(poller.poll_once(), 30) == 1200
    assert await outbox(pool, "emails.pending") == ids[::-1]  # oldest first, whichever address each came to


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


async def test_a_backlog_is_taken_in_as_fast_as_it_is_drafted_so_a_newcomer_is_not_queued_behind_it(
        repo: WorkflowRepository, pool: Pool, database: str) -> None:
    old = datetime.now(UTC) - timedelta(days=1)
    async with pool.connection() as conn:
        for n in range(400):
            await insert_email(conn, to_addresses=["ann@example.com"], received_at=old + timedelta(seconds=n))
    ahead_of_bob: list[int] = []
    bob: list[str] = []

    async def draft_agent() -> None:
        """Asks for 40 drafts a second, as a slow draft agent would; notes how many
        emails taken in still wait for it when Bob's is taken in."""
        for _ in range(2000):  # a bound: 100 s
            async with pool.connection() as conn:
                if bob and not ahead_of_bob:
                    cur = await conn.execute(
                        "SELECT count(*) FILTER (WHERE message_id <> %s) AS n, count(*) FILTER (WHERE message_id = %s)"
                        " AS bob FROM workflow_state WHERE current_state = %s",
                        (bob[0], bob[0], WorkflowState.PENDING.value))
                    row = await cur.fetchone()
                    if row is not None and row["bob"]:
                        ahead_of_bob.append(row["n"])
                await conn.execute(
                    "UPDATE workflow_state SET current_state = %s WHERE id IN (SELECT id FROM workflow_state"
                    " WHERE current_state = %s ORDER BY id LIMIT 2)",
                    (WorkflowState.AI_GENERATING.value, WorkflowState.PENDING.value))
            await asyncio.sleep(0.05)

    # However slow this machine makes the draft agent, the poller waits for it
    # (the default AHEAD_WAIT gives up after 5 s: right for a stopped agent, not for a test).
    poller = EmailPoller(repo, database, interval=60, ahead_wait=60)
    agent = asyncio.create_task(draft_agent())
    polling = asyncio.create_task(poller.poll_once())
    try:
        async def taken_in_300() -> bool:
            return len(await outbox(pool, "emails.pending")) >= 300

        await eventually(taken_in_300, 30, "300 of Ann's taken in")
        async with pool.connection() as conn:
            bob.append(await insert_email(conn, to_addresses=["bob@example.com"]))  # Bob's one new email
        assert await asyncio.wait_for(polling, 120) == 401
        await eventually(lambda: _is(bool(ahead_of_bob)), 30, "Bob's email taken in")
    finally:
        agent.cancel()
    # What is ahead of Bob's in emails.pending is what the poller may run ahead of the drafting
    # (taking all 400 at once, some 380 of Ann's would be ahead of it).
    assert ahead_of_bob[0] <= AHEAD + BATCH
