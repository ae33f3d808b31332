"""Which senders get no draft (pure)."""

from __future__ import annotations

import pytest

from handlers.senders import parse_patterns, skip_rule

ME = "Me <me@gmail.com>"


@pytest.mark.parametrize("sender, rule", [
    ("noreply@github.com", "automated sender (noreply)"),
    ("GitHub <no-reply@github.com>", "automated sender (no-reply)"),
    ("do-not-reply@bank.example", "automated sender (do-not-reply)"),
    ("DoNotReply@bank.example", "automated sender (donotreply)"),
    ("MAILER-DAEMON@mx.example", "automated sender (mailer-daemon)"),
    ("postmaster@example.org", "automated sender (postmaster)"),
    ("noreply+tracking@shop.example", "automated sender (noreply)"),
    ("ME@Gmail.com", "sent from this account"),
    ("Me Myself <me@gmail.com>", "sent from this account"),
    # Nothing a reply could be sent to: no draft, rather than a reply that goes nowhere.
    ("", "no address to reply to"),
    ("a@b@c", "no address to reply to"),
    ("Undisclosed recipients:;", "no address to reply to"),
    ("john", "no address to reply to"),
    ("john@", "no address to reply to"),
    ("@example.com", "no address to reply to"),
    ("john@example..com", "no address to reply to"),
])
def test_machines_and_yourself_get_no_draft(sender: str, rule: str) -> None:
    assert skip_rule(sender, ME, []) == rule


@pytest.mark.parametrize("sender", [
    "John Smith <john@example.com>", "norah@example.com", "replies@example.com",
    "postmaster.general@example.gov.invalid", "me@gmail.com.evil.example", "noreplyneeded.not@x.example",
    "Jürgen <jürgen@bücher.example>", "o'brien+tag@example.ie", "Smith, John <john@example.com>",
])
def test_people_are_drafted(sender: str) -> None:
    assert skip_rule(sender, ME, parse_patterns("*@news.example.com, alerts@*")) is None


def test_skip_senders_patterns_and_domains() -> None:
    patterns = parse_patterns(" *@News.Example.com , alerts@*,, example.org ")
    assert patterns == ["*@news.example.com", "alerts@*", "example.org"]
    assert skip_rule("Weekly <digest@news.example.com>", ME, patterns) == "SKIP_SENDERS *@news.example.com"
    assert skip_rule("alerts@monitoring.example", ME, patterns) == "SKIP_SENDERS alerts@*"
    assert skip_rule("anyone@example.org", ME, patterns) == "SKIP_SENDERS example.org"
    assert skip_rule("anyone@mail.example.org", ME, patterns) == "SKIP_SENDERS example.org"
    assert skip_rule("anyone@notexample.org", ME, patterns) is None
