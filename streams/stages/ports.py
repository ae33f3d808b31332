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
