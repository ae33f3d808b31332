"""One contract, two backends: the repository on real PostgreSQL and the
in-memory fake the fast stage tests use must behave alike."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from handlers.clock import OffsetClock
from handlers.deliveries import Delivery, DeliveryReport, audit_reason
from handlers.messages import DraftReady
from handlers.workflow import EmailStatus, IllegalTransitionError, WorkflowState
from streams.storage.protocol import Repository
from streams.storage.records import Workflow
from streams.storage.repository import REMINDED, park_reason

from tests.support.fakes import FakeRepository

S = WorkflowState
PHONE = "+15551234567"
TO_AWAITING = [(S.PENDING, S.AI_GENERATING), (S.AI_GENERATING, S.AI_GENERATED),
               (S.AI_GENERATED, S.SMS_SENDING), (S.SMS_SENDING, S.AWAITING_USER)]
PEER = "AI Reply Generator"


@dataclass
class Backend:
    #: Typed as the protocol: the contract is what the stages may use.
    repo: Repository
    clock: OffsetClock
    #: start(message_id, person=0): an email taken on, whose workflow is ``person``'s.
    start: Callable[..., Awaitable[None]]
    #: (topic, message_id) of every message queued, in order.
    queued: Callable[[], Awaitable[list[tuple[str, str | None]]]]
    #: An inbound SMS as stored: (handled, outcome, message_id), None when unknown.
    sms: Callable[[str], Awaitable[tuple[bool, str | None, str | None] | None]]
    #: The text kept on the email's row as the reply sent.
    reply_draft: Callable[[str], Awaitable[str | None]]


@pytest.fixture(params=["postgres", "fake"])
def database_or_none(request: pytest.FixtureRequest) -> str | None:
    """A test database's conninfo for the PostgreSQL backend, None for the fake."""
    if request.param != "postgres":
        return None
    conninfo: str = request.getfixturevalue("database")
    return conninfo


@pytest.fixture
async def backend(database_or_none: str | None, clock: OffsetClock) -> AsyncIterator[Backend]:
    if database_or_none is None:
        yield _fake_backend(FakeRepository(clock), clock)
        return
    from streams.storage.database import create_pool
    from streams.storage.repository import WorkflowRepository

    from tests.support.factories import start_workflow

    pool = create_pool(database_or_none, max_size=4)
    await pool.open(wait=True)
    repo = WorkflowRepository(pool, clock)

    async def start(mid: str, person: int | None = 0) -> None:
        await start_workflow(repo, pool, message_id=mid)
        async with repo.transaction() as tx:  # the code is the person's, as when the poller routes it
            await tx.conn.execute("UPDATE workflow_state SET person_id = %s, draft_code = NULL WHERE message_id = %s",
                                  (person, mid))
            await tx.give_codes([mid])

    async def queued() -> list[tuple[str, str | None]]:
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT topic, payload::jsonb ->> 'message_id' AS m FROM kafka_outbox ORDER BY id")
            return [(r["topic"], r["m"]) for r in await cur.fetchall()]

    async def sms(sms_id: str) -> tuple[bool, str | None, str | None] | None:
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT handled_at IS NOT NULL AS handled, outcome, message_id"
                                     " FROM inbound_sms WHERE sms_id = %s", (sms_id,))
            row = await cur.fetchone()
            return (row["handled"], row["outcome"], row["message_id"]) if row else None

    async def reply_draft(mid: str) -> str | None:
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT reply_draft FROM processed_emails WHERE message_id = %s", (mid,))
            row = await cur.fetchone()
            return row["reply_draft"] if row else None

    try:
        yield Backend(repo, clock, start, queued, sms, reply_draft)
    finally:
        await pool.close()


def _fake_backend(fake: FakeRepository, clock: OffsetClock) -> Backend:
    async def queued() -> list[tuple[str, str | None]]:
        return [(m.topic, getattr(m, "message_id", None)) for m in fake.data.outbox]

    async def sms(sms_id: str) -> tuple[bool, str | None, str | None] | None:
        row = fake.data.sms.get(sms_id)
        return (row["handled"], row["outcome"], row["message_id"]) if row else None

    async def reply_draft(mid: str) -> str | None:
        return fake.data.reply_drafts.get(mid)

    async def start(mid: str, person: int | None = 0) -> None:
        await fake.start(mid, person=person)

    return Backend(fake, clock, start, queued, sms, reply_draft)


async def walk(b: Backend, mid: str, steps: list[tuple[WorkflowState, WorkflowState]], **fields: Any) -> None:
    for source, target in steps:
        assert await b.repo.transition(mid, source, target, "test", **fields)


def stamped(b: Backend, moment: datetime | None, since: datetime) -> bool:
    """Whether ``moment`` was stamped by the backend's clock after ``since`` (the clock runs)."""
    return moment is not None and since <= moment <= b.clock.now()


async def workflow(b: Backend, mid: str) -> Workflow:
    wf = await b.repo.get(mid)
    assert wf is not None, mid
    return wf


async def test_a_transition_wins_once_and_is_audited(backend: Backend) -> None:
    await backend.start("<a@x>")
    assert await backend.repo.transition("<a@x>", S.PENDING, S.AI_GENERATING, "go")
    assert not await backend.repo.transition("<a@x>", S.PENDING, S.AI_GENERATING, "again")
    with pytest.raises(IllegalTransitionError):
        await backend.repo.transition("<a@x>", S.AI_GENERATING, S.REPLY_SENT, "skip")
    trail = await backend.repo.audit_trail("<a@x>")
    assert [(e.from_state, e.to_state) for e in trail] == [(None, "pending"), ("pending", "ai_generating")]


