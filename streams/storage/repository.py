"""The workflow repository: the one place the orchestrator's SQL lives.

Every write to ``workflow_state`` goes through here. A transition is a
compare-and-set (``UPDATE ... WHERE current_state = expected``) that, in the
same transaction, writes the audit row, follows ``processed_emails.status``,
and queues the ``workflow.events`` record (and any other message the caller
adds) in the outbox. Losing the race is not an error:
:meth:`Transaction.transition` returns False and changes nothing, which is how
a redelivered Kafka message does no harm.

Two smaller parts hang off a transaction: :class:`PhoneSlot` (the one draft on
the person's phone) and :class:`SmsLedger` (every inbound SMS, once). The
tables are described in docs/database.md; state names come from
:mod:`handlers.workflow` as query parameters, never as SQL literals.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from handlers.clock import Clock
from handlers.messages import DeadLetter, PhoneFreed, Publishable, WorkflowEvent
from handlers.workflow import (
    AWAITING_STATES,
    QUEUED_FOR_PHONE_STATES,
    READY_STATE,
    TIMES_OUT_FROM,
    EmailStatus,
    WorkflowState,
    check_transition,
    email_status_for,
    frees_the_phone,
    names,
)
from streams.observability import metrics, tracing
from streams.storage.records import AuditEntry, Email, Workflow

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
    }
)

Connection = psycopg.AsyncConnection[dict[str, Any]]
Pool = AsyncConnectionPool[Connection]

#: The advisory lock class of a draft being texted (the other key is hashtext(message_id)).
PRESENTING_LOCK = 0x0E4A13

_READY_FIRST = " ORDER BY email_received_at NULLS LAST, created_at, id"
_UNPARK = ("park_stage = NULL, park_peer = NULL, park_reason = NULL, parked_since = NULL,"
           " park_attempts = 0, next_attempt_at = NULL, lease_until = NULL")


# Audit reasons of the rows that keep the state (the fake repository writes the same).
REMINDED = "reminder sent by SMS"


def send_claim_reason(reply_message_id: str, again: bool) -> str:
    return (f"not in the Sent folder: sending again as {reply_message_id}" if again
            else f"sending the reply as {reply_message_id}")


def park_reason(reason: str, next_attempt_at: datetime) -> str:
    return f"parked: {reason}; tried again at {next_attempt_at.isoformat()}"


async def _one(conn: Connection, query: str, params: Sequence[Any] | dict[str, Any] = ()) -> dict[str, Any] | None:
    cur = await conn.execute(query, params)
    return await cur.fetchone()


class PhoneSlot:
    """The one draft on the person's phone (table ``phone_conversation``).

    Commands carry no reference, so only the most recently presented draft may
    be answered. :meth:`lock` holds the slot's row until the transaction ends,
    which serialises presenters and commands across workers.
    """

    def __init__(self, tx: Transaction) -> None:
        self._tx = tx

    async def lock(self, phone: str) -> Workflow | None:
        """Lock the slot of ``phone`` (creating it) and return the workflow on it, if any."""
        conn = self._tx.conn
        await conn.execute("INSERT INTO phone_conversation (phone_number) VALUES (%s) ON CONFLICT DO NOTHING",
                           (phone,))
        row = await _one(conn, "SELECT message_id FROM phone_conversation WHERE phone_number = %s FOR UPDATE",
                         (phone,))
        return await self._tx.get(row["message_id"]) if row and row["message_id"] else None

    async def oldest_ready(self) -> Workflow | None:
        """The draft that should go on the phone next: ready, oldest email first."""
        row = await _one(self._tx.conn, "SELECT * FROM workflow_state WHERE current_state = %s"
                         " AND (next_attempt_at IS NULL OR next_attempt_at <= %s)"
                         + _READY_FIRST + " LIMIT 1", (READY_STATE.value, self._tx.clock.now()))
        return Workflow.from_row(row) if row else None

    async def count_waiting(self, exclude: str | None = None) -> int:
        """How many emails wait for the phone (drafted or still being drafted), but ``exclude``."""
        row = await _one(self._tx.conn, "SELECT count(*) AS n FROM workflow_state"
                         " WHERE current_state = ANY(%s) AND message_id IS DISTINCT FROM %s",
                         (names(QUEUED_FOR_PHONE_STATES), exclude))
        return int(row["n"]) if row else 0

    async def assign(self, phone: str, message_id: str) -> None:
        """Record that ``message_id``'s draft is now the one on ``phone``."""
        now = self._tx.clock.now()
        await self._tx.conn.execute(
            "UPDATE phone_conversation SET message_id = %s, presented_at = %s, updated_at = %s"
            " WHERE phone_number = %s", (message_id, now, now, phone))

    async def release(self, message_ids: Collection[str]) -> list[tuple[str, str]]:
        """Free the phones ``message_ids`` hold; return (phone, message_id) of each freed."""
        cur = await self._tx.conn.execute(
            "WITH held AS (SELECT phone_number, message_id FROM phone_conversation"
            " WHERE message_id = ANY(%s) FOR UPDATE)"
            " UPDATE phone_conversation p SET message_id = NULL, updated_at = %s FROM held"
            " WHERE p.phone_number = held.phone_number RETURNING p.phone_number, held.message_id",
            (list(message_ids), self._tx.clock.now()))
        return [(str(row["phone_number"]), str(row["message_id"])) for row in await cur.fetchall()]


