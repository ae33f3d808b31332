"""One contract, two backends: the repository on real PostgreSQL and the
in-memory fake the fast stage tests use must behave alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from handlers.clock import OffsetClock
from handlers.workflow import IllegalTransitionError, WorkflowState

from tests.support.fakes import FakeRepository

S = WorkflowState
PHONE = "+15551234567"
TO_AWAITING = [(S.PENDING, S.AI_GENERATING), (S.AI_GENERATING, S.AI_GENERATED),
               (S.AI_GENERATED, S.SMS_SENDING), (S.SMS_SENDING, S.AWAITING_USER)]


@dataclass
class Backend:
    repo: Any
    clock: OffsetClock
    start: Any
    topics: Any
    #: (topic, message_id) of every message queued, in order.
    queued: Any


@pytest.fixture(params=["postgres", "fake"])
def database_or_none(request: pytest.FixtureRequest) -> str | None:
    """A test database's conninfo for the PostgreSQL backend, None for the fake."""
    return request.getfixturevalue("database") if request.param == "postgres" else None  # type: ignore[no-any-return]


@pytest.fixture
async def backend(database_or_none: str | None, clock: OffsetClock) -> AsyncIterator[Backend]:
    if database_or_none is None:
        fake = FakeRepository(clock)
        yield Backend(fake, clock, fake.start, lambda: _aresult([m.topic for m in fake.data.outbox]),
                      lambda: _aresult([(m.topic, getattr(m, "message_id", None)) for m in fake.data.outbox]))
        return
    from streams.storage.database import create_pool
    from streams.storage.repository import WorkflowRepository

    from tests.support.factories import start_workflow

    pool = create_pool(database_or_none, max_size=4)
    await pool.open(wait=True)
    repo = WorkflowRepository(pool, clock)

    async def start(mid: str) -> None:
        await start_workflow(repo, pool, message_id=mid)

    async def topics() -> list[str]:
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT topic FROM kafka_outbox ORDER BY id")
            return [r["topic"] for r in await cur.fetchall()]

    async def queued() -> list[tuple[str, str | None]]:
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT topic, payload::jsonb ->> 'message_id' AS m FROM kafka_outbox ORDER BY id")
            return [(r["topic"], r["m"]) for r in await cur.fetchall()]

    try:
        yield Backend(repo, clock, start, topics, queued)
    finally:
        await pool.close()


async def _aresult(value: Any) -> Any:
    return value


async def walk(b: Backend, mid: str, steps: list[tuple[WorkflowState, WorkflowState]], **fields: Any) -> None:
    for source, target in steps:
        assert await b.repo.transition(mid, source, target, "test", **fields)


async def test_a_transition_wins_once_and_is_audited(backend: Backend) -> None:
    await backend.start("<a@x>")
    assert await backend.repo.transition("<a@x>", S.PENDING, S.AI_GENERATING, "go")
    assert not await backend.repo.transition("<a@x>", S.PENDING, S.AI_GENERATING, "again")
    with pytest.raises(IllegalTransitionError):
        await backend.repo.transition("<a@x>", S.AI_GENERATING, S.REPLY_SENT, "skip")
    trail = await backend.repo.audit_trail("<a@x>")
    assert [(e.from_state, e.to_state) for e in trail] == [(None, "pending"), ("pending", "ai_generating")]


async def test_the_phone_slot_holds_one_draft_until_a_decision_frees_it(backend: Backend) -> None:
    base = backend.clock.now()
    for mid in ("<a@x>", "<b@x>"):
        await backend.start(mid)
        await walk(backend, mid, TO_AWAITING[:2])
    async with backend.repo.transaction() as tx:
        assert await tx.phone.lock(PHONE) is None
        oldest = await tx.phone.oldest_ready()
        assert oldest is not None and oldest.message_id == "<a@x>"
        assert await tx.phone.count_waiting() == 2
        assert await tx.phone.count_waiting(exclude="<a@x>") == 1
        await tx.phone.assign(PHONE, "<a@x>")
    await walk(backend, "<a@x>", TO_AWAITING[2:])
    async with backend.repo.transaction() as tx:
        holder = await tx.phone.lock(PHONE)
        assert holder is not None and holder.current_state is S.AWAITING_USER
    backend.clock.advance(timedelta(seconds=1))
    assert await backend.repo.transition("<a@x>", S.AWAITING_USER, S.USER_IGNORED, "3")
    assert [m for topic, m in await backend.queued() if topic == "phone.freed"] == ["<a@x>"]
    async with backend.repo.transaction() as tx:
        assert await tx.phone.lock(PHONE) is None
    assert base <= backend.clock.now()


