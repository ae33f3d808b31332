"""Send later (docs/design.md, "Send later"), on real PostgreSQL with real
peers on loopback and an injected clock: a scheduled reply leaves at its
time, once; ``cancel`` takes it back; ``list`` shows when it leaves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from handlers.clock import OffsetClock
from handlers.messages import InboundSms
from handlers.workflow import WorkflowState
from streams.pipeline.housekeeping import Housekeeping
from streams.storage.records import Workflow
from streams.storage.repository import Pool, WorkflowRepository

from tests.support.factories import draft_request, start_workflow
from tests.support.inprocess import Peers, peers  # noqa: F401 (a fixture)
from tests.support.inprocess import stages_for as in_process

S = WorkflowState
PHONE = "+15551234567"
BERLIN = ZoneInfo("Europe/Berlin")
#: Wednesday 25 November 2026, 08:00 in Berlin.
MORNING = datetime(2026, 11, 25, 8, 0, tzinfo=BERLIN)


def stages_for(make_stages: Any, peers: Peers, **settings: Any) -> Any:
    return in_process(make_stages, peers, **({"timezone": "Europe/Berlin"} | settings))


async def on_the_phone(stages: Any, repo: WorkflowRepository, pool: Pool, *, texted: bool = True,
                       **email: Any) -> Workflow:
    """A new email, drafted (the draft agent, then a generation pool) and
    texted (unless the phone holds another draft: ``texted=False``)."""
    mid = await start_workflow(repo, pool, **email)
    wf = await repo.get(mid)
    assert wf is not None
    await stages.draft([draft_request(wf)])
    for leased in await repo.lease_drafts(10, 30):
        await stages.generate(leased)
    await stages.notify()
    wf = await repo.get(mid)
    assert wf is not None and wf.draft_code
    assert wf.current_state is (S.AWAITING_USER if texted else S.AI_GENERATED)
    return wf


class Person:
    def __init__(self, stages: Any, peers: Peers) -> None:
        self.stages, self.peers, self.n = stages, peers, 0

    async def says(self, text: str) -> str:
        """Text ``text``; returns the SMS texted back."""
        self.n += 1
        before = len(self.peers.sms.messages)
        await self.stages.command(InboundSms(sms_id=f"s{self.n}", phone_number=PHONE, text=text))
        assert len(self.peers.sms.messages) == before + 1, self.peers.sms.messages[before:]
        return str(self.peers.sms.messages[-1])


async def queued_sends(pool: Pool, mid: str) -> int:
    """How many ``replies.approved`` the outbox holds for ``mid``."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) AS n FROM kafka_outbox WHERE topic = 'replies.approved'"
                                 " AND payload::jsonb ->> 'message_id' = %s", (mid,))
        row = await cur.fetchone()
        return int(row["n"]) if row else 0


async def sweep_and_send(stages: Any, pool: Pool, mid: str) -> int:
    """One housekeeping sweep, then the send stage for every ``replies.approved``
    it queued for ``mid`` (as the send agent would); returns how many it queued."""
    before = await queued_sends(pool, mid)
    await Housekeeping(stages, interval=30).sweep()
    queued = await queued_sends(pool, mid) - before
    for _ in range(queued):
        await stages.send(mid)
    return queued


async def state(repo: WorkflowRepository, mid: str) -> Workflow:
    wf = await repo.get(mid)
    assert wf is not None
    return wf


async def test_a_scheduled_reply_leaves_at_its_time_once(
    repo: WorkflowRepository, pool: Pool, clock: OffsetClock, make_stages: Any, peers: Peers
) -> None:
    clock.jump_to(MORNING.astimezone(UTC))
    stages = stages_for(make_stages, peers)
    wf = await on_the_phone(stages, repo, pool, from_address="Ann <ann@example.com>", subject="Lunch?")
    person = Person(stages, peers)
    code = wf.draft_code
    assert await person.says("1 at 9:00") == f"{code} will be sent Wed 09:00. Reply {code} cancel to keep it."
    wf = await state(repo, wf.message_id)
    assert wf.current_state is S.USER_APPROVED and wf.send_at == datetime(2026, 11, 25, 9, 0, tzinfo=BERLIN)
    trail = await repo.audit_trail(wf.message_id)
    assert trail[-1].transition_reason == "approved by SMS, to be sent at 2026-11-25 09:00 Europe/Berlin"
    assert await queued_sends(pool, wf.message_id) == 0  # not set going yet
    await stages.send(wf.message_id)  # an early (or redelivered) replies.approved does nothing
    assert peers.inbox.messages == [] and (await state(repo, wf.message_id)).send_attempted_at is None
    assert f"{code} Ann: Lunch? (sends Wed 09:00)" in await person.says("list")

    clock.jump_to(datetime(2026, 11, 25, 8, 59, 59, tzinfo=BERLIN))
    assert await sweep_and_send(stages, pool, wf.message_id) == 0
    assert peers.inbox.messages == []
    clock.jump_to(datetime(2026, 11, 25, 9, 0, tzinfo=BERLIN))
    assert await sweep_and_send(stages, pool, wf.message_id) == 1
    sent = await state(repo, wf.message_id)
    assert sent.current_state is S.REPLY_SENT and sent.reply_message_id
    [message] = peers.inbox.messages
    assert message["Message-ID"] == sent.reply_message_id and message["In-Reply-To"] == wf.message_id
    assert peers.sms.messages[-1].startswith("Sent to Ann")

    clock.advance(timedelta(minutes=5))
    assert await sweep_and_send(stages, pool, wf.message_id) == 0  # once
    await stages.send(wf.message_id)
    assert len(peers.inbox.messages) == 1
    assert await person.says("list") == "No open drafts."


