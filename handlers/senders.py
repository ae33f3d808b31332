"""Which emails get no draft at all: machines and yourself; and which
senders come first (pure).

Replying to a no-reply address, a bounce daemon or your own mail helps
nobody and can loop; SKIP_SENDERS adds patterns of your own (newsletters,
notification services). Each rule has a name that ends up in the audit trail.
VIP_SENDERS, in the same syntax, names the senders whose drafts are
generated and put on the phone before the others (docs/design.md,
"Senders who come first").
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
    pattern = matching_pattern(address, patterns)
    return f"SKIP_SENDERS {pattern}" if pattern is not None else None


def matching_pattern(address: str, patterns: Sequence[str]) -> str | None:
    """The first of ``patterns`` (lower-cased, as :func:`parse_patterns`
    gives them) that the bare lower-cased ``address`` matches, or None."""
    for pattern in patterns:
        if "@" not in pattern and not any(ch in pattern for ch in "*?["):
            if address.endswith(("@" + pattern, "." + pattern)):
                return pattern
        elif fnmatch.fnmatchcase(address, pattern):
            return pattern
    return None


# ------------------------------------------------------------ senders who come first

#: ``workflow_state.priority`` of an email from a VIP sender; 0 for any other.
#: Drafts are generated and put on the phone highest priority first
#: (``READY_FIRST`` in streams/storage/base.py).
VIP_PRIORITY = 1
#: The longest pattern the dashboard takes (an address is at most 254 characters).
VIP_PATTERN_CHARS = 254


def vip_pattern(from_address: str, patterns: Sequence[str]) -> str | None:
    """The pattern that makes ``from_address`` a sender who comes first
    (``VIP_SENDERS`` or one marked on the dashboard), or None. The same
    syntax and matching as ``SKIP_SENDERS``; an unreadable sender is no VIP."""
    address = sender_address(from_address).lower()
    if not is_mailbox(address):
        return None
    return matching_pattern(address, patterns)


def read_vip_pattern(text: str) -> str:
    """One pattern typed on the dashboard, as it is kept (trimmed, lower
    case); :class:`ValueError` with the reason when it is not one pattern.
    A whole ``Name <address>`` is taken as its address."""
    pattern = sender_address(text.strip()).strip().lower() if "<" in text else text.strip().lower()
    if not pattern:
        raise ValueError("Type an address, a pattern such as *@example.com, or a domain.")
    if len(pattern) > VIP_PATTERN_CHARS:
        raise ValueError(f"A pattern is at most {VIP_PATTERN_CHARS} characters.")
    if "," in pattern or any(ch.isspace() or not ch.isprintable() for ch in pattern):
        raise ValueError("One pattern at a time: no comma, space or control character.")
    if pattern.count("@") > 1:
        raise ValueError("A pattern has at most one @.")
    return pattern
