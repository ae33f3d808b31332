"""Replies the person wrote from their own mail client, matched to open drafts.

A reply in the account's Sent folder names the email it answers: its
``In-Reply-To`` (RFC 5322 §3.6.4), or, from a client that leaves that out,
the last id of its ``References`` (the parent, by the same RFC). Only the
parent counts: a reply to a later email of a thread lists the older emails in
``References`` too, and must not close their drafts (a newer email of the
thread is item 5's business, "superseded"). Pure: the IMAP adapter reads the
headers, the sweep's stage closes what matches (docs/design.md, "Answered
elsewhere").
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from handlers.headers import message_ids


@dataclass(frozen=True)
class SentReply:
    """The threading headers of one message in the Sent folder, as written."""

    message_id: str | None
    in_reply_to: str | None = None
    references: str | None = None

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


def answered_elsewhere(replies: Iterable[SentReply], open_message_ids: Collection[str],
                       ours: Collection[str] = ()) -> Mapping[str, str]:
    """The open emails answered by one of ``replies``: each email's Message-ID
    (as given in ``open_message_ids``) to the Message-ID of the first reply
    that answers it. A message whose Message-ID is in ``ours`` is a reply the
    orchestrator sent itself, never the person's; a message without a
    Message-ID cannot be named in the audit and is passed over."""
    wanted = {_key(m): m for m in open_message_ids}
    own = {_key(m) for m in ours}
    found: dict[str, str] = {}
    for reply in replies:
        reply_ids = message_ids(reply.message_id)
        parent = reply.parent
        if not reply_ids or parent is None or _key(reply_ids[0]) in own:
            continue
        email = wanted.get(_key(parent))
        if email is not None and email not in found:
            found[email] = reply_ids[0]
    return found
