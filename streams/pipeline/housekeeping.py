"""The sweep that drives from the database what no Kafka message starts.

Every TIMEOUT_CHECK_INTERVAL: parked workflows whose next try is due, drafts
past their timeout, drafts the person answered from their own mail client
(one IMAP search for all of them; :mod:`streams.stages.elsewhere`),
replies scheduled for later whose time has come (queued once;
:mod:`streams.stages.scheduling`), reminders, a ``notify()`` that
re-offers the phone (if a nudge was ever lost, or quiet hours just ended,
the next waiting draft goes out), and the
message, sent again, of a workflow whose record was lost (left in
``pending``, ``user_edit_requested`` or ``user_approved`` past
STALLED_GRACE; :mod:`streams.storage.stalled`). Driven from the database, so
a worker that was down catches up at once.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Protocol

from streams.stages.failures import redrive_message
from streams.storage.stalled import StalledWorkflows

log = logging.getLogger(__name__)


class Sweepable(Protocol):
    """What the sweep asks of the stages."""

    async def resume_parked(self) -> int: ...
    async def expire_timeouts(self) -> int: ...
    async def notify(self) -> None: ...
    async def close_answered_elsewhere(self) -> int: ...
    async def send_reminders(self) -> int: ...
    async def release_due_sends(self) -> int: ...
    async def give_missing_codes(self) -> int: ...


class Housekeeping:
    def __init__(self, stages: Sweepable, interval: float, stalled: StalledWorkflows | None = None,
                 grace: float = 600.0) -> None:
        self._stages = stages
        self._interval = interval
        self._stalled = stalled
        self._grace = timedelta(seconds=grace)
        self._coded = False

    async def sweep(self) -> None:
        """One pass; each step logs what it did."""
        resumed = await self._stages.resume_parked()
        if resumed:
            log.info("set %d parked workflow(s) going again", resumed)
        expired = await self._stages.expire_timeouts()
        if expired:
            log.info("timed out %d workflow(s)", expired)
        answered = await self._stages.close_answered_elsewhere()
        if answered:
            log.info("closed %d draft(s) answered from the mail client", answered)
        released = await self._stages.release_due_sends()
        if released:
            log.info("%d reply(ies) scheduled for later are due: sending them", released)
        if not self._coded:  # once per start: workflows open from before codes get theirs
            coded = await self._stages.give_missing_codes()
            self._coded = True
            if coded:
                log.info("gave a code to %d open workflow(s) from before draft codes", coded)
        await self._stages.notify()
        reminded = await self._stages.send_reminders()
        if reminded:
            log.info("sent %d reminder(s)", reminded)
        if self._stalled is not None:
            redriven = await self._stalled.redrive(self._grace, redrive_message)
            if redriven:
                log.warning("sent again the message of %d workflow(s) unchanged for %.0f s (a lost record?): %s",
                            len(redriven), self._grace.total_seconds(), ", ".join(redriven[:10]))

    async def run(self) -> None:
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a sweep that fails must not stop the worker
                log.warning("housekeeping failed: %s", exc)
            await asyncio.sleep(self._interval)
