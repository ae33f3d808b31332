"""Edits accumulate: the generator is stateless, so every regeneration is sent
the previous draft and every instruction given so far (docs/design.md)."""

from __future__ import annotations

from collections.abc import Sequence


def context_instructions(previous_draft: str | None, instructions: Sequence[str]) -> str:
    """The ``context_instructions`` for a regeneration.

    ``instructions`` are oldest first; the last one is the newest request.
    """
    lines = []
    if previous_draft:
        lines += ["Revise this previous draft of the reply:", '"""', previous_draft.strip(), '"""', ""]
    lines.append("Apply every instruction below, in order; later ones refine earlier ones, "
                 "and none is dropped:")
    lines += [f"{n}. {text.strip()}" for n, text in enumerate(instructions, start=1)]
    return "\n".join(lines)