async def test_the_phone_slot_holds_one_draft_until_a_decision_frees_it(backend: Backend) -> None:
    for mid in ("<a@x>", "<b@x>"):
        await backend.start(mid)
        await walk(backend, mid, TO_AWAITING[:2])
    async with backend.repo.transaction() as tx:
        assert await tx.phone.lock(PHONE) is None
        oldest = await tx.phone.oldest_ready(person=0)
        assert oldest is not None and oldest.message_id == "<a@x>"
        assert await tx.phone.count_waiting(person=0) == 2
        assert await tx.phone.count_waiting(person=0, exclude="<a@x>") == 1
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
    wf = await workflow(backend, "<a@x>")
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
    wf = await workflow(backend, "<a@x>")
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
        assert (await workflow(backend, mid)).current_state is S.AI_GENERATING
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


async def test_a_send_is_held_as_long_as_its_session(backend: Backend) -> None:
    await backend.start("<a@x>")
    async with backend.repo.session() as session:
        async with session.transaction() as tx:
            assert await tx.hold_send("<a@x>")
        async with session.transaction() as tx:  # its own session takes it again
            assert await tx.hold_send("<a@x>")
        async with backend.repo.transaction() as other:  # another worker finds it in progress
            assert not await other.hold_send("<a@x>")
            assert await other.presenter_gone("<a@x>")  # a lock of its own, not the presentation's
    async with backend.repo.session() as later:  # the session ended (as a dead worker's does)
        async with later.transaction() as tx:
            assert await tx.hold_send("<a@x>")


async def test_a_transition_sets_its_columns_and_refuses_unknown_ones(backend: Backend) -> None:
    await backend.start("<a@x>")
    await walk(backend, "<a@x>", TO_AWAITING[:1])
    backend.clock.advance(timedelta(seconds=1))
    since = backend.clock.now()
    assert await backend.repo.transition("<a@x>", S.AI_GENERATING, S.AI_GENERATED, "drafted",
                                         ai_reply_text="Sure, 2pm works.", edit_iteration=1)
    wf = await workflow(backend, "<a@x>")
    assert (wf.current_state, wf.previous_state, wf.ai_reply_text, wf.edit_iteration) == (
        S.AI_GENERATED, "ai_generating", "Sure, 2pm works.", 1)
    assert stamped(backend, wf.updated_at, since)
    with pytest.raises(ValueError, match="not settable"):
        await backend.repo.transition("<a@x>", S.AI_GENERATED, S.SMS_SENDING, "no", current_state="x")
    assert (await workflow(backend, "<a@x>")).current_state is S.AI_GENERATED


async def test_the_phone_is_released_by_name(backend: Backend) -> None:
    await backend.start("<a@x>")
    async with backend.repo.transaction() as tx:
        assert await tx.phone.lock(PHONE) is None
        await tx.phone.assign(PHONE, "<a@x>")
        assert await tx.phone.release(["<b@x>"]) == []
        assert await tx.phone.release(["<b@x>", "<a@x>"]) == [(PHONE, "<a@x>")]
        assert await tx.phone.release(["<a@x>"]) == []
        assert await tx.phone.lock(PHONE) is None


async def test_an_sms_settled_on_arrival_is_never_handled(backend: Backend) -> None:
    await backend.start("<a@x>")
    async with backend.repo.transaction() as tx:
        assert await tx.sms.record("s1", "+15550000000", "hi", None, outcome="foreign_number")
        assert not await tx.sms.claim("s1", "+15550000000", "hi", None)
        assert await tx.sms.record("s2", PHONE, "1", None)
    assert await backend.sms("s2") == (False, None, None)
    async with backend.repo.transaction() as tx:
        assert await tx.sms.claim("s2", PHONE, "1", None)
        await tx.sms.settle("s2", "approved", "<a@x>")
    assert await backend.sms("s1") == (True, "foreign_number", None)
    assert await backend.sms("s2") == (True, "approved", "<a@x>")
    assert await backend.sms("s3") is None


async def test_a_send_claimed_before_is_claimed_again_only_when_asked(backend: Backend) -> None:
    await backend.start("<a@x>")
    await walk(backend, "<a@x>", [*TO_AWAITING, (S.AWAITING_USER, S.USER_APPROVED)])
    async with backend.repo.transaction() as tx:
        assert not await tx.claim_send("<a@x>", "<r@x>", again=True)  # nothing was attempted
        assert await tx.claim_send("<a@x>", "<r@x>")
    backend.clock.advance(timedelta(minutes=1))
    since = backend.clock.now()
    async with backend.repo.transaction() as tx:
        assert await tx.claim_send("<a@x>", "<r@x>", again=True)
    wf = await workflow(backend, "<a@x>")
    assert stamped(backend, wf.send_attempted_at, since) and stamped(backend, wf.updated_at, since)
    last = (await backend.repo.audit_trail("<a@x>"))[-1]
    assert (last.from_state, last.to_state, last.transition_reason) == (
        "user_approved", "user_approved", "not in the Sent folder: sending again as <r@x>")


