"""Transitions: the compare-and-set of ``workflow_state.current_state``.

``UPDATE ... WHERE current_state = expected`` that, in the same transaction,
writes the audit row, follows ``processed_emails.status``, frees the phone on a
decision and queues the ``workflow.events`` record in the outbox. Losing the
race is not an error: it returns False and changes nothing, which is how a
redelivered Kafka message does no harm.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any

from psycopg import sql

from handlers.messages import PhoneFreed, Publishable, WorkflowEvent
from handlers.workflow import WorkflowState, check_transition, email_status_for, frees_the_phone, is_terminal
from streams.storage.intake import Intake
from streams.storage.phone import PhoneSlot

#: Columns a transition may set besides the state columns.
SETTABLE_COLUMNS = frozenset(
    {
        "email_subject",
        "email_from",
        "email_to",
        "email_body_preview",
        "email_received_at",
        "ai_reply_text",
        "ai_first_draft",
        "ai_reply_generated_at",
        "ai_draft_id",
        "ai_model_version",
        "sms_message_id",
        "sms_sent_at",
        "sms_phone_number",
        "user_command",
        "user_edit_instructions",
        "user_responded_at",
        "edit_iteration",
        "edit_history",
        "reply_sent_at",
        "reply_message_id",
        "send_attempted_at",
        "reminded_at",
        "error_message",
        "failed_stage",
        "retry_count",
        "timeout_at",
        "presented_at",
        "draft_code",
        "lesson_ids",
        "send_at",
        "send_released_at",
    }
)

#: A workflow that moves on is no longer parked nor leased.
UNPARK = ("park_stage = NULL, park_peer = NULL, park_reason = NULL, parked_since = NULL,"
          " park_attempts = 0, next_attempt_at = NULL, lease_until = NULL")


class Transitions(Intake):
    """Compare-and-set moves of workflows, audited, published."""

    phone: PhoneSlot

    async def transition(
        self,
        message_id: str,
        expected: WorkflowState | Collection[WorkflowState],
        new: WorkflowState,
        reason: str,
        *,
        error: str | None = None,
        **fields: Any,
    ) -> bool:
        """Move ``message_id`` from ``expected`` to ``new`` if it is still there.

        ``expected`` may be several states (the row's actual one is audited).
        Raises :class:`~handlers.workflow.IllegalTransitionError` before any
        I/O when a move is not allowed, and :class:`ValueError` for an unknown
        column. Returns whether this call won the compare-and-set. When the
        workflow held the phone and ``new`` is a decision, the phone is freed
        and a ``phone.freed`` message queued.
        """
        return bool(await self.transition_many([message_id], expected, new, reason, error=error, **fields))

    async def transition_many(
        self,
        message_ids: Sequence[str],
        expected: WorkflowState | Collection[WorkflowState],
        new: WorkflowState,
        reason: str,
        *,
        error: str | None = None,
        **fields: Any,
    ) -> list[str]:
        """:meth:`transition` for several workflows at once, each with the same
        reason and columns; returns those that moved, in the order given.

        The same statements whatever the number: one compare-and-set for all
        of them, then the audit rows and the outbox rows each in one
        ``executemany``, ``processed_emails.status`` and the phone in one
        statement each. Rows are locked in id order, so two batches that share
        workflows cannot deadlock.
        """
        sources = (expected,) if isinstance(expected, WorkflowState) else tuple(expected)
        for source in sources:
            check_transition(source, new)
        unknown = set(fields) - SETTABLE_COLUMNS
        if unknown:
            raise ValueError(f"not settable workflow columns: {sorted(unknown)}")
        if not message_ids:
            return []

        assignments = [
            sql.SQL("current_state = {}").format(sql.Placeholder("new")),
            sql.SQL("previous_state = w.current_state"),
            sql.SQL("updated_at = {}").format(sql.Placeholder("now")),
            sql.SQL(UNPARK),
            sql.SQL("present_requested_at = NULL"),  # a request to see the draft is answered by any move
        ]
        now = self.clock.now()
        params: dict[str, Any] = {"now": now, "message_ids": list(message_ids), "new": new.value,
                                  "sources": [s.value for s in sources]}
        if is_terminal(new) and "draft_code" not in fields:
            assignments.append(sql.SQL("draft_code = NULL"))  # a decided draft gives its code up
        for name, value in fields.items():
            assignments.append(sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name)))
            params[name] = json.dumps(value) if name == "edit_history" else value
        query = sql.SQL(
            "WITH moving AS (SELECT id FROM workflow_state WHERE message_id = ANY(%(message_ids)s)"
            " AND current_state = ANY(%(sources)s) ORDER BY id FOR UPDATE)"
            " UPDATE workflow_state w SET {} FROM moving WHERE w.id = moving.id"
            " RETURNING w.message_id, w.previous_state"
        ).format(sql.SQL(", ").join(assignments))
        cur = await self.conn.execute(query, params)
        previous = {row["message_id"]: row["previous_state"] for row in await cur.fetchall()}
        moved = [m for m in dict.fromkeys(message_ids) if m in previous]
        if not moved:
            return []
        await self._audit_many([(m, previous[m], new.value, reason, error, now) for m in moved])
        status = email_status_for(new)
        if status is not None:
            await self.set_email_status(moved, status, error=error)
        events: list[Publishable] = [
            WorkflowEvent(message_id=m, from_state=previous[m], to_state=new.value, reason=reason, error=error,
                          at=now) for m in moved]
        if frees_the_phone(new):
            for phone, m in await self.phone.release(moved):
                events.append(PhoneFreed(phone_number=phone, message_id=m, to_state=new.value))
        await self.publish_many(events)
        return moved
