"""The workflow state machine: states, the allowed transitions, and what each
state means for the Email Monitor's ``processed_emails.status``.

Pure data and functions: no I/O. The repository consults :func:`check_transition`
before it touches the database, so an illegal move is a programming error that
never reaches PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class WorkflowState(StrEnum):
    """The deployed service's state names (stored verbatim in ``workflow_state``)."""

    PENDING = "pending"
    AI_GENERATING = "ai_generating"
    AI_GENERATED = "ai_generated"
    SMS_SENDING = "sms_sending"
    AWAITING_USER = "awaiting_user"
    USER_APPROVED = "user_approved"
    USER_EDIT_REQUESTED = "user_edit_requested"
    USER_IGNORED = "user_ignored"
    REPLY_SENT = "reply_sent"
    FAILED = "failed"
    TIMEOUT = "timeout"


S = WorkflowState

#: States in which a workflow has reached a decision. ``failed`` and ``timeout``
#: are terminal until a person asks for a retry.
TERMINAL_STATES: frozenset[WorkflowState] = frozenset(
    {S.REPLY_SENT, S.USER_IGNORED, S.FAILED, S.TIMEOUT}
)

#: Every move the orchestrator may make, and no other. Any non-terminal state
#: may fail; retries leave ``failed``/``timeout`` for the stage to redo.
TRANSITIONS: Mapping[WorkflowState, frozenset[WorkflowState]] = {
    S.PENDING: frozenset({S.AI_GENERATING, S.FAILED}),
    S.AI_GENERATING: frozenset({S.AI_GENERATED, S.FAILED}),
    S.AI_GENERATED: frozenset({S.SMS_SENDING, S.FAILED}),
    S.SMS_SENDING: frozenset({S.AWAITING_USER, S.FAILED}),
    S.AWAITING_USER: frozenset(
        {S.USER_APPROVED, S.USER_EDIT_REQUESTED, S.USER_IGNORED, S.TIMEOUT, S.FAILED}
    ),
    S.USER_EDIT_REQUESTED: frozenset({S.AI_GENERATING, S.FAILED}),
    S.USER_APPROVED: frozenset({S.REPLY_SENT, S.FAILED}),
    S.USER_IGNORED: frozenset(),
    S.REPLY_SENT: frozenset(),
    # Retry restarts at the stage that failed: drafting, presenting or sending.
    S.FAILED: frozenset({S.PENDING, S.AI_GENERATED, S.USER_APPROVED}),
    # A timed-out draft can be put back on the phone.
    S.TIMEOUT: frozenset({S.AI_GENERATED}),
}

#: ``processed_emails.status`` written when a workflow enters these states
#: (CONTRACTS.md §1). Other states leave the email as it is.
EMAIL_STATUS_ON_ENTRY: Mapping[WorkflowState, str] = {
    S.PENDING: "orchestrating",
    S.AI_GENERATED: "orchestrating",
    S.USER_APPROVED: "orchestrating",
    S.REPLY_SENT: "sent",
    S.USER_IGNORED: "ignored",
    S.FAILED: "failed",
    S.TIMEOUT: "timeout",
}


class IllegalTransitionError(ValueError):
    """A transition the state machine does not allow (a programming error)."""

    def __init__(self, source: WorkflowState, target: WorkflowState) -> None:
        super().__init__(f"illegal workflow transition {source.value} -> {target.value}")
        self.source = source
        self.target = target


def is_allowed(source: WorkflowState, target: WorkflowState) -> bool:
    """Whether the state machine allows ``source -> target``."""
    return target in TRANSITIONS[source]


def check_transition(source: WorkflowState, target: WorkflowState) -> None:
    """Raise :class:`IllegalTransitionError` unless ``source -> target`` is allowed."""
    if not is_allowed(source, target):
        raise IllegalTransitionError(source, target)


def email_status_for(state: WorkflowState) -> str | None:
    """The ``processed_emails.status`` implied by entering ``state``, if any."""
    return EMAIL_STATUS_ON_ENTRY.get(state)


def is_terminal(state: WorkflowState) -> bool:
    """Whether ``state`` is a decision (sent, ignored, failed, timed out)."""
    return state in TERMINAL_STATES
