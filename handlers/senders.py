"""Which emails get no draft at all: machines and yourself (pure).

Replying to a no-reply address, a bounce daemon or your own mail helps
nobody and can loop; SKIP_SENDERS adds patterns of your own (newsletters,
notification services). Each rule has a name that ends up in the audit trail.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence

from .emails import sender_address

#: Local parts of addresses that by convention never read replies.
_MACHINE_LOCAL_PARTS = re.compile(
    r"^(no[-_.]?reply|do[-_.]?not[-_.]?reply|mailer[-_.]?daemon|postmaster|bounces?)(\+.*)?$",
    re.IGNORECASE,
)


def parse_patterns(text: str) -> list[str]:
    """``SKIP_SENDERS``: comma-separated, blanks ignored, compared case-insensitively."""
    return [p.strip().lower() for p in text.split(",") if p.strip()]


#: ``local@domain``: one "@", both sides given, no blank, bracket or quote
#: (a quoted local part is legal but never seen from a person who wants a reply).
_MAILBOX = re.compile(r"^[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+$")


def is_mailbox(address: str) -> bool:
    """Whether ``address`` is one address a reply can be sent to."""
    return bool(_MAILBOX.match(address)) and not address.endswith(".") and ".." not in address


def skip_rule(from_address: str, own_address: str, patterns: Sequence[str]) -> str | None:
    """The rule that says ``from_address`` gets no draft, or None to draft as usual.

    Patterns are shell-style (``*@news.example.com``, ``alerts@*``) matched
    against the bare address; a pattern without ``@`` or a wildcard matches
    that domain (``example.org`` skips ``anyone@example.org``).
    """
    address = sender_address(from_address).lower()
    local = address.partition("@")[0]
    if not is_mailbox(address):
        return "no address to reply to"
    if address == sender_address(own_address).lower():
        return "sent from this account"
    match = _MACHINE_LOCAL_PARTS.match(local)
    if match:
        return f"automated sender ({match.group(1).lower()})"
    for pattern in patterns:
        if "@" not in pattern and not any(ch in pattern for ch in "*?["):
            if address.endswith("@" + pattern) or address.endswith("." + pattern):
                return f"SKIP_SENDERS {pattern}"
        elif fnmatch.fnmatchcase(address, pattern):
            return f"SKIP_SENDERS {pattern}"
    return None
