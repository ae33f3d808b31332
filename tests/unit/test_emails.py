"""Composing the threaded reply."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from handlers.emails import (
    HTML_PREVIEW_CHARS,
    SENDER_CHARS,
    SUBJECT_CHARS,
    Reply,
    body_preview,
    build_reply,
    intake_fields,
    reply_recipient,
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


def reply_to(original_from: str) -> str:
    msg = build_reply(Reply(
        from_address="me@gmail.com", original_from=original_from, original_subject="Hi",
        original_message_id="<a@mail>", original_references=None, body="ok", message_id="<r@gmail.com>",
        date=datetime(2026, 11, 25, 10, 0, tzinfo=UTC)))
    return str(msg["To"])


@pytest.mark.parametrize(
    ("raw", "to", "name"),
    [("Alice <alice@example.com>, Bob <bob@example.com>", "Alice <alice@example.com>", "Alice"),
     ("alice@example.com, bob@example.com", "alice@example.com", "alice"),
     ('"Smith, John" <john@example.com>, eve@example.com', '"Smith, John" <john@example.com>', "Smith, John"),
     ("Smith, John <john@example.com>", "John <john@example.com>", "John")],
)
def test_a_from_with_several_addresses_is_answered_to_the_one_the_sms_names(raw: str, to: str, name: str) -> None:
    assert reply_to(raw) == reply_recipient(raw) == to
    assert sender_name(raw) == name
    assert sender_address(raw) in to


HOSTILE_HTML = {
    "marked section with a space": "<![ if !mso ]><p>Hello</p><![endif]>",
    "unknown marked section": "<![mso]><p>Hello</p>",
    "include section": "<p>Hello</p><![ INCLUDE [ x ]]>",
    "NUL and its entity": "<p>Hel\x00lo &#0; &#x0;</p>",
    "invalid UTF-8, replaced": (b"<p>Hello \xff\xfe\xed\xa0\x80</p>").decode("utf-8", "replace"),
    "unclosed everything": "<p>Hello<div><table><tr><td><b><i><span" + "<div>" * 5000,
    "deep nesting": "<p>Hello</p>" + "<div>" * 100_000 + "x" + "</div>" * 100_000,
    "huge attribute": "<p>Hello</p><p title='" + "a" * 1_000_000 + "'>x</p>",
    "unterminated comment": "<p>Hello</p><!-- " + "x" * 100_000,
    "unclosed tags without end": "<p>Hello</p>" + "<a " * 50_000,
    "surrogate entities": "<p>Hello &#xD800; &#x110000;</p>",
}


@pytest.mark.parametrize("html", HOSTILE_HTML.values(), ids=HOSTILE_HTML.keys())
def test_hostile_html_always_gives_a_bounded_preview_without_control_characters(html: str) -> None:
    preview = body_preview(None, html)
    assert preview.startswith("Hel") and len(preview) <= 500
    assert not any(ord(c) < 32 or 0xD800 <= ord(c) <= 0xDFFF for c in preview)


def test_only_the_start_of_the_html_is_read() -> None:
    assert body_preview(None, "<p>" + " " * HTML_PREVIEW_CHARS + "late</p>") == ""
    assert body_preview(None, "<p>early</p>" + "<p>late</p>" * 1_000_000).startswith("early late")


def test_what_intake_keeps_is_bounded() -> None:
    fields = intake_fields("S" * 100_000, "a" * 300 + "@example.com", None, "<p>Hi</p>")
    assert fields.subject is not None and len(fields.subject) == SUBJECT_CHARS and fields.subject.endswith("...")
    assert len(fields.sender) == SENDER_CHARS
    assert fields.preview == "Hi"
    assert intake_fields(None, "a@b", "text", None) == type(fields)(subject=None, sender="a@b", preview="text")


def test_the_html_preview_keeps_words_whole_and_blocks_apart() -> None:
    html = "<p><b>W</b>elcome&nbsp;to <i>the</i> show</p><p>second</p>a<br>b<table><tr><td>c</td><td>d</td></tr></table>"
    assert body_preview(None, html) == "Welcome to the show second a b c d"
