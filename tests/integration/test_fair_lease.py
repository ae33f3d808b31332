"""Fair scheduling across people (docs/design.md, "Many people"), on real
PostgreSQL: the poller's intake and the generation lease give each mailbox
and each person their turn, so one person's backlog never holds another
person's new email."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from handlers.workflow import WorkflowState
from streams.storage.repository import Pool, WorkflowRepository

from tests.support.factories import insert_email, start_workflow

S = WorkflowState


async def _drafts_asked(repo: WorkflowRepository, pool: Pool, person: int, n: int, start: datetime) -> list[str]:
    """``n`` emails of ``person`` whose drafts were asked for, oldest first from ``start``."""
    ids = [await start_workflow(repo, pool, received_at=start + timedelta(seconds=i)) for i in range(n)]
    async with pool.connection() as conn:
        await conn.execute("UPDATE workflow_state SET person_id = %s, current_state = %s WHERE message_id = ANY(%s)",
                           (person, S.AI_GENERATING.value, ids))
    return ids


async def test_another_persons_new_email_is_leased_before_a_backlog_drains(
        repo: WorkflowRepository, pool: Pool) -> None:
    old = datetime.now(UTC) - timedelta(days=1)
    backlog = await _drafts_asked(repo, pool, 1, 200, old)  # Ann: 200 emails waiting since yesterday
    first = await repo.lease_drafts(8, 30)
    assert sorted(wf.message_id for wf in first) == sorted(backlog[:8])  # alone, she gets every slot, oldest first
    [bobs] = await _drafts_asked(repo, pool, 2, 1, datetime.now(UTC))  # Bob's one new email
    [cats] = await _drafts_asked(repo, pool, 3, 1, datetime.now(UTC))
    nxt = await repo.lease_drafts(3, 30)
    # Bob's and Cat's come first though Ann's are older: she has 8 in flight, they have none.
    assert {wf.message_id for wf in nxt} == {bobs, cats, backlog[8]}
    assert [wf.person_id for wf in nxt].count(1) == 1


async def test_the_slots_are_shared_by_turns_not_by_age(repo: WorkflowRepository, pool: Pool) -> None:
    old = datetime.now(UTC) - timedelta(days=1)
    anns = await _drafts_asked(repo, pool, 1, 50, old)
    bobs = await _drafts_asked(repo, pool, 2, 50, old + timedelta(hours=1))  # all newer than Ann's
    leased = await repo.lease_drafts(10, 30)
    mine = [wf.message_id for wf in leased if wf.person_id == 1]
    theirs = [wf.message_id for wf in leased if wf.person_id == 2]
    assert sorted(mine) == sorted(anns[:5]) and sorted(theirs) == sorted(bobs[:5])  # five each, oldest first


async def test_the_default_person_alone_is_served_oldest_first_as_before(repo: WorkflowRepository, pool: Pool) -> None:
    old = datetime.now(UTC) - timedelta(days=1)
    mine = await _drafts_asked(repo, pool, 0, 20, old)
    leased = await repo.lease_drafts(5, 30)
    assert [wf.message_id for wf in leased] == mine[:5]


async def _pending(pool: Pool, n: int, start: datetime, *, mailbox: str | None = None,
                   to: str = "me@example.com") -> list[str]:
    """``n`` pending emails to ``mailbox`` (or to ``to``, without one), oldest first from ``start``."""
    async with pool.connection() as conn:
        ids = [await insert_email(conn, to_addresses=[to], received_at=start + timedelta(seconds=i))
               for i in range(n)]
        if mailbox is not None:
            await conn.execute("UPDATE processed_emails SET mailbox = %s WHERE message_id = ANY(%s)", (mailbox, ids))
    return ids


async def test_intake_takes_another_mailboxs_new_email_before_a_backlog(repo: WorkflowRepository, pool: Pool) -> None:
    old = datetime.now(UTC) - timedelta(days=1)
    backlog = await _pending(pool, 300, old, mailbox="ann@example.com")  # waiting since yesterday
    [bobs] = await _pending(pool, 1, datetime.now(UTC), mailbox="Bob <BOB@example.com>")
    [cats] = await _pending(pool, 1, datetime.now(UTC), to="cat@example.com")  # no mailbox: her recipients
    async with repo.transaction() as tx:
        taken = [e.message_id for e in await tx.claim_pending_emails(10)]
    # Bob's and Cat's are taken in this batch, not after Ann's 300; Ann's oldest first.
    assert set(taken) == {bobs, cats, *backlog[:8]}
    async with repo.transaction() as tx:
        assert [e.message_id for e in await tx.claim_pending_emails(5)] == backlog[8:13]


async def test_intake_of_one_mailbox_is_oldest_first_as_before(repo: WorkflowRepository, pool: Pool) -> None:
    old = datetime.now(UTC) - timedelta(days=1)
    newer = await _pending(pool, 5, old + timedelta(hours=1))
    older = await _pending(pool, 5, old)
    async with repo.transaction() as tx:
        assert [e.message_id for e in await tx.claim_pending_emails(7)] == [*older, *newer[:2]]


async def test_lessees_at_once_never_lease_the_same_draft(repo: WorkflowRepository, pool: Pool) -> None:
    """Six generation pools (several workers) leasing at once: each draft is
    leased once. The ranking reads a snapshot, so a draft another pool leases
    and commits while this one ranks must be checked again once locked (a
    race: without that check, each round finds drafts leased twice about two
    times in three, so four rounds)."""
    old = datetime.now(UTC) - timedelta(days=1)
    drafts = [*await _drafts_asked(repo, pool, 1, 150, old), *await _drafts_asked(repo, pool, 2, 100, old),
              *await _drafts_asked(repo, pool, 0, 50, old)]

    async def lessee() -> list[str]:
        mine: list[str] = []
        for _ in range(200):  # a bound: 300 drafts, at least one each call while any is left
            leased = await repo.lease_drafts(3, 60)
            if not leased:
                break
            mine += [wf.message_id for wf in leased]
        return mine

    for _ in range(4):
        leased = [mid for one in await asyncio.gather(*(lessee() for _ in range(6))) for mid in one]
        twice = sorted({mid for mid in leased if leased.count(mid) > 1})
        assert twice == [] and sorted(leased) == sorted(drafts)
        async with pool.connection() as conn:  # the next round: every lease lapsed
            await conn.execute("UPDATE workflow_state SET lease_until = NULL")
