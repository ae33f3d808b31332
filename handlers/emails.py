"""Reading incoming emails and composing the threaded reply (docs/contracts.md §4).

Pure: the stdlib ``email`` package builds the message; nothing is sent here.
What intake takes from an email is bounded here (docs/design.md, "Hostile
input at intake"): the preview reads at most ``HTML_PREVIEW_CHARS`` of HTML and
``TEXT_PREVIEW_CHARS`` of text, and the subject and sender written to the
workflow (and so to every Kafka message) are cut to ``SUBJECT_CHARS`` and
``SENDER_CHARS``.
"""

from __future__ import annotations

import html as html_entities
import re
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, getaddresses, make_msgid

from selectolax.lexbor import LexborHTMLParser

_RE_PREFIX = re.compile(r"^\s*((re|aw|sv)(\[\d+\])?\s*:\s*)+", re.IGNORECASE)

#: Characters of the preview (the SMS shows it; workflow_state.email_body_preview).
PREVIEW_CHARS = 500
#: Characters of HTML the preview parses. A 500-character preview needs the
#: first text of the body; mail clients clip HTML past about 100 KB, so senders
#: put it well within that, after a <head> of styles that is 10-60 KB in
#: newsletters. 64 Ki parses in about 2 ms; the worst hostile 64 Ki (13,000
#: nested blocks, which lexbor parses in quadratic time) is refused by
#: ``_MAX_DEPTH`` first.
HTML_PREVIEW_CHARS = 65_536
#: Characters of a text body the preview reads (500 after collapsing whitespace).
TEXT_PREVIEW_CHARS = 16_384
#: Characters of the subject the workflow keeps (and every Kafka message carries).
SUBJECT_CHARS = 1_000
#: Characters of the sender the workflow keeps: workflow_state.email_from is VARCHAR(255).
SENDER_CHARS = 255
#: Element nesting past which the HTML goes to the plain fallback, not the parser.
_MAX_DEPTH = 1_000

_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
                   "source", "track", "wbr"})
_BREAK = frozenset({"br", "p", "div", "li", "tr", "td", "th", "table", "ul", "ol", "hr", "blockquote", "h1", "h2",
                    "h3", "h4", "h5", "h6", "section", "article", "header", "footer", "img"})
_TAG = re.compile(r"<(/?)([A-Za-z][^\s/<>]*)[^<>]*?(/?)>")  # [^<>]: linear on unclosed tags
_ANY_TAG = re.compile(r"<[^>]*>?")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_LINE_BREAKS = re.compile(r"[\r\n]+")


def bounded(value: str, limit: int) -> str:
    """``value``, cut to ``limit`` characters (ending in ``...``) when longer."""
    return value if len(value) <= limit else value[: limit - 3].rstrip() + "..."


def _one_line(value: str) -> str:
    """A header value without CR/LF (which the email package refuses)."""
    return _LINE_BREAKS.sub(" ", value)


def first_mailbox(from_address: str) -> tuple[str, str]:
    """(display name, address) of the first mailbox of a From header: a
    header that names several is answered to the first only, which is also
    the one the SMS names."""
    parsed = [(n.strip(), a.strip()) for n, a in getaddresses([_one_line(from_address)]) if a.strip()]
    with_domain = [pair for pair in parsed if "@" in pair[1]]
    if with_domain or parsed:
        return (with_domain or parsed)[0]
    return "", _one_line(from_address).strip()


def sender_name(from_address: str) -> str:
    """The display name of ``Name <addr>``, else the address's local part."""
    name, address = first_mailbox(from_address)
    if name:
        return name
    return address.split("@")[0] or address or from_address


def sender_address(from_address: str) -> str:
    """The bare address of ``Name <addr>`` or of a bare address."""
    return first_mailbox(from_address)[1]


def reply_recipient(from_address: str) -> str:
    """The reply's one ``To``: the first mailbox of the original's From."""
    return formataddr(first_mailbox(from_address))


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


