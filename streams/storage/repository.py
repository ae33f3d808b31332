"""The workflow repository: the one place the orchestrator's SQL lives.

Every write to ``workflow_state`` goes through a :class:`Transaction`. A
transition is a compare-and-set (``UPDATE ... WHERE current_state = expected``)
that, in the same transaction, writes the audit row, follows
``processed_emails.status``, and queues the ``workflow.events`` record (and any
other message the caller adds) in the outbox. Losing the race is not an error:
:meth:`Transaction.transition` returns False and changes nothing, which is how
a redelivered Kafka message does no harm.

A transaction is put together from the storage package's parts, one module
each: :mod:`~streams.storage.transitions`, :mod:`~streams.storage.intake`,
:mod:`~streams.storage.parking`, :mod:`~streams.storage.sending`,
:mod:`~streams.storage.outbox`, and, hanging off it, the phone slot
(``tx.phone``) and the SMS ledger (``tx.sms``) of :mod:`~streams.storage.phone`.
The reads of the API, the dashboard and health are :mod:`~streams.storage.reads`.
What the stages may use is :mod:`streams.storage.protocol`. The tables are
described in docs/database.md; state names come from :mod:`handlers.workflow`
as query parameters, never as SQL literals.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg

from handlers.clock import Clock
from handlers.messages import Publishable, WorkflowEvent
from handlers.workflow import TIMES_OUT_FROM, WorkflowState
from streams.observability import metrics, tracing
from streams.storage.base import Connection, Pool, ready_key
from streams.storage.deliveries import Deliveries
from streams.storage.elsewhere import ElsewhereReads
from streams.storage.lessons import LessonStore
from streams.storage.parking import Parking, park_reason
from streams.storage.phone import PhoneSlot, SmsLedger
from streams.storage.reads import ReadModels
from streams.storage.records import Email, Workflow
from streams.storage.scheduled import ScheduledSends
from streams.storage.sending import PRESENTING_LOCK, REMINDED, Sending, send_claim_reason
from streams.storage.threads import Threads
from streams.storage.transitions import SETTABLE_COLUMNS, Transitions

if TYPE_CHECKING:
    from streams.storage import protocol

__all__ = [
    "PRESENTING_LOCK", "REMINDED", "SETTABLE_COLUMNS", "Connection", "PhoneSlot", "Pool", "Session", "SmsLedger",
    "Transaction", "WorkflowRepository", "park_reason", "send_claim_reason",
]


class Transaction(Transitions, Parking, Sending, Deliveries, Threads, LessonStore, ScheduledSends):
    """Work inside one database transaction; see :meth:`WorkflowRepository.transaction`."""

    def __init__(self, conn: Connection, clock: Clock) -> None:
        super().__init__(conn, clock)
        self.phone = PhoneSlot(self)
        self.sms = SmsLedger(self)


@asynccontextmanager
async def _transaction(conn: Connection, clock: Clock) -> AsyncIterator[Transaction]:
    # Not pipeline mode: measured, it cost small transactions (the webhook's
    # two statements) half as much CPU again; executemany pipelines by itself.
    async with conn.transaction():
        tx = Transaction(conn, clock)
        yield tx
    metrics.committed(tx.queued)
    reached = [m.to_state for m in tx.queued if isinstance(m, WorkflowEvent)]
    if reached:
        tracing.STATE.set(reached[-1])  # the state the log lines of the work in hand name


class Session:
    """Transactions on one connection, and the presentations it holds
    (:meth:`Transaction.hold_presentation`) from one transaction to the next:
    PostgreSQL keeps such a lock exactly as long as this connection lives."""

    def __init__(self, conn: Connection, clock: Clock) -> None:
        self.conn = conn
        self.clock = clock

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with _transaction(self.conn, self.clock) as tx:
            yield tx

    async def release(self) -> None:
        """Let go of every presentation this session holds (a broken
        connection's locks went with it)."""
        if self.conn.broken or self.conn.closed:
            return
        try:
            async with self.conn.transaction():
                await self.conn.execute("SELECT pg_advisory_unlock_all()")
        except psycopg.OperationalError:
            pass  # the connection broke just now: its locks are gone too


class WorkflowRepository(ReadModels, ElsewhereReads):
    """Reads and compare-and-set writes of workflows over a connection pool
    (the read models of the API, dashboard and health are inherited)."""

    def __init__(self, pool: Pool, clock: Clock) -> None:
        super().__init__(pool, clock)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """One transaction: committed when the block exits, rolled back if it raises."""
        async with self.pool.connection() as conn:
            async with _transaction(conn, self.clock) as tx:
                yield tx

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Session]:
        """One connection for several transactions and the peer calls between
        them, holding what a :class:`Session` holds until the block exits."""
        async with self.pool.connection() as conn:
            session = Session(conn, self.clock)
            try:
                yield session
            finally:
                try:
                    await session.release()
                except BaseException:
                    # Cut off while letting go (a second cancellation): a
                    # session lock must not go back to the pool with the
                    # connection, so the connection is closed (and dropped).
                    await conn.close()
                    raise

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

    async def publish(self, message: Publishable) -> None:
        """:meth:`Transaction.publish` in a transaction of its own."""
        async with self.transaction() as tx:
            await tx.publish(message)

    async def get(self, message_id: str) -> Workflow | None:
        async with self.transaction() as tx:
            return await tx.get(message_id)

    async def email(self, message_id: str) -> Email | None:
        async with self.transaction() as tx:
            return await tx.email(message_id)

    # ------------------------------------------------------ the stages' sweeps

    async def due_timeouts(self, now: datetime) -> list[str]:
        """The drafts on the phone whose answer was due by ``now``, most overdue first."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT message_id FROM workflow_state WHERE current_state = %s AND timeout_at <= %s"
                " ORDER BY timeout_at", (TIMES_OUT_FROM.value, now))
            return [row["message_id"] for row in await cur.fetchall()]

    async def due_reminders(self, presented_before: datetime) -> list[str]:
        """Drafts awaiting an answer since before ``presented_before``, not yet reminded."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT message_id FROM workflow_state WHERE current_state = %s AND reminded_at IS NULL"
                " AND sms_sent_at <= %s ORDER BY sms_sent_at",
                (WorkflowState.AWAITING_USER.value, presented_before))
            return [row["message_id"] for row in await cur.fetchall()]

    # ------------------------------------------------- the generation pool's leases

    async def lease_drafts(self, limit: int, lease_seconds: float) -> list[Workflow]:
        """Lease up to ``limit`` drafts to generate: in ``ai_generating``, not
        leased (or the lease lapsed: its worker died) and not parked until
        later. SKIP LOCKED: two pools never take the same.

        Fair across people (docs/design.md, "Fair scheduling"): each person's
        k-th draft in their own order (VIP first, then oldest email first)
        takes its turn k plus the drafts of theirs being generated now, and
        the lowest turns go first; so one person's backlog of thousands
        never delays another person's single new email by more than one
        generation. Only each person's first ``limit`` drafts can win, so
        only those are read (:data:`LEASE`): the cost grows with the people
        waiting, not with their backlogs.

        The lease and the parking are checked again on the locked row: the
        ranking reads a snapshot, and a row another worker leased and
        committed meanwhile is not skipped by SKIP LOCKED but re-read."""
        now = self.clock.now()
        async with self.pool.connection() as conn:
            cur = await conn.execute(LEASE, {"state": WorkflowState.AI_GENERATING.value, "now": now,
                                             "limit": limit, "until": now + timedelta(seconds=lease_seconds)})
            rows = await cur.fetchall()
            await conn.commit()
        return sorted((Workflow.from_row(r) for r in rows), key=ready_key)

    async def renew_leases(self, message_ids: Collection[str], lease_seconds: float) -> None:
        """Keep the drafts this pool is generating leased for ``lease_seconds`` more."""
        if not message_ids:
            return
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE workflow_state SET lease_until = %s WHERE message_id = ANY(%s) AND current_state = %s",
                (self.clock.now() + timedelta(seconds=lease_seconds), list(message_ids),
                 WorkflowState.AI_GENERATING.value))
            await conn.commit()


