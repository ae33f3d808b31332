"""The fuzz campaign's tools (issue 17): Hypothesis strategies for what comes
from outside (email rows, webhook requests, Kafka records), a raw HTTP client
that sends a request in as many TCP pieces as it is told, and a watch over a
worker's log that says which example wrote an ERROR line.

Every strategy is bounded in size; the few large values (bodies of some MB,
records near the broker's limit) are made by repetition, so Hypothesis stays
fast. Traffic goes only to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from handlers.messages import DLQ_HEADER

from tests.support.harness import LogEntry, log_entries

#: librdkafka's default ``message.max.bytes`` (the relay's producer): a record
#: larger than this can never be published, so nothing the worker writes may be.
PRODUCER_LIMIT = 1_000_000

# ------------------------------------------------------------------ text

#: Text PostgreSQL can store: no NUL (``text`` rejects it, so the Email Monitor
#: cannot hand one over) and no lone surrogate (not UTF-8). Anything else goes.
STORABLE = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
#: Any text, NUL and control characters included (what a header or JSON can carry).
ANY_CHAR = st.characters(exclude_categories=["Cs"])


def storable(text: str) -> str:
    """``text`` as it can reach PostgreSQL (NUL removed)."""
    return text.replace("\x00", "")


def texts(max_size: int = 200) -> st.SearchStrategy[str]:
    return st.text(STORABLE, max_size=max_size)


def mojibake(max_size: int = 200) -> st.SearchStrategy[str]:
    """Text that came from bytes decoded with the wrong charset (or none)."""
    from_bytes = st.tuples(st.binary(max_size=max_size), st.sampled_from(["latin-1", "cp1252", "utf-8", "koi8-r"])
                           ).map(lambda b: b[0].decode(b[1], "replace"))
    twice = st.text(STORABLE, max_size=max_size // 2).map(lambda s: s.encode("utf-8").decode("latin-1"))
    return st.one_of(from_bytes, twice).map(storable)


@dataclass(frozen=True)
class Repeat:
    """A large value as ``piece`` repeated to ``size`` characters (or bytes):
    Hypothesis shows and shrinks the two, never megabytes of text."""

    piece: str | bytes
    size: int

    def value(self) -> Any:
        return (self.piece * (self.size // max(len(self.piece), 1) + 1))[:self.size]


def huge(parts: st.SearchStrategy[str], most: int) -> st.SearchStrategy[Repeat]:
    """Up to ``most`` characters of a repeated piece (see :class:`Repeat`)."""
    return st.builds(Repeat, parts.filter(bool), st.integers(1, most))


def describe(value: Any, most: int = 120) -> str:
    """A short ``repr`` of a generated value for ``hypothesis.note``: long
    strings cut to ``most`` characters (with their length), :class:`Repeat` as itself."""
    if isinstance(value, (str, bytes)) and len(value) > most:
        return f"{value[:most]!r}...<{len(value)} in all>"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {describe(v, most)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(describe(v, most) for v in value) + "]"
    return repr(value)


def materialise(value: Any) -> Any:
    """``value`` with every :class:`Repeat` in it made real."""
    if isinstance(value, Repeat):
        return value.value()
    if isinstance(value, dict):
        return {k: materialise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [materialise(v) for v in value]
    return value


#: Line breaks and separators a header or a preview must survive.
BREAKS = ["\r\n", "\n", "\r", "\u2028", "\u0085", "\t", "\x0b", "\x0c"]


def lines_of(base: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.lists(st.one_of(base, st.sampled_from(BREAKS)), max_size=6).map("".join)


# ------------------------------------------------------------------ email rows

ADDRESS = st.from_regex(r"[a-z0-9._+-]{1,12}@[a-z0-9-]{1,10}\.(com|example|org)", fullmatch=True)


def senders() -> st.SearchStrategy[str]:
    """``processed_emails.from_address`` (VARCHAR(255), NOT NULL): one address
    or several, display names in any script, encoded words, CR/LF injection."""
    named = st.tuples(texts(40), ADDRESS).map(lambda p: f"{p[0]} <{p[1]}>")
    quoted = st.tuples(texts(40), ADDRESS).map(lambda p: f'"{p[0]}" <{p[1]}>')
    several = st.lists(st.one_of(ADDRESS, named), min_size=2, max_size=4).map(", ".join)
    injected = st.tuples(ADDRESS, st.sampled_from(BREAKS), ADDRESS).map(lambda p: f"{p[0]}{p[1]}Bcc: {p[2]}")
    encoded = st.tuples(texts(30), ADDRESS).map(
        lambda p: f"=?utf-8?b?{base64.b64encode(p[0].encode()).decode()}?= <{p[1]}>")
    odd = st.sampled_from(["<>", "@", "undisclosed-recipients:;", "a@b@c", "<a@b", "\"unterminated <x@y.com>",
                           "x@y.com (comment (nested)", " ", "=?x?q?=?="])
    return st.one_of(ADDRESS, named, quoted, several, injected, encoded, odd, lines_of(texts(30)),
                     mojibake(60)).map(lambda s: storable(s)[:255])


def subjects() -> st.SearchStrategy[str | Repeat | None]:
    return st.one_of(st.none(), texts(200), lines_of(texts(40)), mojibake(120),
                     st.sampled_from(["Re: Re: AW: SV[3]: x", "=?utf-8?q?caf=C3=A9?=", "", " \t "]),
                     huge(texts(20), 2_000_000))


#: Pieces of HTML that standard-library parsers choke on: marked sections
#: (Outlook's ``<![if !mso]>``), broken comments, unclosed tags, odd entities.
HTML_PIECES = [
    "<![if !mso]>", "<![endif]>", "<!--[if mso]>", "<![endif]-->", "<!-->", "<!--->", "<!---->", "<!",
    "<![", "<![ ", "<![CDATA[", "]]>", "<?xml version='1.0'?>", "<!DOCTYPE html>", "<!doctype", "</", "<",
    ">", "<p>", "</p>", "<div>", "</div>", "<br>", "<br/>", "<table><tr><td>", "</td>", "<li>", "<h1>",
    "<script>", "</script>", "<style>", "</style>", "<title>", "<head>", "<a href=\"", "\"", "'", "=",
    "&", "&amp;", "&amp;amp;", "&nbsp", "&nbsp;", "&#0;", "&#x0;", "&#x110000;", "&#99999999999;",
    "&#xD800;", "&unknown;", "&#", "&#x", "<x:y>", "<o:p>", "</o:p>", "<svg><![CDATA[x]]></svg>",
    "<textarea>", "<plaintext>", "<noscript>", "<template>", "\u202e", "\ufeff", "<img src=x onerror=y>",
]


def html_bodies() -> st.SearchStrategy[str | Repeat]:
    piece = st.one_of(st.sampled_from(HTML_PIECES), texts(30), mojibake(30))
    soup = st.lists(piece, max_size=40).map("".join)
    nested = st.builds(Repeat, st.sampled_from(["<div>", "<b>", "<table><tr><td>", "<![if !mso]>", "<!--", "<p"]),
                       st.integers(1, 100_000))
    return st.one_of(soup, nested, huge(soup, 2_000_000))


def text_bodies() -> st.SearchStrategy[str | Repeat | None]:
    # Whitespace only or none: the HTML body is what the preview is made of.
    return st.one_of(st.none(), st.sampled_from(["", " ", "\r\n\t"]), texts(400), mojibake(400),
                     lines_of(texts(60)), huge(texts(20), 2_000_000))


def email_rows() -> st.SearchStrategy[dict[str, Any]]:
    """The fields of a ``processed_emails`` row as the Email Monitor could write
    them (large ones as :class:`Repeat`: see :func:`materialise`)."""
    return st.fixed_dictionaries({
        "subject": subjects(),
        "from_address": senders(),
        "body_text": text_bodies(),
        "body_html": st.one_of(st.none(), html_bodies()),
    }, optional={"to_addresses": st.lists(senders(), max_size=3),
                 "in_reply_to": st.one_of(st.none(), texts(60), lines_of(texts(20))).map(
                     lambda s: None if s is None else s[:255])})


# ------------------------------------------------------------------ HTTP over a socket

@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def json(self) -> Any:
        return json.loads(self.body)


async def raw_request(port: int, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes = b"",
                      pieces: list[int] | None = None, pause: float = 0.02, timeout: float = 15) -> RawResponse:
    """One HTTP/1.1 request to 127.0.0.1:``port``, written by hand: header
    values are sent as the bytes given (non-ASCII included), and the request
    (head and body together) is cut at the offsets ``pieces`` into separate
    writes with ``pause`` seconds between them, so the server sees several
    TCP segments. The connection closes after the answer."""
    head = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close",
            f"Content-Length: {len(body)}".encode()]
    head += [name + b": " + value for name, value in headers]
    data = b"\r\n".join(head) + b"\r\n\r\n" + body
    cuts = sorted({c for c in (pieces or []) if 0 < c < len(data)})
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    try:
        start = 0
        for cut in [*cuts, len(data)]:
            writer.write(data[start:cut])
            await writer.drain()
            start = cut
            if cut != len(data):
                await asyncio.sleep(pause)
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    return parse_response(raw)


def parse_response(raw: bytes) -> RawResponse:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise AssertionError(f"not an HTTP answer: {raw[:300]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _unchunk(body)
    return RawResponse(int(parts[1]), headers, body)


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2:]
    return out


def says_why(response: RawResponse) -> str | None:
    """What is wrong with an answer, or None: every answer is below 500, says
    why in JSON or HTML (a redirect says it with its Location), never with a traceback."""
    if response.status >= 500:
        return f"status {response.status}"
    if b"Traceback" in response.body:
        return "a traceback in the body"
    if 300 <= response.status < 400:
        location = response.headers.get("location", "")
        return None if location.startswith("/") and not location.startswith("//") else f"redirect to {location!r}"
    if response.content_type == "application/json":
        try:
            response.json()
        except ValueError:
            return "a body that is not the JSON it claims"
        return None
    if response.content_type == "text/html":
        return None
    return f"content type {response.content_type!r}"


# ------------------------------------------------------------------ Kafka records

def json_values(max_leaves: int = 10) -> st.SearchStrategy[Any]:
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                        st.text(ANY_CHAR, max_size=40))
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(ANY_CHAR, max_size=12), inner, max_size=4)),
        max_leaves=max_leaves)


#: The fields of the worker's topic messages: a wrong-shape value uses them with values of any type.
MESSAGE_FIELDS = ["message_id", "from_address", "subject", "received_at", "instructions", "iteration",
                  "sms_id", "phone_number", "text", "to_state", "schema_version"]


def record_values() -> st.SearchStrategy[bytes | Repeat]:
    """A Kafka record's value: any bytes, JSON of the wrong shape, the right
    fields with values of any type, or something near the broker's limit."""
    wrong_shape = json_values().map(lambda v: json.dumps(v).encode())
    fields = st.dictionaries(st.sampled_from(MESSAGE_FIELDS), json_values(3), max_size=6).map(
        lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    big = st.builds(Repeat, st.binary(min_size=1, max_size=8), st.integers(100_000, 900_000))
    return st.one_of(st.binary(max_size=300), wrong_shape, fields, big,
                     st.sampled_from([b"", b"null", b"{}", b"[]", b'"x"', b"\x00", b"\xff\xfe", b"{\"message_id\""]))


def messages_for(topic: str) -> st.SearchStrategy[bytes]:
    """A value that decodes as ``topic``'s message (handlers/messages.py) but
    names nothing the worker knows, with text of any characters (NUL included)."""
    text = st.text(ANY_CHAR, max_size=60)
    some = st.text(ANY_CHAR, min_size=1, max_size=60)
    fields: dict[str, dict[str, st.SearchStrategy[Any]]] = {
        "emails.pending": {"message_id": some, "from_address": st.one_of(st.none(), text),
                           "subject": st.one_of(st.none(), text)},
        "edits.requested": {"message_id": some, "instructions": some, "iteration": st.integers(1, 2**31)},
        "drafts.ready": {"message_id": some, "iteration": st.integers(0, 2**31)},
        "phone.freed": {"phone_number": some, "message_id": some, "to_state": text},
        "sms.inbound": {"sms_id": some, "phone_number": some.filter(lambda n: "5551234567" not in n), "text": text},
        "replies.approved": {"message_id": some},
    }
    return st.fixed_dictionaries(fields[topic]).map(lambda v: json.dumps(v).encode())


def record_keys() -> st.SearchStrategy[bytes | None]:
    return st.one_of(st.none(), st.binary(max_size=64), st.sampled_from([b"\x00", b"a\x00b", b"\xff", b"\xc3("]),
                     st.text(ANY_CHAR, max_size=30).map(lambda s: s.encode("utf-8", "surrogatepass")))


#: Headers the worker reads by name (trace context, CloudEvents), besides any.
HEADER_NAMES = ["traceparent", "tracestate", "ce_id", "ce_type", "ce_source", "ce_specversion", "content-type"]


def record_headers() -> st.SearchStrategy[list[tuple[str, bytes]]]:
    name = st.one_of(st.sampled_from(HEADER_NAMES), st.text(ANY_CHAR, min_size=1, max_size=20))
    value = st.one_of(st.binary(max_size=80), st.sampled_from([b"00-" + b"f" * 32 + b"-" + b"a" * 16 + b"-01",
                                                                b"00-zz", b"\x00", b"\xff" * 5]))
    return st.lists(st.tuples(name, value), max_size=5)


class DeadLetters:
    """Everything on a deadletter topic, read as it comes (for a thread):
    where each letter's record was, so that a record dead-lettered twice, or
    not at all, is seen."""

    def __init__(self, servers: str, topic: str) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        self.consumer = Consumer({"bootstrap.servers": servers, "group.id": f"fuzz-{uuid.uuid4().hex}",
                                  "enable.auto.commit": False})
        partitions = sorted(self.consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        #: Where each letter's record was: (topic, partition, offset) from its headers.
        self.origins: Counter[tuple[str, str, str]] = Counter()
        self.letters = 0

    def read(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            msg = self.consumer.poll(0.1)
            if msg is None or msg.error() is not None:
                continue
            headers = {str(pair[0]): _text(pair[1]) for pair in msg.headers() or ()}
            self.letters += 1
            self.origins[(headers.get(DLQ_HEADER + "topic", ""), headers.get(DLQ_HEADER + "partition", ""),
                          headers.get(DLQ_HEADER + "offset", ""))] += 1

    def close(self) -> None:
        self.consumer.close()


def _text(value: str | bytes | None) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value or ""


# ------------------------------------------------------------------ the worker's log

class LogWatch:
    """The ERROR/CRITICAL lines and tracebacks a worker wrote since the last
    look, so a fuzz example that provokes one fails as itself (and is shrunk)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def new_bad(self, allowed: Callable[[LogEntry], bool] = lambda entry: False) -> list[str]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as log:
            log.seek(self.offset)
            text = log.read()
        complete = text[:text.rfind(b"\n") + 1]  # a line being written is read next time
        self.offset += len(complete)
        entries: list[LogEntry] = log_entries(complete.decode("utf-8", "replace"))
        return [e.text for e in entries if e.bad and not allowed(e)]
