"""Lessons: what the person taught by editing, and when it applies to a new
email's first draft (docs/design.md, "It learns from you"). Pure.

Every edit instruction (``2 sign as Jack``) and every reply written by hand
is *evidence*, kept with its sender and the sender's domain. An instruction
becomes a *lesson* only when it is repeated across emails: for one sender
(``LESSON_SENDER_MIN`` emails), for one domain (``LESSON_DOMAIN_MIN`` emails
from two senders or more of it), or for everyone (``LESSON_EVERYONE_MIN``
senders). "The same instruction" is equal once case, blanks and punctuation
are set aside, or close to it (:data:`SAME_RATIO`, difflib) when the words
that differ are harmless: a differing word that holds a digit, names a day
or month, turns yes into no (:data:`_POLARITY`) or is a name (capitalised
inside a sentence) makes two different instructions, so "say yes to
Tuesday" and "say no to Tuesday" (or "pay 500" and "pay 5000") never add up
to a lesson; differing only by softeners ("a bit", "please") is the same.
So an instruction that only makes sense for one email is never generalised:
it is not repeated. ``remember …`` makes a lesson at once.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from .emails import sender_address

#: Two normalised instructions at least this close (difflib's ratio) are the same one.
SAME_RATIO = 0.85
#: Characters of an instruction kept as a lesson's text.
LESSON_CHARS = 300
#: Lines of the generator's request given to lessons at most (the most specific first).
MAX_LESSONS = 8
#: Domains of public mail services: their senders share nothing but the provider, so no domain lesson.
PUBLIC_DOMAINS = frozenset({
    "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "msn.com", "yahoo.com",
    "icloud.com", "me.com", "aol.com", "proton.me", "protonmail.com", "gmx.com", "gmx.de", "web.de",
    "mail.com", "yandex.ru", "qq.com",
})
#: Where a reply written by hand closes: its last line (and a short greeting line before it).
CLOSING_CHARS = 40

_NOT_WORD = re.compile(r"[^\w]+", re.UNICODE)


class Scope(StrEnum):
    """Whom a lesson is for: one sender (its address), one domain, or everyone."""

    SENDER = "sender"
    DOMAIN = "domain"
    EVERYONE = "everyone"


#: The most specific first: a sender's own lesson wins over a domain's, a domain's over everyone's.
SPECIFICITY = (Scope.SENDER, Scope.DOMAIN, Scope.EVERYONE)


def normalise(text: str) -> str:
    """An instruction with case, blanks and punctuation set aside: ``Sign as Jack!`` → ``sign as jack``."""
    return " ".join(_NOT_WORD.sub(" ", text.casefold().replace("_", " ")).split())


def same_instruction(a: str, b: str) -> bool:
    """Whether two instructions (as given, or normalised) are the same one:
    equal once normalised; else none of the words that differ tells a
    detail (:func:`_telling`), and they differ only by softeners
    (``be a bit more casual``) or are at least :data:`SAME_RATIO` alike
    (``sign as jack`` and ``sign it as jack``)."""
    na, nb = normalise(a), normalise(b)
    if na == nb:
        return True
    if not na or not nb:
        return False
    differing = _differing(na.split(), nb.split())
    names = _names(a) | _names(b)
    if any(_telling(word, names) for word in differing) or _negated(differing):
        return False
    if all(word in _SOFTENERS for word in differing):
        return True
    matcher = difflib.SequenceMatcher(None, na, nb, autojunk=False)
    return (matcher.real_quick_ratio() >= SAME_RATIO and matcher.quick_ratio() >= SAME_RATIO
            and matcher.ratio() >= SAME_RATIO)


#: Words that carry an instruction's decision: yes or no, more or less.
_POLARITY = frozenset("""
    yes yeah yep ok okay sure no nope not never none nothing without t cannot cant dont
    don doesn didn won wont isn aren wasn weren shouldn wouldn couldn haven hasn hadn
    accept accepts accepted accepting decline declines declined declining agree agrees agreed
    disagree refuse refuses refused reject rejects rejected confirm confirms confirmed cancel
    cancels cancelled canceled deny denies denied approve approves approved allow allows allowed
    more less fewer longer shorter earlier later before after higher lower
""".split())
#: Days, months and the like: the when of one email.
_WHEN = frozenset("""
    monday tuesday wednesday thursday friday saturday sunday mon tue tues wed thu thur thurs fri
    sat sun january february march april may june july august september october november december
    jan feb mar apr jun jul aug sep sept oct nov dec today tomorrow tonight yesterday weekend
    morning afternoon evening noon midnight am pm