#: The generation lease (:meth:`WorkflowRepository.lease_drafts`). ``waiting``
#: finds the people with drafts to generate by skipping through
#: workflow_state_lease_idx a person at a time; ``theirs`` reads each one's
#: first ``limit`` free drafts from it in their order; ``inflight`` counts what
#: each is generating now from workflow_state_leased_idx. (A workflow in
#: ``ai_generating`` always has a person: an email that is nobody's ends
#: ``unrouted`` before it is drafted.)
LEASE = (
    "WITH RECURSIVE waiting AS ("
    "  (SELECT person_id FROM workflow_state WHERE current_state = %(state)s AND person_id IS NOT NULL"
    "   ORDER BY person_id LIMIT 1)"
    "  UNION ALL"
    "  SELECT (SELECT w.person_id FROM workflow_state w WHERE w.current_state = %(state)s"
    "   AND w.person_id > waiting.person_id ORDER BY w.person_id LIMIT 1)"
    "  FROM waiting WHERE waiting.person_id IS NOT NULL),"
    " inflight AS (SELECT person_id, count(*) AS n FROM workflow_state"
    "  WHERE current_state = %(state)s AND lease_until >= %(now)s GROUP BY person_id),"
    " ranked AS (SELECT theirs.*, COALESCE(i.n, 0) + row_number() OVER (PARTITION BY p.person_id"
    "   ORDER BY theirs.priority DESC, theirs.email_received_at NULLS LAST, theirs.created_at, theirs.id) AS turn"
    "  FROM waiting p CROSS JOIN LATERAL (SELECT w.id, w.priority, w.email_received_at, w.created_at"
    "   FROM workflow_state w WHERE w.current_state = %(state)s AND w.person_id = p.person_id"
    "   AND (w.lease_until IS NULL OR w.lease_until < %(now)s)"
    "   AND (w.next_attempt_at IS NULL OR w.next_attempt_at <= %(now)s)"
    "   ORDER BY w.priority DESC, w.email_received_at NULLS LAST, w.created_at, w.id LIMIT %(limit)s) theirs"
    "  LEFT JOIN inflight i ON i.person_id = p.person_id WHERE p.person_id IS NOT NULL),"
    " picked AS (SELECT id FROM ranked ORDER BY turn, priority DESC, email_received_at NULLS LAST,"
    "  created_at, id LIMIT %(limit)s),"
    " free AS (SELECT w.id FROM workflow_state w JOIN picked USING (id)"
    "  WHERE w.current_state = %(state)s AND (w.lease_until IS NULL OR w.lease_until < %(now)s)"
    "  AND (w.next_attempt_at IS NULL OR w.next_attempt_at <= %(now)s)"
    "  FOR UPDATE OF w SKIP LOCKED)"
    " UPDATE workflow_state w SET lease_until = %(until)s, next_attempt_at = NULL"
    " FROM free WHERE w.id = free.id RETURNING w.*"
)


if TYPE_CHECKING:
    def _conforms(repo: WorkflowRepository) -> protocol.Repository:
        """mypy checks here that the PostgreSQL repository keeps the stages' contract."""
        return repo
