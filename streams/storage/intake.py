"""Taking emails on: the Email Monitor's rows (``processed_emails``) claimed,
a workflow started for each, and their status kept in step with the workflow."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from handlers.codes import new_codes
from handlers.emails import HTML_PREVIEW_CHARS, SUBJECT_CHARS, TEXT_PREVIEW_CHARS
from handlers.messages import WorkflowEvent
from handlers.senders import VIP_PRIORITY, vip_pattern
from handlers.workflow import OPEN_STATES, EmailStatus, WorkflowState, names
from streams.storage.base import one
from streams.storage.outbox import OutboxWrites
from streams.storage.records import Email


#: The advisory lock class under which draft codes are given (pg_advisory_xact_lock).
CODES_LOCK = 0x0E4A16


class Intake(OutboxWrites):
    """The poller's claims and the workflows it starts; ``processed_emails.status``."""

    async def claim_pending_emails(self, limit: int) -> list[Email]:
        """Take up to ``limit`` pending emails, oldest first, marking them ``orchestrating``.

        ``FOR UPDATE SKIP LOCKED``: two pollers never claim the same email.
        Only what intake needs is read, each text bounded (handlers/emails.py):
        the bodies as far as the preview reads them, the subject one character
        past what the workflow keeps (so a cut one is seen as cut). ``substr``
        reads only the start of a large stored value: 1 ms for two 25 MB
        bodies, against 220 ms to move them whole.
        """
        cur = await self.conn.execute(
            "WITH picked AS ("
            "  SELECT id FROM processed_emails WHERE status = %s"
            "  ORDER BY received_at, id LIMIT %s FOR UPDATE SKIP LOCKED)"
            " UPDATE processed_emails p SET status = %s, updated_at = %s"
            " FROM picked WHERE p.id = picked.id RETURNING p.message_id, substr(p.subject, 1, %s) AS subject,"
            " p.from_address, p.to_addresses, p.received_at, p.status, p.in_reply_to, p.thread_id,"
            " substr(p.body_text, 1, %s) AS body_text, substr(p.body_html, 1, %s) AS body_html",
            (EmailStatus.PENDING.value, limit, EmailStatus.ORCHESTRATING.value, self.clock.now(),
             SUBJECT_CHARS + 1, TEXT_PREVIEW_CHARS, HTML_PREVIEW_CHARS),
        )
        emails = [Email.from_row(row) for row in await cur.fetchall()]
        return sorted(emails, key=lambda e: e.received_at)

    async def create_workflow(self, email: Email, *, body_preview: str, reason: str) -> bool:
        """Start the workflow of ``email`` in ``pending``, audited; False if one exists."""
        return bool(await self.create_workflows([(email, body_preview)], reason=reason))

    async def create_workflows(self, emails: Sequence[tuple[Email, str]], *, reason: str,
                               vip_patterns: Sequence[str] = ()) -> list[str]:
        """Start a workflow in ``pending`` for each (email, body preview),
        audited, with the same four statements whatever the number; returns
        the message_ids started (not those that had one). An email from a
        sender who comes first (``vip_patterns``, i.e. VIP_SENDERS, or a
        pattern marked on the dashboard) starts with ``priority`` 1, and its
        audit row names the pattern (docs/design.md, "Senders who come first")."""
        if not emails:
            return []
        now = self.clock.now()
        start = WorkflowState.PENDING
        patterns = [*vip_patterns, *await self.vip_patterns()]
        vip = {e.message_id: p for e, _ in emails if (p := vip_pattern(e.from_address, patterns)) is not None}
        cur = await self.conn.execute(
            "INSERT INTO workflow_state (message_id, email_subject, email_from, email_to,"
            " email_body_preview, email_received_at, priority, current_state, created_at, updated_at)"
            " SELECT *, %s, %s, %s FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[],"
            " %s::timestamptz[], %s::smallint[]) ON CONFLICT (message_id) DO NOTHING RETURNING message_id",
            (start.value, now, now, [e.message_id for e, _ in emails], [e.subject for e, _ in emails],
             [e.from_address for e, _ in emails], [", ".join(e.to_addresses or []) for e, _ in emails],
             [preview for _, preview in emails], [e.received_at for e, _ in emails],
             [VIP_PRIORITY if e.message_id in vip else 0 for e, _ in emails]),
        )
        created = {row["message_id"] for row in await cur.fetchall()}
        started = [e.message_id for e, _ in emails if e.message_id in created]
        if started:
            await self.give_codes(started)
            why = {m: reason + (f"; VIP sender ({vip[m]})" if m in vip else "") for m in started}
            await self._audit_many([(m, None, start.value, why[m], None, now) for m in started])
            await self.publish_many([WorkflowEvent(message_id=m, from_state=None, to_state=start.value,
                                                   reason=why[m], at=now) for m in started])
        return started

    async def vip_patterns(self) -> list[str]:
        """The sender patterns marked VIP on the dashboard (``vip_senders``)."""
        cur = await self.conn.execute("SELECT pattern FROM vip_senders ORDER BY pattern")
        return [row["pattern"] for row in await cur.fetchall()]

    async def give_codes(self, message_ids: Sequence[str]) -> list[str]:
        """Give each of ``message_ids`` that has none a short code no open
        workflow has (handlers/codes.py); returns the codes picked, in order.
        Under a transaction-scoped advisory lock, so two workers never pick
        the same code; the unique index on ``draft_code`` stands behind it."""
        if not message_ids:
            return []
        await self.conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (CODES_LOCK,))
        cur = await self.conn.execute("SELECT draft_code FROM workflow_state WHERE draft_code IS NOT NULL")
        taken = [row["draft_code"] for row in await cur.fetchall()]
        codes = new_codes(len(message_ids), taken)
        await self.conn.execute(
            "UPDATE workflow_state w SET draft_code = c.code FROM unnest(%s::text[], %s::text[]) AS c(id, code)"
            " WHERE w.message_id = c.id AND w.draft_code IS NULL",
            (list(message_ids), codes))
        return codes

    async def give_missing_codes(self, limit: int) -> int:
        """Give codes to up to ``limit`` open workflows that have none; how many."""
        cur = await self.conn.execute(
            "SELECT message_id FROM workflow_state WHERE draft_code IS NULL AND current_state = ANY(%s)"
            " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED", (names(OPEN_STATES), limit))
        ids = [row["message_id"] for row in await cur.fetchall()]
        await self.give_codes(ids)
        return len(ids)

    async def email(self, message_id: str) -> Email | None:
        """The Email Monitor's row for ``message_id``."""
        row = await one(self.conn, "SELECT * FROM processed_emails WHERE message_id = %s", (message_id,))
        return Email.from_row(row) if row else None

    async def set_email_status(self, message_ids: Collection[str], status: EmailStatus, *,
                               error: str | None = None) -> None:
        """Write ``processed_emails.status`` (and its error message when failing)."""
        await self.conn.execute(
            "UPDATE processed_emails SET status = %s, error_message = COALESCE(%s, error_message),"
            " updated_at = %s WHERE message_id = ANY(%s)",
            (status.value, error, self.clock.now(), list(message_ids)),
        )
