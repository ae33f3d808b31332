"""The SMS Gateway (docs/contracts.md §3): ``POST /sms/send``."""

from __future__ import annotations

from pydantic import BaseModel, ValidationError

from handlers.errors import PermanentError, TransientError
from handlers.sms_text import MAX_SMS_CHARS
from streams.peers.http import PeerHttp, post_json

PEER = "SMS Gateway"


class _SendResult(BaseModel):
    success: bool
    message_id: str | None = None
    error: str | None = None


class SmsGateway:
    """Sends SMS. Returns the gateway's message id. HTTP 200 with
    ``success: false`` is a failed send (:class:`TransientError`), as are 5xx,
    timeouts and refused connections; other 4xx are :class:`PermanentError`."""

    def __init__(self, client: PeerHttp, base_url: str) -> None:
        self.client = client
        self.url = base_url.rstrip("/") + "/sms/send"

    async def send(self, to: str, message: str) -> str | None:
        if not 1 <= len(message) <= MAX_SMS_CHARS:
            raise PermanentError(PEER, f"message length {len(message)} outside 1..{MAX_SMS_CHARS}")
        response = await post_json(self.client, self.url, {"to": to, "message": message}, PEER)
        if response.status_code != 200:
            raise PermanentError(PEER, f"HTTP {response.status_code}: {response.text[:200]}")
        try:
            result = _SendResult.model_validate_json(response.content)
        except ValidationError as exc:
            raise TransientError(PEER, "unreadable response") from exc
        if not result.success:
            raise TransientError(PEER, f"send failed: {result.error or 'no reason given'}")
        return result.message_id
