"""Composing the threaded reply."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from handlers.emails import (
    Reply,
    body_preview,
    build_reply,
    reply_references,
    reply_subject,
    sender_address,
    sender_name,
)


@pytest.mark.parametrize(
    ("subject", "expected"),
    [("Lunch?", "Re: Lunch?"), ("Re: Lunch?", "Re: Lunch?"), ("RE: re: Lunch?", "Re: Lunch?"),
     ("Re[2]: Lunch?", "Re: Lunch?"), ("AW: Termin", "Re: Termin"), (None, "Re: (no subject)"),
     ("", "Re: (no subject)"), ("Re:", "Re: (no subject)"), ("Regarding budget", "Re: Regarding budget")],
)
def test_reply_subject_never_stacks_re(subject: str | None, expected: str) -> None:
    assert reply_subject(subject) == expected


def test_references_append_the_original_id() -> None:
    assert reply_references("<b@x>", None) == "<b@x>"
    assert reply_references("<b@x>", "<a@x>") == "<a@x> <b@x>"
    assert reply_references("<b@x>", "<a@x> <b@x>") == "<a@x> <b@x>"


@pytest.mark.parametrize(
    ("raw", "name", "address"),
    [("John Smith <john@example.com>", "John Smith", "john@example.com"),
     ("john@example.com", "john", "john@example.com"),
     ('"Smith, John" <john@example.com>', "Smith, John", "john@example.com"),
     ("=?utf-8?b?0JjQstCw0L0=?= <ivan@example.ru>", "=?utf-8?b?0JjQstCw0L0=?=", "ivan@example.ru")],
)
def test_sender(raw: str, name: str, address: str) -> None:
    assert sender_name(raw) == name
    assert sender_address(raw) == address


def test_preview_prefers_text_and_falls_back_to_html() -> None:
    assert body_preview("Hello\n\n  world", "<p>ignored</p>") == "Hello world"
    assert body_preview(None, "<style>p{}</style><p>Hi&nbsp;<b>you</b></p>") == "Hi you"
    assert body_preview("", None) == ""
    assert len(body_preview("x" * 20000, None)) == 500


def test_the_reply_threads() -> None:
    msg = build_reply(Reply(
        from_address="me@gmail.com", original_from="Иван <ivan@example.ru>", original_subject="Привет",
        original_message_id="<a/b+c%d@mail>", original_references="<root@mail>", body="Спасибо! 😀",
        message_id="<reply-1@gmail.com>", date=datetime(2026, 11, 25, 10, 0, tzinfo=UTC)))
    assert msg["To"] == "Иван <ivan@example.ru>"
    assert msg["Subject"] == "Re: Привет"
    assert msg["In-Reply-To"] == "<a/b+c%d@mail>"
    assert msg["References"] == "<root@mail> <a/b+c%d@mail>"
    assert msg["Message-ID"] == "<reply-1@gmail.com>"
    assert msg["Date"] == "Wed, 25 Nov 2026 10:00:00 +0000"
    assert msg.get_content_type() == "text/plain" and msg.get_content_charset() == "utf-8"
    assert msg.get_content().strip() == "Спасибо! 😀"
