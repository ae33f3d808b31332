"""Header values of the reply made safe from what the incoming email held.

The reply's To, Subject, In-Reply-To and References come from the incoming
email's From, Subject, Message-ID and References, which a sender controls. A
CR or LF there would either make the ``email`` package refuse the reply after
the person approved it, or, passed through, add headers (a ``Bcc:``) of the
sender's choosing. Here every such value becomes one line of plain text; long
values are folded legally by the ``email`` package's policy when the message
is written (docs/contracts.md §4).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import replace
from email.utils import formataddr

from handlers.emails import Reply, first_mailbox

#: Characters that end or break a header line: C0/C1 controls (CR, LF, NUL,
#: tab, ...), DEL, and the Unicode line and paragraph separators.
_BREAKING = frozenset(("Cc", "Zl", "Zp"))
_MSG_ID = re.compile(r"<[^<>\s]+>")
_FOLD = re.compile(r"(\r\n|\r|\n)[ \t]")
_NEW_LINE = re.compile(r"[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")


def clean_header(value: str | None) -> str:
    """``value`` as one line: every control character or line break becomes
    a space, runs of white space one space, no space at either end."""
    if not value:
        return ""
    spaced = "".join(" " if unicodedata.category(c) in _BREAKING else c for c in value)
    return " ".join(spaced.split())


def one_address(value: str) -> str:
    """The first address of a From value, and only it (``Name <addr>``): a
    hostile From must not add recipients to the reply's To. A fold (a line
    break then white space) is undone; a line break then anything else starts
    what would be another header, and is dropped with all that follows."""
    cleaned = clean_header(_NEW_LINE.split(_FOLD.sub(" ", value), maxsplit=1)[0])
    name, address = first_mailbox(cleaned)
    return formataddr((clean_header(name), address)) if "@" in address else cleaned


def message_ids(value: str | None) -> list[str]:
    """The ``<...>`` message ids in a Message-ID or References value; a value
    with none is kept whole (cleaned), as some senders write bare ids."""
    cleaned = clean_header(value)
    return _MSG_ID.findall(cleaned) or ([cleaned] if cleaned else [])


def clean_reply(reply: Reply) -> Reply:
    """``reply`` with every header value taken from the incoming email made
    one line of text; the body is left as it is (it is not a header)."""
    original_ids = message_ids(reply.original_message_id)
    return replace(
        reply,
        from_address=one_address(reply.from_address),
        original_from=one_address(reply.original_from),
        original_subject=clean_header(reply.original_subject) or None,
        original_message_id=original_ids[0] if original_ids else "",
        original_references=" ".join(message_ids(reply.original_references)) or None,
        message_id=clean_header(reply.message_id),
    )
