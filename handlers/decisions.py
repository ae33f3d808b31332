"""What a command does to the draft on the phone (pure).

The caller supplies the state of the workflow whose draft is on the phone (or
None) and performs what the decision says: one transition out of
``awaiting_user`` at most, and perhaps an SMS back.
"""

from __future__ import annotations

from dataclasses import dataclass

from .commands import Command, CommandKind
from .sms_text import HELP_SMS, NOTHING_WAITING_SMS, render_edit_limit_sms
from .workflow import WorkflowState


@dataclass(frozen=True)
class CommandDecision:
    outcome: str
    target: WorkflowState | None = None
    reply_sms: str | None = None


def decide_command(
    command: Command, state: WorkflowState | None, edit_iteration: int, max_edits: int
) -> CommandDecision:
    if command.kind is CommandKind.UNKNOWN:
        return CommandDecision("help", reply_sms=HELP_SMS)
    if state is not WorkflowState.AWAITING_USER:
        return CommandDecision("nothing_waiting", reply_sms=NOTHING_WAITING_SMS)
    if command.kind is CommandKind.APPROVE:
        return CommandDecision("approved", WorkflowState.USER_APPROVED)
    if command.kind is CommandKind.IGNORE:
        return CommandDecision("ignored", WorkflowState.USER_IGNORED)
    if edit_iteration >= max_edits:
        return CommandDecision("edit_limit", reply_sms=render_edit_limit_sms(max_edits))
    return CommandDecision("edit_requested", WorkflowState.USER_EDIT_REQUESTED)
