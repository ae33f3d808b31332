"""Parking: a workflow whose peer is out waits in its state, to be tried
again later, instead of failing; and the peer outages that hold them
(docs/design.md says when a stage parks)."""

from __future__ import annotations

from datetime import datetime

from handlers.workflow import WorkflowState
from streams.storage.base import TransactionBase, one
from streams.storage.records import Workflow


def park_reason(reason: str, next_attempt_at: datetime) -> str:
    """The audit reason of the first park of an outage (the fake repository writes the same)."""
    return f"parked: {reason}; tried again at {next_attempt_at.isoformat()}"


class Parking(TransactionBase):
    """Parked workflows (``workflow_state.park_*``) and peer outages (``peer_outage``)."""

    async def park(self, message_id: str, state: WorkflowState, *, stage: str, peer: str, reason: str,
                   since: datetime, attempts: int, next_attempt_at: datetime, release_send: bool = False) -> bool:
        """Leave ``message_id`` in ``state`` and schedule its ``stage`` again at
        ``next_attempt_at``; the first park of an outage is audited.
        ``release_send`` withdraws a send claim (the server took nothing).
        False when the workflow is no longer in ``state``."""
        now = self.clock.now()
        release = ", send_attempted_at = NULL" if release_send else ""
        row = await one(self.conn,
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

    async def note_outage(self, peer: str, person: int = 0) -> bool:
        """Record that ``peer`` is out and holds work of ``person``; True only
        for the first note of the outage for that person (who is then texted:
        an outage of a shared peer texts each person it holds once)."""
        await self.conn.execute("INSERT INTO peer_outage (peer, since) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                                (peer, self.clock.now()))
        row = await one(self.conn, "INSERT INTO peer_outage_told (peer, person_id) VALUES (%s, %s)"
                        " ON CONFLICT DO NOTHING RETURNING peer", (peer, person))
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
        """Forget the outages of peers that hold no parked workflow any more,
        and, per person, that a person was told of an outage that holds
        none of theirs any more: a person whose own mail login failed, was
        fixed and fails again is told again, though another person's login
        keeps that peer out meanwhile."""
        cur = await self.conn.execute(
            "DELETE FROM peer_outage o WHERE NOT EXISTS (SELECT 1 FROM workflow_state w"
            " WHERE w.park_peer = o.peer) RETURNING peer")
        ended = [row["peer"] for row in await cur.fetchall()]
        await self.conn.execute(
            "DELETE FROM peer_outage_told t WHERE NOT EXISTS (SELECT 1 FROM workflow_state w"
            " WHERE w.park_peer = t.peer AND w.person_id = t.person_id)")
        return ended