class SmsLedger:
    """Every SMS the webhook accepted (table ``inbound_sms``), keyed by the
    gateway's ``payload.messageId``, so a redelivery is recognised."""

    def __init__(self, tx: Transaction) -> None:
        self._tx = tx

    async def record(self, sms_id: str, phone: str, body: str, received_at: datetime | None,
                     *, outcome: str | None = None) -> bool:
        """Record an SMS once; False if it was recorded before. An ``outcome``
        given here settles it at once (it will never be handled)."""
        handled_at = self._tx.clock.now() if outcome is not None else None
        row = await _one(self._tx.conn,
                         "INSERT INTO inbound_sms (sms_id, phone_number, body, received_at, handled_at, outcome)"
                         " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (sms_id) DO NOTHING RETURNING sms_id",
                         (sms_id, phone, body, received_at, handled_at, outcome))
        return row is not None

    async def claim(self, sms_id: str, phone: str, body: str, received_at: datetime | None) -> bool:
        """Mark an SMS handled (recording it if the webhook did not); False when
        it was handled before, i.e. this is a redelivery."""
        row = await _one(self._tx.conn,
                         "INSERT INTO inbound_sms (sms_id, phone_number, body, received_at, handled_at)"
                         " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (sms_id) DO UPDATE"
                         " SET handled_at = EXCLUDED.handled_at WHERE inbound_sms.handled_at IS NULL"
                         " RETURNING sms_id",
                         (sms_id, phone, body, received_at, self._tx.clock.now()))
        return row is not None

    async def settle(self, sms_id: str, outcome: str, message_id: str | None) -> None:
        """Record what the SMS did (``approved``, ``help``, ...) and to which workflow."""
        await self._tx.conn.execute("UPDATE inbound_sms SET outcome = %s, message_id = %s WHERE sms_id = %s",
                                    (outcome, message_id, sms_id))


