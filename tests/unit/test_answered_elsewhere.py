"""Answered elsewhere without a server: which Sent-folder messages answer
which open emails (handlers/elsewhere.py), and the sweep's stage over the
in-memory repository and a fake Sent folder. The same runs against Dovecot
and PostgreSQL in tests/integration/test_answered_elsewhere.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from handlers.clock import OffsetClock
from handlers.elsewhere import SentReply, answered_elsewhere, recipient_addresses
from handlers.errors import PermanentError, TransientError
from handlers.workflow import WorkflowState
from streams.peers.imap import imap_date, uid_set
from streams.pipeline.housekeeping import Housekeeping
from streams.settings import Settings
from streams.stages import Stages
from streams.stages.elsewhere import SCAN_LIMIT
from tests.support.factories import draft_request
from tests.support.fakes import (
    FakeGenerator,
    FakeMail,
    FakeRepository,
    FakeSentFolder,
    FakeSms,
)

S = WorkflowState
ANN = "Ann Lee <ann@example.com>"
OPEN = {"<a@x>": ANN, "<b@x>": ANN, "<c@x>": ANN}
TO_ANN = ("ann@example.com",)


def reply(message_id: str | None, in_reply_to: str | None = None, references: str | None = None) -> SentReply:
    """A message of the Sent folder addressed to Ann, the sender of every open email."""
    return SentReply(message_id, in_reply_to, references, TO_ANN)


def test_in_reply_to_names_the_email_answered() -> None:
    replies = [reply("<r1@me>", "<b@x>", "<a@x> <b@x>")]
    assert answered_elsewhere(replies, OPEN) == {"<b@x>": "<r1@me>"}


def test_without_in_reply_to_the_last_reference_is_the_parent() -> None:
    assert answered_elsewhere([reply("<r1@me>", None, "<a@x>\r\n <c@x>")], OPEN) == {"<c@x>": "<r1@me>"}


def test_an_email_only_mentioned_in_references_is_not_answered() -> None:
    replies = [reply("<r1@me>", "<other@x>", "<a@x> <other@x>")]
    assert answered_elsewhere(replies, OPEN) == {}


def test_our_own_replies_and_messages_without_an_id_or_a_parent_count_for_nothing() -> None:
    replies = [reply("<ours@me>", "<a@x>"), reply(None, "<b@x>"), reply("<new@me>"),
               reply("<r2@me>", "<a@x>")]
    assert answered_elsewhere(replies, OPEN, ours={"<ours@me>"}) == {"<a@x>": "<r2@me>"}


def test_the_first_reply_is_named_and_bare_or_commented_ids_match() -> None:
    replies = [reply("<r1@me>", "b@x"), reply("<r2@me>", "<b@x>"),
               reply("<r3@me> (a comment)", "<c@x> (Ann's message)")]
    assert answered_elsewhere(replies, {"b@x": ANN, "<c@x>": ANN}) == {"b@x": "<r1@me>", "<c@x>": "<r3@me>"}


def test_only_a_message_to_the_sender_answers_the_email() -> None:
    forward = SentReply("<f1@me>", "<a@x>", "<a@x>", ("colleague@example.com", "boss@example.com"))
    assert answered_elsewhere([forward], OPEN) == {}  # threaded like a reply, but Ann got nothing
    assert answered_elsewhere([SentReply("<r0@me>", "<a@x>")], OPEN) == {}  # no recipients known
    cc = SentReply("<r1@me>", "<a@x>", None, ("colleague@example.com", "ANN@Example.COM"))
    assert answered_elsewhere([forward, cc], OPEN) == {"<a@x>": "<r1@me>"}  # on Cc, any case
    assert answered_elsewhere([cc], {"<a@x>": None}) == {}  # a sender not known is never answered here
    assert answered_elsewhere([cc], {"<a@x>": "Ann <ann@other.example>"}) == {}  # the address, not the name


def test_the_recipients_are_the_bare_addresses_of_to_and_cc() -> None:
    assert recipient_addresses("Ann Lee <ann@x>, \"Smith, Bob\" <bob@y>", None, "c@z") == ("ann@x", "bob@y", "c@z")
    assert recipient_addresses("undisclosed-recipients:;", "") == ()
    assert reply("<r@me>").sent_to("Ann <ANN@example.com>") and not reply("<r@me>").sent_to("bob@example.com")


def test_imap_dates_and_uid_sets_are_written_as_rfc_3501_wants() -> None:
    assert imap_date(datetime(2026, 3, 7).date()) == "7-Mar-2026"
    assert uid_set([3, 4, 5, 7, 9, 10]) == "3:5,7,9:10"
    assert uid_set([1]) == "1"


class World:
    def __init__(self, **settings: Any) -> None:
        self.clock = OffsetClock()
        self.repo = FakeRepository(self.clock)
        self.sms = FakeSms()
        self.sent = FakeSentFolder()
        config = Settings(database_url="postgresql://unused", email_address="me@example.com", email_password="pw",
                          your_phone_number="+15551234567", retry_backoff_base=0.001, **settings)
        self.stages = Stages(settings=config, repo=self.repo, ai=FakeGenerator(), sms=self.sms, smtp=FakeMail(),
                             clock=self.clock, sent_folder=self.sent)

    async def drafted(self, *mids: str, received_at: datetime | None = None) -> None:
        for mid in mids:
            await self.repo.start(mid, received_at=received_at)
            await self.stages.draft([draft_request(self.repo.data.workflows[mid])])
            await self.stages.generate(self.repo.data.workflows[mid])
        await self.stages.notify()

    def state(self, mid: str) -> WorkflowState:
        return self.repo.data.workflows[mid].current_state


async def test_one_search_for_every_open_draft_from_the_day_before_the_oldest() -> None:
    world = World()
    monday = datetime(2026, 3, 2, 0, 30, tzinfo=UTC)
    await world.drafted("<a@x>", received_at=monday)
    await world.drafted("<b@x>", "<c@x>")
    codes = {m: world.repo.data.workflows[m].draft_code for m in ("<a@x>", "<c@x>")}
    assert all(codes.values())
    world.sent.replies = [reply("<r1@me>", "<c@x>"), reply("<r2@me>", "<a@x>")]
    await Housekeeping(world.stages, interval=30).sweep()
    assert world.sent.searches == [((monday - timedelta(days=1)).date(), SCAN_LIMIT)]
    assert [world.state(m) for m in ("<a@x>", "<b@x>", "<c@x>")] == [
        S.ANSWERED_ELSEWHERE, S.AWAITING_USER, S.ANSWERED_ELSEWHERE]  # b came to the phone
    assert world.repo.data.emails["<a@x>"].status == "sent"
    assert [t for t in world.sms.texts if "answered from your mail" in t] == [
        f"{codes[m]} (Ann Lee: Lunch?) was answered from your mail; closed." for m in ("<c@x>", "<a@x>")]
    assert world.repo.data.workflows["<a@x>"].draft_code is None


async def test_a_forward_threaded_on_the_email_leaves_the_draft_on_the_phone() -> None:
    world = World()
    await world.drafted("<a@x>")
    world.sent.replies = [SentReply("<f1@me>", "<a@x>", "<a@x>", ("colleague@example.com",))]
    assert await world.stages.close_answered_elsewhere() == 0
    assert world.state("<a@x>") is S.AWAITING_USER and world.repo.data.emails["<a@x>"].status != "sent"
    assert not [t for t in world.sms.texts if "answered from your mail" in t]


async def test_a_draft_approved_meanwhile_and_our_own_sends_are_left_alone() -> None:
    world = World()
    await world.drafted("<a@x>", "<b@x>")
    assert await world.repo.transition("<a@x>", S.AWAITING_USER, S.USER_APPROVED, "1")
    async with world.repo.transaction() as tx:
        assert await tx.claim_send("<a@x>", "<ours@me>")
    world.sent.replies = [reply("<ours@me>", "<b@x>"), reply("<r1@me>", "<a@x>")]
    assert await world.stages.close_answered_elsewhere() == 0
    assert world.state("<a@x>") is S.USER_APPROVED and world.state("<b@x>") is S.AI_GENERATED


@pytest.mark.parametrize("error", [TransientError("IMAP", "timed out"), PermanentError("IMAP", "login refused")])
async def test_imap_trouble_changes_nothing(error: Exception, caplog: pytest.LogCaptureFixture) -> None:
    world = World()
    await world.drafted("<a@x>")
    world.sent.replies = [reply("<r1@me>", "<a@x>")]
    world.sent.fail_with = error
    assert await world.stages.close_answered_elsewhere() == 0
    assert world.state("<a@x>") is S.AWAITING_USER
    assert [r.levelname for r in caplog.records if r.name == "streams.stages.elsewhere"] == ["WARNING"]


async def test_nothing_open_imap_off_or_the_check_off_asks_imap_nothing() -> None:
    world = World()
    assert await world.stages.close_answered_elsewhere() == 0 and world.sent.searches == []
    off = World(answered_elsewhere_check=False)
    await off.drafted("<a@x>")
    off.sent.replies = [reply("<r1@me>", "<a@x>")]
    assert await off.stages.close_answered_elsewhere() == 0 and off.sent.searches == []
    no_imap = World()
    await no_imap.drafted("<a@x>")
    no_imap.stages.sent_folder = None
    assert await no_imap.stages.close_answered_elsewhere() == 0 and no_imap.state("<a@x>") is S.AWAITING_USER