async def test_a_park_keeps_the_state_audits_the_first_try_and_ends_with_a_move(backend: Backend) -> None:
    await backend.start("<a@x>")
    await walk(backend, "<a@x>", TO_AWAITING[:1])
    backend.clock.advance(timedelta(seconds=1))
    since = backend.clock.now()
    first, second = since + timedelta(seconds=30), since + timedelta(seconds=90)
    park: dict[str, Any] = {"stage": "draft", "peer": PEER, "reason": "503 busy", "since": since}
    async with backend.repo.transaction() as tx:
        assert not await tx.park("<a@x>", S.PENDING, attempts=1, next_attempt_at=first, **park)  # moved on
        assert await tx.park("<a@x>", S.AI_GENERATING, attempts=1, next_attempt_at=first, **park)
    wf = await workflow(backend, "<a@x>")
    assert (wf.current_state, wf.park_stage, wf.park_peer, wf.park_reason, wf.parked_since, wf.park_attempts,
            wf.next_attempt_at) == (S.AI_GENERATING, "draft", PEER, "503 busy", since, 1, first)
    assert stamped(backend, wf.updated_at, since)
    backend.clock.advance(timedelta(seconds=30))
    again = backend.clock.now()
    async with backend.repo.transaction() as tx:
        assert await tx.park("<a@x>", S.AI_GENERATING, attempts=2, next_attempt_at=second, **park)
    wf = await workflow(backend, "<a@x>")
    assert (wf.park_attempts, wf.next_attempt_at, wf.parked_since) == (2, second, since)
    assert stamped(backend, wf.updated_at, again)
    trail = await backend.repo.audit_trail("<a@x>")
    assert [(e.from_state, e.to_state, e.transition_reason, e.error_details) for e in trail[2:]] == [
        ("ai_generating", "ai_generating", park_reason("503 busy", first), "503 busy")]  # the first try only
    assert await backend.repo.transition("<a@x>", S.AI_GENERATING, S.AI_GENERATED, "drafted at last")
    wf = await workflow(backend, "<a@x>")
    assert (wf.park_stage, wf.park_peer, wf.park_reason, wf.parked_since, wf.park_attempts,
            wf.next_attempt_at) == (None, None, None, None, 0, None)


async def test_a_parked_send_keeps_or_withdraws_its_claim(backend: Backend) -> None:
    for mid in ("<kept@x>", "<withdrawn@x>"):
        await backend.start(mid)
        await walk(backend, mid, [*TO_AWAITING, (S.AWAITING_USER, S.USER_APPROVED)])
        async with backend.repo.transaction() as tx:
            assert await tx.claim_send(mid, f"<r{mid}")
            assert await tx.park(mid, S.USER_APPROVED, stage="send", peer="SMTP", reason="421", attempts=1,
                                 since=backend.clock.now(), next_attempt_at=backend.clock.now(),
                                 release_send=mid == "<withdrawn@x>")
    assert (await workflow(backend, "<kept@x>")).send_attempted_at is not None
    assert (await workflow(backend, "<withdrawn@x>")).send_attempted_at is None
    async with backend.repo.transaction() as tx:
        assert not await tx.claim_send("<kept@x>", "<r2@x>")
        assert await tx.claim_send("<withdrawn@x>", "<r2@x>")  # the server took nothing: send it afresh


async def test_an_outage_is_noted_once_and_ends_with_its_last_parked_workflow(backend: Backend) -> None:
    await backend.start("<a@x>")
    await walk(backend, "<a@x>", TO_AWAITING[:1])
    async with backend.repo.transaction() as tx:
        assert await tx.note_outage(PEER)
        assert not await tx.note_outage(PEER)
        assert await tx.note_outage("SMTP")
        assert await tx.park("<a@x>", S.AI_GENERATING, stage="draft", peer=PEER, reason="503", attempts=1,
                             since=backend.clock.now(), next_attempt_at=backend.clock.now())
    async with backend.repo.transaction() as tx:
        assert await tx.end_outages() == ["SMTP"]  # nothing parked on it
        assert await tx.end_outages() == []
        assert not await tx.note_outage(PEER)
    assert await backend.repo.transition("<a@x>", S.AI_GENERATING, S.AI_GENERATED, "drafted")
    async with backend.repo.transaction() as tx:
        assert await tx.end_outages() == [PEER]
        assert await tx.note_outage(PEER)  # a new outage


async def test_a_person_is_told_again_once_the_outage_holds_none_of_theirs(backend: Backend) -> None:
    """One person's mail login (a peer name shared by everyone's logins) failing again after a fix."""
    await backend.start("<ann@x>", 1)
    await backend.start("<bob@x>", 2)
    for mid, person in (("<ann@x>", 1), ("<bob@x>", 2)):
        await walk(backend, mid, TO_AWAITING[:1])
        async with backend.repo.transaction() as tx:
            assert await tx.park(mid, S.AI_GENERATING, stage="draft", peer=PEER, reason="535", attempts=1,
                                 since=backend.clock.now(), next_attempt_at=backend.clock.now())
            assert await tx.note_outage(PEER, person)
    assert await backend.repo.transition("<ann@x>", S.AI_GENERATING, S.AI_GENERATED, "drafted")  # Ann's fixed
    async with backend.repo.transaction() as tx:
        assert await tx.end_outages() == []  # Bob's still holds the peer out
        assert await tx.note_outage(PEER, 1)  # Ann's fails again: she is told again
        assert not await tx.note_outage(PEER, 2)  # Bob was told, and still is held


async def test_due_parked_workflows_are_claimed_once_most_overdue_first(backend: Backend) -> None:
    now = backend.clock.now()
    for mid, due in (("<late@x>", now - timedelta(minutes=1)), ("<later@x>", now - timedelta(minutes=2)),
                     ("<future@x>", now + timedelta(hours=1)), ("<unparked@x>", None)):
        await backend.start(mid)
        await walk(backend, mid, TO_AWAITING[:1])
        if due is not None:
            async with backend.repo.transaction() as tx:
                assert await tx.park(mid, S.AI_GENERATING, stage="draft", peer=PEER, reason="503", attempts=1,
                                     since=now, next_attempt_at=due)
    async with backend.repo.transaction() as tx:
        [taken] = await tx.claim_due_parked(1)
        assert (taken.message_id, taken.park_peer, taken.next_attempt_at) == ("<later@x>", PEER, None)
        assert [wf.message_id for wf in await tx.claim_due_parked(10)] == ["<late@x>"]
        assert await tx.claim_due_parked(10) == []  # in flight: not taken twice
    later = await workflow(backend, "<later@x>")
    assert (later.park_stage, later.park_attempts, later.next_attempt_at) == ("draft", 1, None)
    backend.clock.advance(timedelta(hours=2))
    async with backend.repo.transaction() as tx:
        assert [wf.message_id for wf in await tx.claim_due_parked(10)] == ["<future@x>"]


