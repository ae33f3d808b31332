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

from handlers.clock import Clock
from handlers.errors import PeerError
from handlers.retry import ParkPolicy, RetryPolicy
from streams.settings import Settings
from streams.stages.ports import MailSender, ReplyGenerator, SentMailbox, SmsSender
from streams.stages.retrying import Exhausted, Gate, call_with_retries
from streams.storage.protocol import Repository

log = logging.getLogger(__name__)


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

    @property
    def policy(self) -> RetryPolicy:
        s = self.settings
        return RetryPolicy(s.max_retry_attempts, s.retry_backoff_base, s.retry_backoff_max)

    @property
    def park_policy(self) -> ParkPolicy:
        s = self.settings
        return ParkPolicy(s.retry_park_base, s.retry_park_max, s.retry_deadline)

    @property
    def phone(self) -> str:
        return self.settings.your_phone_number

    async def tell_person(self, text: str | None) -> None:
        """Best effort: an informational SMS that fails is logged, not retried
        forever. Nothing to say (None) sends nothing."""
        if not text:
            return
        try:
            await call_with_retries(lambda: self.sms.send(self.phone, text), self.policy, "SMS")
        except (Exhausted, PeerError) as exc:
            log.warning("could not text the person: %s", exc)
