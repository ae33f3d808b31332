"""Run a peer call under the retry policy (the one place retries happen)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from handlers.errors import TransientError
from handlers.retry import RetryPolicy

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Exhausted(Exception):
    """Every attempt failed transiently; ``last`` is the final error."""

    last: TransientError
    attempts: int

    def __str__(self) -> str:
        return f"gave up after {self.attempts} attempts: {self.last}"


async def call_with_retries(
    operation: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    what: str,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> tuple[T, int]:
    """Call ``operation`` until it succeeds; return (result, attempts used).

    :class:`TransientError` is retried with backoff up to ``policy.attempts``
    tries, then raised as :class:`Exhausted`. Any other exception
    (permanent, outcome unknown) propagates at once.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return await operation(), attempt
        except TransientError as exc:
            if attempt >= policy.attempts:
                raise Exhausted(exc, attempt) from exc
            delay = policy.delay(attempt)
            log.warning("%s failed (attempt %d/%d), retrying in %.1fs: %s",
                        what, attempt, policy.attempts, delay, exc)
            await sleep(delay)