async def test_the_one_reminder_is_marked_once_and_audited(backend: Backend) -> None:
    now = backend.clock.now()
    for mid in ("<a@x>", "<b@x>"):
        await backend.start(mid)
        await walk(backend, mid, TO_AWAITING[:3])
    assert await backend.repo.transition("<a@x>", S.SMS_SENDING, S.AWAITING_USER, "sent",
                                         sms_sent_at=now - timedelta(minutes=10))
    assert await backend.repo.due_reminders(now - timedelta(minutes=5)) == ["<a@x>"]
    assert await backend.repo.due_reminders(now - timedelta(minutes=15)) == []
    backend.clock.advance(timedelta(seconds=5))
    since = backend.clock.now()
    async with backend.repo.transaction() as tx:
        assert not await tx.mark_reminded("<b@x>")  # not awaiting an answer
        assert await tx.mark_reminded("<a@x>")
        assert not await tx.mark_reminded("<a@x>")
    wf = await workflow(backend, "<a@x>")
    assert wf.current_state is S.AWAITING_USER
    assert stamped(backend, wf.reminded_at, since) and stamped(backend, wf.updated_at, since)
    last = (await backend.repo.audit_trail("<a@x>"))[-1]
    assert (last.from_state, last.to_state, last.transition_reason) == ("awaiting_user", "awaiting_user", REMINDED)
    assert await backend.repo.due_reminders(now) == []


async def test_a_reminder_not_sent_is_unmarked_and_due_again(backend: Backend) -> None:
    now = backend.clock.now()
    for mid in ("<a@x>", "<b@x>"):
        await backend.start(mid)
        await walk(backend, mid, TO_AWAITING[:3])
    assert await backend.repo.transition("<a@x>", S.SMS_SENDING, S.AWAITING_USER, "sent",
                                         sms_sent_at=now - timedelta(minutes=10))
    async with backend.repo.transaction() as tx:
        assert not await tx.phone.unmark_reminded("<a@x>", "never marked")
        assert await tx.mark_reminded("<a@x>")
    async with backend.repo.transaction() as tx:
        assert not await tx.phone.unmark_reminded("<b@x>", "not awaiting an answer")
        assert await tx.phone.unmark_reminded("<a@x>", "reminder not sent: modem busy")
    wf = await workflow(backend, "<a@x>")
    assert wf.reminded_at is None and wf.current_state is S.AWAITING_USER
    last = (await backend.repo.audit_trail("<a@x>"))[-1]
    assert (last.from_state, last.to_state, last.transition_reason) == (
        "awaiting_user", "awaiting_user", "reminder not sent: modem busy")
    assert await backend.repo.due_reminders(now) == ["<a@x>"]


async def test_the_phone_says_when_its_draft_was_presented(backend: Backend) -> None:
    await backend.start("<a@x>")
    async with backend.repo.transaction() as tx:
        assert await tx.phone.lock(PHONE) is None
        assert await tx.phone.presented_at(PHONE) is None
        since = backend.clock.now()
        await tx.phone.assign(PHONE, "<a@x>")
        assert stamped(backend, await tx.phone.presented_at(PHONE), since)
        await tx.phone.release(["<a@x>"])
        assert await tx.phone.presented_at(PHONE) is None  # nothing on the phone


async def test_the_reply_sent_is_kept_on_the_email(backend: Backend) -> None:
    await backend.start("<a@x>")
    assert await backend.reply_draft("<a@x>") is None
    async with backend.repo.transaction() as tx:
        await tx.record_sent_reply("<a@x>", "Sure, 2pm works.")
    assert await backend.reply_draft("<a@x>") == "Sure, 2pm works."


async def test_a_failed_savepoint_undoes_its_block_and_the_transaction_goes_on(backend: Backend) -> None:
    for mid in ("<a@x>", "<b@x>"):
        await backend.start(mid)
    before = len(await backend.queued())
    async with backend.repo.transaction() as tx:
        assert await tx.transition("<a@x>", S.PENDING, S.AI_GENERATING, "kept")
        with pytest.raises(RuntimeError):
            async with tx.savepoint():
                assert await tx.transition("<b@x>", S.PENDING, S.AI_GENERATING, "undone")
                await tx.publish(DraftReady(message_id="<b@x>", iteration=0))
                raise RuntimeError("a stage failed")
        undone = await tx.get("<b@x>")
        assert undone is not None and undone.current_state is S.PENDING
        async with tx.savepoint():
            await tx.publish(DraftReady(message_id="<a@x>", iteration=0))
    assert (await workflow(backend, "<a@x>")).current_state is S.AI_GENERATING
    assert (await workflow(backend, "<b@x>")).current_state is S.PENDING
    assert [e.transition_reason for e in await backend.repo.audit_trail("<b@x>")] == ["test"]
    assert (await backend.queued())[before:] == [("workflow.events", "<a@x>"), ("drafts.ready", "<a@x>")]


async def test_a_new_workflow_is_pending_audited_and_announced(backend: Backend) -> None:
    await backend.start("<a@x>")
    wf = await workflow(backend, "<a@x>")
    assert (wf.current_state, wf.previous_state, wf.edit_iteration) == (S.PENDING, None, 0)
    assert [(e.from_state, e.to_state, e.transition_reason) for e in await backend.repo.audit_trail("<a@x>")] \
        == [(None, "pending", "test")]
    assert await backend.queued() == [("workflow.events", "<a@x>")]


