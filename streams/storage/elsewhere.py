"""The reads of the "answered elsewhere" sweep (docs/design.md, "Answered
elsewhere"): which open workflows a reply from the person's own mail client
may close (and to whom that reply must have gone), and which Message-IDs are replies the orchestrator sent itself.

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

    async def closable_emails(self, person: int = 0) -> list[tuple[str, datetime, str]]:
        """Every workflow a reply from elsewhere may close (CLOSABLE_STATES,
        and a reply scheduled for later that has not begun to leave):
        its email's Message-ID, when the email arrived (the workflow's
        creation when that is unknown) and its sender (the ``From``: a reply
        must have gone to it), oldest first; ``person``'s alone."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT w.message_id, COALESCE(w.email_received_at, w.created_at) AS received,"
                " COALESCE(w.email_from, p.from_address) AS sender"
                " FROM workflow_state w JOIN processed_emails p ON p.message_id = w.message_id"
                " WHERE w.person_id = %s AND (w.current_state = ANY(%s) OR (w.current_state = %s"
                "  AND w.send_at IS NOT NULL AND w.send_released_at IS NULL AND w.send_attempted_at IS NULL))"
                " ORDER BY received, w.id", (person, names(CLOSABLE_STATES), WorkflowState.USER_APPROVED.value))
            return [(row["message_id"], row["received"], row["sender"]) for row in await cur.fetchall()]

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
