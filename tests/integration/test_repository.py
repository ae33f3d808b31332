"""The compare-and-set repository against real PostgreSQL."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers.workflow import IllegalTransitionError, WorkflowState, is_allowed
from streams.storage.repository import Pool, WorkflowRepository

from tests.support.factories import insert_email, start_workflow

S = WorkflowState


async def email_status(pool: Pool, message_id: str) -> str:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT status FROM processed_emails WHERE message_id = %s", (message_id,))
        row = await cur.fetchone()
        assert row is not None
        return str(row["status"])


async def test_transition_writes_state_audit_status_and_event(repo: WorkflowRepository, pool: Pool) -> None:
    mid = await start_workflow(repo, pool)
    assert await email_status(pool, mid) == "orchestrating"
    assert await repo.transition(mid, S.PENDING, S.AI_GENERATING, "draft requested")
    assert await repo.transition(mid, S.AI_GENERATING, S.FAILED, "generator gave up",
                                 error="404 unknown email", failed_stage="draft")
    wf = await repo.get(mid)
    assert wf is not None
    assert (wf.current_state, wf.previous_state, wf.failed_stage) == (S.FAILED, "ai_generating", "draft")
    assert await email_status(pool, mid) == "failed"
    trail = await repo.audit_trail(mid)
    assert [(a.from_state, a.to_state) for a in trail] == [
        (None, "pending"), ("pending", "ai_generating"), ("ai_generating", "failed")]
    assert trail[-1].error_details == "404 unknown email"
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT topic, message_key, payload FROM kafka_outbox ORDER BY id")
        events = await cur.fetchall()
    assert [e["topic"] for e in events] == ["workflow.events"] * 3
    assert {e["message_key"] for e in events} == {mid}
    last = json.loads(events[-1]["payload"])
    assert last["schema_version"] == 1
    assert (last["from_state"], last["to_state"], last["error"]) == ("ai_generating", "failed", "404 unknown email")


async def test_a_lost_race_changes_nothing(repo: WorkflowRepository, pool: Pool) -> None:
    mid = await start_workflow(repo, pool)
    assert await repo.transition(mid, S.PENDING, S.AI_GENERATING, "first")
    assert not await repo.transition(mid, S.PENDING, S.AI_GENERATING, "redelivered")
    assert len(await repo.audit_trail(mid)) == 2


async def test_illegal_transition_raises_before_touching_the_database(repo: WorkflowRepository, pool: Pool) -> None:
    mid = await start_workflow(repo, pool)
    with pytest.raises(IllegalTransitionError):
        await repo.transition(mid, S.PENDING, S.REPLY_SENT, "skip ahead")
    with pytest.raises(ValueError, match="not settable"):
        await repo.transition(mid, S.PENDING, S.AI_GENERATING, "x", current_state="sneaky")
    wf = await repo.get(mid)
    assert wf is not None and wf.current_state == S.PENDING
    assert len(await repo.audit_trail(mid)) == 1


async def test_twenty_concurrent_attempts_exactly_one_wins(repo: WorkflowRepository, pool: Pool) -> None:
    mid = await start_workflow(repo, pool)
    await repo.transition(mid, S.PENDING, S.AI_GENERATING, "draft")
    await repo.transition(mid, S.AI_GENERATING, S.AI_GENERATED, "draft ready")
    await repo.transition(mid, S.AI_GENERATED, S.SMS_SENDING, "presenting")
    await repo.transition(mid, S.SMS_SENDING, S.AWAITING_USER, "sms sent")
    before = len(await repo.audit_trail(mid))

    start = asyncio.Event()

    async def attempt(i: int) -> bool:
        await start.wait()
        return await repo.transition(mid, S.AWAITING_USER, S.USER_APPROVED, f"approve #{i}", user_command="1")

    tasks = [asyncio.create_task(attempt(i)) for i in range(20)]
    await asyncio.sleep(0.05)
    start.set()
    results = await asyncio.gather(*tasks)
    assert results.count(True) == 1
    assert results.count(False) == 19
    trail = await repo.audit_trail(mid)
    assert len(trail) == before + 1
    assert trail[-1].to_state == "user_approved"


async def test_two_pollers_never_claim_the_same_email(repo: WorkflowRepository, pool: Pool) -> None:
    async with pool.connection() as conn:
        ids = [await insert_email(conn) for _ in range(30)]

    async def claim() -> list[str]:
        got: list[str] = []
        while True:
            async with repo.transaction() as tx:
                batch = await tx.claim_pending_emails(3)
                await asyncio.sleep(0.001)
            if not batch:
                return got
            got += [e.message_id for e in batch]

    a, b = await asyncio.gather(claim(), claim())
    assert sorted(a + b) == sorted(ids)
    assert not set(a) & set(b)


attempts = st.lists(st.tuples(st.sampled_from(list(S)), st.sampled_from(list(S))), max_size=25)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(attempts)
async def test_random_event_sequences_keep_the_invariants(
    repo: WorkflowRepository, pool: Pool, steps: list[tuple[WorkflowState, WorkflowState]]
) -> None:
    mid = await start_workflow(repo, pool)
    model, won = S.PENDING, 0
    for expected, new in steps:
        if not is_allowed(expected, new):
            with pytest.raises(IllegalTransitionError):
                await repo.transition(mid, expected, new, "random")
            continue
        ok = await repo.transition(mid, expected, new, "random")
        assert ok == (model == expected)
        if ok:
            model, won = new, won + 1
    wf = await repo.get(mid)
    assert wf is not None and wf.current_state == model
    trail = await repo.audit_trail(mid)
    assert len(trail) == won + 1  # + the creation row
    for prev, row in zip(trail, trail[1:]):
        assert row.from_state == prev.to_state
        assert is_allowed(S(row.from_state), S(row.to_state))


async def test_a_person_with_every_code_in_use_gets_none_and_holds_nobody_else(
        repo: WorkflowRepository, pool: Pool) -> None:
    from handlers.codes import MAX_DIGITS, capacity

    full = capacity(MAX_DIGITS)
    async with pool.connection() as conn:  # Ann's 11,264 open drafts, each with a code of hers
        await conn.execute(
            "INSERT INTO processed_emails (message_id, from_address, received_at)"
            " SELECT '<full' || n || '@x>', 'z@x.example', now() FROM generate_series(1, %s) AS n", (full,))
        await conn.execute(
            "INSERT INTO workflow_state (message_id, current_state, person_id, draft_code)"
            " SELECT '<full' || n || '@x>', %s, 1, 'C' || n FROM generate_series(1, %s) AS n",
            (WorkflowState.AWAITING_USER.value, full))
    anns, bobs = await start_workflow(repo, pool), await start_workflow(repo, pool)
    async with pool.connection() as conn:
        for mid, person in ((anns, 1), (bobs, 2)):
            await conn.execute("UPDATE workflow_state SET person_id = %s, draft_code = NULL WHERE message_id = %s",
                               (person, mid))
    async with repo.transaction() as tx:
        given = await tx.give_codes([anns, bobs])  # one call for both, as intake makes it
    ann, bob = await repo.get(anns), await repo.get(bobs)
    assert ann is not None and ann.draft_code is None  # none free: she waits for one
    assert bob is not None and bob.draft_code is not None and given == [bob.draft_code]
