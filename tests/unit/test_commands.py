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


# ------------------------------------------------------------------ codes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("K7 1", Command(K.APPROVE, code="K7")),
        ("k7 send", Command(K.APPROVE, code="K7")),
        ("K7: 2 make it shorter", Command(K.EDIT, "make it shorter", code="K7")),
        ("K72, 3", Command(K.IGNORE, code="K72")),
        ("K7 edit Sign it Anna", Command(K.EDIT, "Sign it Anna", code="K7")),
        ("K7", Command(K.SHOW, code="K7")),
        (" k7. ", Command(K.SHOW, code="K7")),
        ("K7 hello", Command(K.UNKNOWN, code="K7")),  # a code, then no command: help
        ("list", Command(K.LIST)),
        ("?", Command(K.LIST)),
        ("List.", Command(K.LIST)),
        ("all 3", Command(K.IGNORE_ALL)),
        ("ALL ignore", Command(K.IGNORE_ALL)),
    ],
)
def test_an_answer_may_name_its_draft_by_code_first(text: str, expected: Command) -> None:
    assert parse_command(text) == expected


@pytest.mark.parametrize("text", ["2 A4 paper, K7 style", "2 K7 make it shorter", "2 cc B3 on it"])
def test_a_code_inside_edit_instructions_is_wording(text: str) -> None:
    """The code comes first: one after the command word is part of the instructions."""
    command = parse_command(text)
    assert command.kind is K.EDIT and command.code is None and command.instructions == text[2:]


@pytest.mark.parametrize("text", ["K1 1", "O7 1", "I7 3", "L2", "K0 1"])
def test_look_alike_characters_are_never_a_code(text: str) -> None:
    """No code has 0, 1, I, L, O or Q: these are read as no code at all."""
    assert parse_command(text).code is None


def test_yes_confirms_only_as_a_plain_answer() -> None:
    assert parse_command("yes").confirms and parse_command("Y").confirms
    assert not parse_command("K7 yes").confirms and not parse_command("1").confirms
    assert parse_command("y").kind is K.UNKNOWN  # alone, without an `all 3` to confirm: help


@given(st.sampled_from(sorted(APPROVE_WORDS | IGNORE_WORDS)), st.sampled_from(["K7", "m3", "Z999"]))
def test_every_bare_command_keeps_its_meaning_after_a_code(word: str, code: str) -> None:
    bare, coded = parse_command(word), parse_command(f"{code} {word}")
    assert coded.kind is bare.kind and coded.code == code.upper()
