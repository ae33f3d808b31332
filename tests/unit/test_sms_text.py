"""SMS rendering and carrier segment counting."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handlers.sms_text import (
    MAX_SMS_CHARS,
    DraftSms,
    count_segments,
    fold_typography,
    render_draft_sms,
    render_late_answer_sms,
)


@pytest.mark.parametrize(
    ("text", "encoding", "segments"),
    [
        ("a" * 160, "GSM-7", 1),
        ("a" * 161, "GSM-7", 2),
        ("a" * 306, "GSM-7", 2),
        ("a" * 307, "GSM-7", 3),
        ("€" * 80, "GSM-7", 1),  # extension characters take two septets
        ("€" * 81, "GSM-7", 2),
        ("é" * 160, "GSM-7", 1),
        ("ж" * 70, "UCS-2", 1),
        ("ж" * 71, "UCS-2", 2),
        ("ж" * 134, "UCS-2", 2),
        ("😀" * 35, "UCS-2", 1),  # astral: two UTF-16 units each
        ("😀" * 36, "UCS-2", 2),
    ],
)
def test_segments_are_counted_like_a_carrier(text: str, encoding: str, segments: int) -> None:
    count = count_segments(text)
    assert (count.encoding, count.segments) == (encoding, segments)


def test_typography_is_folded_so_gsm7_survives() -> None:
    text = "It\u2019s \u201cfine\u201d \u2014 really\u2026"
    assert count_segments(text).encoding == "UCS-2"
    folded = fold_typography(text)
    assert folded == "It's \"fine\" - really..."
    assert count_segments(folded).encoding == "GSM-7"


def draft(text: str, **kw: object) -> DraftSms:
    fields: dict[str, object] = dict(sender="John Smith", subject="Meeting tomorrow at 2pm?",
                                     preview="Hi, are we still on?", draft=text, waiting=0,
                                     link="http://o/drafts/x?t=abc")
    fields.update(kw)
    return DraftSms(**fields)  # type: ignore[arg-type]


def test_condensed_fits_one_segment_with_the_seed_example() -> None:
    sms = render_draft_sms(draft("Yes, 2pm works. See you then!"), "condensed")
    assert sms == "John Smith: Meeting tomorrow at 2pm?\nDraft: Yes, 2pm works. See you then!\n1=Send 2=Edit 3=Ignore"
    assert count_segments(sms).segments == 1


def test_condensed_shrinks_the_preview_before_spilling_into_a_second_segment() -> None:
    body = "x" * 90
    sms = render_draft_sms(draft(body, subject="A very long subject line about the quarterly budget review"), "condensed")
    assert count_segments(sms).segments == 1
    assert body in sms


def test_curly_quotes_in_a_draft_do_not_halve_the_room() -> None:
    sms = render_draft_sms(draft("Thanks \u2014 I\u2019ll be there."), "condensed")
    assert "I'll be there" in sms and count_segments(sms).encoding == "GSM-7"


def test_long_draft_goes_as_a_link() -> None:
    sms = render_draft_sms(draft("word " * 200), "condensed")
    assert "Full: http://o/drafts/x?t=abc" in sms
    assert len(sms) < 320


def test_waiting_count_is_shown() -> None:
    assert render_draft_sms(draft("Ok."), "condensed").endswith("3=Ignore")
    assert render_draft_sms(draft("Ok.", waiting=2), "condensed").endswith("3=Ignore (+2 waiting)")


def test_full_format_has_sender_subject_preview_and_whole_draft() -> None:
    body = "Line one.\n" * 40
    sms = render_draft_sms(draft(body), "full")
    assert sms.startswith("From: John Smith\nSubject: Meeting tomorrow at 2pm?\nHi, are we still on?\n---\nDraft:\n")
    assert body.strip() in sms
    huge = render_draft_sms(draft("y" * 3000), "full")
    assert "Read it all: http://o/drafts/x?t=abc" in huge and len(huge) <= MAX_SMS_CHARS


@given(st.text(min_size=1, max_size=4000), st.text(max_size=300), st.sampled_from(["condensed", "full"]),
       st.integers(0, 500))
def test_any_draft_renders_within_the_gateway_limit(body: str, subject: str, fmt: str, waiting: int) -> None:
    sms = render_draft_sms(draft(body, subject=subject, waiting=waiting), fmt)  # type: ignore[arg-type]
    assert 1 <= len(sms) <= MAX_SMS_CHARS
    assert "1=Send 2=Edit 3=Ignore" in sms


def test_draft_tokens_accept_any_string() -> None:
    from handlers.links import draft_token, token_matches

    key = b"k"
    assert token_matches(key, "<a@b>", draft_token(key, "<a@b>"))
    assert not token_matches(key, "<a@b>", "Ïò¾¸\x9c")
    assert not token_matches(key, "<a@b>", "")


def test_a_late_answer_is_named_and_the_person_asked_again_in_one_segment() -> None:
    text = render_late_answer_sms("2 \u201cshorter\u201d and warmer, please, much warmer", "Bob Marley-Livingstone III")
    assert text.startswith("Your answer '2 \"shorter\" and w...' was written before the draft reply to Bob")
    assert text.endswith("so it was not applied. Answer again: 1=Send 2=Edit 3=Ignore")
    assert count_segments(text).segments <= 2 and count_segments(text).encoding == "GSM-7"


def test_the_list_sms_names_each_open_draft_oldest_first_and_counts_what_does_not_fit() -> None:
    from datetime import timedelta

    from handlers.sms_text import LIST_SMS_CHARS, ListedDraft, render_list_sms

    two = [ListedDraft("K7", "John Smith", "Meeting?", timedelta(hours=2), "on phone"),
           ListedDraft("M3", "Ann Lee", "Invoice 42", timedelta(minutes=5), "waiting")]
    assert render_list_sms(two) == ("2 open:\nK7 John Smith: Meeting? (2h)\nM3 Ann Lee: Invoice 42 (5m, waiting)\n"
                                    "Reply a code to see that draft, or K7 1 / K7 3.")
    many = [ListedDraft(f"A{n}", "Someone Long-Named", "A subject that goes on and on", timedelta(days=n), "drafting")
            for n in range(2, 30)]
    text = render_list_sms(many)
    assert len(text) <= LIST_SMS_CHARS and text.startswith("28 open:\nA2 Someone")
    shown = text.count("(")
    assert f"+{28 - shown} more on the dashboard" in text
    assert render_list_sms([]) == "No open drafts."


def test_the_draft_sms_carries_its_code_before_the_commands() -> None:
    sms = render_draft_sms(draft("Yes, 2pm works.", waiting=1, code="K7"), "condensed")
    assert sms.endswith("\nK7: 1=Send 2=Edit 3=Ignore (+1 waiting)")
    full = render_draft_sms(draft("Yes, 2pm works.", code="K7"), "full")
    assert full.endswith("\nK7: 1=Send 2=Edit 3=Ignore")
