"""A newer email of a thread supersedes the open draft of an older one: the
pure rules (handlers/threads.py), and the draft stage on the in-memory
repository. The same path runs on the real worker in tests/e2e/test_threads.py."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from handlers.clock import OffsetClock
from handlers.messages import EditRequested, EmailPending, PhoneFreed
from handlers.threads import (
    EARLIER_CHARS,
    EARLIER_EMAILS,
    ClosedDraft,
    EarlierEmail,
    continues,
    joined_context,
    render_superseded_sms,
    same_sender,
    superseded_reason,
    thread_instructions,
)
from handlers.workflow import WorkflowState
from streams.settings import Settings
from streams.stages import Stages

from tests.support.fakes import FakeGenerator, FakeMail, FakeRepository, FakeSms

S = WorkflowState
PHONE = "+15551234567"
TO_AWAITING = [(S.AI_GENERATING, S.AI_GENERATED), (S.AI_GENERATED, S.SMS_SENDING),
               (S.SMS_SENDING, S.AWAITING_USER)]


# ------------------------------------------------------------------ the rules

def test_an_email_continues_the_thread_it_shares_or_the_email_it_answers() -> None:
    assert continues("t1", None, "<a@x>", "t1")
    assert continues(None, " <a@x> ", "<a@x>", None)  # In-Reply-To, spaces around it
    assert continues("t2", "<a@x>", "<a@x>", "t1")
    assert not continues("t1", None, "<a@x>", "t2")
    assert not continues(None, None, "<a@x>", None)  # no thread id is no thread
    assert not continues(None, "<b@x>", "<a@x>", None)


def test_the_sender_is_the_address_of_the_first_mailbox_whatever_its_case_or_name() -> None:
    assert same_sender("John Smith <John@X.example>", "john@x.example")
    assert same_sender("j <john@x>, Ann <ann@x>", "Johnny <JOHN@x>")
    assert not same_sender("Bob <bob@x>", "John Smith <john@x>")
    assert not same_sender("John Smith <bob@x>", "John Smith <john@x>")  # a name proves nothing
    assert not same_sender("", "") and not same_sender(None, "john@x")


def test_the_sms_names_each_closed_draft_by_code_sender_and_subject() -> None:
    one = ClosedDraft("K7", "John Smith <john@example.com>", "Meeting?")
    assert render_superseded_sms([one]) == (
        "K7 (John Smith: Meeting?) closed: a newer email in the thread came; its draft answers both.")
    two = render_superseded_sms([one, ClosedDraft("M3", None, None)])
    assert two == ("K7 (John Smith: Meeting?), M3 (?: no subject) closed: a newer email in the thread came;"
                   " its draft answers them all.")
    assert render_superseded_sms([]) is None
    assert superseded_reason("<b@x>") == "superseded by a newer email in the thread: <b@x>"


def test_the_generator_is_told_of_the_earlier_emails_bounded_oldest_first() -> None:
    assert thread_instructions([]) is None
    earlier = [EarlierEmail(f"P{n} <p{n}@x>", f"Subject {n}", f"Text {n}\n1. numbered", None) for n in range(5)]
    text = thread_instructions(earlier)
    assert text is not None
    shown = [n for n in range(5) if f"Text {n}" in text]
    assert shown == [2, 3, 4]  # the most recent EARLIER_EMAILS, oldest first
    assert len(shown) == EARLIER_EMAILS
    assert 'Earlier email from P4 <p4@x>, subject "Subject 4":' in text
    assert "Text 4 1. numbered" in text  # one paragraph: no line of it reads as an edit instruction
    assert text.splitlines()[-1] == "Write one reply that answers this email and the earlier ones together."
    html = thread_instructions([EarlierEmail("a@x", None, None, "<p>Hello <b>there</b></p>" + "y" * 50_000)])
    assert html is not None and "Hello there" in html and 'subject "no subject"' in html
    assert len(html) < EARLIER_CHARS + 400  # bounded, however long the email
    assert html.splitlines()[-1] == "Write one reply that answers this email and the earlier one together."


def test_the_thread_comes_first_and_the_edits_last() -> None:
    assert joined_context(None, None) is None
    assert joined_context("T", None) == "T"
    assert joined_context(None, "E") == "E"
    assert joined_context("T", "E\n1. shorter") == "T\n\nE\n1. shorter"


# ------------------------------------------------ the draft stage, in memory

class World:
    def __init__(self) -> None:
        self.clock = OffsetClock()
        self.repo = FakeRepository(self.clock)
        self.ai, self.sms = FakeGenerator(), FakeSms()
        config = Settings(database_url="postgresql://unused", email_address="me@example.com",
                          email_password="pw", your_phone_number=PHONE, retry_backoff_base=0.001)
        self.stages = Stages(settings=config, repo=self.repo, ai=self.ai, sms=self.sms, smtp=FakeMail(),
                             clock=self.clock)
        self.received = self.clock.now() - timedelta(hours=1)

    async def arrive(self, mid: str, **email: Any) -> None:
        """An email taken on, then asked for its draft (the draft agent)."""
        self.received += timedelta(minutes=1)
        await self.repo.start(mid, received_at=self.received, **email)
        await self.stages.draft([EmailPending(message_id=mid, from_address=email.get("from_address"))])

    async def generate(self, mid: str) -> None:
        await self.stages.generate(self.repo.data.workflows[mid])

    async def on_phone(self, mid: str) -> None:
        """Generated and texted (the notify stage's moves, without it)."""
        await self.generate(mid)
        async with self.repo.transaction() as tx:
            assert await tx.transition(mid, S.AI_GENERATED, S.SMS_SENDING, "test")
            assert await tx.transition(mid, S.SMS_SENDING, S.AWAITING_USER, "test")
            await tx.phone.assign(PHONE, mid)

    def state(self, mid: str) -> WorkflowState:
        return self.repo.data.workflows[mid].current_state


async def test_a_newer_email_of_the_thread_closes_the_draft_on_the_phone_and_is_drafted_with_both() -> None:
    w = World()
    await w.arrive("<a@x>", from_address="John Smith <john@x>", subject="Meeting?", body_text="Is 2pm ok?")
    await w.on_phone("<a@x>")
    code = w.repo.data.workflows["<a@x>"].draft_code
    assert code
    await w.arrive("<b@x>", from_address="John Smith <john@x>", subject="Re: Meeting?", body_text="Or 3pm?",
                   in_reply_to="<a@x>")
    assert w.state("<a@x>") is S.SUPERSEDED
    assert w.repo.data.workflows["<a@x>"].draft_code is None
    assert w.repo.data.emails["<a@x>"].status == "ignored"
    assert w.repo.data.superseded_by == {"<a@x>": "<b@x>"}
    trail = [e for mid, e in w.repo.data.audit if mid == "<a@x>"]
    assert trail[-1].transition_reason == "superseded by a newer email in the thread: <b@x>"
    assert [m.message_id for m in w.repo.published(PhoneFreed)] == ["<a@x>"]  # the next draft comes
    assert w.sms.texts == [f"{code} (John Smith: Meeting?) closed: a newer email in the thread came;"
                           " its draft answers both."]
    await w.generate("<b@x>")
    context = w.ai.calls[-1]["context_instructions"]
    assert w.ai.calls[-1]["email_message_id"] == "<b@x>"
    assert 'Earlier email from John Smith <john@x>, subject "Meeting?":' in context and "Is 2pm ok?" in context
    assert w.state("<b@x>") is S.AI_GENERATED


async def test_an_edit_of_the_newer_draft_keeps_the_earlier_email_in_view() -> None:
    w = World()
    await w.arrive("<a@x>", thread_id="T", body_text="First question")
    await w.arrive("<b@x>", thread_id="T", body_text="Second question")
    assert w.state("<a@x>") is S.SUPERSEDED
    assert w.sms.texts == []  # the older one had no draft yet: nothing the person saw
    await w.on_phone("<b@x>")
    async with w.repo.transaction() as tx:
        assert await tx.transition("<b@x>", S.AWAITING_USER, S.USER_EDIT_REQUESTED, "test",
                                   user_edit_instructions="shorter", edit_iteration=1)
    await w.stages.draft([EditRequested(message_id="<b@x>", instructions="shorter", iteration=1)])
    await w.generate("<b@x>")
    context = w.ai.calls[-1]["context_instructions"]
    assert "First question" in context
    assert context.splitlines()[-1] == "1. shorter"  # the newest instruction stays last


async def test_a_draft_being_sent_or_of_another_thread_or_newer_is_left_alone() -> None:
    w = World()
    await w.arrive("<sent@x>", thread_id="T")
    await w.on_phone("<sent@x>")
    async with w.repo.transaction() as tx:
        assert await tx.transition("<sent@x>", S.AWAITING_USER, S.USER_APPROVED, "test")
    await w.arrive("<other@x>", thread_id="U")
    await w.arrive("<new@x>", thread_id="T")
    assert w.state("<sent@x>") is S.USER_APPROVED
    assert w.state("<other@x>") is S.AI_GENERATING
    assert w.state("<new@x>") is S.AI_GENERATING
    assert w.sms.texts == []
    # A redelivered request changes nothing, and an older email never closes a newer one.
    await w.stages.draft([EmailPending(message_id="<new@x>")])
    assert w.state("<new@x>") is S.AI_GENERATING


async def test_three_emails_of_a_thread_leave_the_newest_with_both_earlier_ones_in_view() -> None:
    w = World()
    for n, mid in enumerate(["<a@x>", "<b@x>", "<c@x>"]):
        await w.arrive(mid, thread_id="T", body_text=f"Part {n}")
    assert (w.state("<a@x>"), w.state("<b@x>")) == (S.SUPERSEDED, S.SUPERSEDED)
    await w.generate("<c@x>")
    context = w.ai.calls[-1]["context_instructions"]
    assert context.index("Part 0") < context.index("Part 1")
    assert "Part 2" not in context  # the generator reads the newest email itself


async def test_a_reply_all_from_another_sender_leaves_the_first_draft_and_is_drafted_on_its_own() -> None:
    w = World()
    await w.arrive("<a@x>", from_address="Ann Lee <ann@x>", subject="Budget?", body_text="Can we spend 5k?",
                   thread_id="T")
    await w.on_phone("<a@x>")
    await w.arrive("<b@x>", from_address="Bob <bob@x>", subject="Re: Budget?", body_text="+1", thread_id="T",
                   in_reply_to="<a@x>")
    assert w.state("<a@x>") is S.AWAITING_USER  # Ann still gets her answer
    assert w.repo.data.emails["<a@x>"].status != "ignored"
    assert w.repo.data.superseded_by == {} and w.sms.texts == []
    await w.generate("<b@x>")
    assert w.ai.calls[-1]["context_instructions"] is None  # Ann's text is not in Bob's draft
    # The same sender again, with another case and name: that one still supersedes.
    await w.arrive("<c@x>", from_address="ANN <Ann@X>", subject="Re: Budget?", body_text="Or 6k?",
                   in_reply_to="<a@x>")
    assert w.state("<a@x>") is S.SUPERSEDED and w.state("<b@x>") is S.AI_GENERATED
    assert w.repo.data.superseded_by == {"<a@x>": "<c@x>"}
    await w.generate("<c@x>")
    context = w.ai.calls[-1]["context_instructions"]
    assert context is not None and "Can we spend 5k?" in context and "+1" not in context


async def test_naming_another_senders_message_id_closes_and_reads_nothing() -> None:
    w = World()
    await w.arrive("<a@x>", from_address="Ann Lee <ann@x>", body_text="My secret plan")
    await w.on_phone("<a@x>")
    await w.arrive("<evil@y>", from_address="Mallory <m@y>", body_text="Hi", in_reply_to="<a@x>")
    await w.generate("<evil@y>")
    assert w.state("<a@x>") is S.AWAITING_USER
    assert w.ai.calls[-1]["context_instructions"] is None
