"""Taking emails on: the Email Monitor's rows (``processed_emails``) claimed,
a workflow started for each, and their status kept in step with the workflow."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

from handlers.codes import MAX_DIGITS, capacity, new_codes
from handlers.emails import HTML_PREVIEW_CHARS, SUBJECT_CHARS, TEXT_PREVIEW_CHARS
from handlers.messages import WorkflowEvent
from handlers.people import DEFAULT_PERSON
from handlers.senders import VIP_PRIORITY, vip_pattern
from handlers.workflow import OPEN_STATES, EmailStatus, WorkflowState, names
from streams.storage.base import one
from streams.storage.outbox import OutboxWrites
from streams.storage.records import Email


log = logging.getLogger(__name__)

#: The pending emails a claim takes, each mailbox's k-th oldest in turn k.
_FAIR_PICK = (
    "WITH ranked AS ("
    "  SELECT id, row_number() OVER (PARTITION BY"
    "   lower(coalesce(nullif(btrim(mailbox), ''), array_to_string(to_addresses, ',')))"
    "   ORDER BY received_at, id) AS turn"
    "  FROM processed_emails WHERE status = %(waiting)s),"
    " picked AS ("
    "  SELECT e.id FROM processed_emails e JOIN ranked USING (id) WHERE e.status = %(waiting)s"
    "  ORDER BY ranked.turn, e.received_at, e.id LIMIT %(limit)s FOR UPDATE OF e SKIP LOCKED)"
)
#: The oldest pending emails (read from processed_emails_pending_idx, no sort).
_OLDEST_PICK = (
    "WITH picked AS ("
    "  SELECT id FROM processed_emails WHERE status = %(waiting)s"
    "  ORDER BY received_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
)


#: The advisory lock class under which draft codes are given (pg_advisory_xact_lock).
CODES_LOCK = 0x0E4A16


class Intake(OutboxWrites):
    """The poller's claims and the workflows it starts; ``processed_emails.status``."""

    async def claim_pending_emails(self, limit: int, *, fair: bool = True) -> list[Email]:
        """Take up to ``limit`` pending emails, marking them ``orchestrating``:
        fairly across the mailboxes they came to, oldest first within each
        (``fair``; else plain oldest first, all one person's anyway).

        Each mailbox's k-th oldest pending email takes turn k (the mailbox is
        ``processed_emails.mailbox``, else the recipients as stored), and the
        lowest turns go first: a backlog of thousands in one mailbox takes
        one place per batch from another mailbox's new email, which is taken
        in the next batch, not after the backlog (docs/design.md, "Fair
        scheduling"). One mailbox: plain oldest first, as before; and the
        poller asks for plain oldest first (not ``fair``) while no people share
        the deployment.

        ``FOR UPDATE SKIP LOCKED`` under the LIMIT: two pollers never claim
        the same email, and rows another poller holds are passed over.
        Only what intake needs is read, each text bounded (handlers/emails.py):
        the bodies as far as the preview reads them, the subject one character
        past what the workflow keeps (so a cut one is seen as cut). ``substr``
        reads only the start of a large stored value: 1 ms for two 25 MB
        bodies, against 220 ms to move them whole.
        """
        cur = await self.conn.execute(
            (_FAIR_PICK if fair else _OLDEST_PICK) + " UPDATE processed_emails p SET status = %(taken)s, updated_at = %(now)s"
            " FROM picked WHERE p.id = picked.id RETURNING p.message_id, substr(p.subject, 1, %(subject)s) AS subject,"
            " p.from_address, p.to_addresses, p.received_at, p.status, p.in_reply_to, p.thread_id,"
            " substr(p.body_text, 1, %(text)s) AS body_text, substr(p.body_html, 1, %(html)s) AS body_html,"
            " substr(p.mailbox, 1, 320) AS mailbox",
            {"waiting": EmailStatus.PENDING.value, "limit": limit, "taken": EmailStatus.ORCHESTRATING.value,
             "now": self.clock.now(), "subject": SUBJECT_CHARS + 1, "text": TEXT_PREVIEW_CHARS,
             "html": HTML_PREVIEW_CHARS},
        )
        emails = [Email.from_row(row) for row in await cur.fetchall()]
        return sorted(emails, key=lambda e: e.received_at)

    async def taken_in_not_drafting(self, since: datetime) -> int:
        """Workflows started since ``since`` still in ``pending``: taken in,
        their ``emails.pending`` record not yet handled by a draft agent."""
        row = await one(self.conn, "SELECT count(*) AS n FROM workflow_state WHERE current_state = %s"
                        " AND created_at >= %s", (WorkflowState.PENDING.value, since))
        return int(row["n"]) if row else 0

    async def create_workflow(self, email: Email, *, body_preview: str, reason: str) -> bool:
        """Start the workflow of ``email`` in ``pending``, audited; False if one exists."""
        return bool(await self.create_workflows([(email, body_preview)], reason=reason))

    async def create_workflows(self, emails: Sequence[tuple[Email, str]], *, reason: str,
                               vip_patterns: Sequence[str] = (),
                               owners: Mapping[str, int | None] | None = None,
                               person_vips: Mapping[int, Sequence[str]] | None = None) -> list[str]:
        """Start a workflow in ``pending`` for each (email, body preview),
        audited, with the same four statements whatever the number; returns
        the message_ids started (not those that had one). An email from a
        sender who comes first (``vip_patterns``, i.e. VIP_SENDERS, or a
        pattern marked on the dashboard) starts with ``priority`` 1, and its
        audit row names the pattern (docs/design.md, "Senders who come first").
        ``owners``: whose each email is (message_id -> ``person_id``, None
        for nobody's; handlers/people.py ``route``); not given, the default person's.
        ``person_vips``: each person's own VIP_SENDERS (their ``people.vip_senders``,
        else the worker's); a person not in it has ``vip_patterns``."""
        if not emails:
            return []
        now = self.clock.now()
        start = WorkflowState.PENDING
        marked = await self.vip_patterns()
        whose = {e.message_id: (owners or {}).get(e.message_id, DEFAULT_PERSON) for e, _ in emails}

        def patterns(message_id: str) -> list[str]:
            person = whose[message_id]
            return [*(person_vips or {}).get(person if person is not None else DEFAULT_PERSON, vip_patterns), *marked]

        vip = {e.message_id: p for e, _ in emails
               if (p := vip_pattern(e.from_address, patterns(e.message_id))) is not None}
        cur = await self.conn.execute(
            "INSERT INTO workflow_state (message_id, email_subject, email_from, email_to,"
            " email_body_preview, email_received_at, priority, person_id, current_state, created_at, updated_at)"
            " SELECT *, %s, %s, %s FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[],"
            " %s::timestamptz[], %s::smallint[], %s::int[]) ON CONFLICT (message_id) DO NOTHING RETURNING message_id",
            (start.value, now, now, [e.message_id for e, _ in emails], [e.subject for e, _ in emails],
             [e.from_address for e, _ in emails], [", ".join(e.to_addresses or []) for e, _ in emails],
             [preview for _, preview in emails], [e.received_at for e, _ in emails],
             [VIP_PRIORITY if e.message_id in vip else 0 for e, _ in emails],
             [whose[e.message_id] for e, _ in emails]),
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
        """Give each of ``message_ids`` that has none a short code none of its
        person's open workflows has (handlers/codes.py); returns the codes
        given, in order. Codes are each person's own, so they stay short
        however many people share the deployment. A person whose every code
        is in use (11,264 open drafts) gets none for the rest, and nobody
        else's intake stops: a draft without a code gets one when it is
        presented (stages/notify.py), once a decision has freed one. Under
        a transaction-scoped advisory lock, so two workers never pick the
        same code; the unique index on (``person_id``, ``draft_code``)
        stands behind it."""
        if not message_ids:
            return []
        await self.conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (CODES_LOCK,))
        cur = await self.conn.execute(
            "SELECT message_id, person_id FROM workflow_state WHERE message_id = ANY(%s) AND draft_code IS NULL",
            (list(message_ids),))
        owner = {row["message_id"]: row["person_id"] for row in await cur.fetchall()}
        wanted = [m for m in dict.fromkeys(message_ids) if m in owner]
        cur = await self.conn.execute(
            "SELECT person_id, draft_code FROM workflow_state WHERE draft_code IS NOT NULL"
            " AND person_id = ANY(%s)", (sorted({p for p in owner.values() if p is not None}),))
        taken: dict[int | None, list[str]] = {}
        for row in await cur.fetchall():
            taken.setdefault(row["person_id"], []).append(row["draft_code"])
        by_person: dict[int | None, list[str]] = {}
        for message_id in wanted:
            by_person.setdefault(owner[message_id], []).append(message_id)
        given: dict[str, str] = {}
        for person, theirs in by_person.items():
            mine = taken.get(person, [])
            free = max(0, capacity(MAX_DIGITS) - len(mine))
            if free < len(theirs):
                log.warning("person %s has every draft code in use: %d draft(s) wait for one", person,
                            len(theirs) - free)
            given.update(zip(theirs[:free], new_codes(min(free, len(theirs)), mine), strict=True))
        await self.conn.execute(
            "UPDATE workflow_state w SET draft_code = c.code FROM unnest(%s::text[], %s::text[]) AS c(id, code)"
            " WHERE w.message_id = c.id AND w.draft_code IS NULL",
            (list(given), list(given.values())))
        return [given[m] for m in wanted if m in given]

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