async def test_the_email_row_follows_the_workflow(backend: Backend) -> None:
    await backend.start("<a@x>")
    async with backend.repo.transaction() as tx:
        email = await tx.email("<a@x>")
        assert email is not None and (email.message_id, email.status) == ("<a@x>", EmailStatus.ORCHESTRATING)
        assert await tx.email("<nobody@x>") is None
        assert not await tx.create_workflow(email, body_preview="again", reason="again")  # one exists
        await tx.set_email_status(["<a@x>"], EmailStatus.FAILED, error="by hand")
        assert (await tx.email("<a@x>")) == email.__class__(**{**email.__dict__, "status": EmailStatus.FAILED})
        locked = await tx.get("<a@x>", for_update=True)
        assert locked is not None and locked.current_state is S.PENDING
    assert [e.transition_reason for e in await backend.repo.audit_trail("<a@x>")] == ["test"]
    await walk(backend, "<a@x>", [*TO_AWAITING, (S.AWAITING_USER, S.USER_IGNORED)])
    async with backend.repo.transaction() as tx:
        ignored = await tx.email("<a@x>")
        assert ignored is not None and ignored.status == EmailStatus.IGNORED


async def test_messages_are_queued_in_order_in_the_outbox(backend: Backend) -> None:
    await backend.start("<a@x>")
    before = len(await backend.queued())
    await backend.repo.publish(DraftReady(message_id="<a@x>", iteration=0))
    async with backend.repo.transaction() as tx:
        await tx.publish_many([])
        await tx.publish_many([DraftReady(message_id="<b@x>", iteration=1),
                               DraftReady(message_id="<a@x>", iteration=2)])
    assert (await backend.queued())[before:] == [("drafts.ready", "<a@x>"), ("drafts.ready", "<b@x>"),
                                                 ("drafts.ready", "<a@x>")]
    with pytest.raises(RuntimeError):
        async with backend.repo.transaction() as tx:
            await tx.publish(DraftReady(message_id="<a@x>", iteration=3))
            raise RuntimeError("rolled back: nothing is published")
    assert len(await backend.queued()) == before + 3


async def _texted(b: Backend, mid: str, sms_id: str) -> None:
    """``mid``'s draft on the phone as the gateway's SMS ``sms_id``."""
    await b.start(mid)
    await walk(b, mid, TO_AWAITING[:3])
    assert await b.repo.transition(mid, S.SMS_SENDING, S.AWAITING_USER, "texted", sms_message_id=sms_id,
                                   sms_sent_at=b.clock.now())


async def test_delivery_reports_move_a_draft_forward_once_each(backend: Backend) -> None:
    await _texted(backend, "<a@x>", "sms-a")
    at = datetime(2026, 11, 24, 10, 2, tzinfo=UTC)
    delivered = DeliveryReport("sms-a", Delivery.DELIVERED, at)
    async with backend.repo.transaction() as tx:
        first = await tx.record_delivery(delivered)
        again = await tx.record_delivery(delivered)  # the gateway retried
        late = await tx.record_delivery(DeliveryReport("sms-a", Delivery.SENT, at - timedelta(seconds=5)))
    assert first.fresh and first.workflow is not None and first.failed is None and first.failures == 0
    assert not again.fresh and late.fresh
    wf = await workflow(backend, "<a@x>")
    assert (wf.sms_delivery_status, wf.sms_delivery_at, wf.current_state) == ("delivered", at, S.AWAITING_USER)
    reasons = [e.transition_reason for e in await backend.repo.audit_trail("<a@x>")]
    assert reasons.count(audit_reason(delivered)) == 1 and not any("sent by the gateway" in r for r in reasons if r)


async def test_a_report_before_the_draft_id_is_recorded_is_adopted_with_it(backend: Backend) -> None:
    failed = DeliveryReport("sms-b", Delivery.FAILED, None, "RESULT_ERROR_NO_SERVICE")
    async with backend.repo.transaction() as tx:
        early = await tx.record_delivery(DeliveryReport("sms-b", Delivery.SENT))
        early_failure = await tx.record_delivery(failed)
    assert early.fresh and early.workflow is None and early_failure.workflow is None  # nobody's, yet
    await _texted(backend, "<b@x>", "sms-b")
    async with backend.repo.transaction() as tx:
        adopted = await tx.adopt_deliveries("<b@x>", "sms-b")
        other = await tx.record_delivery(DeliveryReport("sms-unknown", Delivery.DELIVERED))
    assert adopted.fresh and adopted.failed == failed and adopted.failures == 1
    assert adopted.first_failure_at is not None
    assert adopted.workflow is not None and adopted.workflow.sms_delivery_status == "failed"
    assert other.fresh and other.workflow is None
    wf = await workflow(backend, "<b@x>")
    assert (wf.sms_delivery_status, wf.sms_delivery_error) == ("failed", "RESULT_ERROR_NO_SERVICE")
    async with backend.repo.transaction() as tx:
        cleared = await tx.adopt_deliveries("<b@x>", None)  # a presentation whose SMS id is not known
    assert not cleared.fresh and (await workflow(backend, "<b@x>")).sms_delivery_status is None


async def test_the_answered_elsewhere_sweep_reads_the_closable_emails_and_our_own_replies(backend: Backend) -> None:
    for mid in ("<a@x>", "<b@x>", "<c@x>", "<d@x>"):
        await backend.start(mid)
    await walk(backend, "<b@x>", TO_AWAITING)  # on the phone: closable
    await walk(backend, "<c@x>", [*TO_AWAITING, (S.AWAITING_USER, S.USER_APPROVED)])  # being sent: not
    async with backend.repo.transaction() as tx:
        assert await tx.claim_send("<c@x>", "<ours@x>")
    await walk(backend, "<d@x>", [(S.PENDING, S.FAILED)])  # decided: not
    closable = await backend.repo.closable_emails()
    assert [mid for mid, _, _ in closable] == ["<a@x>", "<b@x>"]
    assert all(isinstance(at, datetime) and at.tzinfo is not None for _, at, _ in closable)
    assert closable[0][1] <= closable[1][1]
    wf = await workflow(backend, "<a@x>")
    assert wf.email_from and [sender for _, _, sender in closable] == [wf.email_from] * 2  # a reply goes to it
    assert await backend.repo.own_replies({"<ours@x>", "<theirs@x>"}) == {"<ours@x>"}
    assert await backend.repo.own_replies(set()) == set()


