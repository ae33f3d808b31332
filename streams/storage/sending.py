"""Sending: presenting a draft on the phone (held by one worker at a time),
the reminder, and the claim that comes before any SMTP traffic (the
send-once design is in docs/design.md)."""

from __future__ import annotations

from handlers.workflow import WorkflowState
from streams.storage.base import TransactionBase, one

#: The advisory lock class of a draft being texted (the other key is hashtext(message_id)).
PRESENTING_LOCK = 0x0E4A13
#: The advisory lock class of a reply being sent over SMTP (the other key is hashtext(message_id)).
SENDING_LOCK = 0x0E4A14

# Audit reasons of the rows that keep the state (the fake repository writes the same).
REMINDED = "reminder sent by SMS"


def send_claim_reason(reply_message_id: str, again: bool) -> str:
    return (f"not in the Sent folder: sending again as {reply_message_id}" if again
            else f"sending the reply as {reply_message_id}")


class Sending(TransactionBase):
    """Presentations, reminders and send claims."""

    async def hold_presentation(self, message_id: str) -> bool:
        """Mark ``message_id``'s draft as being texted by this connection's
        worker, until its session ends (or the worker dies: PostgreSQL lets go
        of a dead connection's locks). False if another holds it."""
        row = await one(self.conn, "SELECT pg_try_advisory_lock(%s, hashtext(%s)) AS held",
                        (PRESENTING_LOCK, message_id))
        return bool(row and row["held"])

    async def presenter_gone(self, message_id: str) -> bool:
        """Whether nobody holds ``message_id``'s presentation: a draft found in
        ``sms_sending`` whose worker died while texting it."""
        row = await one(self.conn, "SELECT pg_try_advisory_xact_lock(%s, hashtext(%s)) AS free",
                        (PRESENTING_LOCK, message_id))
        return bool(row and row["free"])

    async def hold_send(self, message_id: str) -> bool:
        """Mark ``message_id``'s reply as being sent by this connection's worker,
        until its session ends (or the worker dies: PostgreSQL lets go of a dead
        connection's locks). False while another live worker holds it: a claimed
        send whose lock is held is in progress, not cut off (docs/design.md)."""
        row = await one(self.conn, "SELECT pg_try_advisory_lock(%s, hashtext(%s)) AS held",
                        (SENDING_LOCK, message_id))
        return bool(row and row["held"])

    async def mark_reminded(self, message_id: str) -> bool:
        """Record that the one reminder for the draft awaiting an answer goes out
        now, with an audit row; False when it went before or the draft was answered."""
        now = self.clock.now()
        row = await one(self.conn,
                        "UPDATE workflow_state SET reminded_at = %s, updated_at = %s WHERE message_id = %s"
                        " AND current_state = %s AND reminded_at IS NULL RETURNING current_state",
                        (now, now, message_id, WorkflowState.AWAITING_USER.value))
        if row is None:
            return False
        await self._audit(message_id, row["current_state"], row["current_state"], REMINDED, None, now)
        return True

    async def claim_send(self, message_id: str, reply_message_id: str, *, again: bool = False) -> bool:
        """Record the intent to send an approved reply, before any SMTP traffic:
        our Message-ID and ``send_attempted_at``, with an audit row. False when
        the workflow is not approved or a send was already attempted (a worker
        that finds it set knows a send may have been cut off). ``again``
        claims a send that was attempted before (the Sent folder showed it
        never went out) for one more attempt with the same Message-ID."""
        now = self.clock.now()
        attempted = "IS NOT NULL" if again else "IS NULL"
        row = await one(self.conn,
                        "UPDATE workflow_state SET reply_message_id = %s, send_attempted_at = %s, updated_at = %s"
                        f" WHERE message_id = %s AND current_state = %s AND send_attempted_at {attempted}"
                        " RETURNING current_state",
                        (reply_message_id, now, now, message_id, WorkflowState.USER_APPROVED.value))
        if row is None:
            return False
        reason = send_claim_reason(reply_message_id, again)
        await self._audit(message_id, row["current_state"], row["current_state"], reason, None, now)
        return True

    async def record_sent_reply(self, message_id: str, body: str) -> None:
        """Keep the text that was sent on the Email Monitor's row (``reply_draft``)."""
        await self.conn.execute("UPDATE processed_emails SET reply_draft = %s WHERE message_id = %s",
                                (body, message_id))
