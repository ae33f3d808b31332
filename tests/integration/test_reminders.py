"""One reminder for an unanswered draft, and quiet hours, on real PostgreSQL
with real peers on loopback and an injected clock (no sleeps)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from handlers.clock import OffsetClock
from handlers.messages import InboundSms
from handlers.workflow import WorkflowState
from streams.storage.repository import Pool, WorkflowRepository

from tests.support.factories import draft_request, start_workflow
from tests.support.inprocess import Peers, peers, stages_for  # noqa: F401 (peers: a fixture)

S = WorkflowState
PHONE = "+15551234567"
BERLIN = ZoneInfo("Europe/Berlin")



async def draft(stages: Any, repo: WorkflowRepository, mid: str) -> None:
    """What the draft agent and then a generation pool do with ``mid``."""
    wf = await repo.get(mid)
    assert wf is not None
    await stages.draft([draft_request(wf)])
    for wf in await repo.lease_drafts(10, 30):
        await stages.generate(wf)


async def answer(stages: Any, text: str, n: int) -> None:
    await stages.command(InboundSms(sms_id=f"r{n}", phone_number=PHONE, text=text))


async def test_one_reminder_then_the_draft_is_still_answerable(
    repo: WorkflowRepository, pool: Pool, clock: OffsetClock, make_stages: Any, peers: Peers
) -> None:
    stages = stages_for(make_stages, peers)  # REMINDER_AFTER defaults to 4 hours
    mid = await start_workflow(repo, pool)
    await draft(stages, repo, mid)
    await stages.notify()
    [draft_sms] = peers.sms.messages
    clock.advance(timedelta(hours=3, minutes=59))
    assert await stages.send_reminders() == 0
    clock.advance(timedelta(minutes=2))
    assert await stages.send_reminders() == 1
    assert peers.sms.messages[1] == "Reminder: " + draft_sms
    clock.advance(timedelta(hours=5))
    assert await stages.send_reminders() == 0  # once
    assert len(peers.sms.messages) == 2
    trail = await repo.audit_trail(mid)
    assert (trail[-1].from_state, trail[-1].to_state, trail[-1].transition_reason) == (
        "awaiting_user", "awaiting_user", "reminder sent by SMS")

    await answer(stages, "1", 1)
    await stages.send(mid)
    wf = await repo.get(mid)
    assert wf is not None and wf.current_state is S.REPLY_SENT
    assert len(peers.inbox.messages) == 1


async def test_reminders_can_be_switched_off_and_a_refused_one_is_retried(
    repo: WorkflowRepository, pool: Pool, clock: OffsetClock, make_stages: Any, peers: Peers
) -> None:
    off = stages_for(make_stages, peers, reminder_after=0)
    mid = await start_workflow(repo, pool)
    await draft(off, repo, mid)
    await off.notify()
    clock.advance(timedelta(days=2))
    assert await off.send_reminders() == 0
    on = stages_for(make_stages, peers, reminder_after=3600, max_retry_attempts=1)
    peers.sms.failures = 1
    assert await on.send_reminders() == 0  # the gateway refused: not marked as reminded
    assert await on.send_reminders() == 1
    assert peers.sms.messages[-1].startswith("Reminder: ")


async def test_nothing_is_texted_inside_quiet_hours_and_answers_still_work(
    repo: WorkflowRepository, pool: Pool, clock: OffsetClock, make_stages: Any, peers: Peers
) -> None:
    stages = stages_for(make_stages, peers, quiet_hours="22:00-07:00", timezone="Europe/Berlin",
                        reminder_after=3600)
    evening = datetime(2026, 11, 25, 21, 50, tzinfo=BERLIN)
    clock.jump_to(evening.astimezone(UTC))
    first = await start_workflow(repo, pool)
    await draft(stages, repo, first)
    await stages.notify()
    assert len(peers.sms.messages) == 1  # 21:50: presented

    clock.jump_to(datetime(2026, 11, 25, 23, 30, tzinfo=BERLIN))  # quiet; the reminder is due
    second = await start_workflow(repo, pool, from_address="Bob <bob@example.com>")
    await draft(stages, repo, second)
    await stages.notify()
    assert await stages.send_reminders() == 0
    await answer(stages, "2 make it shorter", 1)  # the person answers anyway
    await draft(stages, repo, first)
    await stages.notify()
    wf = await repo.get(first)
    assert wf is not None and wf.current_state is S.AI_GENERATED and wf.edit_iteration == 1
    assert len(peers.sms.messages) == 1  # nothing texted in quiet hours

    clock.jump_to(datetime(2026, 11, 26, 6, 59, tzinfo=BERLIN))
    await stages.notify()
    assert len(peers.sms.messages) == 1
    clock.jump_to(datetime(2026, 11, 26, 7, 0, tzinfo=BERLIN))  # quiet hours end
    await stages.notify()
    assert len(peers.sms.messages) == 2
    assert peers.sms.messages[1].startswith("John Smith: ") and "Revised draft" in peers.sms.messages[1]
    assert (await repo.get(first)).current_state is S.AWAITING_USER  # type: ignore[union-attr]
    assert (await repo.get(second)).current_state is S.AI_GENERATED  # type: ignore[union-attr]


async def test_a_reminder_whose_sms_call_hangs_holds_no_lock(
    repo: WorkflowRepository, pool: Pool, clock: OffsetClock, make_stages: Any, peers: Peers
) -> None:
    """The reminder is claimed, then texted after commit: while its SMS call
    hangs, an answer takes the phone's lock and is acted on at once."""
    stages = stages_for(make_stages, peers, reminder_after=3600)
    mid = await start_workflow(repo, pool)
    await draft(stages, repo, mid)
    await stages.notify()
    clock.advance(timedelta(hours=2))
    # Held well past the answer's 5 s, and short enough not to hold the teardown (the stub waits it out).
    peers.sms.hold = lambda message: 8.0 if message.startswith("Reminder: ") else 0.0
    reminding = asyncio.create_task(stages.send_reminders())
    try:
        for _ in range(100):  # until the gateway has the reminder (and holds its answer)
            if len(peers.sms.messages) == 2:
                break
            await asyncio.sleep(0.05)
        assert peers.sms.messages[1].startswith("Reminder: ")
        await asyncio.wait_for(answer(stages, "3", 1), 5)
        assert peers.sms.messages[2] == "Ignored the email from John Smith. Nothing else waiting."
        wf = await repo.get(mid)
        assert wf is not None and wf.current_state is S.USER_IGNORED and wf.reminded_at is not None
        assert not reminding.done()  # the reminder's call still hangs
    finally:
        reminding.cancel()
        await asyncio.gather(reminding, return_exceptions=True)