async def _in_thread(b: Backend, database: str | None, mid: str, minutes: int, *, thread_id: str | None = None,
                     in_reply_to: str | None = None, body_text: str | None = None,
                     from_address: str = "Ann Lee <ann@example.com>") -> None:
    """Start ``mid`` as an email of a thread, received ``minutes`` after a fixed moment."""
    import psycopg

    await b.start(mid)
    at = datetime(2024, 5, 1, 9, 0, tzinfo=UTC) + timedelta(minutes=minutes)
    if isinstance(b.repo, FakeRepository):
        email = b.repo.data.emails[mid]
        b.repo.data.emails[mid] = replace(email, thread_id=thread_id, in_reply_to=in_reply_to, received_at=at,
                                          body_text=body_text, from_address=from_address)
        return
    assert database is not None
    async with await psycopg.AsyncConnection.connect(database) as conn:
        await conn.execute("UPDATE processed_emails SET thread_id = %s, in_reply_to = %s, received_at = %s,"
                           " body_text = %s, from_address = %s WHERE message_id = %s",
                           (thread_id, in_reply_to, at, body_text, from_address, mid))


async def test_a_thread_finds_the_open_older_emails_and_reads_back_what_a_newer_one_superseded(
        backend: Backend, database_or_none: str | None) -> None:
    t = database_or_none
    await _in_thread(backend, t, "<a@x>", 1, thread_id="T", body_text="first " + "x" * 20_000)
    await _in_thread(backend, t, "<b@x>", 2, in_reply_to=" <a@x>")  # no thread id: In-Reply-To alone
    await _in_thread(backend, t, "<sent@x>", 3, thread_id="T")
    await _in_thread(backend, t, "<other@x>", 4, thread_id="U")
    await _in_thread(backend, t, "<c@x>", 5, thread_id="T", in_reply_to="<b@x>")
    await walk(backend, "<a@x>", TO_AWAITING)
    await walk(backend, "<sent@x>", [*TO_AWAITING, (S.AWAITING_USER, S.USER_APPROVED)])
    open_states = {S.PENDING, S.AI_GENERATING, S.AWAITING_USER}
    async with backend.repo.transaction() as tx:
        found = await tx.open_earlier_in_thread(["<c@x>", "<b@x>", "<a@x>", "<other@x>"], open_states)
        assert [(newer, wf.message_id) for newer, wf in found] == [
            ("<b@x>", "<a@x>"),  # b answers a
            ("<c@x>", "<a@x>"), ("<c@x>", "<b@x>"),  # c shares a's thread and answers b; <sent@x> is not open
        ]
        assert found[0][1].current_state is S.AWAITING_USER and found[0][1].draft_code  # the row as it is
        assert await tx.open_earlier_in_thread([], open_states) == []
        await tx.record_superseded(["<a@x>"], "<b@x>")
        await tx.record_superseded(["<b@x>"], "<c@x>")
        await tx.record_superseded([], "<c@x>")
        earlier = await tx.earlier_emails("<c@x>", 3)
        assert [e.message_id for e in earlier] == ["<a@x>", "<b@x>"]  # the chain, oldest first
        assert earlier[0].body_text is not None and len(earlier[0].body_text) < 2_000  # read bounded
        assert [e.message_id for e in await tx.earlier_emails("<c@x>", 1)] == ["<b@x>"]  # the most recent
        assert await tx.earlier_emails("<a@x>", 3) == []


async def test_a_thread_supersedes_only_the_older_emails_of_the_same_sender(
        backend: Backend, database_or_none: str | None) -> None:
    t = database_or_none
    await _in_thread(backend, t, "<ann1@x>", 1, thread_id="T", from_address="Ann Lee <ann@x>")
    await _in_thread(backend, t, "<bob@x>", 2, thread_id="T", in_reply_to="<ann1@x>", from_address="Bob <bob@x>")
    await _in_thread(backend, t, "<mal@y>", 3, in_reply_to="<ann1@x>", from_address="Ann Lee <mallory@y>")
    await _in_thread(backend, t, "<ann2@x>", 4, thread_id="T", from_address="ANN <Ann@X>")
    open_states = {S.PENDING}
    async with backend.repo.transaction() as tx:
        found = await tx.open_earlier_in_thread(["<bob@x>", "<mal@y>", "<ann2@x>"], open_states)
        # A reply-all from Bob, or anyone naming Ann's Message-ID, finds nothing; Ann again finds hers.
        assert [(newer, wf.message_id) for newer, wf in found] == [("<ann2@x>", "<ann1@x>")]


async def test_codes_name_the_open_drafts_and_a_decision_gives_its_code_up(backend: Backend) -> None:
    for mid in ("<a@x>", "<b@x>"):
        await backend.start(mid)
    a, b = await backend.repo.get("<a@x>"), await backend.repo.get("<b@x>")
    assert a is not None and b is not None and a.draft_code and b.draft_code and a.draft_code != b.draft_code
    async with backend.repo.transaction() as tx:
        found = await tx.phone.by_code(a.draft_code.lower(), person=0)  # as typed on a phone
        assert found is not None and found.message_id == "<a@x>"
        assert [wf.message_id for wf in await tx.phone.open_drafts(person=0)] == ["<a@x>", "<b@x>"]
        assert not await tx.phone.request_presentation("<b@x>")  # not drafted yet
    await walk(backend, "<a@x>", TO_AWAITING)
    await walk(backend, "<b@x>", TO_AWAITING[:2])
    async with backend.repo.transaction() as tx:
        assert await tx.phone.requested(person=0) is None
        assert await tx.phone.request_presentation("<b@x>")
        requested = await tx.phone.requested(person=0)
        assert requested is not None and requested.message_id == "<b@x>"
    await walk(backend, "<a@x>", [(S.AWAITING_USER, S.USER_IGNORED)])
    async with backend.repo.transaction() as tx:
        assert await tx.phone.by_code(a.draft_code, person=0) is None  # given up: a later draft may have it
        assert [wf.message_id for wf in await tx.phone.open_drafts(person=0)] == ["<b@x>"]
        [code] = await tx.give_codes(["<a@x>"])
        assert code != b.draft_code
    await walk(backend, "<b@x>", [(S.AI_GENERATED, S.SMS_SENDING)])
    async with backend.repo.transaction() as tx:
        assert await tx.phone.requested(person=0) is None  # any move answers the request


