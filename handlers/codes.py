"""The short code that names a draft on the phone (docs/contracts.md §5).

A code is a letter followed by digits: ``K7``, then ``K72`` when the person
has many drafts open, then ``K723``. It is easy to type on a phone (one
switch from letters to digits) and hard to misread: no letter that looks like
a digit or another letter (``I``, ``L``, ``O``, ``Q``) and no digit that looks
like a letter (``0``, ``1``). A code always begins with a letter and every
command with a digit or a word without digits, so the first word of an answer
says which it is (see handlers/commands.py). Pure: no I/O.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Collection

LETTERS = "ABCDEFGHJKMNPRSTUVWXYZ"
DIGITS = "23456789"
#: The longest code: a letter and three digits (11,264 codes).
MAX_DIGITS = 3

CODE_PATTERN = rf"[{LETTERS}][{DIGITS}]{{1,{MAX_DIGITS}}}"
_CODE = re.compile(rf"^{CODE_PATTERN}$", re.IGNORECASE)
#: A code is only taken from the short lengths while they are at most this full,
#: so a new code is found at the first random try or soon after.
FULLNESS = 0.5


def is_code(token: str) -> bool:
    """Whether ``token`` has the shape of a code (``k7`` does: case is ignored)."""
    return bool(_CODE.match(token))


def normalise(token: str) -> str:
    return token.upper()


def capacity(digits: int) -> int:
    return int(len(LETTERS) * len(DIGITS) ** digits)


def new_code(taken: Collection[str], rng: random.Random | None = None) -> str:
    """A code no open draft has: the shortest length that is at most half
    full, picked at random (so a code just given up is seldom given again
    soon). ``taken``: the codes of the open drafts."""
    return new_codes(1, taken, rng)[0]


def _all_digits(n: int) -> list[str]:
    found = [""]
    for _ in range(n):
        found = [head + d for head in found for d in DIGITS]
    return found


def new_codes(count: int, taken: Collection[str], rng: random.Random | None = None) -> list[str]:
    """``count`` distinct new codes (see :func:`new_code`), in time linear in
    ``count`` and ``taken``."""
    rng = rng or random.SystemRandom()
    used = {normalise(code) for code in taken}
    by_length = Counter(len(code) for code in used)
    codes: list[str] = []
    for _ in range(count):
        code = _pick(used, by_length, rng)
        used.add(code)
        by_length[len(code)] += 1
        codes.append(code)
    return codes


def _pick(used: set[str], by_length: Counter[int], rng: random.Random) -> str:
    for digits in range(1, MAX_DIGITS + 1):
        if by_length[digits + 1] < capacity(digits) * FULLNESS or digits == MAX_DIGITS:
            for _ in range(64):
                code = rng.choice(LETTERS) + "".join(rng.choice(DIGITS) for _ in range(digits))
                if code not in used:
                    return code
    free = (a + b for a in LETTERS for b in _all_digits(MAX_DIGITS) if a + b not in used)
    last = next(free, None)
    if last is None:
        raise RuntimeError(f"all {capacity(MAX_DIGITS)} draft codes are in use")
    return last