async def test_the_sms_ledger_acts_once(backend: Backend) -> None:
    async with backend.repo.transaction() as tx:
        assert await tx.sms.record("s1", PHONE, "1", None)
        assert not await tx.sms.record("s1", PHONE, "1", None)
        assert await tx.sms.claim("s1", PHONE, "1", None)
        assert not await tx.sms.claim("s1", PHONE, "1", None)
        assert await tx.sms.claim("s2", PHONE, "3", None)  # the webhook's record was never seen
        assert not await tx.sms.record("s2", PHONE, "3", None)
        await tx.sms.settle("s2", "ignored", None)


async def test_a_send_is_claimed_once_and_only_when_approved(backend: Backend) -> None:
    await backend.start("<a@x>")
    await walk(backend, "<a@x>", TO_AWAITING)
    async with backend.repo.transaction() as tx:
        assert not await tx.claim_send("<a@x>", "<r@x>")
    assert await backend.repo.transition("<a@x>", S.AWAITING_USER, S.USER_APPROVED, "1")
    async with backend.repo.transaction() as tx:
        assert await tx.claim_send("<a@x>", "<r@x>")
        assert not await tx.claim_send("<a@x>", "<r@x>")
    wf = await backend.repo.get("<a@x>")
    assert wf.reply_message_id == "<r@x>" and wf.send_attempted_at is not None
    last = (await backend.repo.audit_trail("<a@x>"))[-1]
    assert (last.from_state, last.to_state, last.transition_reason) == (
        "user_approved", "user_approved", "sending the reply as <r@x>")


async def test_due_timeouts_are_the_overdue_drafts_most_overdue_first(backend: Backend) -> None:
    now = backend.clock.now()
    for mid, due in (("<late@x>", now - timedelta(hours=1)), ("<later@x>", now - timedelta(hours=2)),
                     ("<future@x>", now + timedelta(hours=1))):
        await backend.start(mid)
        await walk(backend, mid, TO_AWAITING[:3])
        assert await backend.repo.transition(mid, S.SMS_SENDING, S.AWAITING_USER, "sent", timeout_at=due)
    assert await backend.repo.due_timeouts(now) == ["<later@x>", "<late@x>"]


async def test_a_failed_transaction_leaves_nothing_behind(backend: Backend) -> None:
    await backend.start("<a@x>")
    with pytest.raises(RuntimeError):
        async with backend.repo.transaction() as tx:
            assert await tx.transition("<a@x>", S.PENDING, S.AI_GENERATING, "go")
            raise RuntimeError("crash before commit")
    wf = await backend.repo.get("<a@x>")
    assert wf.current_state is S.PENDING
    assert len(await backend.repo.audit_trail("<a@x>")) == 1


async def test_many_move_at_once_each_as_if_alone(backend: Backend) -> None:
    for mid in ("<a@x>", "<b@x>", "<c@x>"):
        await backend.start(mid)
    await walk(backend, "<b@x>", TO_AWAITING[:1])  # already moved on: a redelivery
    async with backend.repo.transaction() as tx:
        moved = await tx.transition_many(["<c@x>", "<b@x>", "<a@x>", "<c@x>"], S.PENDING, S.AI_GENERATING,
                                         "draft requested")
    assert moved == ["<c@x>", "<a@x>"]
    for mid in moved:
        assert (await backend.repo.audit_trail(mid))[-1].transition_reason == "draft requested"
        assert (await backend.repo.get(mid)).current_state is S.AI_GENERATING
    events = [m for topic, m in await backend.queued() if topic == "workflow.events"]
    assert events[-2:] == ["<c@x>", "<a@x>"]
    async with backend.repo.transaction() as tx:
        assert await tx.transition_many([], S.PENDING, S.AI_GENERATING, "nothing") == []
        with pytest.raises(IllegalTransitionError):
            await tx.transition_many(["<a@x>"], S.PENDING, S.REPLY_SENT, "no")


async def test_a_presentation_is_held_as_long_as_its_session(backend: Backend) -> None:
    await backend.start("<a@x>")
    async with backend.repo.session() as session:
        async with session.transaction() as tx:
            assert await tx.hold_presentation("<a@x>")
        async with backend.repo.transaction() as other:  # another worker looks
            assert not await other.presenter_gone("<a@x>")
            assert not await other.hold_presentation("<a@x>")
        async with session.transaction() as tx:
            assert await tx.transition("<a@x>", S.PENDING, S.AI_GENERATING, "still held across transactions")
        async with backend.repo.transaction() as other:
            assert not await other.presenter_gone("<a@x>")
    async with backend.repo.transaction() as other:  # the session ended (as a dead worker's does)
        assert await other.presenter_gone("<a@x>")
