"""Senders who come first, on real PostgreSQL: the poller starts their
emails with priority 1 (VIP_SENDERS and the patterns marked on the
dashboard), the generation lease and the phone take them first, marking and
unmarking move the open ones, and the lease still reads an index."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from handlers.workflow import WorkflowState
from streams.pipeline.poller import EmailPoller
from streams.storage import vips
from streams.storage.records import Email
from streams.storage.repository import LEASE, Pool, WorkflowRepository
from tests.support.factories import insert_email

S = WorkflowState
T0 = datetime.now(UTC) - timedelta(hours=1)


async def _priorities(pool: Pool, ids: list[str]) -> list[int]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT message_id, priority FROM workflow_state WHERE message_id = ANY(%s)", (ids,))
        found = {r["message_id"]: r["priority"] for r in await cur.fetchall()}
    return [found[m] for m in ids]


async def _emails(pool: Pool, *senders: str) -> list[str]:
    async with pool.connection() as conn:
        return [await insert_email(conn, from_address=s, received_at=T0 + timedelta(minutes=n))
                for n, s in enumerate(senders)]


async def test_the_poller_starts_vip_emails_first_in_line_and_says_why(
        repo: WorkflowRepository, pool: Pool, database: str) -> None:
    async with repo.transaction() as tx:
        assert await vips.mark(tx, "partner.example") == []
    ids = await _emails(pool, "Ann <ann@one.example>", "The Boss <boss@boss.example>",
                        "Pat <pat@mail.partner.example>", "Bob <bob@two.example>")
    await EmailPoller(repo, database, interval=60, vip_patterns=["*@boss.example"]).poll_once()
    assert await _priorities(pool, ids) == [0, 1, 1, 0]
    reasons = [(await repo.audit_trail(m))[0].transition_reason for m in ids]
    assert reasons == ["picked up by the poller", "picked up by the poller; VIP sender (*@boss.example)",
                       "picked up by the poller; VIP sender (partner.example)", "picked up by the poller"]

    for mid in ids:  # all four asked for: the lease takes the VIP ones first, then the oldest
        assert await repo.transition(mid, S.PENDING, S.AI_GENERATING, "draft requested")
    leased = [wf.message_id for wf in await repo.lease_drafts(2, 60)]
    assert leased == [ids[1], ids[2]]
    assert [wf.message_id for wf in await repo.lease_drafts(10, 60)] == [ids[0], ids[3]]

    for mid in ids:  # and the phone takes them in the same order
        assert await repo.transition(mid, S.AI_GENERATING, S.AI_GENERATED, "draft generated",
                                     ai_reply_text="Sure.")
    async with repo.transaction() as tx:
        ready = await tx.phone.oldest_ready(person=0)
    assert ready is not None and ready.message_id == ids[1] and ready.priority == 1


async def test_marking_moves_the_open_emails_up_and_unmarking_moves_them_down(
        repo: WorkflowRepository, pool: Pool, database: str) -> None:
    ids = await _emails(pool, "Ann <ann@one.example>", "Ann again <ANN@one.example>", "Bob <bob@two.example>")
    await EmailPoller(repo, database, interval=60, vip_patterns=["bob@two.example"]).poll_once()
    assert await repo.transition(ids[1], S.PENDING, S.FILTERED, "no draft: test")  # closed: left alone
    async with repo.transaction() as tx:
        assert await vips.mark(tx, "ann@one.example") == [ids[0]]
        assert await vips.mark(tx, "ann@one.example") is None  # marked already
        assert [v.pattern for v in await vips.marked(tx)] == ["ann@one.example"]
    assert await _priorities(pool, ids) == [1, 0, 1]
    trail = await repo.audit_trail(ids[0])
    assert (trail[-1].from_state, trail[-1].to_state, trail[-1].transition_reason) == (
        "pending", "pending", "sender marked VIP on the dashboard (ann@one.example)")

    async with repo.transaction() as tx:  # Bob stays VIP: VIP_SENDERS still names him
        assert await vips.unmark(tx, "ann@one.example", kept=["bob@two.example"]) == [ids[0]]
        assert await vips.unmark(tx, "ann@one.example", kept=[]) is None
        assert await vips.marked(tx) == []
    assert await _priorities(pool, ids) == [0, 0, 1]


async def test_each_persons_own_vip_senders_raise_only_their_emails(
        repo: WorkflowRepository, pool: Pool, database: str) -> None:
    """Ann's VIP_SENDERS (her ``people.vip_senders``) name the board; Bob has
    none of his own, so the worker's; the same sender writes to both."""
    async with pool.connection() as conn:
        ids = [await insert_email(conn, from_address="Chair <chair@board.example>", to_addresses=[to],
                                  received_at=T0 + timedelta(minutes=n))
               for n, to in enumerate(["ann@a.example", "bob@b.example", "me@example.com"])]
    owners = {ids[0]: 1, ids[1]: 2, ids[2]: 0}

    async def route(emails: Sequence[Email]) -> Mapping[str, int | None]:
        return {e.message_id: owners[e.message_id] for e in emails}

    async def people_vips() -> Mapping[int, Sequence[str]]:
        return {1: ["*@board.example"], 2: ["*@worker-vip.example"]}

    await EmailPoller(repo, database, interval=60, vip_patterns=["*@worker-vip.example"], router=route,
                      people_vips=people_vips).poll_once()
    assert await _priorities(pool, ids) == [1, 0, 0]  # Ann's only: not Bob's, not the default person's

    async with repo.transaction() as tx:  # a pattern marked on the dashboard is everyone's ...
        assert sorted(await vips.mark(tx, "board.example") or []) == sorted(ids[1:])
    assert await _priorities(pool, ids) == [1, 1, 1]
    async with repo.transaction() as tx:  # ... and unmarked, Ann's own pattern keeps hers
        moved = await vips.unmark(tx, "board.example", kept=["*@worker-vip.example"], kept_by=await people_vips())
    assert sorted(moved or []) == sorted(ids[1:])
    assert await _priorities(pool, ids) == [1, 0, 0]


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(n for child in plan.get("Plans", []) for n in _nodes(child))]


