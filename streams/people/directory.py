"""The directory of people a worker holds (docs/design.md, "Many people").

It looks at the ``people`` table at most every PEOPLE_REFRESH seconds (a
change made with ``orchestrator people`` or on the admin page reaches every
worker within that; the rows are read again only when their count or latest
``updated_at`` moved), resolves each row against the worker's settings (the default
person), decrypts passwords only in memory, and keeps one SMTP sender and one
Sent folder per person's login. The stages reach it through the
:class:`~streams.stages.ports.People` port; the poller routes emails with
:meth:`owners`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from collections.abc import Sequence
from typing import Literal, cast

from handlers.people import DEFAULT_PERSON, MailLogin, Person, PersonRow, resolve, route
from handlers.people_keys import KeysError, PeopleKeys
from streams.peers.imap import SentFolder
from streams.peers.smtp import SmtpSender
from streams.settings import Settings
from streams.stages.ports import MailSender, SentMailbox
from streams.storage.people import PeopleStore
from streams.storage.records import Email

log = logging.getLogger(__name__)


class Directory:
    """Every person, resolved, cached for PEOPLE_REFRESH seconds."""

    def __init__(self, store: PeopleStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.default = settings.default_person
        self.keys = PeopleKeys(settings.people_keys.get_secret_value()) if settings.people_keys else None
        self._people: dict[int, Person] = {}
        self._phones: dict[str, Person] = {}
        self._owners: dict[str, int] = {}
        self._vips: dict[int, list[str]] = {}
        self._loaded_at: float | None = None
        self._version: tuple[int, datetime | None] | None = None
        self._lock = asyncio.Lock()
        self._senders: dict[MailLogin, SmtpSender] = {}
        self._folders: dict[MailLogin, SentFolder] = {}

    async def refresh(self, *, force: bool = False) -> None:
        """Read the people again if PEOPLE_REFRESH has passed (or ``force``)."""
        if not force and self._fresh():
            return
        async with self._lock:
            if not force and self._fresh():
                return
            version = await self.store.version()  # one small query; the rows only when they changed
            if version == self._version and not force:
                self._loaded_at = time.monotonic()
                return
            rows = await self.store.everyone()
            self._version = version
            people = {p.id: p for p in (self._resolve(row) for row in rows)}
            self._people = people
            self._phones = {p.phone: p for p in people.values()}
            self._owners = {a: p.id for p in people.values() for a in p.addresses}
            self._vips = {p.id: p.vip_patterns for p in people.values()}
            self._loaded_at = time.monotonic()

    def _fresh(self) -> bool:
        return self._loaded_at is not None and time.monotonic() - self._loaded_at < self.settings.people_refresh

    def _resolve(self, row: PersonRow) -> Person:
        return resolve(row, self.default, smtp_password=self._clear(row, row.smtp_password),
                       imap_password=self._clear(row, row.imap_password))

    def _clear(self, row: PersonRow, token: str | None) -> str | None:
        if not token:
            return None
        if self.keys is None:
            log.error("%s (person %d) has a stored password but PEOPLE_KEYS is not set: their mail"
                      " cannot be sent until it is", row.name, row.id)
            return None
        try:
            return self.keys.decrypt(token)
        except KeysError as exc:
            log.error("%s (person %d): %s", row.name, row.id, exc)
            return None

    # ------------------------------------------------------------- the port

    async def get(self, person_id: int) -> Person | None:
        if person_id == DEFAULT_PERSON:
            return self.default
        await self.refresh()
        return self._people.get(person_id)

    async def by_phone(self, phone: str) -> Person | None:
        await self.refresh()
        found = self._phones.get(phone)
        if found is not None:
            return found
        return self.default if phone == self.default.phone else None

    async def owners(self) -> dict[str, int]:
        """Every person's addresses (lower case) with their id, for routing."""
        await self.refresh()
        return dict(self._owners)

    async def everyone(self) -> list[Person]:
        """The default person, then every person in id order."""
        await self.refresh()
        return [self.default, *sorted(self._people.values(), key=lambda p: p.id)]

    async def shared(self) -> bool:
        """Whether people share this deployment (any people rows): the default person alone, not."""
        await self.refresh()
        return bool(self._people)

    async def vips(self) -> dict[int, list[str]]:
        """Every person's VIP_SENDERS (their own, else the worker's), parsed, by id."""
        await self.refresh()
        return self._vips

    def mail_sender(self, person: Person) -> MailSender | None:
        login = person.smtp
        if person.own_mail or login is None:
            return None
        if login not in self._senders:
            s = self.settings
            self._senders[login] = SmtpSender(login.server, login.port,
                                              cast(Literal["ssl", "starttls", "plain"], login.extra),
                                              login.login, login.password, s.smtp_ca_file, s.smtp_timeout)
        return self._senders[login]

    def sent_folder(self, person: Person) -> SentMailbox | None:
        login = person.imap
        if login is None:
            return None
        if login not in self._folders:
            s = self.settings
            self._folders[login] = SentFolder(login.server, login.port, login.login, login.password, login.extra,
                                              s.imap_ca_file, s.smtp_timeout)
        return self._folders[login]

    async def route(self, emails: Sequence[Email]) -> dict[str, int | None]:
        """Whose each email is (handlers/people.py ``route``): message_id -> person_id, None for nobody's."""
        owners = await self.owners()
        default = (DEFAULT_PERSON, self.default.email_address)
        return {e.message_id: route(e.mailbox, e.to_addresses, owners, default) for e in emails}
