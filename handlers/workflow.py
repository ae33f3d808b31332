"""The workflow state machine: every rule about states lives here.

The states, the allowed transitions, the named groups of states the API,
health and SQL queries use, the stages of the pipeline, where a retry
restarts, what a timeout does, and what each state means for the Email
Monitor's ``processed_emails.status`` (docs/contracts.md §1).

Pure data and functions: no I/O. The repository consults :func:`check_transition`
before it touches the database, so an illegal move is a programming error that
never reaches PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
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
    #: Added by this service: a rule said the email gets no draft (a no-reply
    #: sender, the account itself, SKIP_SENDERS).
    FILTERED = "filtered"
    #: Added by this service: the person replied from their own mail client
    #: (a reply in the Sent folder names the email in In-Reply-To).
    ANSWERED_ELSEWHERE = "answered_elsewhere"
    #: Added by this service: a newer email of the same thread took over; its
    #: draft answers both.
    SUPERSEDED = "superseded"
    #: Added by this service: the email belongs to no person of the
    #: deployment (its mailbox is nobody's, and there is no default person).
    UNROUTED = "unrouted"


S = WorkflowState

class Stage(StrEnum):
    """The steps of the pipeline that call a peer, each run by the agent of
    the same name. Stored in ``workflow_state.failed_stage`` when one gives up."""

    DRAFT = "draft"  # ask the AI Reply Generator for a draft
    NOTIFY = "notify"  # put the draft on the person's phone
    COMMAND = "command"  # act on the person's SMS answer
    SEND = "send"  # send the approved reply through SMTP


#: States in which a workflow has reached a decision. ``failed`` and ``timeout``
#: are terminal until a person asks for a retry.
TERMINAL_STATES: frozenset[WorkflowState] = frozenset(
    {S.REPLY_SENT, S.USER_IGNORED, S.FAILED, S.TIMEOUT, S.FILTERED, S.ANSWERED_ELSEWHERE, S.SUPERSEDED,
     S.UNROUTED}
)
#: Decisions that ended the workflow as meant (everything terminal but ``failed``).
COMPLETED_STATES: frozenset[WorkflowState] = TERMINAL_STATES - {S.FAILED}
#: Workflows still under way.
OPEN_STATES: frozenset[WorkflowState] = frozenset(S) - TERMINAL_STATES
#: The draft is on the phone, waiting for the person's answer.
AWAITING_STATES: frozenset[WorkflowState] = frozenset({S.AWAITING_USER})
#: Open and not waiting for the person: the orchestrator is working on them.
IN_PROGRESS_STATES: frozenset[WorkflowState] = OPEN_STATES - AWAITING_STATES
#: Emails that will want the phone: being drafted or drafted and not yet
#: presented. The draft SMS tells the person how many of these wait.
QUEUED_FOR_PHONE_STATES: frozenset[WorkflowState] = frozenset(
    {S.PENDING, S.AI_GENERATING, S.AI_GENERATED}
)
#: A draft in this state is ready to be put on the phone.
READY_STATE = S.AI_GENERATED
#: A draft the person may decide on (by SMS with its code, or from the
#: dashboard): texted and waiting, or drafted and not yet texted.
DECIDABLE_STATES: frozenset[WorkflowState] = frozenset({S.AWAITING_USER, S.AI_GENERATED})
#: Open workflows that a reply from elsewhere, or a newer email of the
#: thread, may close: any open state but those in the middle of a side
#: effect (a draft being texted, a reply approved or being sent).
CLOSABLE_STATES: frozenset[WorkflowState] = frozenset(
    {S.PENDING, S.AI_GENERATING, S.AI_GENERATED, S.AWAITING_USER, S.USER_EDIT_REQUESTED}
)
_CLOSED_FROM_OUTSIDE = frozenset({S.ANSWERED_ELSEWHERE, S.SUPERSEDED})

#: Every move the orchestrator may make, and no other. Any non-terminal state
#: may fail; retries leave ``failed``/``timeout`` for the stage to redo.
TRANSITIONS: Mapping[WorkflowState, frozenset[WorkflowState]] = {
    S.PENDING: frozenset({S.AI_GENERATING, S.FILTERED, S.FAILED, S.UNROUTED}) | _CLOSED_FROM_OUTSIDE,
    S.AI_GENERATING: frozenset({S.AI_GENERATED, S.FAILED}) | _CLOSED_FROM_OUTSIDE,
    # A drafted email may be decided before it is texted (the dashboard, a code from `list`).
    S.AI_GENERATED: frozenset({S.SMS_SENDING, S.FAILED, S.USER_APPROVED, S.USER_EDIT_REQUESTED,
                               S.USER_IGNORED}) | _CLOSED_FROM_OUTSIDE,
    # A draft the gateway would not take goes back to waiting for the phone.
    S.SMS_SENDING: frozenset({S.AWAITING_USER, S.AI_GENERATED, S.FAILED}),
    # A draft whose SMS the gateway reports failed (sms:failed) waits for the phone again.
    S.AWAITING_USER: frozenset(
        {S.USER_APPROVED, S.USER_EDIT_REQUESTED, S.USER_IGNORED, S.TIMEOUT, S.FAILED, S.AI_GENERATED}
    ) | _CLOSED_FROM_OUTSIDE,
    S.USER_EDIT_REQUESTED: frozenset({S.AI_GENERATING, S.FAILED}) | _CLOSED_FROM_OUTSIDE,
    # A reply scheduled for later (send_at) and not yet sent may be taken back: `cancel`.
    # A reply scheduled for later that has not begun to leave may be taken back
    # (cancel) or found answered from the mail client (guarded by the stages).
    S.USER_APPROVED: frozenset({S.REPLY_SENT, S.FAILED, S.AWAITING_USER, S.ANSWERED_ELSEWHERE}),
    S.USER_IGNORED: frozenset(),
    S.REPLY_SENT: frozenset(),
    S.FILTERED: frozenset(),
    S.ANSWERED_ELSEWHERE: frozenset(),
    S.SUPERSEDED: frozenset(),
    S.UNROUTED: frozenset(),
    # Retry restarts at the stage that failed: drafting, presenting or sending.
    S.FAILED: frozenset({S.PENDING, S.AI_GENERATED, S.USER_APPROVED}),
    # A timed-out draft can be put back on the phone.
    S.TIMEOUT: frozenset({S.AI_GENERATED}),
}

class EmailStatus(StrEnum):
    """``processed_emails.status`` (docs/contracts.md §1): the Email Monitor
    writes ``pending`` and ``filtered``; the orchestrator writes the rest."""

    PENDING = "pending"
    FILTERED = "filtered"
    #: Added by this service: the person replied from their own mail client
    #: (a reply in the Sent folder names the email in In-Reply-To).
    ANSWERED_ELSEWHERE = "answered_elsewhere"
    #: Added by this service: a newer email of the same thread took over; its
    #: draft answers both.
    SUPERSEDED = "superseded"
    #: Added by this service: no person of the deployment has the mailbox it came to.
    UNROUTED = "unrouted"
    ORCHESTRATING = "orchestrating"
    SENT = "sent"
    IGNORED = "ignored"
    FAILED = "failed"
    TIMEOUT = "timeout"


#: ``processed_emails.status`` written when a workflow enters these states.
#: Other states leave the email as it is.
EMAIL_STATUS_ON_ENTRY: Mapping[WorkflowState, EmailStatus] = {
    S.PENDING: EmailStatus.ORCHESTRATING,
    S.AI_GENERATED: EmailStatus.ORCHESTRATING,
    S.USER_APPROVED: EmailStatus.ORCHESTRATING,
    S.REPLY_SENT: EmailStatus.SENT,
    S.USER_IGNORED: EmailStatus.IGNORED,
    S.FAILED: EmailStatus.FAILED,
    S.TIMEOUT: EmailStatus.TIMEOUT,
    S.FILTERED: EmailStatus.FILTERED,
    # The email was answered (by the person, from their mail client).
    S.ANSWERED_ELSEWHERE: EmailStatus.SENT,
    # The email gets no reply of its own: the newer one's reply answers it.
    S.SUPERSEDED: EmailStatus.IGNORED,
    S.UNROUTED: EmailStatus.UNROUTED,
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


def email_status_for(state: WorkflowState) -> EmailStatus | None:
    """The ``processed_emails.status`` implied by entering ``state``, if any."""
    return EMAIL_STATUS_ON_ENTRY.get(state)


def is_terminal(state: WorkflowState) -> bool:
    """Whether ``state`` is a decision (sent, ignored, failed, timed out)."""
    return state in TERMINAL_STATES


def names(states: frozenset[WorkflowState]) -> list[str]:
    """The stored names of ``states``, sorted: a parameter for SQL (``= ANY(%s)``)."""
    return sorted(state.value for state in states)


# ------------------------------------------------------------------ retries


#: Where a retry restarts, by the stage that failed: the state the workflow
#: re-enters, and the stage that then runs again (through its topic).
RESTART_AT: Mapping[Stage, tuple[WorkflowState, Stage]] = {
    Stage.DRAFT: (S.PENDING, Stage.DRAFT),
    Stage.NOTIFY: (S.AI_GENERATED, Stage.NOTIFY),
    Stage.SEND: (S.USER_APPROVED, Stage.SEND),
}


_STAGES_BY_NAME = {stage.value: stage for stage in Stage}


@dataclass(frozen=True)
class Restart:
    """What a retry does: enter ``state``, then run ``stage`` again."""

    state: WorkflowState
    stage: Stage


def plan_retry(state: WorkflowState, failed_stage: str | None, has_draft: bool) -> Restart | None:
    """Where a retry of a workflow in ``state`` restarts, or None when only a
    failed or timed-out workflow may be retried.

    A timed-out draft goes back on the phone. A failed workflow restarts at
    the stage that failed; one whose stage is unknown (a row from the deployed
    service) or that has no draft to present starts again from drafting.
    """
    if state is S.TIMEOUT:
        return Restart(S.AI_GENERATED, Stage.NOTIFY)
    if state is not S.FAILED:
        return None
    stage_that_failed = _STAGES_BY_NAME.get(failed_stage or "", Stage.DRAFT)
    target, stage = RESTART_AT.get(stage_that_failed, RESTART_AT[Stage.DRAFT])
    if target is S.AI_GENERATED and not has_draft:
        target, stage = RESTART_AT[Stage.DRAFT]
    return Restart(target, stage)


# ----------------------------------------------------------------- timeouts

#: Only a draft on the phone can time out; it then ends in ``timeout``.
TIMES_OUT_FROM = S.AWAITING_USER
TIMES_OUT_TO = S.TIMEOUT


def frees_the_phone(state: WorkflowState) -> bool:
    """Whether a draft on the phone that enters ``state`` gives the phone up:
    any decision does; an edit keeps the phone for the regenerated draft."""
    return is_terminal(state)
