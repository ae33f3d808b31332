"""Each stage driven by the in-memory repository and fake peers: the
orchestration alone, in milliseconds. The same paths run end to end on real
Kafka and PostgreSQL in the e2e tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest

from handlers.clock import OffsetClock
from handlers.errors import OutcomeUnknownError, PermanentError
from handlers.messages import (
    DeadLetter,
    DraftReady,
    EditRequested,
    EmailPending,
    InboundSms,
    PhoneFreed,
    ReplyApproved,
    SourceRecord,
)
from handlers.workflow import WorkflowState
from streams.settings import Settings
from streams.stages import NotAllowedNow, Stages, UnknownWorkflow

from tests.support.factories import draft_request
from tests.support.fakes import FakeGenerator, FakeMail, FakeRepository, FakeSms

S = WorkflowState
PHONE = "+15551234567"


class World:
    def __init__(self, **settings: Any) -> None:
        self.clock = OffsetClock()
        self.repo = FakeRepository(self.clock)
        self.ai, self.sms, self.mail = FakeGenerator(), FakeSms(), FakeMail()
        config = Settings(database_url="postgresql://unused", email_address="me@example.com",
                          email_password="pw", your_phone_number=PHONE, retry_backoff_base=0.001,
                          **settings)
        self.stages = Stages(settings=config, repo=self.repo, ai=self.ai, sms=self.sms,
                             smtp=self.mail, clock=self.clock)
        self._sms = 0

    def state(self, mid: str) -> WorkflowState:
        wf = self.repo.data.workflows[mid]
        return wf.current_state

    async def draft(self, mid: str) -> None:
        """What the draft agent and then a generation pool do with ``mid``."""
        wf = self.repo.data.workflows[mid]
        await self.stages.draft([draft_request(wf)])
        wf = self.repo.data.workflows[mid]
        if wf.current_state is S.AI_GENERATING and (wf.next_attempt_at is None
                                                     or wf.next_attempt_at <= self.clock.now()):
            await self.stages.generate(wf)

    async def presented(self, mid: str, **email: Any) -> None:
        await self.repo.start(mid, **email)
        await self.draft(mid)
        await self.stages.notify()

    async def answer(self, text: str, phone: str = PHONE, sms_id: str | None = None) -> None:
        self._sms += 1
        await self.stages.command(InboundSms(sms_id=sms_id or f"m{self._sms}", phone_number=phone, text=text))


@dataclass
class MailServer:
    """A mail server that does what ``behaviour`` does with each message."""

    behaviour: Callable[[EmailMessage], Awaitable[None]]

    async def send(self, message: EmailMessage) -> None:
        await self.behaviour(message)


def about(moment: datetime | None, expected: datetime) -> bool:
    """Equal but for the real time the OffsetClock lets pass between two reads."""
    return moment is not None and abs((moment - expected).total_seconds()) < 1


@pytest.fixture
def world() -> World:
    return World()


async def test_draft_generates_and_hands_on(world: World) -> None:
    await world.repo.start("<a@x>")
    await world.draft("<a@x>")
    wf = world.repo.data.workflows["<a@x>"]
    assert (wf.current_state, wf.ai_reply_text) == (S.AI_GENERATED, "Draft 1")
    assert world.repo.published(DraftReady) == [DraftReady(message_id="<a@x>", iteration=0)]
    await world.draft("<a@x>")  # a redelivery
    assert len(world.ai.calls) == 1


async def test_a_permanent_generator_error_fails_dead_letters_and_tells(world: World) -> None:
    await world.repo.start("<a@x>")
    world.ai.fail_with = [PermanentError("AI Reply Generator", "404: unknown email")]
    await world.draft("<a@x>")
    wf = world.repo.data.workflows["<a@x>"]
    assert (wf.current_state, wf.failed_stage) == (S.FAILED, "draft")
    [letter] = world.repo.published(DeadLetter)
    assert (letter.stage, letter.source_topic, letter.kind) == ("draft", "emails.pending", "permanent")
    assert (letter.key, letter.error_class) == (b"<a@x>", "PermanentError")
    assert EmailPending.model_validate_json(letter.value).message_id == "<a@x>"  # what starts the draft again
    [text] = world.sms.texts
    assert "404" in text


async def test_notify_presents_the_oldest_ready_draft_once(world: World) -> None:
    base = world.clock.now()
    await world.repo.start("<new@x>", received_at=base)
    await world.repo.start("<old@x>", received_at=base - timedelta(hours=1), from_address="Old <o@x>")
    await world.draft("<new@x>")
    await world.draft("<old@x>")
    await world.stages.notify()
    await world.stages.notify()  # the phone is busy: nothing more
    assert world.state("<old@x>") is S.AWAITING_USER and world.state("<new@x>") is S.AI_GENERATED
    [text] = world.sms.texts
    assert text.startswith("Old: Lunch?") and text.endswith("(+1 waiting)")
    wf = world.repo.data.workflows["<old@x>"]
    assert wf.sms_sent_at is not None and wf.timeout_at == wf.sms_sent_at + timedelta(seconds=86400)


async def test_a_gateway_that_keeps_failing_fails_the_draft_and_frees_the_phone() -> None:
    world = World(retry_deadline=0)  # no parking: give up after the in-call retries
    await world.repo.start("<a@x>")
    await world.draft("<a@x>")
    world.sms.failing = 3
    await world.stages.notify()
    assert world.state("<a@x>") is S.FAILED
    assert world.repo.data.workflows["<a@x>"].failed_stage == "notify"
    assert world.repo.data.phones.get(PHONE) is None  # the presentation was withdrawn
    assert world.repo.trail("<a@x>")[-3:] == [(S.AI_GENERATED.value, S.SMS_SENDING.value),
                                               (S.SMS_SENDING.value, S.AI_GENERATED.value),
                                               (S.AI_GENERATED.value, S.FAILED.value)]
    assert not world.repo.data.presenting
    assert world.sms.texts == ["Gave up on the email from Ann Lee (Lunch?): SMS Gateway: modem busy. "
                               "It can be retried from the orchestrator."]


async def test_a_failed_send_dead_letters_the_record_that_set_it_going(world: World) -> None:
    await world.presented("<a@x>")
    await world.answer("1")
    world.mail.refuse = True
    record = SourceRecord("replies.approved", b"<a@x>", b'{"message_id": "<a@x>", "as": "sent"}', 4, 17)
    await world.stages.send("<a@x>", record)
    assert world.state("<a@x>") is S.FAILED
    [letter] = world.repo.published(DeadLetter)
    assert (letter.source_topic, letter.key, letter.value) == ("replies.approved", b"<a@x>", record.value)
    assert (letter.partition, letter.offset, letter.stage, letter.kind) == (4, 17, "send", "permanent")
    assert (letter.attempts, letter.error_class) == (1, "PermanentError")


@pytest.mark.parametrize("key", [b"<a@x>", b"<other@x>"])
async def test_a_failed_presentation_dead_letters_its_record_only_if_the_record_is_about_it(key: bytes) -> None:
    world = World(retry_deadline=0)  # no parking: give up after the in-call retries
    await world.repo.start("<a@x>")
    await world.draft("<a@x>")
    world.sms.failing = 3
    record = SourceRecord("drafts.ready", key, b'{"message_id": "as sent", "iteration": 0}', 2, 9)
    await world.stages.notify(record)
    [letter] = world.repo.published(DeadLetter)
    assert (letter.stage, letter.kind, letter.attempts, letter.error_class) == (
        "notify", "exhausted", 3, "TransientError")
    assert letter.error_message == "gave up after 3 attempts: SMS Gateway: modem busy"
    if key == b"<a@x>":
        assert (letter.value, letter.partition, letter.offset) == (record.value, 2, 9)
    else:  # what sets <a@x>'s notify going again
        assert (letter.key, letter.partition, letter.offset) == (b"<a@x>", None, None)
        assert DraftReady.model_validate_json(letter.value) == DraftReady(message_id="<a@x>", iteration=0)


async def cut_off_presentation(world: World, mid: str) -> None:
    """``mid``'s draft on the phone in ``sms_sending`` with nobody holding it:
    what a worker killed while texting it leaves behind."""
    await world.repo.start(mid)
    await world.draft(mid)
    for source, target in [(S.AI_GENERATED, S.SMS_SENDING)]:
        assert await world.repo.transition(mid, source, target, "presenting the draft")
    world.repo.data.phones[PHONE] = mid


async def test_a_draft_sms_cut_off_by_a_dead_worker_is_never_texted_again(world: World) -> None:
    await cut_off_presentation(world, "<a@x>")
    await world.repo.start("<b@x>")
    await world.draft("<b@x>")
    await world.stages.notify()
    assert world.state("<a@x>") is S.AWAITING_USER and world.state("<b@x>") is S.AI_GENERATED
    [text] = world.sms.texts
    assert text.startswith("A restart cut off the draft reply to Ann Lee (Lunch?); it may not have reached you.")
    assert "/drafts/%3Ca%40x%3E?t=" in text and "1=Send" not in text
    last = (await world.repo.audit_trail("<a@x>"))[-1]  # audited:
    assert (last.from_state, last.to_state) == (S.SMS_SENDING.value, S.AWAITING_USER.value)
    assert (last.transition_reason or "").startswith("draft SMS cut off")
    await world.stages.notify()  # settled once
    assert len(world.sms.texts) == 1


async def test_a_draft_being_texted_by_a_live_worker_is_left_alone_and_an_answer_waits_for_it(
        world: World) -> None:
    await cut_off_presentation(world, "<a@x>")
    world.repo.data.presenting.add("<a@x>")  # its worker is alive, waiting for the gateway
    await world.stages.notify()
    assert world.state("<a@x>") is S.SMS_SENDING and world.sms.texts == []

    async def gateway_answers(seconds: float) -> None:  # while the answer waits, the presenter finishes
        if world.state("<a@x>") is S.SMS_SENDING:
            assert await world.repo.transition("<a@x>", S.SMS_SENDING, S.AWAITING_USER, "draft sent by SMS")
            world.repo.data.presenting.discard("<a@x>")

    world.stages.sleep = gateway_answers
    await world.answer("1")  # quicker than the gateway's reply
    assert world.state("<a@x>") is S.USER_APPROVED and world.sms.texts == []


async def test_an_answer_stops_waiting_for_a_presentation_that_never_ends(world: World) -> None:
    await cut_off_presentation(world, "<a@x>")
    world.repo.data.presenting.add("<a@x>")
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    world.stages.sleep = record
    await world.answer("1")
    assert world.state("<a@x>") is S.SMS_SENDING
    assert world.sms.texts == ["No draft is waiting for your answer right now."]
    assert 360 <= sum(waits) < 360.2  # MAX_RETRY_ATTEMPTS x (HTTP_TIMEOUT + RETRY_BACKOFF_MAX): 3 x (60 + 60)


async def test_an_answer_to_a_cut_off_draft_shows_it_arrived_and_counts(world: World) -> None:
    await cut_off_presentation(world, "<a@x>")
    await world.answer("1")
    assert world.state("<a@x>") is S.USER_APPROVED
    assert world.sms.texts == []  # no cut-off notice: the person has the draft


async def test_approve_then_send_threads_once(world: World) -> None:
    await world.presented("<a@x>")
    await world.answer("OK!")
    assert world.state("<a@x>") is S.USER_APPROVED
    assert world.repo.published(ReplyApproved) == [ReplyApproved(message_id="<a@x>")]
    await world.stages.send("<a@x>")
    await world.stages.send("<a@x>")  # a redelivery sends nothing
    [mail] = world.mail.sent
    assert (mail["To"], mail["Subject"], mail["In-Reply-To"]) == ("Ann Lee <ann@example.com>", "Re: Lunch?", "<a@x>")
    assert world.state("<a@x>") is S.REPLY_SENT
    assert world.repo.data.reply_drafts["<a@x>"] == "Draft 1"
    assert ("user_approved", "user_approved") in world.repo.trail("<a@x>")  # the send claimed first
    assert world.sms.texts[-1].startswith("Sent to Ann Lee")


async def test_edit_keeps_the_phone_and_carries_every_instruction(world: World) -> None:
    await world.presented("<a@x>")
    await world.answer("2 decline politely")
    [edit] = world.repo.published(EditRequested)
    assert (edit.instructions, edit.iteration) == ("decline politely", 1)
    await world.draft("<a@x>")
    await world.stages.notify()
    assert world.state("<a@x>") is S.AWAITING_USER
    await world.answer("edit: shorter")
    await world.draft("<a@x>")
    context = world.ai.calls[-1]["context_instructions"]
    assert "Draft 2" in context and "1. decline politely" in context and "2. shorter" in context
    assert len(world.repo.data.workflows["<a@x>"].edit_history) == 2


async def test_ignore_frees_the_phone_and_says_what_is_next(world: World) -> None:
    await world.presented("<a@x>")
    await world.repo.start("<b@x>", from_address="Bob <b@x>")
    await world.draft("<b@x>")
    await world.answer("3")
    assert world.state("<a@x>") is S.USER_IGNORED
    assert world.repo.published(PhoneFreed)[-1].message_id == "<a@x>"
    assert "Bob" in world.sms.texts[-1]
    await world.stages.notify()  # what the phone.freed message sets off
    assert world.state("<b@x>") is S.AWAITING_USER


async def test_unknown_foreign_and_repeated_sms_change_nothing(world: World) -> None:
    await world.presented("<a@x>")
    await world.answer("maybe?")
    assert world.sms.texts[-1].startswith("Reply 1")
    await world.answer("1", phone="+15550000000")
    await world.answer("1", sms_id="dup")
    await world.answer("3", sms_id="dup")  # the same SMS delivered again
    assert world.state("<a@x>") is S.USER_APPROVED
    outcomes = {k: v["outcome"] for k, v in world.repo.data.sms.items()}
    assert outcomes["m1"] == "help" and outcomes["m2"] == "foreign_number" and outcomes["dup"] == "approved"


async def test_edit_limit_and_nothing_waiting(world: World) -> None:
    w = World(max_edit_iterations=0)
    await w.answer("1")
    assert w.sms.texts[-1] == "No draft is waiting for your answer right now."
    await w.presented("<a@x>")
    await w.answer("2 again")
    assert w.state("<a@x>") is S.AWAITING_USER and w.sms.texts[-1].startswith("Edit limit (0) reached")


async def test_a_cut_off_send_is_never_repeated(world: World) -> None:
    await world.presented("<a@x>")
    await world.answer("1")
    async with world.repo.transaction() as tx:
        assert await tx.claim_send("<a@x>", "<r@x>")  # then the worker died
    await world.stages.send("<a@x>")
    wf = world.repo.data.workflows["<a@x>"]
    assert wf.current_state is S.FAILED and "may or may not" in (wf.error_message or "")
    assert world.mail.sent == []


async def test_a_connection_lost_mid_send_fails_as_outcome_unknown(world: World) -> None:
    await world.presented("<a@x>")
    await world.answer("1")

    async def cut_off(message: EmailMessage) -> None:
        raise OutcomeUnknownError("SMTP", "connection lost after DATA")

    world.stages.smtp = MailServer(cut_off)
    await world.stages.send("<a@x>")
    wf = world.repo.data.workflows["<a@x>"]
    assert wf.current_state is S.FAILED and wf.send_attempted_at is not None


async def test_timeouts_and_retries_follow_the_state_machine(world: World) -> None:
    await world.presented("<a@x>")
    world.clock.advance(timedelta(days=1))
    assert await world.stages.expire_timeouts() == 1
    assert world.state("<a@x>") is S.TIMEOUT
    with pytest.raises(NotAllowedNow):
        await world.stages.time_out("<a@x>", "by hand")
    with pytest.raises(UnknownWorkflow):
        await world.stages.retry("<nope@x>", "by hand")
    assert await world.stages.retry("<a@x>", "by hand") is S.AI_GENERATED
    assert world.repo.published(DraftReady)[-1] == DraftReady(message_id="<a@x>", iteration=0)
    with pytest.raises(NotAllowedNow):
        await world.stages.retry("<a@x>", "again")

    await world.repo.start("<b@x>")
    world.ai.fail_with = [PermanentError("AI Reply Generator", "404")]
    await world.draft("<b@x>")
    assert await world.stages.retry("<b@x>", "by hand") is S.PENDING
    assert world.repo.published(EmailPending)[-1].message_id == "<b@x>"


async def test_a_bug_fails_a_live_workflow_but_not_a_draft_on_the_phone(world: World) -> None:
    from handlers.workflow import Stage

    await world.repo.start("<a@x>")
    await world.stages.fail_unexpected("<a@x>", Stage.DRAFT, RuntimeError("boom"))
    assert world.state("<a@x>") is S.FAILED
    await world.presented("<b@x>")
    await world.stages.fail_unexpected("<b@x>", Stage.COMMAND, RuntimeError("boom"))
    assert world.state("<b@x>") is S.AWAITING_USER


@pytest.mark.parametrize("sender", ["Shop <no-reply@shop.example>", "", "a@b@c"])
async def test_a_no_reply_sender_is_filtered_before_any_draft(world: World, sender: str) -> None:
    """Machines, and senders a reply could not reach (fuzzing found "" drafted, then parked forever)."""
    await world.repo.start("<n@x>", from_address=sender)
    await world.draft("<n@x>")
    await world.stages.notify()
    assert world.state("<n@x>") is S.FILTERED
    assert world.ai.calls == [] and world.sms.sent == []
    assert world.repo.data.emails["<n@x>"].status == "filtered"
    assert world.repo.trail("<n@x>")[-1] == ("pending", "filtered")


async def test_an_outage_parks_the_draft_and_the_sweep_sets_it_going_again(world: World) -> None:
    from handlers.errors import TransientError

    down = TransientError("AI Reply Generator", "503")
    for mid in ("<a@x>", "<b@x>"):
        await world.repo.start(mid)
        world.ai.fail_with = [down] * 3
        await world.draft(mid)
        wf = world.repo.data.workflows[mid]
        assert (wf.current_state, wf.park_stage, wf.park_attempts) == (S.AI_GENERATING, "draft", 1)
        assert about(wf.next_attempt_at, world.clock.now() + timedelta(seconds=30))
    assert world.sms.texts == ["AI Reply Generator is not answering. Your emails wait and go ahead on their own "
                               "when it is back; nothing to do."]  # once per outage, not per email
    assert await world.stages.resume_parked() == 0  # not due yet
    world.clock.advance(timedelta(seconds=30))
    assert await world.stages.resume_parked() == 2  # due: a generation pool leases them again
    assert [world.repo.data.workflows[m].next_attempt_at for m in ("<a@x>", "<b@x>")] == [None, None]
    world.ai.fail_with = [down] * 3  # still down for <a@x>: parked again, twice as long
    await world.draft("<a@x>")
    wf = world.repo.data.workflows["<a@x>"]
    assert wf.park_attempts == 2 and about(wf.next_attempt_at, world.clock.now() + timedelta(seconds=60))
    await world.draft("<b@x>")  # back
    assert world.state("<b@x>") is S.AI_GENERATED and world.repo.data.workflows["<b@x>"].park_peer is None
    assert len(world.sms.texts) == 1


async def test_past_the_deadline_a_parked_workflow_fails() -> None:
    from handlers.errors import TransientError

    world = World(retry_deadline=100, retry_park_base=30)
    await world.repo.start("<a@x>")
    for _ in range(4):
        world.ai.fail_with = [TransientError("AI Reply Generator", "503")] * 3
        await world.draft("<a@x>")
        wf = world.repo.data.workflows["<a@x>"]
        if wf.current_state is S.FAILED:
            break
        assert wf.next_attempt_at is not None
        world.clock.advance(wf.next_attempt_at - world.clock.now())
    assert wf.current_state is S.FAILED and wf.failed_stage == "draft"
    assert wf.created_at is not None and world.clock.now() >= wf.created_at + timedelta(seconds=100)
    assert world.sms.texts[-1].startswith("Gave up on the email from Ann Lee")


async def test_a_gateway_outage_parks_the_draft_unpresented(world: World) -> None:
    await world.repo.start("<a@x>")
    await world.draft("<a@x>")
    world.sms.failing = 3
    await world.stages.notify()
    wf = world.repo.data.workflows["<a@x>"]
    assert (wf.current_state, wf.park_stage) == (S.AI_GENERATED, "notify")
    assert world.repo.data.phones.get(PHONE) is None  # the presentation was withdrawn
    assert world.repo.trail("<a@x>")[-3:] == [(S.AI_GENERATED.value, S.SMS_SENDING.value),
                                               (S.SMS_SENDING.value, S.AI_GENERATED.value),
                                               (S.AI_GENERATED.value, S.AI_GENERATED.value)]  # parked
    assert not world.repo.data.presenting
    await world.stages.notify()  # not due: the gateway is not hammered
    assert world.sms.failing == 0 and len(world.sms.sent) == 1  # only the outage notice got through
    world.clock.advance(timedelta(seconds=30))
    await world.stages.resume_parked()
    await world.stages.notify()
    assert world.state("<a@x>") is S.AWAITING_USER


async def test_an_smtp_outage_parks_the_send_and_releases_its_claim(world: World) -> None:
    from handlers.errors import TransientError

    await world.presented("<a@x>")
    await world.answer("1")

    async def unavailable(message: EmailMessage) -> None:
        raise TransientError("SMTP", "421 try later")

    world.stages.smtp = MailServer(unavailable)
    await world.stages.send("<a@x>")
    wf = world.repo.data.workflows["<a@x>"]
    assert (wf.current_state, wf.park_stage, wf.send_attempted_at) == (S.USER_APPROVED, "send", None)
    world.stages.smtp = world.mail  # back
    world.clock.advance(timedelta(seconds=30))
    assert await world.stages.resume_parked() == 1
    await world.stages.send("<a@x>")
    assert world.state("<a@x>") is S.REPLY_SENT and len(world.mail.sent) == 1


async def test_a_send_cut_off_in_flight_is_settled_by_the_sent_folder(world: World) -> None:
    from tests.support.fakes import FakeSentFolder

    world.stages.sent_folder = sent = FakeSentFolder()
    calls: list[str] = []

    async def cut_off_after_delivery(message: EmailMessage) -> None:
        calls.append(message["Message-ID"])
        sent.message_ids.add(message["Message-ID"])  # the server took it, then the line dropped
        raise OutcomeUnknownError("SMTP", "connection lost after DATA")

    world.stages.smtp = MailServer(cut_off_after_delivery)
    await world.presented("<a@x>")
    await world.answer("1")
    await world.stages.send("<a@x>")
    assert world.state("<a@x>") is S.REPLY_SENT and len(calls) == 1 and sent.checked == calls


async def test_cut_off_and_not_in_the_sent_folder_it_goes_again_once_then_a_person_decides(world: World) -> None:
    from tests.support.fakes import FakeSentFolder

    world.stages.sent_folder = FakeSentFolder()
    calls: list[str] = []

    async def always_cut_off(message: EmailMessage) -> None:
        calls.append(message["Message-ID"])
        raise OutcomeUnknownError("SMTP", "connection lost after DATA")

    world.stages.smtp = MailServer(always_cut_off)
    await world.presented("<a@x>")
    await world.answer("1")
    await world.stages.send("<a@x>")
    assert len(calls) == 2 and calls[0] == calls[1]  # the same Message-ID both times
    wf = world.repo.data.workflows["<a@x>"]
    assert wf.current_state is S.FAILED and wf.failed_stage == "send"
