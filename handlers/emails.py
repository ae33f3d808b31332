"""Reading incoming emails and composing the threaded reply (docs/contracts.md §4).

Pure: the stdlib ``email`` package builds the message; nothing is sent here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid, parseaddr
from html.parser import HTMLParser

_RE_PREFIX = re.compile(r"^\s*((re|aw|sv)(\[\d+\])?\s*:\s*)+", re.IGNORECASE)


def sender_name(from_address: str) -> str:
    """The display name of ``Name <addr>``, else the address's local part."""
    name, address = parseaddr(from_address)
    if name.strip():
        return name.strip()
    return (address or from_address).split("@")[0] or from_address


def sender_address(from_address: str) -> str:
    """The bare address of ``Name <addr>`` or of a bare address."""
    parsed = getaddresses([from_address])
    address = parsed[0][1] if parsed else ""
    return address or from_address.strip()


def reply_subject(subject: str | None) -> str:
    """``Re: <subject>``, never ``Re: Re:`` (any earlier Re:/AW:/SV: is folded)."""
    rest = _RE_PREFIX.sub("", subject or "").strip()
    return f"Re: {rest}" if rest else "Re: (no subject)"


def reply_references(original_message_id: str, original_references: str | None) -> str:
    """The original's references (when known) followed by its Message-ID."""
    ids = (original_references or "").split()
    if original_message_id not in ids:
        ids.append(original_message_id)
    return " ".join(ids)


class _TextExtractor(HTMLParser):
    _SKIP = {"script", "style", "head", "title"}
    _BREAK = {"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "blockquote"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BREAK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    return "".join(parser.parts)


def body_preview(body_text: str | None, body_html: str | None, limit: int = 500) -> str:
    """A one-paragraph preview: the text body, else the HTML body's text."""
    text = body_text if body_text and body_text.strip() else html_to_text(body_html or "")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


@dataclass(frozen=True)
class Reply:
    """Everything the reply needs; see :func:`build_reply`."""

    from_address: str
    original_from: str
    original_subject: str | None
    original_message_id: str
    original_references: str | None
    body: str
    message_id: str
    date: datetime


def new_message_id(from_address: str) -> str:
    """A fresh RFC 5322 Message-ID in the sender's domain."""
    domain = sender_address(from_address).rpartition("@")[2] or "localhost"
    return make_msgid(domain=domain)


def build_reply(reply: Reply) -> EmailMessage:
    """The threaded reply: To the original sender, ``Re:`` subject, In-Reply-To,
    References, our Message-ID, Date, UTF-8 text/plain body."""
    msg = EmailMessage()
    msg["From"] = reply.from_address
    msg["To"] = reply.original_from
    msg["Subject"] = reply_subject(reply.original_subject)
    msg["In-Reply-To"] = reply.original_message_id
    msg["References"] = reply_references(reply.original_message_id, reply.original_references)
    msg["Message-ID"] = reply.message_id
    msg["Date"] = format_datetime(reply.date)
    msg.set_content(reply.body, subtype="plain", charset="utf-8")
    return msg