class Transaction:
    """Work inside one database transaction; see :meth:`WorkflowRepository.transaction`."""

    def __init__(self, conn: Connection, clock: Clock) -> None:
        self.conn = conn
        self.clock = clock
        self.phone = PhoneSlot(self)
        self.sms = SmsLedger(self)
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
        row = await _one(self.conn, query, (message_id,))
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
            sql.SQL(_UNPARK),  # a workflow that moves on is no longer parked nor leased
        ]
        now = self.clock.now()
        params: dict[str, Any] = {"now": now, "message_ids": list(message_ids), "new": new.value,
                                  "sources": [s.value for s in sources]}
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

    async def _audit(self, message_id: str, from_state: str | None, to_state: str, reason: str,
                     error: str | None, at: datetime) -> None:
        await self._audit_many([(message_id, from_state, to_state, reason, error, at)])

    async def _audit_many(self, rows: Sequence[tuple[str, str | None, str, str, str | None, datetime]]) -> None:
        """Audit rows of (message_id, from_state, to_state, reason, error, at), in one ``executemany``."""
        async with self.conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO workflow_audit_log"
                " (message_id, from_state, to_state, transition_reason, error_details, created_at)"
                " VALUES (%s, %s, %s, %s, %s, %s)", rows)

    async def hold_presentation(self, message_id: str) -> bool:
        """Mark ``message_id``'s draft as being texted by this connection's
        worker, until its :class:`Session` ends (or the worker dies: PostgreSQL
        lets go of a dead connection's locks). False if another holds it."""
        row = await _one(self.conn, "SELECT pg_try_advisory_lock(%s, hashtext(%s)) AS held",
                         (PRESENTING_LOCK, message_id))
        return bool(row and row["held"])

    async def presenter_gone(self, message_id: str) -> bool:
        """Whether nobody holds ``message_id``'s presentation: a draft found in
        ``sms_sending`` whose worker died while texting it."""
        row = await _one(self.conn, "SELECT pg_try_advisory_xact_lock(%s, hashtext(%s)) AS free",
                         (PRESENTING_LOCK, message_id))
        return bool(row and row["free"])

    async def claim_send(self, message_id: str, reply_message_id: str, *, again: bool = False) -> bool:
        """Record the intent to send an approved reply, before any SMTP traffic:
        our Message-ID and ``send_attempted_at``, with an audit row. False when
        the workflow is not approved or a send was already attempted (a worker
        that finds it set knows a send may have been cut off). ``again``
        claims a send that was attempted before (the Sent folder showed it
        never went out) for one more attempt with the same Message-ID."""
        now = self.clock.now()
        attempted = "IS NOT NULL" if again else "IS NULL"
        row = await _one(self.conn,
                         "UPDATE workflow_state SET reply_message_id = %s, send_attempted_at = %s, updated_at = %s"
                         f" WHERE message_id = %s AND current_state = %s AND send_attempted_at {attempted}"
                         " RETURNING current_state",
                         (reply_message_id, now, now, message_id, WorkflowState.USER_APPROVED.value))
        if row is None:
            return False
        reason = send_claim_reason(reply_message_id, again)
        await self._audit(message_id, row["current_state"], row["current_state"], reason, None, now)
        return True

    async def park(self, message_id: str, state: WorkflowState, *, stage: str, peer: str, reason: str,
                   since: datetime, attempts: int, next_attempt_at: datetime, release_send: bool = False) -> bool:
        """Leave ``message_id`` in ``state`` and schedule its ``stage`` again at
        ``next_attempt_at``; the first park of an outage is audited.
        ``release_send`` withdraws a send claim (the server took nothing).
        False when the workflow is no longer in ``state``."""
        now = self.clock.now()
        release = ", send_attempted_at = NULL" if release_send else ""
        row = await _one(self.conn,
                         "UPDATE workflow_state SET park_stage = %s, park_peer = %s, park_reason = %s,"
                         " parked_since = %s, park_attempts = %s, next_attempt_at = %s, updated_at = %s,"
                         " lease_until = NULL" + release
                         + " WHERE message_id = %s AND current_state = %s RETURNING current_state",
                         (stage, peer, reason, since, attempts, next_attempt_at, now, message_id, state.value))
        if row is None:
            return False
        if attempts == 1:
            await self._audit(message_id, state.value, state.value,
                              park_reason(reason, next_attempt_at), reason, now)
        return True

    async def note_outage(self, peer: str) -> bool:
        """Record that ``peer`` is out; True only for the first note of an outage."""
        row = await _one(self.conn, "INSERT INTO peer_outage (peer, since) VALUES (%s, %s)"
                         " ON CONFLICT DO NOTHING RETURNING peer", (peer, self.clock.now()))
        return row is not None

    async def claim_due_parked(self, limit: int) -> list[Workflow]:
        """Take the parked workflows whose next try is due (clearing
        ``next_attempt_at`` while it is in flight); SKIP LOCKED, so two
        sweeps never take the same one."""
        cur = await self.conn.execute(
            "WITH due AS (SELECT id FROM workflow_state WHERE park_peer IS NOT NULL AND next_attempt_at <= %s"
            "  ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED)"
            " UPDATE workflow_state w SET next_attempt_at = NULL FROM due WHERE w.id = due.id RETURNING w.*",
            (self.clock.now(), limit))
        return [Workflow.from_row(row) for row in await cur.fetchall()]

    async def end_outages(self) -> list[str]:
        """Forget the outages of peers that hold no parked workflow any more."""
        cur = await self.conn.execute(
            "DELETE FROM peer_outage o WHERE NOT EXISTS (SELECT 1 FROM workflow_state w"
            " WHERE w.park_peer = o.peer) RETURNING peer")
        return [row["peer"] for row in await cur.fetchall()]

    async def mark_reminded(self, message_id: str) -> bool:
        """Record that the one reminder for the draft awaiting an answer goes out
        now, with an audit row; False when it went before or the draft was answered."""
        now = self.clock.now()
        row = await _one(self.conn,
                         "UPDATE workflow_state SET reminded_at = %s, updated_at = %s WHERE message_id = %s"
                         " AND current_state = %s AND reminded_at IS NULL RETURNING current_state",
                         (now, now, message_id, WorkflowState.AWAITING_USER.value))
        if row is None:
            return False
        await self._audit(message_id, row["current_state"], row["current_state"], REMINDED,
                          None, now)
        return True

    async def record_sent_reply(self, message_id: str, body: str) -> None:
        """Keep the text that was sent on the Email Monitor's row (``reply_draft``)."""
        await self.conn.execute("UPDATE processed_emails SET reply_draft = %s WHERE message_id = %s",
                                (body, message_id))

    async def claim_pending_emails(self, limit: int) -> list[Email]:
        """Take up to ``limit`` pending emails, oldest first, marking them ``orchestrating``.

        ``FOR UPDATE SKIP LOCKED``: two pollers never claim the same email.
        """
        cur = await self.conn.execute(
            "WITH picked AS ("
            "  SELECT id FROM processed_emails WHERE status = %s"
            "  ORDER BY received_at, id LIMIT %s FOR UPDATE SKIP LOCKED)"
            " UPDATE processed_emails p SET status = %s, updated_at = %s"
            " FROM picked WHERE p.id = picked.id RETURNING p.*",
            (EmailStatus.PENDING.value, limit, EmailStatus.ORCHESTRATING.value, self.clock.now()),
        )
        emails = [Email.from_row(row) for row in await cur.fetchall()]
        return sorted(emails, key=lambda e: e.received_at)

    async def create_workflow(self, email: Email, *, body_preview: str, reason: str) -> bool:
        """Start the workflow of ``email`` in ``pending``, audited; False if one exists."""
        return bool(await self.create_workflows([(email, body_preview)], reason=reason))

    async def create_workflows(self, emails: Sequence[tuple[Email, str]], *, reason: str) -> list[str]:
        """Start a workflow in ``pending`` for each (email, body preview),
        audited, with the same three statements whatever the number; returns
        the message_ids started (not those that had one)."""
        if not emails:
            return []
        now = self.clock.now()
        start = WorkflowState.PENDING
        cur = await self.conn.execute(
            "INSERT INTO workflow_state (message_id, email_subject, email_from, email_to,"
            " email_body_preview, email_received_at, current_state, created_at, updated_at)"
            " SELECT *, %s, %s, %s FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[],"
            " %s::timestamptz[]) ON CONFLICT (message_id) DO NOTHING RETURNING message_id",
            (start.value, now, now, [e.message_id for e, _ in emails], [e.subject for e, _ in emails],
             [e.from_address for e, _ in emails], [", ".join(e.to_addresses or []) for e, _ in emails],
             [preview for _, preview in emails], [e.received_at for e, _ in emails]),
        )
        created = {row["message_id"] for row in await cur.fetchall()}
        started = [e.message_id for e, _ in emails if e.message_id in created]
        if started:
            await self._audit_many([(m, None, start.value, reason, None, now) for m in started])
            await self.publish_many([WorkflowEvent(message_id=m, from_state=None, to_state=start.value,
                                                   reason=reason, at=now) for m in started])
        return started

    async def email(self, message_id: str) -> Email | None:
        """The Email Monitor's row for ``message_id``."""
        row = await _one(self.conn, "SELECT * FROM processed_emails WHERE message_id = %s", (message_id,))
        return Email.from_row(row) if row else None

    async def set_email_status(self, message_ids: Collection[str], status: EmailStatus, *,
                               error: str | None = None) -> None:
        """Write ``processed_emails.status`` (and its error message when failing)."""
        await self.conn.execute(
            "UPDATE processed_emails SET status = %s, error_message = COALESCE(%s, error_message),"
            " updated_at = %s WHERE message_id = ANY(%s)",
            (status.value, error, self.clock.now(), list(message_ids)),
        )

    async def publish(self, message: Publishable) -> None:
        """Queue ``message`` for its topic; it is published after commit, never
        before. Its record continues the trace of the workflow it names, else
        the trace in hand (a new one when there is none)."""
        await self.publish_many([message])

    async def publish_many(self, messages: Sequence[Publishable]) -> None:
        """:meth:`publish` for several messages, in order, in one ``executemany``."""
        trace = tracing.TRACE_ID.get() or tracing.new_trace_id()
        self.queued.extend(messages)
        letters = [m for m in messages if isinstance(m, DeadLetter)]
        records = [m for m in messages if not isinstance(m, DeadLetter)]
        async with self.conn.cursor() as cur:
            if records:
                await cur.executemany(
                    "INSERT INTO kafka_outbox (topic, message_key, payload, trace_id) VALUES (%s, %s, %s,"
                    " COALESCE((SELECT trace_id FROM workflow_state WHERE message_id = %s), %s))",
                    [(m.topic, m.record_key, m.to_json(), getattr(m, "message_id", None), trace) for m in records])
            for letter in letters:
                await cur.execute(
                    "INSERT INTO kafka_outbox (topic, raw_key, raw_value, headers, trace_id)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    (letter.topic, letter.key, letter.value, Jsonb(letter.headers("")), trace))
                await cur.execute(
                    "INSERT INTO dead_letter_log (at, source_topic, record_key, stage, kind, attempts,"
                    " error_class, error_message) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    (self.clock.now(), letter.source_topic, letter.record_key, letter.stage, letter.kind,
                     letter.attempts, letter.error_class, letter.error_message[:2000]))


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