async def test_each_mode_texts_every_draft_and_reminds_and_times_out_each_on_its_own(
    repo: WorkflowRepository, pool: Pool, clock: OffsetClock, make_stages: Any, peers: Peers
) -> None:
    stages = stages_for(make_stages, peers, phone_mode="each", reminder_after=3600,
                        user_response_timeout=7200, quiet_hours="22:00-07:00", timezone="Europe/Berlin")
    clock.jump_to(datetime(2026, 11, 25, 20, 0, tzinfo=BERLIN).astimezone(UTC))
    first = await start_workflow(repo, pool)
    second = await start_workflow(repo, pool, from_address="Bob <bob@example.com>")
    await draft(stages, repo, first)
    await draft(stages, repo, second)
    await stages.notify()
    assert len(peers.sms.messages) == 2  # both at once, not one behind the other
    codes = [wf.draft_code if wf else None for wf in [await repo.get(first), await repo.get(second)]]
    assert all(f"{code}: 1=Send" in text for code, text in zip(codes, peers.sms.messages))

    clock.advance(timedelta(minutes=30))
    await answer(stages, f"{codes[1]} 2 make it shorter", 1)  # the second is edited: its clock starts again
    await draft(stages, repo, second)
    await stages.notify()
    assert len(peers.sms.messages) == 3
    clock.advance(timedelta(minutes=31))
    assert await stages.send_reminders() == 1  # 61 min: only the first is due
    assert peers.sms.messages[-1].startswith("Reminder: ") and f"{codes[0]}: 1=Send" in peers.sms.messages[-1]

    clock.jump_to(datetime(2026, 11, 25, 22, 30, tzinfo=BERLIN))  # quiet: the second's reminder waits
    assert await stages.send_reminders() == 0
    clock.jump_to(datetime(2026, 11, 26, 7, 1, tzinfo=BERLIN))
    assert await stages.expire_timeouts() == 2  # each past its own timeout
    for mid in (first, second):
        wf = await repo.get(mid)
        assert wf is not None and wf.current_state is S.TIMEOUT and wf.draft_code is None
