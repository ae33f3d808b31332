"""Lessons: what the person taught by editing, remembered for later drafts
(docs/design.md, "It learns from you")."""

from __future__ import annotations

from handlers.commands import Command
from handlers.sms_text import HELP_SMS
from streams.stages.context import StageContext
from streams.storage.protocol import RepositoryTransaction
from streams.storage.records import Workflow


async def answer(ctx: StageContext, tx: RepositoryTransaction, cmd: Command,
                 wf: Workflow | None) -> tuple[str, str | None]:
    """``remember …`` and ``forget`` for the draft ``wf`` (the one the answer
    names, or the latest); returns the outcome to record and the SMS to text."""
    return "help", HELP_SMS
