"""How the stages call a peer: under the retry policy (a bounded number of
tries with backoff; then :class:`Exhausted`), and behind a :class:`Gate` the
peer can close ("slow down"). Waiting out a database outage, which has no
bound, is the storage's: :func:`streams.storage.outages.outlasting_outages`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from handlers.errors import TransientError
from handlers.retry import RETRY_AFTER_MAX, RetryPolicy, bounded_retry_after

T = TypeVar("T")
log = logging.getLogger(__name__)


class Exhausted(Exception):
    """Every attempt failed transiently; ``last`` is the final error.

    A plain exception (not a frozen dataclass): raising one through a context
    manager sets ``__traceback__`` on it."""

    def __init__(self, last: TransientError, attempts: int) -> None:
        super().__init__(last, attempts)
        self.last = last
        self.attempts = attempts

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
    tries, then raised as :class:`Exhausted`; a peer's ``Retry-After`` makes a
    wait longer, never past ``policy.retry_after_max``. Any other exception
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
            delay = policy.wait(attempt, exc.retry_after)
            log.warning("%s failed (attempt %d/%d), retrying in %.1fs: %s",
                        what, attempt, policy.attempts, delay, exc)
            await sleep(delay)


class Gate:
    """A pause shared by every call to one peer: when the peer answers "slow
    down" (429/503 with ``Retry-After``), :meth:`hold` closes the gate and
    every caller's :meth:`wait` sleeps until it opens, so the whole pool backs
    off, not just the call that was told. A hold lasts ``max_hold`` seconds
    at most (RETRY_AFTER_MAX): a peer cannot close the gate until a restart."""

    def __init__(self, max_hold: float = RETRY_AFTER_MAX) -> None:
        self._open_at = 0.0  # event-loop time
        self.max_hold = max_hold
        #: How many times the peer has asked us to slow down.
        self.holds = 0

    def hold(self, seconds: float | None) -> None:
        """Close the gate for ``seconds`` (at most ``max_hold``); a wait that
        is not a finite number >= 0 (``nan``, ``inf``) is no wait at all."""
        bounded = bounded_retry_after(seconds, self.max_hold)
        if bounded is None:
            return
        self.holds += 1
        self._open_at = max(self._open_at, self._now() + bounded)

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    @property
    def closed_for(self) -> float:
        """Seconds until the gate opens (0 when open)."""
        return max(0.0, self._open_at - self._now())

    async def wait(self) -> None:
        while (left := self.closed_for) > 0:
            await asyncio.sleep(left)