async def test_cancel_takes_a_scheduled_reply_back_and_nothing_is_ever_sent(
    repo: WorkflowRepository, pool: Pool, clock: OffsetClock, make_stages: Any, peers: Peers
) -> None:
    clock.jump_to(MORNING.astimezone(UTC))
    stages = stages_for(make_stages, peers, user_response_timeout=7 * 86400)
    wf = await on_the_phone(stages, repo, pool, from_address="Ann <ann@example.com>", subject="Lunch?")
    person = Person(stages, peers)
    code = wf.draft_code
    assert await person.says(f"{code} 1 tomorrow 8am") == (
        f"{code} will be sent Thu 08:00. Reply {code} cancel to keep it.")
    assert await person.says(f"{code} cancel") == f"{code} will not be sent; it waits for your answer."
    back = await state(repo, wf.message_id)
    assert back.current_state is S.AWAITING_USER and back.send_at is None
    assert (await repo.audit_trail(wf.message_id))[-1].transition_reason == (
        "scheduled send cancelled by SMS: it waits for an answer again")
    assert await person.says(f"{code} cancel") == f"{code} is not scheduled to be sent later; nothing to cancel."
    assert await person.says("cancel") == "No reply is scheduled to be sent later."
    for moment in (datetime(2026, 11, 26, 8, 0, tzinfo=BERLIN), datetime(2026, 11, 27, 8, 0, tzinfo=BERLIN)):
        clock.jump_to(moment)
        assert await sweep_and_send(stages, pool, wf.message_id) == 0
        await stages.send(wf.message_id)
    assert peers.inbox.messages == []
    assert (await state(repo, wf.message_id)).current_state is S.AWAITING_USER
    # Scheduled again, it leaves at its new time.
    clock.jump_to(datetime(2026, 11, 27, 8, 30, tzinfo=BERLIN))
    assert await person.says("1 9:00") == f"{code} will be sent Fri 09:00. Reply {code} cancel to keep it."
    clock.jump_to(datetime(2026, 11, 27, 9, 0, tzinfo=BERLIN))
    assert await sweep_and_send(stages, pool, wf.message_id) == 1
    assert len(peers.inbox.messages) == 1


async def test_the_phone_goes_to_the_next_draft_and_a_bare_cancel_needs_one_scheduled(
    repo: WorkflowRepository, pool: Pool, clock: OffsetClock, make_stages: Any, peers: Peers
) -> None:
    clock.jump_to(MORNING.astimezone(UTC))
    stages = stages_for(make_stages, peers, quiet_hours="22:00-07:00")
    person = Person(stages, peers)
    ann = await on_the_phone(stages, repo, pool, from_address="Ann <ann@example.com>", subject="Lunch?")
    bob = await on_the_phone(stages, repo, pool, texted=False,  # PHONE_MODE=one: Ann's draft holds the phone
                             from_address="Bob <bob@example.com>", subject="Lunch?")
    await person.says("1 tomorrow 6:30")  # inside quiet hours: the person chose the time
    await stages.notify()  # phone.freed: Bob's draft comes
    assert (await state(repo, bob.message_id)).current_state is S.AWAITING_USER
    assert await person.says("1 at 10pm") == (
        f"{bob.draft_code} will be sent Wed 22:00. Reply {bob.draft_code} cancel to keep it.")
    assert await person.says("cancel") == (
        f"Which one? Several replies are scheduled ({ann.draft_code} {bob.draft_code}): "
        f"reply e.g. {ann.draft_code} cancel.")
    assert await person.says(f"{bob.draft_code} cancel") == (
        f"{bob.draft_code} will not be sent; it waits for your answer.")
    listed = await person.says("list")
    assert f"{ann.draft_code} Ann: Lunch? (sends Thu 06:30)" in listed and f"{bob.draft_code} Bob: Lunch? (" in listed
    assert await person.says("1 at 25:00") == (
        "Could not read 'at 25:00' as a time ahead, so nothing was sent. "
        "Try 1 at 9:00, 1 9am, 1 tomorrow 8am, 1 mon 9, 1 fri at 17:30 (your time zone).")
    assert (await state(repo, bob.message_id)).current_state is S.AWAITING_USER

    clock.jump_to(datetime(2026, 11, 26, 6, 30, tzinfo=BERLIN))  # quiet hours: sent all the same
    assert await sweep_and_send(stages, pool, ann.message_id) == 1
    assert len(peers.inbox.messages) == 1
    assert await person.says("cancel") == "No reply is scheduled to be sent later."