def _depth(html: str) -> int:
    """The deepest element nesting of ``html``, roughly (end tags close the
    latest open one; void and self-closed elements do not nest). Linear."""
    depth = deepest = 0
    for match in _TAG.finditer(html):
        if match.group(1):
            depth = max(0, depth - 1)
        elif not match.group(3) and match.group(2).lower() not in _VOID:
            depth += 1
            deepest = max(deepest, depth)
    return deepest


def html_to_text(html: str) -> str:
    """The text of an HTML body, without scripts, styles and the head.

    selectolax (lexbor, an HTML5 parser in C) was chosen over inscriptis and
    html5lib (bench/html_preview.py): 1.7 ms for a 50 KB newsletter against 12
    and 40 ms, 0.8 s for 25 MB against 9 and 22 s; it read every hostile case
    (marked sections, NUL, invalid UTF-8, huge attributes, unclosed tags) and
    parses without the GIL. Its one weakness, quadratic time on deep nesting,
    is kept out by ``_MAX_DEPTH``."""
    html = html[:HTML_PREVIEW_CHARS]
    if _depth(html) > _MAX_DEPTH:
        return plain_text(html)
    tree = LexborHTMLParser(html)
    tree.strip_tags(["script", "style", "head", "title", "template"])
    if tree.root is None:
        return ""
    parts: list[str] = []
    for node in tree.root.traverse(include_text=True):  # iterative: no recursion limit
        if node.tag == "-text":
            after_block = node.prev is not None and node.prev.tag in _BREAK
            parts.append((" " if after_block else "") + (node.text_content or ""))
        elif node.tag in _BREAK:
            parts.append(" ")  # inline tags join their words: <b>W</b>elcome is one word
    return "".join(parts)


def plain_text(html: str) -> str:
    """The fallback: ``html`` with every tag dropped and entities read."""
    return html_entities.unescape(_ANY_TAG.sub(" ", html[:HTML_PREVIEW_CHARS]))


def _html_preview_text(body_html: str) -> str:
    try:
        return html_to_text(body_html)
    except Exception:  # noqa: BLE001 - any parser failure: one email must never stop intake
        return plain_text(body_html)


def body_preview(body_text: str | None, body_html: str | None, limit: int = PREVIEW_CHARS) -> str:
    """A one-paragraph preview: the text body, else the HTML body's text.

    Reads at most ``TEXT_PREVIEW_CHARS`` / ``HTML_PREVIEW_CHARS``; never raises
    and never holds a control character or NUL (which PostgreSQL refuses)."""
    text = (body_text or "")[:TEXT_PREVIEW_CHARS]
    if not text.strip():
        text = _html_preview_text(body_html or "") if body_html else ""
    text = " ".join(_CONTROL.sub(" ", text).split())
    return bounded(text, limit)


@dataclass(frozen=True)
class IntakeFields:
    """What the workflow keeps of an email, bounded: see :func:`intake_fields`."""

    subject: str | None
    sender: str
    preview: str


def intake_fields(subject: str | None, from_address: str, body_text: str | None,
                  body_html: str | None) -> IntakeFields:
    """The subject, sender and preview a workflow starts with, each bounded so
    that every record written from them fits the broker."""
    return IntakeFields(subject=None if subject is None else bounded(_CONTROL.sub(" ", subject), SUBJECT_CHARS),
                        sender=bounded(from_address, SENDER_CHARS), preview=body_preview(body_text, body_html))


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
    """The threaded reply: To the original sender's first mailbox (a From that
    names several is answered to one), ``Re:`` subject, In-Reply-To,
    References, our Message-ID, Date, UTF-8 text/plain body."""
    msg = EmailMessage()
    msg["From"] = reply.from_address
    msg["To"] = reply_recipient(reply.original_from)
    msg["Subject"] = reply_subject(reply.original_subject)
    msg["In-Reply-To"] = reply.original_message_id
    msg["References"] = reply_references(reply.original_message_id, reply.original_references)
    msg["Message-ID"] = reply.message_id
    msg["Date"] = format_datetime(reply.date)
    msg.set_content(reply.body, subtype="plain", charset="utf-8")
    return msg
