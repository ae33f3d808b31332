"""The reply's header values, taken from the incoming email, are one line each
(handlers/headers.py): no break the ``email`` package refuses, no header or
recipient the sender smuggled in."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from handlers.emails import Reply, build_reply
from handlers.headers import clean_header, clean_reply, message_ids, one_address

#: Every character str.splitlines breaks at (the email package refuses them
#: in a header value), and NUL.
BREAKS = ["\r\n", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\x00"]


def hostile_reply(brk: str) -> Reply:
    smuggled = f"{brk}Bcc: victim@example.com"
    return Reply(from_address="me@example.com", original_from="John <john@example.com>" + smuggled,
                 original_subject="Hi" + smuggled, original_message_id="<a@x>" + smuggled,
                 original_references="<b@x>" + smuggled, body="Hello", message_id="<r@example.com>",
                 date=datetime.now(UTC))


@pytest.mark.parametrize("brk", BREAKS)
def test_a_reply_to_headers_with_any_line_break_is_built_and_adds_nothing(brk: str) -> None:
    message = build_reply(clean_reply(hostile_reply(brk)))
    raw = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
    names = [line.split(b":")[0] for line in raw.split(b"\r\n\r\n")[0].split(b"\r\n") if line[:1] not in b" \t"]
    assert b"Bcc" not in names and len(names) == len(set(names))
    assert str(message["To"]) == "John <john@example.com>"
    assert str(message["In-Reply-To"]) == "<a@x>" and str(message["References"]) == "<b@x> <a@x>"
    assert str(message["Subject"]) == "Re: Hi Bcc: victim@example.com"


def test_the_parts() -> None:
    assert clean_header(" a\r\n\tb\x00c  ") == "a b c" and clean_header(None) == ""
    assert one_address("Ann <a@x.com>, Bob <b@x.com>") == "Ann <a@x.com>"
    assert one_address("a@x.com\r\nBcc: v@x.com") == "a@x.com"
    assert message_ids("<a@x>\r\n <b@x> junk") == ["<a@x>", "<b@x>"] and message_ids("bare") == ["bare"]
    raw = build_reply(clean_reply(replace(hostile_reply("\n"), original_subject="x" * 5000))).as_bytes()
    assert max(len(line) for line in raw.split(b"\n")) <= 998  # folded legally