async def test_the_lease_reads_a_few_drafts_per_person_from_the_index_on_a_large_table(pool: Pool) -> None:
    """200,000 workflows, 2,000 of them waiting to be generated (a tenth
    VIP) for three people: the lease skips through workflow_state_lease_idx
    a person at a time and reads only each person's first ``limit`` drafts,
    in order, however long their backlog (no scan of the table, no sort of
    the backlog)."""
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO processed_emails (message_id, from_address, received_at, status)"
            " SELECT 'm' || n, 'a@b.example', now() - n * interval '1 second', 'sent'"
            " FROM generate_series(1, 200000) AS n")
        await conn.execute(
            "INSERT INTO workflow_state (message_id, current_state, email_received_at, created_at, updated_at,"
            " priority, person_id) SELECT 'm' || n,"
            " CASE WHEN mod(n, 100) = 0 THEN 'ai_generating' ELSE 'reply_sent' END,"
            " now() - n * interval '1 second', now(), now(), CASE WHEN mod(n, 1000) = 0 THEN 1 ELSE 0 END,"
            " mod(n, 3) FROM generate_series(1, 200000) AS n")
        await conn.execute("ANALYZE workflow_state")
        now = datetime.now(UTC)
        cur = await conn.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + LEASE,
            {"state": S.AI_GENERATING.value, "now": now, "limit": 8, "until": now + timedelta(minutes=1)})
        row = await cur.fetchone()
        await conn.rollback()  # EXPLAIN ANALYZE leased them
        assert row is not None
        plan = row["QUERY PLAN"]
        nodes = _nodes((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"])
        kinds = [(n["Node Type"], n.get("Index Name")) for n in nodes]
        assert ("Seq Scan", None) not in kinds, kinds
        read = [n for n in nodes if n.get("Index Name") == "workflow_state_lease_idx"
                and n["Node Type"] == "Index Scan" and n.get("Actual Loops") == 3]
        assert len(read) == 1, kinds  # once per person
        assert read[0]["Actual Rows"] <= 8, read[0]  # per person: the first 8 of their 666 or 667
        sorted_rows = [n.get("Actual Rows", 0) for n in nodes if n["Node Type"] in ("Sort", "Incremental Sort")]
        assert max(sorted_rows, default=0) <= 3 * 8, sorted_rows
