"""Threads: the open workflows of older emails that a newer email of their
thread supersedes, and the earlier emails its draft is written with in view
(docs/design.md, "A newer email supersedes").

An email continues another when both carry the same ``thread_id``, or its
``In-Reply-To`` names the other's Message-ID (the Email Monitor writes both
columns, docs/contracts.md §1); it supersedes the other only when both come
from the same sender (:func:`handlers.threads.same_sender`, on their From).
``workflow_state.superseded_by`` records which newer email closed a draft;
each generation reads the earlier emails again through it, so edits of the
newer draft keep them in view.
"""

from __future__ import annotations

from collections.abc import Collection

from handlers.emails import SUBJECT_CHARS
from handlers.threads import EARLIER_CHARS, EARLIER_HTML_CHARS, same_sender
from handlers.workflow import WorkflowState
from streams.storage.base import TransactionBase
from streams.storage.records import Email, Workflow

#: Older open workflows of the thread read for one call at most (a bound, not a rule).
MAX_SUPERSEDED = 100
#: How far back a chain of superseded drafts is followed (A closed by B, B by C, ...).
MAX_CHAIN = 10


class Threads(TransactionBase):
    """Finding, marking and reading the older emails of a thread."""

    async def open_earlier_in_thread(self, message_ids: Collection[str],
                                     states: Collection[WorkflowState]) -> list[tuple[str, Workflow]]:
        """(newer message_id, older workflow) for every workflow in ``states``
        whose email came before one of ``message_ids`` in the same thread
        from the same sender to the same person; newer emails oldest first, and each one's older
        emails oldest first. An older email of another sender is never
        returned: its draft stays its own (docs/design.md)."""
        if not message_ids:
            return []
        # Built in steps (materialized) so that the plan cannot start from the
        # open workflows and join them by person: with one person's backlog of
        # thousands and statistics not yet analysed, that plan took minutes.
        cur = await self.conn.execute(
            "WITH n AS MATERIALIZED ("
            "  SELECT p.message_id, p.from_address, p.thread_id, p.in_reply_to, p.received_at, p.id, nw.person_id"
            "  FROM processed_emails p JOIN workflow_state nw ON nw.message_id = p.message_id"
            "  WHERE p.message_id = ANY(%(newer)s)),"
            " pairs AS MATERIALIZED ("
            "  SELECT n.message_id AS newer_message_id, n.from_address AS newer_from, n.person_id,"
            "   n.received_at AS newer_at, n.id AS newer_id, o.message_id, o.from_address AS older_from,"
            "   o.received_at AS older_at, o.id AS older_id"
            "  FROM n JOIN LATERAL ("
            "   SELECT o.message_id, o.received_at, o.id, o.from_address FROM processed_emails o"
            "    WHERE n.thread_id IS NOT NULL AND o.thread_id = n.thread_id"
            "   UNION"
            "   SELECT o.message_id, o.received_at, o.id, o.from_address FROM processed_emails o"
            "    WHERE o.message_id = btrim(n.in_reply_to)"
            "  ) o ON o.message_id <> n.message_id AND (o.received_at, o.id) < (n.received_at, n.id))"
            " SELECT pairs.newer_message_id, pairs.newer_from, pairs.older_from, w.* FROM pairs"
            " JOIN workflow_state w ON w.message_id = pairs.message_id AND w.person_id = pairs.person_id"
            "  AND w.current_state = ANY(%(states)s)"
            " ORDER BY pairs.newer_at, pairs.newer_id, pairs.older_at, pairs.older_id LIMIT %(limit)s",
            {"states": [s.value for s in states], "newer": list(message_ids), "limit": MAX_SUPERSEDED})
        # The sender is compared here, not in SQL: a From is ``Name <addr>``, parsed as the reply parses it.
        return [(row["newer_message_id"], Workflow.from_row(row)) for row in await cur.fetchall()
                if same_sender(row["newer_from"], row["older_from"])]

    async def record_superseded(self, message_ids: Collection[str], newer: str) -> None:
        """Note on each of ``message_ids`` that the email ``newer`` closed it,
        and on ``newer`` that it closed some (so only its generations read the
        earlier emails: :meth:`earlier_emails`)."""
        if message_ids:
            await self.conn.execute("UPDATE workflow_state SET superseded_by = %s WHERE message_id = ANY(%s)",
                                    (newer, list(message_ids)))
            await self.conn.execute("UPDATE workflow_state SET supersedes = supersedes + %s WHERE message_id = %s",
                                    (len(message_ids), newer))

    async def earlier_emails(self, message_id: str, limit: int) -> list[Email]:
        """The emails whose drafts ``message_id`` closed, and those these had
        closed in turn: the ``limit`` most recent, oldest first, each text
        read only as far as the generator is shown it."""
        cur = await self.conn.execute(
            "WITH RECURSIVE chain (message_id, depth) AS ("
            "  SELECT message_id, 1 FROM workflow_state WHERE superseded_by = %(m)s"
            "  UNION ALL"
            "  SELECT w.message_id, c.depth + 1 FROM workflow_state w JOIN chain c ON w.superseded_by = c.message_id"
            "   WHERE c.depth < %(depth)s)"
            " SELECT p.message_id, substr(p.subject, 1, %(subject)s) AS subject, p.from_address,"
            " p.to_addresses, p.received_at, p.status, p.in_reply_to, p.thread_id,"
            " substr(p.body_text, 1, %(text)s) AS body_text, substr(p.body_html, 1, %(html)s) AS body_html"
            " FROM (SELECT DISTINCT message_id FROM chain) c JOIN processed_emails p USING (message_id)"
            " ORDER BY p.received_at DESC, p.id DESC LIMIT %(limit)s",
            {"m": message_id, "depth": MAX_CHAIN, "subject": SUBJECT_CHARS, "text": EARLIER_CHARS + 1,
             "html": EARLIER_HTML_CHARS, "limit": limit})
        return [Email.from_row(row) for row in reversed(await cur.fetchall())]

