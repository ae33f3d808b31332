"""Unguessable draft links: the token is an HMAC of the message_id."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote


def draft_token(key: bytes, message_id: str) -> str:
    return hmac.new(key, message_id.encode(), hashlib.sha256).hexdigest()[:32]


def token_matches(key: bytes, message_id: str, token: str) -> bool:
    """Constant-time check; any string is a fair input (non-ASCII simply fails)."""
    return hmac.compare_digest(draft_token(key, message_id).encode(), token.encode("utf-8", "replace"))


def draft_url(base_url: str, key: bytes, message_id: str) -> str:
    """``{base}/drafts/{urlencoded message_id}?t={token}`` (docs/design.md, "Long drafts")."""
    return f"{base_url.rstrip('/')}/drafts/{quote(message_id, safe='')}?t={draft_token(key, message_id)}"
