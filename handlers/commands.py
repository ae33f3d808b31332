"""The person's SMS commands (docs/contracts.md §5).

Case-insensitive, surrounding blanks ignored; edit instructions keep their
original case and wording. Pure: text in, :class:`Command` out; never raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class CommandKind(StrEnum):
    APPROVE = "approve"
    EDIT = "edit"
    IGNORE = "ignore"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Command:
    kind: CommandKind
    instructions: str | None = None


APPROVE_WORDS = frozenset({"1", "send", "approve", "yes", "ok"})
IGNORE_WORDS = frozenset({"3", "ignore", "skip", "no"})
# "2 make it shorter", "edit: make it shorter"; a bare "2" / "edit" is not an edit.
# Only a colon or comma glued to the command word is a separator; after a
# blank, everything is wording ("2 :)" keeps its smiley; "2.5" is no command).
_EDIT = re.compile(r"^(?:2|edit)(?:[:,]\s*|\s+)(?P<instructions>\S.*)$", re.IGNORECASE | re.DOTALL)
# A lone word may carry closing punctuation from the phone's keyboard ("Ok!", "yes.").
_TRAILING = re.compile(r"[\s.!?]+$")


def parse_command(text: str) -> Command:
    """Parse one SMS into a command; anything unrecognised is ``UNKNOWN``."""
    stripped = text.strip()
    word = _TRAILING.sub("", stripped).lower()
    if word in APPROVE_WORDS:
        return Command(CommandKind.APPROVE)
    if word in IGNORE_WORDS:
        return Command(CommandKind.IGNORE)
    match = _EDIT.match(stripped)
    if match:
        return Command(CommandKind.EDIT, match.group("instructions").strip())
    return Command(CommandKind.UNKNOWN)
