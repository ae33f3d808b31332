"""What the stages need of the outside world, as narrow interfaces.

The adapters in :mod:`streams.peers` implement them against the real peers
(docs/contracts.md §2-§4, and IMAP); fast tests drive the stages with small fakes.
Every method raises only the taxonomy of :mod:`handlers.errors`.
"""

from __future__ import annotations

from datetime import date
from email.message import EmailMessage
from typing import Protocol

from handlers.drafts import GeneratedDraft
from handlers.elsewhere import SentReply
from handlers.people import Person


class ReplyGenerator(Protocol):
    async def generate(self, email_message_id: str, *, tone: str, max_length: int | None = None,
                       context_instructions: str | None = None) -> GeneratedDraft:
        """A draft for the email; blocks for as long as a generation takes."""
        ...


class SmsSender(Protocol):
    async def send(self, to: str, message: str) -> str | None:
        """Text ``message`` to ``to``; returns the gateway's message id."""
        ...


class MailSender(Protocol):
    async def send(self, message: EmailMessage) -> None:
        """Hand ``message`` to the mail server (OutcomeUnknownError if cut off mid-way)."""
        ...


class SentMailbox(Protocol):
    async def contains(self, message_id: str) -> bool:
        """Whether a message with this Message-ID is in the account's Sent folder."""
        ...

    async def replies_since(self, since: date, limit: int) -> list[SentReply]:
        """The threading headers of the ``limit`` newest messages filed in the
        Sent folder since ``since``, oldest first (one search, one fetch)."""
        ...


class People(Protocol):
    """Who is who (docs/design.md, "Many people"): the people rows, each with
    every setting resolved, and the mail logins of each person."""

    async def get(self, person_id: int) -> Person | None:
        """The person of ``person_id`` (0: the default person), or None when there is none."""
        ...

    async def everyone(self) -> list[Person]:
        """The default person, then every person of the deployment."""
        ...

    async def by_phone(self, phone: str) -> Person | None:
        """The person whose phone is ``phone`` (E.164), or None."""
        ...

    def mail_sender(self, person: Person) -> MailSender | None:
        """The person's own SMTP login, or None: they use the worker's."""
        ...

    def sent_folder(self, person: Person) -> SentMailbox | None:
        """The person's own Sent folder, or None: they have none of their own."""
        ...
