"""What every stage shares: the settings, the storage, the peers (through
their ports), the clock and the policies derived from the settings.

The stages are plain functions of this context (one module per stage); the
:class:`~streams.stages.facade.Stages` facade is a context with one method
per stage, so callers hold a single object.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Self
from zoneinfo import ZoneInfo

from handlers.clock import Clock
from handlers.errors import PeerError
from handlers.people import DEFAULT_PERSON, Person
from handlers.retry import ParkPolicy, RetryPolicy
from streams.settings import Settings
from streams.stages.ports import MailSender, People, ReplyGenerator, SentMailbox, SmsSender
from streams.stages.retrying import Exhausted, Gate, call_with_retries
from streams.storage.protocol import Repository
from streams.storage.records import Workflow

log = logging.getLogger(__name__)

#: The longest :meth:`StageContext.tell_person` holds its caller: one attempt
#: at most, so a gateway that asks to wait (429) or hangs never holds the
#: person's next answer; retries go on behind it. A gateway that answers takes
#: well under a second, so the common case is still "texted when it returns".
TELL_WAIT = 5.0
#: Informational SMS being retried behind their callers, at most; beyond that
#: one is dropped with a WARNING rather than pile up while the gateway is away.
MAX_TELLING = 100


@dataclass
class StageContext:
    settings: Settings
    repo: Repository
    ai: ReplyGenerator
    sms: SmsSender
    smtp: MailSender
    clock: Clock
    #: The account's Sent folder, to settle sends cut off mid-way (None: a person settles them).
    sent_folder: SentMailbox | None = None
    #: Shared by every generation of this worker: closed while the generator asks us to wait.
    generator_gate: Gate = field(default_factory=Gate)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    #: When each person's Sent folder was last searched for replies written
    #: elsewhere, by person id (stages/elsewhere.py); shared by every person's view.
    elsewhere_checked: dict[int, datetime] = field(default_factory=dict, init=False, repr=False)
    #: Informational SMS still being retried (see :meth:`tell_person`).
    telling: set[asyncio.Task[None]] = field(default_factory=set, init=False, repr=False)
    #: Every person of the deployment (docs/design.md, "Many people"); None:
    #: only the default person, the one the settings describe.
    people: People | None = None
    #: The person this context works for (:meth:`for_person`); None: the default person.
    current: Person | None = None

    def __post_init__(self) -> None:
        self.generator_gate.max_hold = self.settings.retry_after_max

    @property
    def policy(self) -> RetryPolicy:
        s = self.settings
        return RetryPolicy(s.max_retry_attempts, s.retry_backoff_base, s.retry_backoff_max, s.retry_after_max)

    @property
    def park_policy(self) -> ParkPolicy:
        s = self.settings
        return ParkPolicy(s.retry_park_base, s.retry_park_max, s.retry_deadline)

    @property
    def phone(self) -> str:
        """The phone of the person worked for (YOUR_PHONE_NUMBER for the default person)."""
        return self.current.phone if self.current is not None else self.settings.your_phone_number

    @property
    def person_id(self) -> int:
        """``Workflow.person_id`` of the person worked for: every phone query is theirs alone."""
        return self.current.id if self.current is not None else DEFAULT_PERSON

    @property
    def me(self) -> Person:
        """The person worked for, every setting resolved."""
        return self.current if self.current is not None else self.settings.default_person

    @property
    def zone(self) -> ZoneInfo:
        """The time zone of the person worked for (their TIMEZONE)."""
        return ZoneInfo(self.me.timezone)

    @property
    def default_person(self) -> Person:
        return self.settings.default_person

    def for_person(self, person: Person) -> Self:
        """This context working for ``person``: their phone, their drafts,
        their settings. Shares everything else (the peers, the SMS being
        retried, the generator's gate) with this one."""
        view = copy.copy(self)
        view.current = None if person.is_default else person
        return view

    async def about(self, wf: Workflow) -> Self | None:
        """This context working for the person whose ``wf`` is; None when it is nobody's."""
        person = await self.person(wf.person_id)
        return self.for_person(person) if person is not None else None

    async def person(self, person_id: int | None) -> Person | None:
        """The person whose email a workflow is (``Workflow.person_id``), or
        None: nobody's, or a person removed since."""
        if person_id is None:
            return None
        if person_id == DEFAULT_PERSON or self.people is None:
            return self.default_person if person_id == DEFAULT_PERSON else None
        return await self.people.get(person_id)

    async def person_of_phone(self, phone: str | None) -> Person | None:
        """The person whose phone sent an SMS, or None: a stranger."""
        if phone is None:
            return None
        if self.people is None:
            return self.default_person if phone == self.phone else None
        return await self.people.by_phone(phone)

    async def everyone(self) -> list[Person]:
        """The default person, then every person of the deployment."""
        return await self.people.everyone() if self.people is not None else [self.default_person]

    def mail_for(self, person: Person) -> MailSender:
        """The SMTP login ``person``'s replies leave through: their own, else the worker's."""
        own = self.people.mail_sender(person) if self.people is not None and not person.is_default else None
        return own or self.smtp

    def sent_folder_for(self, person: Person) -> SentMailbox | None:
        """The Sent folder of ``person``'s account: their own, else the worker's when they send through it."""
        if person.is_default or self.people is None:
            return self.sent_folder
        own = self.people.sent_folder(person)
        return own if own is not None or not person.own_mail else self.sent_folder

    async def tell_person(self, text: str | None, phone: str | None = None) -> None:
        """Best effort, and never in the caller's way: the SMS is sent by a
        task of its own, retried under the policy, and this returns once its
        first attempt has ended (or after :data:`TELL_WAIT`). So a gateway
        that answers 429 with a long ``Retry-After``, or hangs, never holds
        the command agent (the person's next answer) or any other stage. An
        SMS given up on is logged at WARNING with what it said. Nothing to
        say (None) sends nothing. ``phone``: whose (the default person's if not given)."""
        if not text:
            return
        if len(self.telling) >= MAX_TELLING:
            log.warning("not texting the person (%d SMS still being retried): %r", len(self.telling),
                        text[:80])
            return
        attempted = asyncio.Event()

        async def attempt() -> str | None:
            try:
                return await self.sms.send(phone or self.phone, text)
            finally:
                attempted.set()

        task = asyncio.create_task(self._tell(attempt, text), name="informational SMS")
        self.telling.add(task)
        task.add_done_callback(self.telling.discard)
        first = asyncio.create_task(attempted.wait())
        try:
            await asyncio.wait((task, first), timeout=TELL_WAIT, return_when=asyncio.FIRST_COMPLETED)
        finally:
            first.cancel()

    async def _tell(self, attempt: Callable[[], Awaitable[str | None]], text: str) -> None:
        try:
            await call_with_retries(attempt, self.policy, "SMS")
        except (Exhausted, PeerError) as exc:
            log.warning("could not text the person (%s): %r", exc, text[:80])
        except asyncio.CancelledError:
            log.warning("not texted, the worker is stopping: %r", text[:80])
            raise
        except Exception:  # noqa: BLE001 - a task of its own: nobody else would see it
            log.exception("could not text the person: %r", text[:80])

    async def stop_telling(self) -> None:
        """Give up on the informational SMS still being retried (each is
        logged): the worker is stopping."""
        for task in list(self.telling):
            task.cancel()
        await asyncio.gather(*self.telling, return_exceptions=True)
