"""The poller: takes pending emails from ``processed_emails`` into workflows.

Instant pickup through LISTEN/NOTIFY (schema.sql's trigger; POLL_ON_NOTIFY)
plus a sweep every POLL_INTERVAL, oldest first, with no time window: nothing
pending is ever forgotten. POLL_LIMIT caps what one poll takes (0: all).
Claiming uses SKIP LOCKED and the workflow row is unique, so two workers
never take the same email. The ``emails.pending`` message goes
through the outbox in the same transaction.

One email never holds the others (docs/design.md, "Hostile input at
intake"): the claim reads only the start of each body, the previews are made
in a thread (off the event loop), and an email whose preview cannot be made
gets a plain one; its subject and sender are cut so its records fit the broker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import timedelta

from handlers.emails import SENDER_CHARS, SUBJECT_CHARS, bounded, intake_fields
from handlers.messages import EmailPending
from handlers.people import DEFAULT_PERSON
from handlers.workflow import WorkflowState
from streams.storage.database import run_on_notify
from streams.storage.records import Email
from streams.storage.repository import WorkflowRepository

log = logging.getLogger(__name__)

#: Emails claimed per transaction: one round trip per statement, whatever the
#: count; small enough that a newcomer's email waits for little more than one.
BATCH = 100
#: Emails claimed per transaction when one person has the deployment to
#: themselves: no newcomer of another's to wait, so fewer, larger claims.
ALONE_BATCH = 500
#: Emails taken in whose draft no agent has asked for yet, past which the
#: poller waits before taking more: what it takes in queues in ``emails.pending``
#: behind what it took before, so a backlog taken in at once would hold another
#: person's new email behind it in the topic (docs/design.md, "Fair scheduling").
AHEAD = BATCH
#: The longest the poller waits for the draft agents before each batch (they
#: may be stopped, or behind on a broker outage: intake goes on regardless).
AHEAD_WAIT = 5.0
#: Only workflows started this recently count as ahead (older ones in
#: ``pending`` are the stalled sweep's, not a queue the poller made).
AHEAD_WINDOW = timedelta(minutes=1)
#: Whose each of the emails is: message_id -> person_id (None: nobody's).
Router = Callable[[Sequence[Email]], Awaitable[Mapping[str, int | None]]]
#: Each person's VIP_SENDERS, parsed: person_id -> patterns.
PeopleVips = Callable[[], Awaitable[Mapping[int, Sequence[str]]]]
#: Whether people share the deployment (there are people rows).
Shared = Callable[[], Awaitable[bool]]


class EmailPoller:
    def __init__(self, repo: WorkflowRepository, conninfo: str, interval: float, *, on_notify: bool = True,
                 limit: int = 0, vip_patterns: Sequence[str] = (), router: Router | None = None,
                 ahead_wait: float = AHEAD_WAIT, people_vips: PeopleVips | None = None,
                 shared: Shared | None = None) -> None:
        self.repo = repo
        self.conninfo = conninfo
        self.interval = interval
        self.on_notify = on_notify
        self.limit = limit
        #: VIP_SENDERS: their emails start with priority 1 (with the patterns marked on the dashboard).
        self.vip_patterns = list(vip_patterns)
        #: Whose each email is (docs/design.md, "Many people"); None: the default person's.
        self.router = router
        #: Each person's own VIP senders (theirs, else ``vip_patterns``).
        self.people_vips = people_vips
        #: Whether people share the deployment: then intake is fair and paced;
        #: one person's alone is taken oldest first, as fast as it comes (not
        #: given: shared).
        self.shared = shared
        #: How long to wait for the draft agents before a batch (AHEAD_WAIT; 0: never).
        self.ahead_wait = ahead_wait
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
            fair = await self.shared() if self.shared is not None else True
            if fair:  # before every batch: a poll may start behind
                await self._let_the_drafting_catch_up()
            size = BATCH if fair else ALONE_BATCH
            batch = min(size, self.limit - taken) if self.limit else size
            async with self.repo.transaction() as tx:
                claimed = await tx.claim_pending_emails(batch, fair=fair)
                taking = await asyncio.to_thread(_bounded, claimed)
                emails = [email for email, _ in taking]
                owners = await self.router(claimed) if self.router is not None and claimed else None
                vips = await self.people_vips() if self.people_vips is not None and claimed else None
                started = set(await tx.create_workflows(taking, reason="picked up by the poller",
                                                             vip_patterns=self.vip_patterns, owners=owners,
                                                             person_vips=vips))
                for email in emails:
                    if email.message_id not in started:
                        log.warning("email %s is pending again but has a workflow; left as it is",
                                    email.message_id)
                nobodys = sorted(m for m in started if owners is not None and owners.get(m, 0) is None)
                if nobodys:
                    await tx.transition_many(nobodys, WorkflowState.PENDING, WorkflowState.UNROUTED,
                                             "belongs to nobody: no person has the mailbox it came to")
                    log.warning("%d email(s) belong to nobody (no person has their mailbox): %s",
                                len(nobodys), ", ".join(nobodys[:5]))
                drafting = started.difference(nobodys)
                await tx.publish_many([
                    EmailPending(message_id=email.message_id, from_address=email.from_address,
                                 subject=email.subject, received_at=email.received_at,
                                 person_id=(owners or {}).get(email.message_id) or DEFAULT_PERSON)
                    for email in emails if email.message_id in drafting])
                taken += len(started)
            if len(emails) < batch or (self.limit and taken >= self.limit):
                break
        self.last_poll_at = time.time()
        self.last_error = None
        self.taken += taken
        if taken:
            log.info("took %d pending email(s)", taken)
        return taken

    async def _let_the_drafting_catch_up(self) -> None:
        """Wait, at most ``ahead_wait``, until fewer than AHEAD emails taken in wait for a draft agent."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ahead_wait
        while loop.time() < deadline:
            async with self.repo.transaction() as tx:
                ahead = await tx.taken_in_not_drafting(self.repo.clock.now() - AHEAD_WINDOW)
            if ahead < AHEAD:
                return
            await asyncio.sleep(0.05)


def _bounded(emails: Sequence[Email]) -> list[tuple[Email, str]]:
    """Each email with its subject and sender bounded and its bodies dropped,
    and its preview (handlers/emails.py). Runs in a thread: parsing is the
    heavy part. Never raises: an email whose fields cannot be made is taken
    with a plain preview that says so."""
    return [_one(email) for email in emails]


def _one(email: Email) -> tuple[Email, str]:
    try:
        fields = intake_fields(email.subject, email.from_address, email.body_text, email.body_html)
        subject, sender, preview = fields.subject, fields.sender, fields.preview
    except Exception as error:  # noqa: BLE001 - one email must never stop intake
        log.warning("email %s: no preview could be made (%r); taken with a plain one", email.message_id, error)
        subject = None if email.subject is None else bounded(email.subject, SUBJECT_CHARS)
        sender, preview = bounded(email.from_address, SENDER_CHARS), "(no preview: the body could not be read)"
    return replace(email, subject=subject, from_address=sender, body_text=None, body_html=None), preview
