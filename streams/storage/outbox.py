"""The transactional outbox (table ``kafka_outbox``): the writes a transaction
queues (:class:`OutboxWrites`) and the batches the relay takes
(:class:`OutboxBatches`, used by :mod:`streams.pipeline.relay`).

A message is written in the same transaction as the state change that causes
it, so nothing is published for a change that rolled back and nothing is lost
for one that committed; see docs/database.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from handlers.messages import DeadLetter, Publishable, printable
from streams.observability import tracing
from streams.storage.base import Connection, Pool, TransactionBase, one

#: Arbitrary, fixed: one relay publishes at a time (a transaction-scoped advisory lock).
RELAY_LOCK_ID = 0x0E4A12


class OutboxWrites(TransactionBase):
    """Queueing messages for Kafka inside a transaction."""

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
                     letter.attempts, printable(letter.error_class, 200), printable(letter.error_message)))


#: A notice on the deadletter topic keeps the refused record's key only up to this many bytes.
NOTICE_KEY_LIMIT = 1024


@dataclass(frozen=True)
class Refused:
    """An outbox row Kafka refused for good: the record as it would have
    been published (``key``, ``value``), and why (``error``: the Kafka error's
    name, e.g. MSG_SIZE_TOO_LARGE; ``reason``: its text). ``too_large``: the
    value cannot travel on Kafka either, so the notice leaves it out."""

    row: dict[str, Any]
    key: bytes | None
    value: bytes
    error: str
    reason: str
    too_large: bool


class OutboxBatch:
    """Outbox rows taken by the relay, oldest first, inside its transaction."""

    def __init__(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        self._conn = conn
        self.rows = rows

    async def delete(self) -> None:
        """Delete the rows (once every record of the batch is confirmed or
        set aside, :meth:`set_aside`); gone at commit."""
        await self._conn.execute("DELETE FROM kafka_outbox WHERE id = ANY(%s)", ([r["id"] for r in self.rows],))

    async def set_aside(self, refused: Sequence[Refused]) -> None:
        """Record rows Kafka refused for good in ``dead_letter_log`` (kind
        ``unpublishable``, with the record's bytes), and queue a notice of each
        on the deadletter topic (the key and headers of a dead letter, and the
        value unless it was too large), so ``orchestrator dlq list`` shows it.
        A refused dead letter gets no notice: it would be refused in turn."""
        notices = []
        for r in refused:
            topic = str(r.row["topic"])
            letter = DeadLetter(source_topic=topic, key=r.key, value=b"" if r.too_large else r.value,
                                stage="relay", kind="unpublishable", attempts=1, error_class=r.error,
                                error_message=r.reason)
            await self._conn.execute(
                "INSERT INTO dead_letter_log (source_topic, record_key, stage, kind, attempts, error_class,"
                " error_message, raw_key, raw_value) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (topic[:100], letter.record_key, letter.stage, letter.kind, 1,
                 printable(r.error, 200), printable(r.reason), r.key, r.value))
            if topic != DeadLetter.topic:
                if r.key is not None and len(r.key) > NOTICE_KEY_LIMIT:
                    letter = DeadLetter(**{**letter.__dict__, "key": r.key[:NOTICE_KEY_LIMIT]})
                notices.append((letter.topic, letter.key, letter.value, Jsonb(letter.headers("")), r.row["trace_id"]))
        if notices:
            async with self._conn.cursor() as cur:
                await cur.executemany("INSERT INTO kafka_outbox (topic, raw_key, raw_value, headers, trace_id)"
                                      " VALUES (%s, %s, %s, %s, %s)", notices)


class OutboxBatches:
    """The relay's side of the outbox: one batch at a time, under the relay lock."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    @asynccontextmanager
    async def take(self, limit: int) -> AsyncIterator[OutboxBatch | None]:
        """Up to ``limit`` rows in id order, in a transaction that holds the
        relay lock until the block exits (committed then, rolled back if it
        raises); None when another relay holds the lock."""
        async with self.pool.connection() as conn:
            async with conn.transaction():
                row = await one(conn, "SELECT pg_try_advisory_xact_lock(%s) AS locked", (RELAY_LOCK_ID,))
                if not row or not row["locked"]:
                    yield None
                    return
                cur = await conn.execute(
                    "SELECT id, topic, message_key, payload, created_at, event_id, trace_id, raw_key,"
                    " raw_value, headers FROM kafka_outbox ORDER BY id LIMIT %s",
                    (limit,),
                )
                yield OutboxBatch(conn, await cur.fetchall())