""".split())
#: Number words: an amount or a count, like a digit.
_NUMBERS = frozenset("""
    zero one two three four five six seven eight nine ten eleven twelve fifteen twenty thirty
    forty fifty hundred thousand million half twice
""".split())
#: Words that soften an instruction without changing it.
_SOFTENERS = frozenset("a an the it please bit little just slightly somewhat kindly also too very really".split())
#: Prefixes that turn a word into its opposite (``formal`` / ``informal``).
_NEGATING = ("un", "in", "im", "ir", "il", "dis", "non")
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)


def _differing(a: list[str], b: list[str]) -> list[str]:
    """The words of either side that the other does not have where it has them."""
    found: list[str] = []
    for op, a1, a2, b1, b2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op != "equal":
            found += a[a1:a2] + b[b1:b2]
    return found


def _names(text: str) -> set[str]:
    """The words of ``text`` capitalised inside a sentence (not its first word), case set aside."""
    names: set[str] = set()
    end = 0
    for m in _TOKEN.finditer(text):
        gap, first, end = text[end:m.start()].strip(), end == 0, m.end()
        if m.group()[:1].isupper() and not first and gap[-1:] not in (".", "!", "?"):
            names.add(m.group().casefold())
    return names


def _telling(word: str, names: set[str]) -> bool:
    """Whether a differing word is a detail that makes another instruction."""
    return (any(c.isdigit() for c in word) or word in _POLARITY or word in _WHEN or word in _NUMBERS
            or word in names)


def _negated(words: list[str]) -> bool:
    """Whether one differing word is another's opposite by its prefix (``informal`` / ``formal``)."""
    present = set(words)
    return any(word.startswith(p) and word[len(p):] in present for word in present for p in _NEGATING)


def sender_and_domain(email_from: str) -> tuple[str, str]:
    """The sender's address and domain, lower case (``Ann <Ann@X.org>`` → ``ann@x.org``, ``x.org``)."""
    address = sender_address(email_from).strip().lower()
    return address, address.rpartition("@")[2] if "@" in address else ""


def closing_of(reply: str) -> str | None:
    """What a reply written by hand ends with (``Best,`` / ``Jack`` → ``Best, Jack``),
    when short enough to be a sign-off; None otherwise."""
    lines = [line.strip() for line in reply.strip().splitlines() if line.strip()]
    if len(lines) < 2 or len(lines[-1]) > CLOSING_CHARS or not re.search(r"\w", lines[-1]):
        return None
    closing = lines[-1]
    if lines[-2].endswith(",") and len(lines[-2]) <= CLOSING_CHARS and len(lines) >= 3:
        closing = f"{lines[-2]} {closing}"
    return closing


def hand_instruction(reply: str) -> str | None:
    """The instruction a reply written by hand teaches, if any: its sign-off."""
    closing = closing_of(reply)
    return f'end the reply with "{closing}"' if closing else None


@dataclass(frozen=True)
class Evidence:
    """One instruction given for one email (``lesson_evidence``)."""

    message_id: str
    sender: str
    domain: str
    text: str
    normalised: str


@dataclass(frozen=True)
class Thresholds:
    """How often an instruction must be repeated before it applies to new emails (settings)."""

    sender: int = 2
    domain: int = 2
    everyone: int = 3


@dataclass(frozen=True)
class Learnt:
    """A lesson the evidence supports: for whom, and its text."""

    scope: Scope
    key: str | None
    text: str


def evidence(message_id: str, email_from: str, instruction: str) -> Evidence | None:
    """The evidence an instruction given for ``message_id`` is, or None when it says nothing."""
    text = " ".join(instruction.split())[:LESSON_CHARS]
    normalised = normalise(text)
    if not normalised:
        return None
    sender, domain = sender_and_domain(email_from)
    return Evidence(message_id, sender, domain, text, normalised)