async def test_codes_are_each_persons_own_so_another_persons_stay_short(backend: Backend) -> None:
    anns = [f"<a{i}@x>" for i in range(100)]  # more than half the two-character codes
    for mid in anns:
        await backend.start(mid, person=1)
    await backend.start("<b@x>", person=2)
    codes = [wf.draft_code for mid in anns if (wf := await backend.repo.get(mid)) is not None]
    assert len(set(codes)) == 100 and any(code and len(code) == 3 for code in codes)
    bob = await backend.repo.get("<b@x>")
    assert bob is not None and bob.draft_code and len(bob.draft_code) == 2  # Ann's drafts do not lengthen his


async def test_an_all_3_question_is_used_up_by_any_answer_and_remembered_until_ended(backend: Backend) -> None:
    async with backend.repo.transaction() as tx:
        await tx.phone.lock(PHONE)
        assert await tx.phone.take_confirmation(PHONE) is None  # nothing asked
        until = backend.clock.now() + timedelta(seconds=60)
        await tx.phone.ask_confirmation(PHONE, ["<a@x>", "<b@x>"], until)
    async with backend.repo.transaction() as tx:
        question = await tx.phone.take_confirmation(PHONE)
        assert question is not None and question.ids == ["<a@x>", "<b@x>"] and question.until == until
        again = await tx.phone.take_confirmation(PHONE)
        assert again is not None and again.ids == [] and again.asked_at == question.asked_at  # used up, remembered
        await tx.phone.end_question(PHONE)
        assert await tx.phone.take_confirmation(PHONE) is None


async def test_lessons_keep_their_evidence_once_and_count_their_use(backend: Backend) -> None:
    """docs/design.md, "It learns from you": evidence once per email and
    instruction; lessons per sender, domain and everyone, switched on and
    off, edited, counted, deleted."""
    from handlers.lessons import Learnt, Scope, evidence

    given = evidence("<a@x>", "Ann <Ann@One.example>", "Sign as Jack!")
    again = evidence("<b@x>", "Bob <bob@two.example>", "be casual")
    assert given is not None and again is not None and given.sender == "ann@one.example"
    async with backend.repo.transaction() as tx:
        assert await tx.add_lesson_evidence(given)
        assert not await tx.add_lesson_evidence(given)  # a redelivered answer: kept once
        assert await tx.add_lesson_evidence(again, "hand")
        assert [e.message_id for e in await tx.recent_lesson_evidence(10)] == ["<b@x>", "<a@x>"]  # newest first
        assert [e.normalised for e in await tx.recent_lesson_evidence(1)] == ["be casual"]
        mine = await tx.save_lesson(Learnt(Scope.SENDER, "ann@one.example", "sign as Jack"), "learnt")
        theirs = await tx.save_lesson(Learnt(Scope.SENDER, "bob@two.example", "be casual"), "learnt")
        domain = await tx.save_lesson(Learnt(Scope.DOMAIN, "one.example", "mention the hours"), "learnt")
        everyone = await tx.save_lesson(Learnt(Scope.EVERYONE, None, "no emoji"), "remembered")
    async with backend.repo.transaction() as tx:
        assert [lesson.id for lesson in await tx.lessons_for("ann@one.example", "one.example")] == [
            mine, domain, everyone]  # not Bob's
        assert [lesson.scope for lesson in await tx.all_lessons()] == [Scope.DOMAIN, Scope.EVERYONE,
                                                                       Scope.SENDER, Scope.SENDER]
        assert await tx.update_lesson(mine, enabled=False)
        assert await tx.update_lesson(domain, text="mention the office hours")
        assert not await tx.update_lesson(999_999, enabled=False)
        await tx.count_lesson_use([mine, domain, mine], "times_applied")  # once each
        await tx.count_lesson_use([domain], "times_edited_after")
        await tx.count_lesson_use([], "times_applied")
        found = await tx.lessons_by_id([domain, mine, 999_999])
        assert [(lesson.id, lesson.enabled, lesson.text, lesson.times_applied, lesson.times_edited_after)
                for lesson in found] == [(mine, False, "sign as Jack", 1, 0),
                                         (domain, True, "mention the office hours", 1, 1)]
        assert found[0].source == "learnt" and (await tx.lessons_by_id([everyone]))[0].source == "remembered"
        assert await tx.lessons_by_id([]) == []
        assert await tx.delete_lesson(theirs)
        assert not await tx.delete_lesson(theirs)
        assert [lesson.id for lesson in await tx.lessons_for("bob@two.example", "two.example")] == [everyone]


