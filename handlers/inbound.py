"""The SMS webhook's body and signature (docs/contracts.md §3), as pure functions.

Two body shapes: the gateway's event (``{"event": "sms:received",
"payload": {...}}``) and an older gateway's flat body (``{"from": ...,
"message": ...}``). Both become one :class:`IncomingSms`. Anything else raises
:class:`InvalidWebhook` with a reason fit for a 400 response.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError

#: Timestamps further than this from now are replays.
SIGNATURE_WINDOW_SECONDS = 300


class InvalidWebhook(ValueError):
    """The body is not a webhook we understand; the message says why."""


class SignatureError(ValueError):
    """Missing, stale or wrong signature; the message says which."""


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore")
    messageId: str | None = Field(default=None, max_length=255)
    message: str = Field(max_length=5000)
    phoneNumber: str = Field(min_length=1, max_length=40)
    simNumber: int | None = None
    receivedAt: datetime | None = None


class _GatewayEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")
    deviceId: str | None = None
    event: str
    id: str | None = Field(default=None, max_length=255)
    webhookId: str | None = None
    payload: _Payload


class _LegacyBody(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    from_: str = Field(alias="from", min_length=1, max_length=40)
    message: str = Field(max_length=5000)
    device_id: str | None = None
    timestamp: str | None = None


@dataclass(frozen=True)
class IncomingSms:
    event: str
    sms_id: str
    phone_number: str
    text: str
    received_at: datetime | None


def normalise_phone(number: str) -> str:
    """E.164-ish normal form for comparison: digits with a leading +."""
    compact = re.sub(r"[\s\-().]", "", number)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    return compact


def _fallback_id(*parts: str | None) -> str:
    digest = hashlib.sha256("\x1f".join(p or "" for p in parts).encode()).hexdigest()[:32]
    return f"sha256:{digest}"


def parse_webhook(body: bytes) -> IncomingSms:
    """Parse a webhook body of either shape; raise :class:`InvalidWebhook`."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidWebhook(f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidWebhook("body must be a JSON object")
    try:
        if "payload" in data or "event" in data:
            ev = _GatewayEvent.model_validate(data)
            p = ev.payload
            return IncomingSms(
                event=ev.event,
                sms_id=p.messageId or ev.id or _fallback_id(p.phoneNumber, p.message, str(p.receivedAt)),
                phone_number=normalise_phone(p.phoneNumber),
                text=p.message,
                received_at=p.receivedAt,
            )
        legacy = _LegacyBody.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "body"
        raise InvalidWebhook(f"{where}: {first['msg']}") from None
    received = None
    if legacy.timestamp:
        try:
            received = datetime.fromisoformat(legacy.timestamp)
        except ValueError:
            received = None
    return IncomingSms(
        event="sms:received",
        sms_id=_fallback_id(legacy.from_, legacy.message, legacy.timestamp, legacy.device_id),
        phone_number=normalise_phone(legacy.from_),
        text=legacy.message,
        received_at=received,
    )


def expected_signature(key: bytes, body: bytes, timestamp: str) -> str:
    return hmac.new(key, body + timestamp.encode(), hashlib.sha256).hexdigest()


def verify_signature(key: bytes, body: bytes, timestamp: str | None, signature: str | None, now: float) -> None:
    """Check ``X-Signature`` over body + ``X-Timestamp``; raise :class:`SignatureError`."""
    if not timestamp or not signature:
        raise SignatureError("X-Timestamp and X-Signature headers are required")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise SignatureError("X-Timestamp must be unix seconds") from None
    if abs(now - sent_at) > SIGNATURE_WINDOW_SECONDS:
        raise SignatureError("X-Timestamp is outside the 300 s window (a replay?)")
    if not hmac.compare_digest(expected_signature(key, body, timestamp), signature.strip().lower()):
        raise SignatureError("X-Signature does not match the body")
