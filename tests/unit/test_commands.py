"""The SMS command parser (docs/contracts.md §5)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handlers.commands import APPROVE_WORDS, IGNORE_WORDS, Command, CommandKind, parse_command

K = CommandKind


@pytest.mark.parametrize("text", ["1", "send", "approve", "yes", "ok", " OK ", "Yes.", "ok!", "\tSEND\n", "Approve"])
def test_approve(text: str) -> None:
    assert parse_command(text) == Command(K.APPROVE)


@pytest.mark.parametrize("text", ["3", "ignore", "skip", "no", " NO ", "Skip."])
def test_ignore(text: str) -> None:
    assert parse_command(text) == Command(K.IGNORE)


@pytest.mark.parametrize(
    ("text", "instructions"),
    [
        ("2 make it more casual", "make it more casual"),
        ("2 Reject meeting with Health reason", "Reject meeting with Health reason"),
        ("  edit   Say I'm OOO until Monday  ", "Say I'm OOO until Monday"),
        ("EDIT: shorter", "shorter"),
        ("2, mention the invoice #42", "mention the invoice #42"),
        ("2 first line\nsecond line", "first line\nsecond line"),
        ("2 :0", ":0"),
        ("2 - bullet style", "- bullet style"),
    ],
)
def test_edit_keeps_the_instructions_as_written(text: str, instructions: str) -> None:
    assert parse_command(text) == Command(K.EDIT, instructions)


@pytest.mark.parametrize("text", ["2", " edit ", "edit:", "", "   ", "12", "2make it short", "hello", "1 2", "sent", "yes please", "2.5 hours", "2-3 days"])
def test_unknown(text: str) -> None:
    assert parse_command(text).kind is K.UNKNOWN


@given(st.text())
def test_never_crashes_and_instructions_are_never_blank(text: str) -> None:
    command = parse_command(text)
    if command.kind is K.EDIT:
        assert command.instructions and command.instructions == command.instructions.strip()
        assert command.instructions in text
    else:
        assert command.instructions is None


#: Each one-word answer and what it means, written out (docs/contracts.md §5).
WORDS = {"1": K.APPROVE, "send": K.APPROVE, "approve": K.APPROVE, "yes": K.APPROVE, "ok": K.APPROVE,
         "3": K.IGNORE, "ignore": K.IGNORE, "skip": K.IGNORE, "no": K.IGNORE}


def test_the_words_written_out_are_every_word() -> None:
    assert set(WORDS) == APPROVE_WORDS | IGNORE_WORDS


@given(st.sampled_from(sorted(WORDS)), st.sampled_from(["", " ", "\n", "  \t"]))
def test_case_and_blanks_do_not_matter(word: str, pad: str) -> None:
    assert parse_command(pad + word.upper() + pad) == Command(WORDS[word])
    assert parse_command(pad + word + pad) == Command(WORDS[word])


@given(st.text(min_size=1).filter(lambda t: t.strip() != "" and t == t.strip()))
def test_edit_round_trip(instructions: str) -> None:
    assert parse_command(f"2 {instructions}") == Command(K.EDIT, instructions)
