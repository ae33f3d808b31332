"""The person's SMS commands (docs/contracts.md §5).

Case-insensitive, surrounding blanks ignored; edit instructions keep their
original case and wording. Pure: text in, :class:`Command` out; never raises.

An answer may name its draft by code, first: ``K7 1``, ``K7 2 make it
shorter``, ``K7 3``, or ``K7`` alone (text that draft again). The code comes
first because the first word then tells a code from a command: a code is a
letter followed by digits, a command a digit or a word without digits, so
``2 make it shorter, cc A4`` stays an edit and ``K7 1`` can never be read as
wording. A bare ``1``, ``2 …``, ``3`` means the draft texted most recently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from enum import StrEnum

from .codes import CODE_PATTERN, normalise


class CommandKind(StrEnum):
    APPROVE = "approve"
    EDIT = "edit"
    IGNORE = "ignore"
    #: ``list`` or ``?``: one SMS of the open drafts.
    LIST = "list"
    #: A code alone: text that draft again (or now, if it waits for the phone).
    SHOW = "show"
    #: ``all 3``: ignore every open draft, after a confirmation.
    IGNORE_ALL = "ignore_all"
    #: ``remember <instruction>``: a lesson for the sender of the draft (``remember all …``: for everyone).
    REMEMBER = "remember"
    #: ``forget``: switch off the lessons behind the draft.
    FORGET = "forget"
    #: ``cancel``: take back a reply scheduled for later, before it leaves.
    CANCEL = "cancel"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Command:
    kind: CommandKind
    instructions: str | None = None
    #: The draft the answer names (upper case), if it names one.
    code: str | None = None
    #: The answer is a plain ``yes``: it confirms a pending ``all 3``.
    confirms: bool = field(default=False, compare=False)
    #: The answer is a plain ``no``: it declines a pending ``all 3``.
    declines: bool = field(default=False, compare=False)
    #: When to send, as written after the approval (``1 at 9:00`` → ``at 9:00``);
    #: read in the person's time zone by the stage.
    when: str | None = None
    #: ``remember all …``: the lesson is for every sender, not the draft's.
    everyone: bool = False


APPROVE_WORDS = frozenset({"1", "send", "approve", "yes", "ok"})
IGNORE_WORDS = frozenset({"3", "ignore", "skip", "no"})
# "2 make it shorter", "edit: make it shorter"; a bare "2" / "edit" is not an edit.
# Only a colon or comma glued to the command word is a separator; after a
# blank, everything is wording ("2 :)" keeps its smiley; "2.5" is no command).
_EDIT = re.compile(r"^(?:2|edit)(?:[:,]\s*|\s+)(?P<instructions>\S.*)$", re.IGNORECASE | re.DOTALL)
# A lone word may carry closing punctuation from the phone's keyboard ("Ok!", "yes.").
_TRAILING = re.compile(r"[\s.!?]+$")
LIST_WORDS = frozenset({"list", "?"})
CONFIRM_WORDS = frozenset({"yes", "y"})
DECLINE_WORDS = frozenset({"no", "n"})
# "1 at 9:00", "send tomorrow 8am", "1 mon 9": an approval with a time after it.
_WEEKDAYS = "mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun|monday|tuesday|wednesday|thursday|friday|saturday|sunday"
_SCHEDULED = re.compile(rf"^(?:1|send|approve|ok)\s+(?P<when>(?:(?:at|on|today|tonight|tomorrow|tmrw|{_WEEKDAYS})\b|\d{{1,2}}(?:[:.]\d\d)?\s*[ap]\.?m\b|\d{{1,2}}[:.]\d\d\b).*)$",
                        re.IGNORECASE | re.DOTALL)
_REMEMBER = re.compile(r"^remember(?:[:,]\s*|\s+)(?:(?P<all>all|everyone)(?:[:,]\s*|\s+))?(?P<lesson>\S.*)$",
                       re.IGNORECASE | re.DOTALL)
_IGNORE_ALL = re.compile(r"^all[\s:,]*(?:3|ignore|skip)[\s.!]*$", re.IGNORECASE)
# "K7", "K7 1", "k7: 2 make it shorter", "K7,3".
_CODED = re.compile(rf"^(?P<code>{CODE_PATTERN})(?:(?:[\s:,.\-]+)(?P<rest>.*))?$", re.IGNORECASE | re.DOTALL)


def parse_command(text: str) -> Command:
    """Parse one SMS into a command; anything unrecognised is ``UNKNOWN``."""
    stripped = text.strip()
    if stripped.lower() in LIST_WORDS or _TRAILING.sub("", stripped).lower() == "list":
        return Command(CommandKind.LIST)
    if _IGNORE_ALL.match(stripped):
        return Command(CommandKind.IGNORE_ALL)
    coded = _CODED.match(stripped)
    if coded:
        code = normalise(coded.group("code"))
        rest = (coded.group("rest") or "").strip()
        if not _TRAILING.sub("", rest):
            return Command(CommandKind.SHOW, code=code)
        inner = _parse_plain(rest)
        if inner.kind in (CommandKind.APPROVE, CommandKind.EDIT, CommandKind.IGNORE, CommandKind.REMEMBER,
                          CommandKind.FORGET, CommandKind.CANCEL):
            return replace(inner, code=code, confirms=False, declines=False)
        return Command(CommandKind.UNKNOWN, code=code)
    return _parse_plain(stripped)


def _parse_plain(stripped: str) -> Command:
    """A command without a code."""
    word = _TRAILING.sub("", stripped).lower()
    if word == "forget":
        return Command(CommandKind.FORGET)
    if word == "cancel":
        return Command(CommandKind.CANCEL)
    remember = _REMEMBER.match(stripped)
    if remember:
        return Command(CommandKind.REMEMBER, remember.group("lesson").strip(), everyone=bool(remember.group("all")))
    scheduled = _SCHEDULED.match(stripped)
    if scheduled:
        return Command(CommandKind.APPROVE, when=_TRAILING.sub("", scheduled.group("when")).strip())
    if word in APPROVE_WORDS:
        return Command(CommandKind.APPROVE, confirms=word in CONFIRM_WORDS)
    if word in IGNORE_WORDS:
        return Command(CommandKind.IGNORE, declines=word in DECLINE_WORDS)
    if word in CONFIRM_WORDS:
        return Command(CommandKind.UNKNOWN, confirms=True)
    if word in DECLINE_WORDS:
        return Command(CommandKind.UNKNOWN, declines=True)
    match = _EDIT.match(stripped)
    if match:
        return Command(CommandKind.EDIT, match.group("instructions").strip())
    return Command(CommandKind.UNKNOWN)
