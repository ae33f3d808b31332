"""What every part of a transaction shares: its connection, its clock, the
messages it queued, reading a workflow, and the audit rows.

The parts (intake, transitions, parking, sending, the outbox, the phone slot
and the SMS ledger) are put together as :class:`streams.storage.repository.Transaction`;
docs/database.md says which module holds what.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from handlers.clock import Clock
from handlers.messages import Publishable
from streams.storage.records import Workflow

Connection = psycopg.AsyncConnection[dict[str, Any]]
Pool = AsyncConnectionPool[Connection]

#: VIP senders first, then oldest email first: the order drafts are
#: generated and go on the phone in (schema.sql's workflow_state_lease_idx
#: serves it, per person, for the generation lease; docs/design.md, "Senders who come first").
READY_FIRST = " ORDER BY priority DESC, email_received_at NULLS LAST, created_at, id"


def ready_key(wf: Workflow) -> tuple[int, bool, datetime | None, datetime | None]:
    """:data:`READY_FIRST` in Python, for rows already read (missing times last)."""
    return (-wf.priority, wf.email_received_at is None, wf.email_received_at, wf.created_at)

#: An audit row: (message_id, from_state, to_state, reason, error, at).
AuditRow = tuple[str, str | None, str, str, str | None, datetime]


async def one(conn: Connection, query: str, params: Sequence[Any] | dict[str, Any] = ()) -> dict[str, Any] | None:
    """The first row of ``query``, if any."""
    cur = await conn.execute(query, params)
    return await cur.fetchone()


class TransactionBase:
    """The connection and clock of one transaction, and what it queued."""

    def __init__(self, conn: Connection, clock: Clock) -> None:
        self.conn = conn
        self.clock = clock
        #: What this transaction queued for Kafka (counted in metrics once it commits).
        self.queued: list[Publishable] = []

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A nested block: if it raises, what it wrote is undone and the
        transaction goes on (the exception propagates)."""
        mark = len(self.queued)
        try:
            async with self.conn.transaction():
                yield
        except BaseException:
            del self.queued[mark:]
            raise

    async def get(self, message_id: str, *, for_update: bool = False) -> Workflow | None:
        """The workflow of ``message_id``; ``for_update`` locks the row until commit."""
        query = "SELECT * FROM workflow_state WHERE message_id = %s" + (" FOR UPDATE" if for_update else "")
        row = await one(self.conn, query, (message_id,))
        return Workflow.from_row(row) if row else None

    async def _audit(self, message_id: str, from_state: str | None, to_state: str, reason: str,
                     error: str | None, at: datetime) -> None:
        await self._audit_many([(message_id, from_state, to_state, reason, error, at)])

    async def _audit_many(self, rows: Sequence[AuditRow]) -> None:
        """Audit rows, in one ``executemany``."""
        async with self.conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO workflow_audit_log"
                " (message_id, from_state, to_state, transition_reason, error_details, created_at)"
                " VALUES (%s, %s, %s, %s, %s, %s)", rows)
