"""The workflow repository: every write to workflow state goes through here.

A transition is a compare-and-set (``UPDATE ... WHERE current_state =
expected``) that, in the same transaction, writes the audit row, follows
``processed_emails.status``, and queues the ``workflow.events`` record (and any
other message the caller adds) in the outbox. Losing the race is not an error:
:meth:`Transaction.transition` returns False and changes nothing, which is how
a redelivered Kafka message does no harm.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from handlers.clock import Clock
from handlers.messages import TopicMessage, WorkflowEvent
from handlers.workflow import WorkflowState, check_transition, email_status_for

from . import topics

#: Columns a transition may set besides the state columns.
SETTABLE_COLUMNS = frozenset(
    {
        "email_subject",
        "email_from",
        "email_to",
        "email_body_preview",
        "email_received_at",
        "ai_reply_text",
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
        "error_message",
        "failed_stage",
        "retry_count",
        "timeout_at",
    }
)

Pool = AsyncConnectionPool[psycopg.AsyncConnection[dict[str, Any]]]


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
    error_message: str | None = None
    failed_stage: str | None = None
    retry_count: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None
    timeout_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Workflow:
        names = cls.__dataclass_fields__
        values = {k: v for k, v in row.items() if k in names}
        values["current_state"] = WorkflowState(row["current_state"])
        values["edit_iteration"] = row.get("edit_iteration") or 0
        values["retry_count"] = row.get("retry_count") or 0
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


class Transaction:
    """Work inside one database transaction; see :meth:`WorkflowRepository.transaction`."""

    def __init__(self, conn: psycopg.AsyncConnection[dict[str, Any]], clock: Clock) -> None:
        self.conn = conn
        self.clock = clock
        #: SMS texts for the person, to send once this transaction has committed.
        self.sms_after_commit: list[str] = []

    async def get(self, message_id: str, *, for_update: bool = False) -> Workflow | None:
        """The workflow of ``message_id``; ``for_update`` locks the row until commit."""
        query = "SELECT * FROM workflow_state WHERE message_id = %s"
        if for_update:
            query += " FOR UPDATE"
        cur = await self.conn.execute(query, (message_id,))
        row = await cur.fetchone()
        return Workflow.from_row(row) if row else None

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
        column. Returns whether this call won the compare-and-set.
        """
        sources = (expected,) if isinstance(expected, WorkflowState) else tuple(expected)
        for source in sources:
            check_transition(source, new)
        unknown = set(fields) - SETTABLE_COLUMNS
        if unknown:
            raise ValueError(f"not settable workflow columns: {sorted(unknown)}")

        assignments = [
            sql.SQL("current_state = {}").format(sql.Literal(new.value)),
            sql.SQL("previous_state = current_state"),
            sql.SQL("updated_at = {}").format(sql.Placeholder("now")),
        ]
        params: dict[str, Any] = {"now": self.clock.now(), "message_id": message_id}
        for name, value in fields.items():
            assignments.append(sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name)))
            params[name] = json.dumps(value) if name == "edit_history" else value
        params["sources"] = [s.value for s in sources]
        query = sql.SQL(
            "UPDATE workflow_state SET {} WHERE message_id = %(message_id)s"
            " AND current_state = ANY(%(sources)s) RETURNING previous_state"
        ).format(sql.SQL(", ").join(assignments))
        cur = await self.conn.execute(query, params)
        row = await cur.fetchone()
        if row is None:
            return False
        previous = row["previous_state"]
        await self.conn.execute(
            "INSERT INTO workflow_audit_log"
            " (message_id, from_state, to_state, transition_reason, error_details, created_at)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (message_id, previous, new.value, reason, error, params["now"]),
        )
        status = email_status_for(new)
        if status is not None:
            await self.set_email_status(message_id, status, error=error)
        await self.publish(
            topics.WORKFLOW_EVENTS,
            message_id,
            WorkflowEvent(
                message_id=message_id,
                from_state=previous,
                to_state=new.value,
                reason=reason,
                error=error,
                at=params["now"],
            ),
        )
        return True

    async def claim_pending_emails(self, limit: int) -> list[Email]:
        """Take up to ``limit`` pending emails, oldest first, marking them ``orchestrating``.

        ``FOR UPDATE SKIP LOCKED``: two pollers never claim the same email.
        """
        cur = await self.conn.execute(
            "WITH picked AS ("
            "  SELECT id FROM processed_emails WHERE status = 'pending'"
            "  ORDER BY received_at, id LIMIT %s FOR UPDATE SKIP LOCKED)"
            " UPDATE processed_emails p SET status = 'orchestrating', updated_at = %s"
            " FROM picked WHERE p.id = picked.id RETURNING p.*",
            (limit, self.clock.now()),
        )
        rows = await cur.fetchall()
        emails = [Email.from_row(row) for row in rows]
        return sorted(emails, key=lambda e: e.received_at)

    async def create_workflow(self, email: Email, *, body_preview: str, reason: str) -> bool:
        """Start the workflow of ``email`` in ``pending``, audited; False if one exists."""
        now = self.clock.now()
        cur = await self.conn.execute(
            "INSERT INTO workflow_state (message_id, email_subject, email_from, email_to,"
            " email_body_preview, email_received_at, current_state, created_at, updated_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, 'pending', %s, %s)"
            " ON CONFLICT (message_id) DO NOTHING RETURNING message_id",
            (
                email.message_id,
                email.subject,
                email.from_address,
                ", ".join(email.to_addresses or []),
                body_preview,
                email.received_at,
                now,
                now,
            ),
        )
        if await cur.fetchone() is None:
            return False
        await self.conn.execute(
            "INSERT INTO workflow_audit_log (message_id, from_state, to_state, transition_reason, created_at)"
            " VALUES (%s, NULL, 'pending', %s, %s)",
            (email.message_id, reason, now),
        )
        await self.publish(
            topics.WORKFLOW_EVENTS,
            email.message_id,
            WorkflowEvent(
                message_id=email.message_id, from_state=None, to_state="pending", reason=reason, at=now
            ),
        )
        return True

    async def email(self, message_id: str) -> Email | None:
        cur = await self.conn.execute(
            "SELECT * FROM processed_emails WHERE message_id = %s", (message_id,)
        )
        row = await cur.fetchone()
        return Email.from_row(row) if row else None

    async def set_email_status(self, message_id: str, status: str, *, error: str | None = None) -> None:
        """Write ``processed_emails.status`` (and its error message when failing)."""
        await self.conn.execute(
            "UPDATE processed_emails SET status = %s, error_message = COALESCE(%s, error_message),"
            " updated_at = %s WHERE message_id = %s",
            (status, error, self.clock.now(), message_id),
        )

    async def publish(self, topic: str, key: str | None, message: TopicMessage) -> None:
        """Queue ``message`` for ``topic``; it is published after commit, never before."""
        await self.conn.execute(
            "INSERT INTO kafka_outbox (topic, message_key, payload) VALUES (%s, %s, %s)",
            (topic, key, message.to_json()),
        )


class WorkflowRepository:
    """Reads and compare-and-set writes of workflows over a connection pool."""

    def __init__(self, pool: Pool, clock: Clock) -> None:
        self.pool = pool
        self.clock = clock

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """One transaction: committed when the block exits, rolled back if it raises."""
        async with self.pool.connection() as conn:
            async with conn.transaction():
                yield Transaction(conn, self.clock)

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
        """:meth:`Transaction.transition` in a transaction of its own."""
        async with self.transaction() as tx:
            return await tx.transition(message_id, expected, new, reason, error=error, **fields)

    async def get(self, message_id: str) -> Workflow | None:
        async with self.transaction() as tx:
            return await tx.get(message_id)

    async def audit_trail(self, message_id: str) -> Sequence[AuditEntry]:
        """The audit rows of ``message_id``, oldest first."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, from_state, to_state, transition_reason, error_details, created_at"
                " FROM workflow_audit_log WHERE message_id = %s ORDER BY id",
                (message_id,),
            )
            return [AuditEntry(**row) for row in await cur.fetchall()]
