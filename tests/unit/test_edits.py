"""Edits accumulate in context_instructions."""

from __future__ import annotations

from handlers.edits import context_instructions


def test_previous_draft_and_every_instruction_travel() -> None:
    text = context_instructions("Sure, see you at 2pm.", ["decline politely", "make it shorter"])
    assert '"""\nSure, see you at 2pm.\n"""' in text
    assert text.endswith("1. decline politely\n2. make it shorter")
