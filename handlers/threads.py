"""A newer email of a thread supersedes the open draft of an older one from
the same sender (docs/design.md, "A newer email supersedes"): which emails
continue which, which come from one sender, what the generator is told of
the earlier emails, and the SMS that says a draft was closed.

Pure: the storage finds the emails, the draft stage closes the drafts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from handlers.emails import body_preview, bounded, sender_address, sender_name
from handlers.sms_text import draft_label

#: Earlier emails of the thread the generator is shown at most (the most recent ones).
EARLIER_EMAILS = 3
#: Characters of each earlier email's text the generator is shown at most.
EARLIER_CHARS = 1_500
#: Characters of an earlier email's HTML body read to find its text.
EARLIER_HTML_CHARS = 16_384


def continues(newer_thread_id: str | None, newer_in_reply_to: str | None,
              older_message_id: str, older_thread_id: str | None) -> bool:
    """Whether the newer email is of the older one's thread: both carry the
    same thread id, or the newer one answers the older (``In-Reply-To``).
    Which of the two came first is the caller's to check (received_at)."""
    if newer_thread_id is not None and newer_thread_id == older_thread_id:
        return True
    return newer_in_reply_to is not None and newer_in_reply_to.strip() == older_message_id


def same_sender(newer_from: str | None, older_from: str | None) -> bool:
    """Whether both emails come from one sender: the addresses of their
    ``From`` (``Name <addr>``, the first mailbox), case-insensitive. Only
    such a newer email supersedes an older one: a reply-all from someone
    else is drafted on its own, so the first sender still gets an answer and
    nobody closes, or reads, another sender's draft by naming its Message-ID."""
    if not newer_from or not older_from:
        return False
    newer, older = sender_address(newer_from).casefold(), sender_address(older_from).casefold()
    return bool(newer) and newer == older


def superseded_reason(newer_message_id: str) -> str:
    """The audit reason of a draft closed by ``newer_message_id``."""
    return f"superseded by a newer email in the thread: {newer_message_id}"


@dataclass(frozen=True)
class ClosedDraft:
    """What the SMS names of a draft a newer email closed (read before the
    terminal move clears its code)."""

    code: str | None
    email_from: str | None
    subject: str | None


def render_superseded_sms(closed: Sequence[ClosedDraft]) -> str | None:
    """The one SMS that tells the person which drafts a newer email of
    their thread closed; None when there is none to name."""
    if not closed:
        return None
    labels = ", ".join(draft_label(d.code, sender_name(d.email_from or "?"), d.subject) for d in closed)
    answers = "both" if len(closed) == 1 else "them all"
    return f"{labels} closed: a newer email in the thread came; its draft answers {answers}."


@dataclass(frozen=True)
class EarlierEmail:
    """An earlier email of the thread, as the generator is told of it."""

    from_address: str
    subject: str | None
    body_text: str | None
    body_html: str | None


def thread_instructions(earlier: Sequence[EarlierEmail]) -> str | None:
    """The part of ``context_instructions`` that puts the earlier emails of
    the thread (oldest first) in view: the generator reads the newer email
    itself and nothing else (docs/contracts.md §2). Each text is one
    paragraph, bounded; at most :data:`EARLIER_EMAILS` of them."""
    if not earlier:
        return None
    shown = list(earlier)[-EARLIER_EMAILS:]
    one = len(shown) == 1
    lines = ["This email continues a thread. The earlier email" + ("" if one else "s")
             + " below had a draft of " + ("its" if one else "their") + " own, now closed:"]
    for email in shown:
        subject = bounded(" ".join((email.subject or "no subject").split()), 200)
        text = body_preview(email.body_text, email.body_html, EARLIER_CHARS)
        lines += [f"Earlier email from {bounded(email.from_address, 255)}, subject \"{subject}\":",
                  '"""', text or "(no text)", '"""']
    lines.append("Write one reply that answers this email and the earlier one" + ("" if one else "s")
                 + " together.")
    return "\n".join(lines)


def joined_context(thread: str | None, edits: str | None) -> str | None:
    """``context_instructions`` of both parts: the thread first, the edits
    last (their newest instruction is the last line), or None when neither."""
    parts = [part for part in (thread, edits) if part]
    return "\n\n".join(parts) if parts else None
