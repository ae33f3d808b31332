"""The read models: what the API, the dashboard, the metrics and the health
checks read. Nothing here writes; each read takes a connection of its own
from the pool (``timeout`` bounds the wait for one, in seconds, where a
health check must not hang)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from handlers.clock import Clock
from handlers.workflow import AWAITING_STATES, QUEUED_FOR_PHONE_STATES, WorkflowState, names
from streams.storage.base import READY_FIRST, Pool, one
from streams.storage.records import AuditEntry, Workflow


def _whose(of: int | None, column: str = "person_id") -> tuple[str, tuple[int, ...]]:
    """The condition (`` AND …``) and its parameter that keep only person ``of``'s rows; none for everyone."""
    return ("", ()) if of is None else (f" AND {column} = %s", (of,))


class ReadModels:
    """Reads over a connection pool, for the API, the dashboard and health."""

    def __init__(self, pool: Pool, clock: Clock) -> None:
        self.pool = pool
        self.clock = clock

    async def audit_trail(self, message_id: str) -> Sequence[AuditEntry]:
        """The audit rows of ``message_id``, oldest first."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, from_state, to_state, transition_reason, error_details, created_at"
                " FROM workflow_audit_log WHERE message_id = %s ORDER BY id",
                (message_id,),
            )
            return [AuditEntry(**row) for row in await cur.fetchall()]

    async def page(self, state: WorkflowState, limit: int, offset: int,
                   of: int | None = None) -> tuple[list[Workflow], int]:
        """One page of the workflows in ``state``, oldest first, and how many there are in all."""
        mine, whose = _whose(of)
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT *, count(*) OVER () AS total FROM workflow_state WHERE current_state = %s" + mine
                + " ORDER BY created_at, id LIMIT %s OFFSET %s",
                (state.value, *whose, limit, offset),
            )
            rows = await cur.fetchall()
            if rows:
                return [Workflow.from_row(r) for r in rows], int(rows[0]["total"])
            row = await one(conn, "SELECT count(*) AS n FROM workflow_state WHERE current_state = %s" + mine,
                            (state.value, *whose))
            return [], int(row["n"]) if row else 0

    async def parked(self, timeout: float | None = None, of: int | None = None) -> dict[str, Any]:
        """What is parked: how many, per peer, since when, the next try."""
        mine, whose = _whose(of)
        async with self.pool.connection(timeout=timeout) as conn:
            cur = await conn.execute(
                "SELECT park_peer, count(*) AS n, min(parked_since) AS since, min(next_attempt_at) AS next,"
                " max(park_attempts) AS attempts FROM workflow_state WHERE park_peer IS NOT NULL" + mine
                + " GROUP BY 1", whose)
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
            row = await one(conn, "SELECT (SELECT min(COALESCE(sms_sent_at, updated_at)) FROM workflow_state"
                            " WHERE current_state = ANY(%s)) AS awaiting, (SELECT count(*) FROM kafka_outbox)"
                            " AS rows, (SELECT min(created_at) FROM kafka_outbox) AS oldest",
                            (names(AWAITING_STATES),))
        assert row is not None

        def age(since: datetime | None) -> float | None:
            return max(0.0, (now - since).total_seconds()) if since else None

        return counts, age(row["awaiting"]), int(row["rows"]), age(row["oldest"])

    async def count_by_state(self, timeout: float | None = None, of: int | None = None) -> dict[str, int]:
        """How many workflows are in each state (states with none are left out)."""
        mine, whose = _whose(of)
        async with self.pool.connection(timeout=timeout) as conn:
            cur = await conn.execute("SELECT current_state, count(*) AS n FROM workflow_state WHERE true" + mine
                                     + " GROUP BY 1", whose)
            return {str(r["current_state"]): int(r["n"]) for r in await cur.fetchall()}

    # ------------------------------------------------------------ dashboard

    async def phone_view(self, phone: str, limit: int = 20,
                         of: int | None = None) -> tuple[Workflow | None, list[Workflow]]:
        """The draft on ``phone`` (if any) and the drafts waiting for it, next first."""
        mine, whose = _whose(of)
        async with self.pool.connection() as conn:
            row = await one(conn, "SELECT w.* FROM phone_conversation p JOIN workflow_state w"
                                  " ON w.message_id = p.message_id WHERE p.phone_number = %s"
                                  + _whose(of, "w.person_id")[0], (phone, *whose))
            cur = await conn.execute("SELECT * FROM workflow_state WHERE current_state = ANY(%s)" + mine
                                     + READY_FIRST + " LIMIT %s", (names(QUEUED_FOR_PHONE_STATES), *whose, limit))
            queue = [Workflow.from_row(r) for r in await cur.fetchall()]
        return (Workflow.from_row(row) if row else None), queue

    async def recent(self, states: frozenset[WorkflowState], limit: int = 50,
                     of: int | None = None) -> list[Workflow]:
        """The workflows in ``states``, most recently changed first."""
        mine, whose = _whose(of)
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT * FROM workflow_state WHERE current_state = ANY(%s)" + mine
                                     + " ORDER BY updated_at DESC, id DESC LIMIT %s", (names(states), *whose, limit))
            return [Workflow.from_row(r) for r in await cur.fetchall()]

    async def dead_letters(self, limit: int = 50) -> list[dict[str, Any]]:
        """The most recent dead letters (``dead_letter_log`` rows), newest first;
        of the bytes a row set aside by the relay keeps, only their size (``value_bytes``)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, at, source_topic, record_key, stage, kind, attempts, error_class, error_message,"
                " octet_length(raw_value) AS value_bytes FROM dead_letter_log ORDER BY id DESC LIMIT %s", (limit,))
            return list(await cur.fetchall())

    async def outcomes_by_day(self, states: frozenset[WorkflowState], days: int,
                              of: int | None = None) -> dict[tuple[str, str], int]:
        """How many workflows ended in each of ``states`` per UTC day (``YYYY-MM-DD``), for the last ``days``."""
        since = self.clock.now() - timedelta(days=days)
        mine, whose = _whose(of)
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, current_state, count(*) AS n"
                " FROM workflow_state WHERE current_state = ANY(%s) AND updated_at >= %s" + mine + " GROUP BY 1, 2",
                (names(states), since, *whose))
            return {(r["day"], r["current_state"]): int(r["n"]) for r in await cur.fetchall()}

    async def decision_seconds(self, limit: int = 500, of: int | None = None) -> list[float]:
        """Seconds from the draft reaching the phone to the person's answer, most recent ``limit``."""
        mine, whose = _whose(of)
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT EXTRACT(EPOCH FROM user_responded_at - sms_sent_at) AS s FROM workflow_state"
                " WHERE user_responded_at IS NOT NULL AND sms_sent_at IS NOT NULL"
                " AND user_responded_at >= sms_sent_at" + mine + " ORDER BY user_responded_at DESC LIMIT %s",
                (*whose, limit))
            return [float(r["s"]) for r in await cur.fetchall()]
