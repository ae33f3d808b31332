"""The HTTP call every peer adapter makes, with the error taxonomy applied once."""

from __future__ import annotations

from typing import Any

import httpx

from handlers.errors import PermanentError, TransientError


async def post_json(client: httpx.AsyncClient, url: str, body: dict[str, Any], peer: str,
                    transient_statuses: frozenset[int] = frozenset({429})) -> httpx.Response:
    """POST ``body``; return a 2xx/404 response, or raise.

    Network errors, timeouts, 5xx and ``transient_statuses`` raise
    :class:`TransientError`; other 4xx except 404 raise :class:`PermanentError`.
    404 is returned: what it means is the caller's to say.
    """
    try:
        response = await client.post(url, json=body)
    except httpx.HTTPError as exc:
        raise TransientError(peer, f"{type(exc).__name__}: {exc}") from exc
    if response.status_code >= 500 or response.status_code in transient_statuses:
        raise TransientError(peer, f"HTTP {response.status_code}")
    if response.status_code >= 300 and response.status_code != 404:
        raise PermanentError(peer, f"HTTP {response.status_code}: {response.text[:200]}")
    return response
