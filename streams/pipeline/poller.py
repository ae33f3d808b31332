"""The poller: takes pending emails from ``processed_emails`` into workflows.

Instant pickup through LISTEN/NOTIFY (schema.sql's trigger; POLL_ON_NOTIFY)
plus a sweep every POLL_INTERVAL, oldest first, with no time window: nothing
pending is ever forgotten. POLL_LIMIT caps what one poll takes (0: all).
Claiming uses SKIP LOCKED and the workflow row is unique, so two workers
never take the same email. The ``emails.pending`` message goes
through the outbox in the same transaction.
"""

from __future__ import annotations

import logging
import time

from handlers.emails import body_preview
from handlers.messages import EmailPending
from streams.storage.database import run_on_notify
from streams.storage.repository import WorkflowRepository

log = logging.getLogger(__name__)

#: Emails claimed per transaction: one round trip per statement, whatever the count.
BATCH = 500


class EmailPoller:
    def __init__(self, repo: WorkflowRepository, conninfo: str, interval: float, *, on_notify: bool = True,
                 limit: int = 0) -> None:
        self.repo = repo
        self.conninfo = conninfo
        self.interval = interval
        self.on_notify = on_notify
        self.limit = limit
        self.last_poll_at: float | None = None
        self.last_error: str | None = None
        self.taken = 0

    async def run(self) -> None:
        """Poll until cancelled; survives database outages."""
        await run_on_notify(self.conninfo, "orchestrator_pending_email" if self.on_notify else None,
                            self.interval, self.poll_once, self._failed, "poller")

    def _failed(self, error: str) -> None:
        self.last_error = error

    async def poll_once(self) -> int:
        """Take every pending email now; return how many."""
        taken = 0
        while True:
            batch = min(BATCH, self.limit - taken) if self.limit else BATCH
            async with self.repo.transaction() as tx:
                emails = await tx.claim_pending_emails(batch)
                started = set(await tx.create_workflows(
                    [(email, body_preview(email.body_text, email.body_html)) for email in emails],
                    reason="picked up by the poller"))
                for email in emails:
                    if email.message_id not in started:
                        log.warning("email %s is pending again but has a workflow; left as it is",
                                    email.message_id)
                await tx.publish_many([
                    EmailPending(message_id=email.message_id, from_address=email.from_address,
                                 subject=email.subject, received_at=email.received_at)
                    for email in emails if email.message_id in started])
                taken += len(started)
            if len(emails) < batch or (self.limit and taken >= self.limit):
                break
        self.last_poll_at = time.time()
        self.last_error = None
        self.taken += taken
        if taken:
            log.info("took %d pending email(s)", taken)
        return taken
