"""The two small parts of a transaction: the phone slot (``tx.phone``) and
the SMS ledger (``tx.sms``)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from handlers.workflow import QUEUED_FOR_PHONE_STATES, READY_STATE, WorkflowState, names

#: Open, but decided: a reply approved and on its way. ``list`` leaves these
#: out, but for a reply scheduled for later and not yet being sent.
DECIDED_OPEN_STATES = frozenset({WorkflowState.USER_APPROVED})
from streams.storage.base import READY_FIRST, TransactionBase, one
from streams.storage.records import Question, Workflow


class PhoneSlot:
    """The one draft on the person's phone (table ``phone_conversation``).

    Commands carry no reference, so only the most recently presented draft may
    be answered. :meth:`lock` holds the slot's row until the transaction ends,
    which serialises presenters and commands across workers.
    """

    def __init__(self, tx: TransactionBase) -> None:
        self._tx = tx

    async def lock(self, phone: str) -> Workflow | None:
        """Lock the slot of ``phone`` (creating it) and return the workflow on it, if any."""
        conn = self._tx.conn
        await conn.execute("INSERT INTO phone_conversation (phone_number) VALUES (%s) ON CONFLICT DO NOTHING",
                           (phone,))
        row = await one(conn, "SELECT message_id FROM phone_conversation WHERE phone_number = %s FOR UPDATE",
                        (phone,))
        return await self._tx.get(row["message_id"]) if row and row["message_id"] else None

    async def presented_at(self, phone: str) -> datetime | None:
        """When the draft now on ``phone`` was put on it (its presentation began), if any."""
        row = await one(self._tx.conn, "SELECT presented_at FROM phone_conversation"
                        " WHERE phone_number = %s AND message_id IS NOT NULL", (phone,))
        return row["presented_at"] if row else None

    async def unmark_reminded(self, message_id: str, reason: str) -> bool:
        """Undo :meth:`mark_reminded` of the draft awaiting an answer (its
        reminder was not sent; the next sweep tries again), with an audit row
        saying why; False when it was answered meanwhile."""
        now = self._tx.clock.now()
        row = await one(self._tx.conn,
                        "UPDATE workflow_state SET reminded_at = NULL, updated_at = %s WHERE message_id = %s"
                        " AND current_state = %s AND reminded_at IS NOT NULL RETURNING current_state",
                        (now, message_id, WorkflowState.AWAITING_USER.value))
        if row is None:
            return False
        await self._tx._audit(message_id, row["current_state"], row["current_state"], reason, None, now)
        return True

    async def oldest_ready(self, *, person: int) -> Workflow | None:
        """The draft that should go on ``person``'s phone next: ready, VIP first, then oldest email first."""
        row = await one(self._tx.conn, "SELECT * FROM workflow_state WHERE current_state = %s AND person_id = %s"
                        " AND (next_attempt_at IS NULL OR next_attempt_at <= %s)"
                        + READY_FIRST + " LIMIT 1", (READY_STATE.value, person, self._tx.clock.now()))
        return Workflow.from_row(row) if row else None

    async def people_of(self, message_ids: Collection[str]) -> list[int]:
        """Whose the workflows of ``message_ids`` are (each person once; nobody's left out)."""
        cur = await self._tx.conn.execute("SELECT DISTINCT person_id FROM workflow_state WHERE message_id = ANY(%s)"
                                          " AND person_id IS NOT NULL ORDER BY person_id", (list(message_ids),))
        return [int(row["person_id"]) for row in await cur.fetchall()]

    async def people_waiting(self) -> list[int]:
        """Every person with a draft waiting for their phone or being texted to it."""
        cur = await self._tx.conn.execute(
            "SELECT DISTINCT person_id FROM workflow_state WHERE current_state = ANY(%s)"
            " AND person_id IS NOT NULL ORDER BY person_id",
            ([READY_STATE.value, WorkflowState.SMS_SENDING.value],))
        return [int(row["person_id"]) for row in await cur.fetchall()]

    async def count_waiting(self, *, person: int, exclude: str | None = None) -> int:
        """How many of ``person``'s emails wait for the phone (drafted or still being drafted), but ``exclude``."""
        row = await one(self._tx.conn, "SELECT count(*) AS n FROM workflow_state WHERE person_id = %s"
                        " AND current_state = ANY(%s) AND message_id IS DISTINCT FROM %s",
                        (person, names(QUEUED_FOR_PHONE_STATES), exclude))
        return int(row["n"]) if row else 0

    async def assign(self, phone: str, message_id: str) -> None:
        """Record that ``message_id``'s draft is now the one on ``phone``."""
        now = self._tx.clock.now()
        await self._tx.conn.execute(
            "UPDATE phone_conversation SET message_id = %s, presented_at = %s, updated_at = %s"
            " WHERE phone_number = %s", (message_id, now, now, phone))

    async def by_code(self, code: str, *, person: int) -> Workflow | None:
        """``person``'s open workflow whose draft has ``code`` (handlers/codes.py),
        if any: another person's code is unknown to them."""
        row = await one(self._tx.conn, "SELECT * FROM workflow_state WHERE draft_code = %s AND person_id = %s",
                        (code.upper(), person))
        return Workflow.from_row(row) if row else None

    async def open_drafts(self, *, person: int) -> list[Workflow]:
        """The open workflows of ``person`` they may still decide on or will be asked
        about (being drafted, waiting for the phone, on it), and the replies
        scheduled for later that ``cancel`` may still take back
        (``send_at`` set, no send attempted), oldest email first."""
        cur = await self._tx.conn.execute(
            "SELECT * FROM workflow_state WHERE draft_code IS NOT NULL AND person_id = %s"
            " AND (current_state <> ALL(%s) OR (send_at IS NOT NULL AND send_attempted_at IS NULL))"
            " ORDER BY email_received_at NULLS LAST, created_at, id",
            (person, names(DECIDED_OPEN_STATES)))
        return [Workflow.from_row(row) for row in await cur.fetchall()]

    async def requested(self, *, person: int) -> Workflow | None:
        """The oldest draft ``person`` asked to see (by its code) that waits for the phone."""
        row = await one(self._tx.conn, "SELECT * FROM workflow_state WHERE current_state = %s"
                        " AND present_requested_at IS NOT NULL AND person_id = %s"
                        " ORDER BY present_requested_at LIMIT 1", (READY_STATE.value, person))
        return Workflow.from_row(row) if row else None

    async def request_presentation(self, message_id: str) -> bool:
        """Ask for ``message_id``'s draft (waiting for the phone) to be texted
        next, even while another draft is on the phone; False if it is not waiting."""
        row = await one(self._tx.conn, "UPDATE workflow_state SET present_requested_at = %s"
                        " WHERE message_id = %s AND current_state = %s RETURNING message_id",
                        (self._tx.clock.now(), message_id, READY_STATE.value))
        return row is not None

    async def ask_confirmation(self, phone: str, message_ids: Sequence[str], until: datetime) -> None:
        """Remember the drafts an ``all 3`` would ignore, until ``until``, and when it was asked."""
        await self._tx.conn.execute(
            "UPDATE phone_conversation SET confirm_ids = %s, confirm_until = %s, confirm_asked_at = %s"
            " WHERE phone_number = %s", (list(message_ids), until, self._tx.clock.now(), phone))

    async def take_confirmation(self, phone: str) -> Question | None:
        """The ``all 3`` asked on ``phone``, if one was; its drafts are used up
        (a ``yes`` after any other answer confirms nothing), the question is
        remembered until :meth:`end_question`, so a late ``yes`` or ``no`` is
        still read as an answer to it."""
        row = await one(self._tx.conn,
                        "WITH old AS (SELECT confirm_ids, confirm_until, confirm_asked_at FROM phone_conversation"
                        " WHERE phone_number = %s FOR UPDATE)"
                        " UPDATE phone_conversation p SET confirm_ids = NULL FROM old"
                        " WHERE p.phone_number = %s"
                        " RETURNING old.confirm_ids, old.confirm_until, old.confirm_asked_at",
                        (phone, phone))
        if not row or row["confirm_asked_at"] is None or row["confirm_until"] is None:
            return None
        return Question(list(row["confirm_ids"] or []), row["confirm_until"], row["confirm_asked_at"])

    async def end_question(self, phone: str) -> None:
        """The ``all 3`` on ``phone`` was answered: forget it."""
        await self._tx.conn.execute(
            "UPDATE phone_conversation SET confirm_ids = NULL, confirm_until = NULL, confirm_asked_at = NULL"
            " WHERE phone_number = %s", (phone,))

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

    def __init__(self, tx: TransactionBase) -> None:
        self._tx = tx

    async def record(self, sms_id: str, phone: str, body: str, received_at: datetime | None,
                     *, outcome: str | None = None) -> bool:
        """Record an SMS once; False if it was recorded before. An ``outcome``
        given here settles it at once (it will never be handled)."""
        handled_at = self._tx.clock.now() if outcome is not None else None
        row = await one(self._tx.conn,
                        "INSERT INTO inbound_sms (sms_id, phone_number, body, received_at, handled_at, outcome)"
                        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (sms_id) DO NOTHING RETURNING sms_id",
                        (sms_id, phone, body, received_at, handled_at, outcome))
        return row is not None

    async def claim(self, sms_id: str, phone: str, body: str, received_at: datetime | None) -> bool:
        """Mark an SMS handled (recording it if the webhook did not); False when
        it was handled before, i.e. this is a redelivery."""
        row = await one(self._tx.conn,
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
