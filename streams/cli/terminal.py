"""What the operator's commands print of what came from outside (Kafka keys,
values and headers, error texts): one line each, with nothing a terminal acts
on. Control, format (bidi overrides), separator and unassigned characters are
shown as Python escapes (``\\x1b``, ``\\u202e``); letters in any script are kept.
"""

from __future__ import annotations

import unicodedata

#: Unicode categories a terminal may act on or a reader cannot see.
HIDDEN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def for_terminal(text: str) -> str:
    """``text`` with every control, format or separator character escaped."""
    return "".join(_escape(char) if unicodedata.category(char) in HIDDEN else char for char in text)
