"""The sweep that drives from the database what no Kafka message starts.

Every TIMEOUT_CHECK_INTERVAL: parked workflows whose next try is due, drafts
past their timeout, reminders, and a ``notify()`` that re-offers the phone (if
a nudge was ever lost, or quiet hours just ended, the next waiting draft goes
out). Driven from the database, so a worker that was down catches up at once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

log = logging.getLogger(__name__)


class Sweepable(Protocol):
    """What the sweep asks of the stages."""

    async def resume_parked(self) -> int: ...
    async def expire_timeouts(self) -> int: ...
    async def notify(self) -> None: ...
    async def send_reminders(self) -> int: ...


class Housekeeping:
    def __init__(self, stages: Sweepable, interval: float) -> None:
        self._stages = stages
        self._interval = interval

    async def sweep(self) -> None:
        """One pass; each step logs what it did."""
        resumed = await self._stages.resume_parked()
        if resumed:
            log.info("set %d parked workflow(s) going again", resumed)
        expired = await self._stages.expire_timeouts()
        if expired:
            log.info("timed out %d workflow(s)", expired)
        await self._stages.notify()
        reminded = await self._stages.send_reminders()
        if reminded:
            log.info("sent %d reminder(s)", reminded)

    async def run(self) -> None:
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a sweep that fails must not stop the worker
                log.warning("housekeeping failed: %s", exc)
            await asyncio.sleep(self._interval)
