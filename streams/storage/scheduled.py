"""Replies sent later: the sweep takes those whose time has come, once
(docs/design.md, "Send later")."""

from __future__ import annotations

from handlers.workflow import WorkflowState
from streams.storage.base import TransactionBase

#: The audit reason of a scheduled reply whose time has come (the fake repository writes the same).
SEND_DUE = "the time it was scheduled for has come: sending the reply"


class ScheduledSends(TransactionBase):
    """``workflow_state.send_at`` and ``send_released_at``."""

    async def claim_due_sends(self, limit: int) -> list[str]:
        """Take the replies scheduled for now or earlier, approved and never
        attempted nor taken before: mark each (``send_released_at``, with an
        audit row) and return their ids, for the caller to queue their
        ``replies.approved`` in this same transaction. SKIP LOCKED, so two
        sweeps never take the same one; once marked, never taken again."""
        now = self.clock.now()
        cur = await self.conn.execute(
            "WITH due AS (SELECT id FROM workflow_state WHERE current_state = %s AND send_at <= %s"
            "  AND send_released_at IS NULL AND send_attempted_at IS NULL"
            "  ORDER BY send_at, id LIMIT %s FOR UPDATE SKIP LOCKED)"
            " UPDATE workflow_state w SET send_released_at = %s, updated_at = %s FROM due WHERE w.id = due.id"
            " RETURNING w.message_id, w.send_at",
            (WorkflowState.USER_APPROVED.value, now, limit, now, now))
        due = sorted(await cur.fetchall(), key=lambda row: (row["send_at"], row["message_id"]))
        state = WorkflowState.USER_APPROVED.value
        await self._audit_many([(row["message_id"], state, state, SEND_DUE, None, now) for row in due])
        return [row["message_id"] for row in due]
