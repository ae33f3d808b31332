"""Many people (docs/design.md, "Many people"): each stage works for the
person whose email it is. The stages with the fake repository and a small
directory of people: phones, codes, logins, quiet hours, tone and outages
are each person's own."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from handlers.clock import OffsetClock
from handlers.elsewhere import SentReply
from handlers.errors import PeerError, TransientError
from handlers.messages import EmailPending, InboundSms
from handlers.people import MailLogin, Person
from handlers.workflow import WorkflowState
from streams.settings import Settings
from streams.stages import Stages
from streams.stages.ports import MailSender, SentMailbox

from tests.support.fakes import FakeGenerator, FakeMail, FakeRepository, FakeSms

S = WorkflowState
DEFAULT_PHONE = "+15551234567"


def person(pid: int, name: str, phone: str, address: str, **fields: Any) -> Person:
    base = dict(timezone="UTC", quiet_hours=None, reminder_after=0.0, skip_senders="", tone="professional",
                max_length=None, smtp=MailLogin("127.0.0.1", 465, address, "pw", "ssl"), imap=None, own_mail=False)
    base.update(fields)
    return Person(pid, name, phone, (address,), **base)  # type: ignore[arg-type]


class People:
    """The People port over a dict, with a fake mail server per person."""

    def __init__(self, *people: Person) -> None:
        self.people = {p.id: p for p in people}
        self.mail = {p.id: FakeMail() for p in people}
        #: Each person's Sent folder, when they have one.
        self.folders: dict[int, SentMailbox] = {}

    async def get(self, person_id: int) -> Person | None:
        return self.people.get(person_id)

    async def by_phone(self, phone: str) -> Person | None:
        return next((p for p in self.people.values() if p.phone == phone), None)

    async def everyone(self) -> list[Person]:
        return list(self.people.values())

    def mail_sender(self, who: Person) -> MailSender | None:
        return self.mail[who.id]

    def sent_folder(self, who: Person) -> SentMailbox | None:
        return self.folders.get(who.id)


class Folder:
    """A Sent folder that counts its searches; ``broken``: every search fails."""

    def __init__(self, broken: bool = False) -> None:
        self.broken, self.searches = broken, 0

    async def contains(self, message_id: str) -> bool:
        return False

    async def replies_since(self, since: date, limit: int) -> list[SentReply]:
        self.searches += 1
        if self.broken:
            raise PeerError("IMAP", "login refused")
        return []


ANN = person(1, "Ann", "+15550000001", "ann@a.example")
BOB = person(2, "Bob", "+15550000002", "bob@b.example", tone="casual")


class World:
    def __init__(self, *people: Person, **settings: Any) -> None:
        self.clock = OffsetClock()
        self.repo = FakeRepository(self.clock)
        self.ai, self.sms, self.mail = FakeGenerator(), FakeSms(), FakeMail()
        self.people = People(*people)
        config = Settings(database_url="postgresql://unused", email_address="me@example.com",
                          email_password="pw", your_phone_number=DEFAULT_PHONE, retry_backoff_base=0.001,
                          **settings)
        self.stages = Stages(settings=config, repo=self.repo, ai=self.ai, sms=self.sms, smtp=self.mail,
                             clock=self.clock, people=self.people)
        self._n = 0

    async def drafted(self, mid: str, who: int, sender: str = "Zed <z@x.example>") -> None:
        await self.repo.start(mid, person=who, from_address=sender)
        await self.stages.draft([EmailPending(message_id=mid, from_address=sender, person_id=who)])
        await self.stages.generate(self.repo.data.workflows[mid])

    async def answer(self, text: str, phone: str) -> None:
        self._n += 1
        await self.stages.command(InboundSms(sms_id=f"m{self._n}", phone_number=phone, text=text))

    def to(self, phone: str) -> list[str]:
        return [text for to, text in self.sms.sent if to == phone]

    def state(self, mid: str) -> WorkflowState:
        return self.repo.data.workflows[mid].current_state


def code_of(text: str) -> str:
    found = re.search(r"\n([A-Z][2-9]): 1=Send", text)
    assert found, text
    return found.group(1)


async def test_each_draft_goes_to_its_owners_phone_and_each_bare_answer_means_the_owners_draft() -> None:
    w = World(ANN, BOB)
    await w.drafted("<a@x>", 1)
    await w.drafted("<b@x>", 2)
    await w.stages.notify()
    assert len(w.to(ANN.phone)) == 1 and len(w.to(BOB.phone)) == 1 and w.to(DEFAULT_PHONE) == []
    await w.answer("1", BOB.phone)
    assert w.state("<b@x>") is S.USER_APPROVED and w.state("<a@x>") is S.AWAITING_USER
    await w.stages.send("<b@x>")
    [reply] = w.people.mail[2].sent  # through Bob's own login
    assert reply["From"] == "bob@b.example" and reply["In-Reply-To"] == "<b@x>"
    assert w.people.mail[1].sent == [] and w.mail.sent == []
    assert "Sent" in w.to(BOB.phone)[-1] and len(w.to(ANN.phone)) == 1  # only Bob is told


async def test_a_code_of_someone_elses_draft_is_unknown_and_a_strangers_sms_does_nothing() -> None:
    w = World(ANN, BOB)
    await w.drafted("<a@x>", 1)
    await w.stages.notify()
    anns = code_of(w.to(ANN.phone)[0])
    await w.answer(f"{anns} 1", BOB.phone)
    assert w.state("<a@x>") is S.AWAITING_USER
    assert anns in w.to(BOB.phone)[-1] and "No open draft" in w.to(BOB.phone)[-1]
    await w.answer("list", BOB.phone)
    assert anns not in w.to(BOB.phone)[-1]  # Bob's list holds none of Ann's drafts
    await w.answer("1", "+15559999999")
    assert w.state("<a@x>") is S.AWAITING_USER and w.to("+15559999999") == []
    assert w.repo.data.sms["m3"]["outcome"] == "foreign_number"


async def test_each_persons_quiet_hours_and_tone_are_their_own() -> None:
    now = datetime.now(UTC)
    quiet = f"{now.hour:02d}:00-{(now.hour + 2) % 24:02d}:00"  # Ann's quiet hours are now
    w = World(person(1, "Ann", ANN.phone, "ann@a.example", quiet_hours=quiet), BOB)
    await w.drafted("<a@x>", 1)
    await w.drafted("<b@x>", 2)
    await w.stages.notify()
    assert w.to(ANN.phone) == [] and len(w.to(BOB.phone)) == 1  # Ann's quiet hours hold only Ann's draft
    assert [c["tone"] for c in w.ai.calls] == ["professional", "casual"]


async def test_an_outage_of_a_shared_peer_texts_each_person_it_holds_once() -> None:
    w = World(ANN, BOB, max_retry_attempts=1)
    for n, who in enumerate((1, 1, 2), 1):
        await w.repo.start(f"<{n}@x>", person=who)
        await w.stages.draft([EmailPending(message_id=f"<{n}@x>", person_id=who)])
        w.ai.fail_with.append(TransientError("AI Reply Generator", "503"))
        await w.stages.generate(w.repo.data.workflows[f"<{n}@x>"])
    outage = [t for t in w.sms.sent if "not answering" in t[1]]
    assert sorted(to for to, _ in outage) == [ANN.phone, BOB.phone]  # once each, Ann's two emails one SMS


async def test_a_newer_email_supersedes_only_the_same_persons_draft() -> None:
    w = World(ANN, BOB)
    await w.repo.start("<old@x>", person=1, thread_id="t1")
    await w.repo.start("<new@x>", person=2, thread_id="t1")  # the same thread, to another person
    await w.stages.draft([EmailPending(message_id="<old@x>", person_id=1)])
    await w.stages.draft([EmailPending(message_id="<new@x>", person_id=2)])
    assert w.state("<old@x>") is S.AI_GENERATING  # Bob's email closes nothing of Ann's


async def test_one_persons_unreadable_sent_folder_sends_only_them_back_to_imap_each_sweep() -> None:
    w = World(ANN, BOB, answered_elsewhere_interval=300)
    anns, bobs = Folder(broken=True), Folder()
    w.people.folders = {ANN.id: anns, BOB.id: bobs}
    await w.drafted("<a@x>", 1)
    await w.drafted("<b@x>", 2)
    for _ in range(3):  # three sweeps within ANSWERED_ELSEWHERE_INTERVAL
        await w.stages.close_answered_elsewhere()
    assert (anns.searches, bobs.searches) == (3, 1)  # Ann's is tried again; Bob's was read, once
    w.clock.advance(timedelta(seconds=301))
    await w.stages.close_answered_elsewhere()
    assert (anns.searches, bobs.searches) == (4, 2)


async def test_a_draft_whose_person_has_every_code_in_use_waits_and_holds_nobody_else() -> None:
    from dataclasses import replace

    from handlers.codes import MAX_DIGITS, capacity

    w = World(ANN, BOB)
    await w.drafted("<a@x>", 1)
    await w.drafted("<b@x>", 2)
    base = w.repo.data.workflows["<a@x>"]
    for n in range(capacity(MAX_DIGITS)):  # Ann's other open drafts hold every code
        w.repo.data.workflows[f"<full{n}@x>"] = replace(base, message_id=f"<full{n}@x>",
                                                        current_state=S.AWAITING_USER, draft_code=f"C{n}")
    w.repo.data.workflows["<a@x>"] = replace(base, draft_code=None)
    await w.stages.notify()  # no error: Bob's draft goes out, Ann's waits for a code
    assert w.to(ANN.phone) == [] and len(w.to(BOB.phone)) == 1
    assert w.state("<a@x>") is S.AI_GENERATED


async def test_each_persons_phone_mode_and_sms_format_are_their_own() -> None:
    """Ann has every draft texted as it is ready, in the full layout; Bob
    keeps the worker's: one draft at a time, condensed."""
    w = World(person(1, "Ann", ANN.phone, "ann@a.example", phone_mode="each", sms_format="full"), BOB)
    for mid, who in (("<a1@x>", 1), ("<a2@x>", 1), ("<b1@x>", 2), ("<b2@x>", 2)):
        await w.drafted(mid, who)
    await w.stages.notify()
    assert len(w.to(ANN.phone)) == 2 and len(w.to(BOB.phone)) == 1
    assert w.state("<a2@x>") is S.AWAITING_USER and w.state("<b2@x>") is S.AI_GENERATED
    # The full layout names the sender and the subject on lines of their own; the condensed one does not.
    assert all(text.startswith("From: ") and "\nSubject: " in text for text in w.to(ANN.phone))
    assert not w.to(BOB.phone)[0].startswith("From: ") and "\nSubject: " not in w.to(BOB.phone)[0]
