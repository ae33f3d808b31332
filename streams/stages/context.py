"""What every stage shares: the settings, the storage, the peers (through
their ports), the clock and the policies derived from the settings.

The stages are plain functions of this context (one module per stage); the
:class:`~streams.stages.facade.Stages` facade is a context with one method
per stage, so callers hold a single object.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from handlers.clock import Clock
from handlers.errors import PeerError
from handlers.retry import ParkPolicy, RetryPolicy
from streams.settings import Settings
from streams.stages.ports import MailSender, ReplyGenerator, SentMailbox, SmsSender
from streams.stages.retrying import Exhausted, Gate, call_with_retries
from streams.storage.protocol import Repository

log = logging.getLogger(__name__)

#: The longest :meth:`StageContext.tell_person` holds its caller: one attempt
#: at most, so a gateway that asks to wait (429) or hangs never holds the
#: person's next answer; retries go on behind it. A gateway that answers takes
#: well under a second, so the common case is still "texted when it returns".
TELL_WAIT = 5.0
#: Informational SMS being retried behind their callers, at most; beyond that
#: one is dropped with a WARNING rather than pile up while the gateway is away.
MAX_TELLING = 100


@dataclass
class StageContext:
    settings: Settings
    repo: Repository
    ai: ReplyGenerator
    sms: SmsSender
    smtp: MailSender
    clock: Clock
    #: The account's Sent folder, to settle sends cut off mid-way (None: a person settles them).
    sent_folder: SentMailbox | None = None
    #: Shared by every generation of this worker: closed while the generator asks us to wait.
    generator_gate: Gate = field(default_factory=Gate)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    #: When the Sent folder was last searched for replies written elsewhere (stages/elsewhere.py).
    elsewhere_checked_at: datetime | None = field(default=None, init=False, repr=False)
    #: Informational SMS still being retried (see :meth:`tell_person`).
    telling: set[asyncio.Task[None]] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        self.generator_gate.max_hold = self.settings.retry_after_max

    @property
    def policy(self) -> RetryPolicy:
        s = self.settings
        return RetryPolicy(s.max_retry_attempts, s.retry_backoff_base, s.retry_backoff_max, s.retry_after_max)

    @property
    def park_policy(self) -> ParkPolicy:
        s = self.settings
        return ParkPolicy(s.retry_park_base, s.retry_park_max, s.retry_deadline)

    @property
    def phone(self) -> str:
        return self.settings.your_phone_number

    async def tell_person(self, text: str | None) -> None:
        """Best effort, and never in the caller's way: the SMS is sent by a
        task of its own, retried under the policy, and this returns once its
        first attempt has ended (or after :data:`TELL_WAIT`). So a gateway
        that answers 429 with a long ``Retry-After``, or hangs, never holds
        the command agent (the person's next answer) or any other stage. An
        SMS given up on is logged at WARNING with what it said. Nothing to
        say (None) sends nothing."""
        if not text:
            return
        if len(self.telling) >= MAX_TELLING:
            log.warning("not texting the person (%d SMS still being retried): %r", len(self.telling),
                        text[:80])
            return
        attempted = asyncio.Event()

        async def attempt() -> str | None:
            try:
                return await self.sms.send(self.phone, text)
            finally:
                attempted.set()

        task = asyncio.create_task(self._tell(attempt, text), name="informational SMS")
        self.telling.add(task)
        task.add_done_callback(self.telling.discard)
        first = asyncio.create_task(attempted.wait())
        try:
            await asyncio.wait((task, first), timeout=TELL_WAIT, return_when=asyncio.FIRST_COMPLETED)
        finally:
            first.cancel()

    async def _tell(self, attempt: Callable[[], Awaitable[str | None]], text: str) -> None:
        try:
            await call_with_retries(attempt, self.policy, "SMS")
        except (Exhausted, PeerError) as exc:
            log.warning("could not text the person (%s): %r", exc, text[:80])
        except asyncio.CancelledError:
            log.warning("not texted, the worker is stopping: %r", text[:80])
            raise
        except Exception:  # noqa: BLE001 - a task of its own: nobody else would see it
            log.exception("could not text the person: %r", text[:80])

    async def stop_telling(self) -> None:
        """Give up on the informational SMS still being retried (each is
        logged): the worker is stopping."""
        for task in list(self.telling):
            task.cancel()
        await asyncio.gather(*self.telling, return_exceptions=True)
