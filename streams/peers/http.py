"""The HTTP call every peer adapter makes, with the error taxonomy applied once."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from handlers.errors import PermanentError, TransientError

from .. import metrics


async def post_json(client: httpx.AsyncClient, url: str, body: dict[str, Any], peer: str,
                    transient_statuses: frozenset[int] = frozenset({429})) -> httpx.Response:
    """POST ``body``; return a 2xx/404 response, or raise.

    Network errors, timeouts, 5xx and ``transient_statuses`` raise
    :class:`TransientError`; other 4xx except 404 raise :class:`PermanentError`.
    404 is returned: what it means is the caller's to say.
    """
    with metrics.peer_call(peer) as call:
        try:
            response = await client.post(url, json=body)
        except httpx.HTTPError as exc:
            call["outcome"] = "unreachable"
            raise TransientError(peer, f"{type(exc).__name__}: {exc}") from exc
        call["outcome"] = str(response.status_code)
        if response.status_code >= 500 or response.status_code in transient_statuses:
            raise TransientError(peer, f"HTTP {response.status_code}", retry_after(response))
        if response.status_code >= 300 and response.status_code != 404:
            raise PermanentError(peer, f"HTTP {response.status_code}: {response.text[:200]}")
        return response


def retry_after(response: httpx.Response) -> float | None:
    """The ``Retry-After`` header in seconds (delta-seconds or an HTTP date), if any."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds()) if when.tzinfo else None