async def test_a_scheduled_reply_is_listed_and_taken_once_when_due(backend: Backend) -> None:
    """docs/design.md, "Send later": ``send_at`` keeps an approved reply in
    ``list`` and away from the sweep until its time; then it is taken once."""
    from streams.storage.scheduled import SEND_DUE

    for mid in ("<a@x>", "<b@x>"):
        await backend.start(mid)
        await walk(backend, mid, TO_AWAITING)
    at = backend.clock.now() + timedelta(hours=1)
    for mid in ("<a@x>", "<b@x>"):
        assert await backend.repo.transition(mid, S.AWAITING_USER, S.USER_APPROVED, "later", send_at=at)
    async with backend.repo.transaction() as tx:
        assert [wf.message_id for wf in await tx.phone.open_drafts(person=0)] == ["<a@x>", "<b@x>"]
        assert await tx.claim_due_sends(10) == []  # not yet
    assert await backend.repo.transition("<b@x>", S.USER_APPROVED, S.AWAITING_USER, "cancel", send_at=None)
    backend.clock.advance(timedelta(hours=1))
    async with backend.repo.transaction() as tx:
        assert await tx.claim_due_sends(10) == ["<a@x>"]
        assert await tx.claim_due_sends(10) == []  # taken once
    a = await workflow(backend, "<a@x>")
    assert a.send_at == at and a.send_released_at is not None
    assert (await backend.repo.audit_trail("<a@x>"))[-1].transition_reason == SEND_DUE
    async with backend.repo.transaction() as tx:
        assert await tx.claim_send("<a@x>", "<r@x>")
        assert [wf.message_id for wf in await tx.phone.open_drafts(person=0)] == ["<b@x>"]  # being sent: not listed


async def test_open_workflows_without_a_code_are_given_one(backend: Backend) -> None:
    """A workflow from before codes, or retried after a decision gave its code up."""
    for mid in ("<a@x>", "<b@x>", "<c@x>"):
        await backend.start(mid)
    await walk(backend, "<a@x>", [(S.PENDING, S.FAILED), (S.FAILED, S.PENDING)])  # retried: its code was given up
    await walk(backend, "<c@x>", [(S.PENDING, S.FAILED)])  # decided: gets none
    async with backend.repo.transaction() as tx:
        assert await tx.give_missing_codes(100) == 1
        assert await tx.give_missing_codes(100) == 0
    a, b, c = [await backend.repo.get(m) for m in ("<a@x>", "<b@x>", "<c@x>")]
    assert a is not None and b is not None and c is not None
    assert a.draft_code and b.draft_code and a.draft_code != b.draft_code and c.draft_code is None


async def test_each_person_sees_only_their_own_drafts_codes_and_queue(backend: Backend) -> None:
    """Many people (docs/design.md): every phone query is one person's."""
    await backend.start("<ann@x>", 1)
    await backend.start("<bob@x>", 2)
    await backend.start("<bob2@x>", 2)
    await backend.start("<nobody@x>", None)
    for mid in ("<ann@x>", "<bob@x>", "<bob2@x>"):
        await walk(backend, mid, TO_AWAITING[:2])
    ann, bob = await workflow(backend, "<ann@x>"), await workflow(backend, "<bob@x>")
    assert ann.person_id == 1 and bob.person_id == 2 and ann.draft_code and bob.draft_code
    async with backend.repo.transaction() as tx:
        ready = await tx.phone.oldest_ready(person=1)
        assert ready is not None and ready.message_id == "<ann@x>"
        assert await tx.phone.oldest_ready(person=0) is None
        assert await tx.phone.count_waiting(person=2) == 2 and await tx.phone.count_waiting(person=1) == 1
        # Codes are each person's own: Bob's names no draft of Ann's, or her own draft with the same code.
        mine = await tx.phone.by_code(bob.draft_code, person=1)
        assert mine is None or (mine.message_id == "<ann@x>" and ann.draft_code == bob.draft_code)
        found = await tx.phone.by_code(bob.draft_code, person=2)
        assert found is not None and found.message_id == "<bob@x>"
        assert [d.message_id for d in await tx.phone.open_drafts(person=1)] == ["<ann@x>"]
        assert await tx.phone.request_presentation("<bob2@x>")
        assert await tx.phone.requested(person=1) is None
        asked = await tx.phone.requested(person=2)
        assert asked is not None and asked.message_id == "<bob2@x>"
        assert await tx.phone.people_of(["<ann@x>", "<bob@x>", "<bob2@x>", "<nobody@x>", "<gone@x>"]) == [1, 2]
        assert await tx.phone.people_waiting() == [1, 2]


async def test_a_persons_lessons_and_evidence_are_theirs_alone(backend: Backend) -> None:
    """docs/design.md, "Many people": what Ann taught never shapes Bob's drafts."""
    from handlers.lessons import Learnt, Scope, evidence

    given = evidence("<a@x>", "Zed <z@x.example>", "sign as Ann")
    assert given is not None
    async with backend.repo.transaction() as tx:
        assert await tx.add_lesson_evidence(given, person=1)
        assert [e.message_id for e in await tx.recent_lesson_evidence(10, person=1)] == ["<a@x>"]
        assert await tx.recent_lesson_evidence(10, person=2) == []
        anns = await tx.save_lesson(Learnt(Scope.SENDER, "z@x.example", "sign as Ann"), "learnt", person=1)
        everyone = await tx.save_lesson(Learnt(Scope.EVERYONE, None, "no emoji"), "remembered", person=1)
        bobs = await tx.save_lesson(Learnt(Scope.EVERYONE, None, "be brief"), "remembered", person=2)
    async with backend.repo.transaction() as tx:
        assert [lesson.id for lesson in await tx.lessons_for("z@x.example", "x.example", person=1)] == [anns, everyone]
        assert [lesson.id for lesson in await tx.lessons_for("z@x.example", "x.example", person=2)] == [bobs]
        assert await tx.lessons_for("z@x.example", "x.example") == []  # the default person taught nothing
        assert [lesson.id for lesson in await tx.all_lessons(2)] == [bobs]
        assert sorted(lesson.id for lesson in await tx.all_lessons()) == sorted([anns, everyone, bobs])
