"""The rows the orchestrator reads, as frozen values.

``Workflow`` is a ``workflow_state`` row, ``Email`` a ``processed_emails`` row
(the Email Monitor's table, docs/contracts.md §1), ``AuditEntry`` a
``workflow_audit_log`` row. The repository builds them; everything else only
reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from handlers.deliveries import DeliveryReport
from handlers.workflow import WorkflowState


@dataclass(frozen=True)
class Workflow:
    """One row of ``workflow_state`` (the columns the orchestrator reads)."""

    message_id: str
    current_state: WorkflowState
    previous_state: str | None
    email_subject: str | None
    email_from: str | None
    email_to: str | None
    email_body_preview: str | None
    email_received_at: datetime | None
    ai_reply_text: str | None
    ai_reply_generated_at: datetime | None
    sms_message_id: str | None
    sms_sent_at: datetime | None
    sms_phone_number: str | None
    user_command: str | None
    user_edit_instructions: str | None
    user_responded_at: datetime | None
    edit_iteration: int
    edit_history: list[dict[str, Any]] = field(default_factory=list)
    reply_sent_at: datetime | None = None
    reply_message_id: str | None = None
    send_attempted_at: datetime | None = None
    reminded_at: datetime | None = None
    park_stage: str | None = None
    park_peer: str | None = None
    park_reason: str | None = None
    parked_since: datetime | None = None
    park_attempts: int = 0
    next_attempt_at: datetime | None = None
    lease_until: datetime | None = None
    trace_id: str | None = None
    ai_first_draft: str | None = None
    error_message: str | None = None
    failed_stage: str | None = None
    retry_count: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None
    timeout_at: datetime | None = None
    #: What the gateway last reported of the draft SMS ``sms_message_id``
    #: (``handlers.deliveries.Delivery``), the gateway's time of it, a failure's reason.
    sms_delivery_status: str | None = None
    sms_delivery_at: datetime | None = None
    sms_delivery_error: str | None = None
    #: The draft's short code on the phone while the workflow is open (handlers/codes.py).
    draft_code: str | None = None
    #: When the draft now held was put on the phone.
    presented_at: datetime | None = None
    #: How many older drafts of its thread this email's arrival closed
    #: (``superseded``): only then are the earlier emails read for its drafts.
    supersedes: int = 0
    #: 1 (``handlers.senders.VIP_PRIORITY``) for a sender who comes first, else 0: set at intake.
    priority: int = 0
    #: The lessons (``lessons.id``) the draft now held was written with (handlers/lessons.py).
    lesson_ids: list[int] | None = None
    #: A reply approved for later leaves at this moment (docs/design.md, "Send later").
    send_at: datetime | None = None
    #: When the sweep queued that scheduled reply's ``replies.approved`` (once).
    send_released_at: datetime | None = None
    #: Whose email it is (handlers/people.py): 0 the default person, None nobody's.
    person_id: int | None = 0

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Workflow:
        names = cls.__dataclass_fields__
        values = {k: v for k, v in row.items() if k in names}
        values["current_state"] = WorkflowState(row["current_state"])
        values["edit_iteration"] = row.get("edit_iteration") or 0
        values["retry_count"] = row.get("retry_count") or 0
        values["park_attempts"] = row.get("park_attempts") or 0
        values["edit_history"] = row.get("edit_history") or []
        return cls(**values)


@dataclass(frozen=True)
class Email:
    """One row of ``processed_emails`` (the columns the orchestrator reads)."""

    message_id: str
    subject: str | None
    from_address: str
    to_addresses: list[str] | None
    received_at: datetime
    status: str
    body_text: str | None = None
    body_html: str | None = None
    in_reply_to: str | None = None
    thread_id: str | None = None
    #: The mailbox that received it, when the monitor serves several (docs/contracts.md §1).
    mailbox: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Email:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in row.items() if k in names})


@dataclass(frozen=True)
class AuditEntry:
    """One row of ``workflow_audit_log``."""

    id: int
    from_state: str | None
    to_state: str
    transition_reason: str | None
    error_details: str | None
    created_at: datetime


@dataclass(frozen=True)
class Question:
    """An ``all 3`` asked of the person (``phone_conversation.confirm_*``):
    the drafts a ``yes`` would ignore (empty once another answer came), until
    when, and when it was asked."""

    ids: list[str]
    until: datetime
    asked_at: datetime


@dataclass(frozen=True)
class DeliveryRecorded:
    """What recording a delivery report found (``tx.record_delivery``,
    ``tx.adopt_deliveries``): whether it is news (not a redelivery), the
    workflow whose draft SMS it reports (as it is now), and, for that
    workflow, the failure reports so far and when the first came."""

    fresh: bool
    workflow: Workflow | None = None
    #: The failure report among those recorded now, if any.
    failed: DeliveryReport | None = None
    failures: int = 0
    first_failure_at: datetime | None = None