def learnt_from(new: Evidence, known: Sequence[Evidence], thresholds: Thresholds) -> Learnt | None:
    """The broadest lesson ``new`` completes, given the evidence ``known``
    (which may hold ``new`` itself), or None while it is not repeated enough.
    Counted in different emails (and senders): the same instruction given
    twice for one email is one email's evidence."""
    same = [e for e in known if same_instruction(e.text, new.text)]
    if new not in same:
        same.append(new)
    senders = {e.sender for e in same}
    if len(senders) >= thresholds.everyone:
        return Learnt(Scope.EVERYONE, None, new.text)
    of_domain = [e for e in same if e.domain == new.domain]
    if (new.domain and new.domain not in PUBLIC_DOMAINS and len({e.sender for e in of_domain}) >= 2
            and len({e.message_id for e in of_domain}) >= thresholds.domain):
        return Learnt(Scope.DOMAIN, new.domain, new.text)
    if len({e.message_id for e in same if e.sender == new.sender}) >= thresholds.sender:
        return Learnt(Scope.SENDER, new.sender, new.text)
    return None


@dataclass(frozen=True)
class Lesson:
    """One row of ``lessons``."""

    id: int
    scope: Scope
    key: str | None
    text: str
    enabled: bool = True
    source: str = "learnt"
    times_applied: int = 0
    times_edited_after: int = 0

    @property
    def normalised(self) -> str:
        return normalise(self.text)


def applicable(lessons: Sequence[Lesson], sender: str, domain: str) -> list[Lesson]:
    """The switched-on lessons for an email from ``sender`` (of ``domain``),
    the most specific first, one of each instruction (a sender's own wins),
    at most :data:`MAX_LESSONS`."""
    def fits(lesson: Lesson) -> bool:
        return lesson.enabled and (lesson.scope is Scope.EVERYONE
                                   or (lesson.scope is Scope.SENDER and lesson.key == sender)
                                   or (lesson.scope is Scope.DOMAIN and lesson.key == domain))

    ordered = sorted((lesson for lesson in lessons if fits(lesson)),
                     key=lambda lesson: (SPECIFICITY.index(lesson.scope), lesson.id))
    chosen: list[Lesson] = []
    for lesson in ordered:
        if not any(same_instruction(lesson.text, c.text) for c in chosen):
            chosen.append(lesson)
    return chosen[:MAX_LESSONS]


def known_lesson(lessons: Sequence[Lesson], learnt: Learnt) -> Lesson | None:
    """A lesson already kept (switched on or off) that says what ``learnt`` says, for the same people."""
    return next((lesson for lesson in lessons if lesson.scope is learnt.scope and lesson.key == learnt.key
                 and same_instruction(lesson.text, learnt.text)), None)


#: How the generator's request begins when a draft carries lessons.
LESSONS_HEADING = "Lessons from the person's earlier edits (apply unless this email says otherwise):"


def lessons_block(texts: Sequence[str]) -> str | None:
    """The part of ``context_instructions`` that carries lessons, first; None when there are none."""
    if not texts:
        return None
    return "\n".join([LESSONS_HEADING, *(f"{n}. {text}" for n, text in enumerate(texts, start=1))])


def lessons_in(context: str | None) -> list[str]:
    """The lessons a request's ``context_instructions`` carries (what :func:`lessons_block` wrote)."""
    if not context or not context.startswith(LESSONS_HEADING):
        return []
    found = []
    for line in context.splitlines()[1:]:
        match = re.match(r"^\d+\. (.*)$", line)
        if not match:
            break
        found.append(match.group(1))
    return found


def render_forgot_sms(texts: Sequence[str]) -> str:
    """The answer to ``forget``: the lessons switched off, or that there were none."""
    if not texts:
        return "No lessons were behind that draft: nothing to forget."
    return f"Forgot: {'; '.join(t.rstrip(' .;') for t in texts)}. They will not be used again."[:320]


def render_remembered_sms(text: str, who: str | None, *, cut: bool = False) -> str:
    """The answer to ``remember …``: for whom it will be used, and whether
    only its first :data:`LESSON_CHARS` characters were kept (the lesson's
    words are shortened to fit 320 characters, never that note)."""
    whom = "every sender" if who is None else who
    kept = f" (kept the first {LESSON_CHARS} characters)" if cut else ""
    tail = f"{kept}. Used from the next email on; reply forget on a draft to undo."
    head = f"Remembered for {whom}: {text.rstrip(' .;')}"
    room = 320 - len(tail)
    return (head if len(head) <= room else head[:room - 3].rstrip() + "...") + tail


NO_DRAFT_TO_REMEMBER_SMS = ("No draft to take the sender from. Reply K7 remember <what> for a draft's sender, "
                            "or remember all <what> for everyone.")
