"""Draft codes (handlers/codes.py): short, unambiguous, unique among the open drafts."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handlers.codes import DIGITS, LETTERS, capacity, is_code, new_code, new_codes


def test_no_code_holds_a_character_that_reads_as_another() -> None:
    assert not set("ILOQ") & set(LETTERS) and not set("01") & set(DIGITS)


def test_codes_are_two_characters_while_few_drafts_are_open() -> None:
    codes = new_codes(40, [], random.Random(1))
    assert len(set(codes)) == 40 and all(len(c) == 2 and is_code(c) for c in codes)


def test_codes_grow_a_digit_when_the_short_ones_are_half_used() -> None:
    rng = random.Random(2)
    taken = new_codes(capacity(1) // 2, [], rng)
    assert all(len(c) == 2 for c in taken)
    assert len(new_code(taken, rng)) == 3


@given(st.integers(min_value=0, max_value=400), st.integers())
def test_a_new_code_is_never_one_an_open_draft_has(count: int, seed: int) -> None:
    rng = random.Random(seed)
    taken = new_codes(count, [], rng)
    assert len(set(taken)) == count
    assert new_code(taken, rng) not in taken


def test_every_code_is_given_before_none_is_left() -> None:
    everything = capacity(1) + capacity(2) + capacity(3)
    taken = [a + d for a in LETTERS for d in DIGITS]  # all two-character codes
    taken += [a + d + e for a in LETTERS for d in DIGITS for e in DIGITS]
    taken += [a + d + e + f for a in LETTERS for d in DIGITS for e in DIGITS for f in DIGITS][:-1]
    assert len(taken) == everything - 1
    last = new_code(taken, random.Random(3))
    assert last not in taken and len(last) == 4
    with pytest.raises(RuntimeError, match="in use"):
        new_code([*taken, last])


@pytest.mark.parametrize("token", ["K7", "k7", "Z999", "A2"])
def test_code_shapes(token: str) -> None:
    assert is_code(token)


@pytest.mark.parametrize("token", ["7K", "K", "K1", "KK7", "K2345", "ok", "1"])
def test_not_code_shapes(token: str) -> None:
    assert not is_code(token)
