"""Replies the person wrote from their own mail client, matched to open drafts.

A reply in the account's Sent folder names the email it answers: its
``In-Reply-To`` (RFC 5322 §3.6.4), or, from a client that leaves that out,
the last id of its ``References`` (the parent, by the same RFC). Only the
parent counts: a reply to a later email of a thread lists the older emails in
``References`` too, and must not close their drafts (a newer email of the
thread is item 5's business, "superseded"). And it answers the email only
when the email's sender is among its recipients (``To`` or ``Cc``): a client
may thread a forward to a colleague the same way, and the sender got nothing.
Pure: the IMAP adapter reads the headers, the sweep's stage closes what
matches (docs/design.md, "Answered elsewhere").
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from email.utils import getaddresses

from handlers.emails import sender_address
from handlers.headers import clean_header, message_ids


def recipient_addresses(*headers: str | None) -> tuple[str, ...]:
    """The bare addresses of ``To``/``Cc`` values (``Name <addr>, ...``),
    in order; names, groups and unparsable parts give none."""
    values = [clean_header(h) for h in headers if h]
    return tuple(address.strip() for _, address in getaddresses(values) if "@" in address)


@dataclass(frozen=True)
class SentReply:
    """The threading headers of one message in the Sent folder, as written,
    and the addresses it went to (its ``To`` and ``Cc``)."""

    message_id: str | None
    in_reply_to: str | None = None
    references: str | None = None
    recipients: tuple[str, ...] = ()

    def sent_to(self, from_address: str) -> bool:
        """Whether the first mailbox of ``from_address`` (an email's sender)
        is among the recipients, the address compared case-insensitively."""
        sender = sender_address(from_address).casefold()
        return bool(sender) and any(r.casefold() == sender for r in self.recipients)

    @property
    def parent(self) -> str | None:
        """The Message-ID of the email this message answers, if it names one."""
        named = message_ids(self.in_reply_to)
        if named:
            return named[0]
        chain = message_ids(self.references)
        return chain[-1] if chain else None


def _key(message_id: str) -> str:
    """A Message-ID without its angle brackets: stored ids may be bare."""
    return message_id.strip().strip("<>").strip()


def answered_elsewhere(replies: Iterable[SentReply], open_emails: Mapping[str, str | None],
                       ours: Collection[str] = ()) -> Mapping[str, str]:
    """The open emails answered by one of ``replies``: each email's Message-ID
    (a key of ``open_emails``, whose value is the email's ``From``) to the
    Message-ID of the first reply that names it as its parent AND went to its
    sender (``To`` or ``Cc``); an email whose sender is unknown is never
    answered here. A message whose Message-ID is in ``ours`` is a reply the
    orchestrator sent itself, never the person's; a message without a
    Message-ID cannot be named in the audit and is passed over."""
    wanted = {_key(m): (m, sender) for m, sender in open_emails.items()}
    own = {_key(m) for m in ours}
    found: dict[str, str] = {}
    for reply in replies:
        reply_ids = message_ids(reply.message_id)
        parent = reply.parent
        if not reply_ids or parent is None or _key(reply_ids[0]) in own:
            continue
        email, sender = wanted.get(_key(parent), (None, None))
        if email is not None and sender and email not in found and reply.sent_to(sender):
            found[email] = reply_ids[0]
    return found
