"""Work that needs PostgreSQL, repeated for as long as the database is away.

No bound: without the database nothing can be recorded, so giving up would
lose the message. The peer-call retry policy is elsewhere
(:func:`streams.stages.retrying.call_with_retries`): it is bounded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg
import psycopg_pool

T = TypeVar("T")
log = logging.getLogger(__name__)

#: Errors that mean "the database is away", not "this message is bad".
INFRASTRUCTURE_ERRORS: tuple[type[Exception], ...] = (psycopg.OperationalError, psycopg_pool.PoolTimeout)


async def outlasting_outages(
    operation: Callable[[], Awaitable[T]],
    what: str,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    first_delay: float = 0.5,
    max_delay: float = 15.0,
) -> T:
    """Call ``operation`` until it finishes without an infrastructure error
    (:data:`INFRASTRUCTURE_ERRORS`), doubling the wait up to ``max_delay``.
    Any other exception propagates at once; cancellation stops the wait."""
    delay = first_delay
    while True:
        try:
            return await operation()
        except INFRASTRUCTURE_ERRORS as exc:
            log.warning("%s: database unavailable (%s); retrying in %.1fs", what, exc, delay)
            await sleep(delay)
            delay = min(delay * 2, max_delay)