class WorkflowRepository:
    """Reads and compare-and-set writes of workflows over a connection pool."""

    def __init__(self, pool: Pool, clock: Clock) -> None:
        self.pool = pool
        self.clock = clock

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
                await session.release()

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

    async def audit_trail(self, message_id: str) -> Sequence[AuditEntry]:
        """The audit rows of ``message_id``, oldest first."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, from_state, to_state, transition_reason, error_details, created_at"
                " FROM workflow_audit_log WHERE message_id = %s ORDER BY id",
                (message_id,),
            )
            return [AuditEntry(**row) for row in await cur.fetchall()]

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

    async def page(self, state: WorkflowState, limit: int, offset: int) -> tuple[list[Workflow], int]:
        """One page of the workflows in ``state``, oldest first, and how many there are in all."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT *, count(*) OVER () AS total FROM workflow_state WHERE current_state = %s"
                " ORDER BY created_at, id LIMIT %s OFFSET %s",
                (state.value, limit, offset),
            )
            rows = await cur.fetchall()
            if rows:
                return [Workflow.from_row(r) for r in rows], int(rows[0]["total"])
            row = await _one(conn, "SELECT count(*) AS n FROM workflow_state WHERE current_state = %s",
                             (state.value,))
            return [], int(row["n"]) if row else 0

    async def lease_drafts(self, limit: int, lease_seconds: float) -> list[Workflow]:
        """Lease up to ``limit`` drafts to generate, oldest email first: in
        ``ai_generating``, not leased (or the lease lapsed: its worker died)
        and not parked until later. SKIP LOCKED: two pools never take the same."""
        now = self.clock.now()
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "WITH free AS (SELECT id FROM workflow_state WHERE current_state = %s"
                "  AND (lease_until IS NULL OR lease_until < %s)"
                "  AND (next_attempt_at IS NULL OR next_attempt_at <= %s)" + _READY_FIRST
                + "  LIMIT %s FOR UPDATE SKIP LOCKED)"
                " UPDATE workflow_state w SET lease_until = %s, next_attempt_at = NULL"
                " FROM free WHERE w.id = free.id RETURNING w.*",
                (WorkflowState.AI_GENERATING.value, now, now, limit, now + timedelta(seconds=lease_seconds)))
            rows = await cur.fetchall()
            await conn.commit()
        return sorted((Workflow.from_row(r) for r in rows),
                      key=lambda wf: (wf.email_received_at is None, wf.email_received_at, wf.created_at))

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

    async def parked(self, timeout: float | None = None) -> dict[str, Any]:
        """What is parked: how many, per peer, since when, the next try."""
        async with self.pool.connection(timeout=timeout) as conn:
            cur = await conn.execute(
                "SELECT park_peer, count(*) AS n, min(parked_since) AS since, min(next_attempt_at) AS next,"
                " max(park_attempts) AS attempts FROM workflow_state WHERE park_peer IS NOT NULL GROUP BY 1")
            rows = await cur.fetchall()
        return {"count": sum(int(r["n"]) for r in rows),
                "by_peer": {r["park_peer"]: {"count": int(r["n"]), "since": r["since"],
                                             "next_attempt_at": r["next"], "attempts": int(r["attempts"])}
                            for r in rows}}

    async def gauges(self, timeout: float | None = None) -> tuple[dict[str, int], float | None, int, float | None]:
        """For the metrics: workflows by state, the age in seconds of the
        oldest draft awaiting an answer, the outbox's rows and the age of its oldest."""
        now = self.clock.now()
        async with self.pool.connection(timeout=timeout) as conn:
            cur = await conn.execute("SELECT current_state, count(*) AS n FROM workflow_state GROUP BY 1")
            counts = {str(r["current_state"]): int(r["n"]) for r in await cur.fetchall()}
            row = await _one(conn, "SELECT (SELECT min(COALESCE(sms_sent_at, updated_at)) FROM workflow_state"
                             " WHERE current_state = ANY(%s)) AS awaiting, (SELECT count(*) FROM kafka_outbox)"
                             " AS rows, (SELECT min(created_at) FROM kafka_outbox) AS oldest",
                             (names(AWAITING_STATES),))
        assert row is not None

        def age(since: datetime | None) -> float | None:
            return max(0.0, (now - since).total_seconds()) if since else None

        return counts, age(row["awaiting"]), int(row["rows"]), age(row["oldest"])

    # ------------------------------------------------------------ dashboard

    async def phone_view(self, phone: str, limit: int = 20) -> tuple[Workflow | None, list[Workflow]]:
        """The draft on ``phone`` (if any) and the drafts waiting for it, next first."""
        async with self.pool.connection() as conn:
            row = await _one(conn, "SELECT w.* FROM phone_conversation p JOIN workflow_state w"
                                   " ON w.message_id = p.message_id WHERE p.phone_number = %s", (phone,))
            cur = await conn.execute("SELECT * FROM workflow_state WHERE current_state = ANY(%s)"
                                     + _READY_FIRST + " LIMIT %s", (names(QUEUED_FOR_PHONE_STATES), limit))
            queue = [Workflow.from_row(r) for r in await cur.fetchall()]
        return (Workflow.from_row(row) if row else None), queue

    async def recent(self, states: frozenset[WorkflowState], limit: int = 50) -> list[Workflow]:
        """The workflows in ``states``, most recently changed first."""
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT * FROM workflow_state WHERE current_state = ANY(%s)"
                                     " ORDER BY updated_at DESC, id DESC LIMIT %s", (names(states), limit))
            return [Workflow.from_row(r) for r in await cur.fetchall()]

    async def dead_letters(self, limit: int = 50) -> list[dict[str, Any]]:
        """The most recent dead letters (``dead_letter_log`` rows), newest first."""
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT * FROM dead_letter_log ORDER BY id DESC LIMIT %s", (limit,))
            return list(await cur.fetchall())

    async def outcomes_by_day(self, states: frozenset[WorkflowState], days: int) -> dict[tuple[str, str], int]:
        """How many workflows ended in each of ``states`` per UTC day (``YYYY-MM-DD``), for the last ``days``."""
        since = self.clock.now() - timedelta(days=days)
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, current_state, count(*) AS n"
                " FROM workflow_state WHERE current_state = ANY(%s) AND updated_at >= %s GROUP BY 1, 2",
                (names(states), since))
            return {(r["day"], r["current_state"]): int(r["n"]) for r in await cur.fetchall()}

    async def decision_seconds(self, limit: int = 500) -> list[float]:
        """Seconds from the draft reaching the phone to the person's answer, most recent ``limit``."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT EXTRACT(EPOCH FROM user_responded_at - sms_sent_at) AS s FROM workflow_state"
                " WHERE user_responded_at IS NOT NULL AND sms_sent_at IS NOT NULL"
                " AND user_responded_at >= sms_sent_at ORDER BY user_responded_at DESC LIMIT %s", (limit,))
            return [float(r["s"]) for r in await cur.fetchall()]

    async def email(self, message_id: str) -> Email | None:
        async with self.transaction() as tx:
            return await tx.email(message_id)

    async def count_by_state(self, timeout: float | None = None) -> dict[str, int]:
        """How many workflows are in each state (states with none are left out).
        ``timeout`` bounds the wait for a connection (seconds)."""
        async with self.pool.connection(timeout=timeout) as conn:
            cur = await conn.execute("SELECT current_state, count(*) AS n FROM workflow_state GROUP BY 1")
            return {str(r["current_state"]): int(r["n"]) for r in await cur.fetchall()}
