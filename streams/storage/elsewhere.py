"""The reads of the "answered elsewhere" sweep (docs/design.md, "Answered
elsewhere"): which open workflows a reply from the person's own mail client
may close, and which Message-IDs are replies the orchestrator sent itself.

Plain reads, each on a connection of its own and in no transaction left open:
the sweep calls IMAP between them and closes each match with a
compare-and-set of its own (:mod:`streams.storage.transitions`).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from handlers.workflow import CLOSABLE_STATES, WorkflowState, names
from streams.storage.base import Pool


class ElsewhereReads:
    """Reads over a connection pool for the answered-elsewhere sweep."""

    pool: Pool

    async def closable_emails(self) -> list[tuple[str, datetime]]:
        """Every workflow a reply from elsewhere may close (CLOSABLE_STATES,
        and a reply scheduled for later that has not begun to leave):
        its email's Message-ID and when the email arrived (the workflow's
        creation when that is unknown), oldest first."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT message_id, COALESCE(email_received_at, created_at) AS received FROM workflow_state"
                " WHERE current_state = ANY(%s) OR (current_state = %s AND send_at IS NOT NULL"
                "  AND send_released_at IS NULL AND send_attempted_at IS NULL)"
                " ORDER BY received, id", (names(CLOSABLE_STATES), WorkflowState.USER_APPROVED.value))
            return [(row["message_id"], row["received"]) for row in await cur.fetchall()]

    async def own_replies(self, message_ids: Collection[str]) -> set[str]:
        """Those of ``message_ids`` that are the Message-ID of a reply the
        orchestrator sent (or began to send) for some workflow."""
        if not message_ids:
            return set()
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT reply_message_id FROM workflow_state WHERE reply_message_id = ANY(%s)",
                (list(message_ids),))
            return {row["reply_message_id"] for row in await cur.fetchall()}
