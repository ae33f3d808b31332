"""The SMS webhook's body and signature (docs/contracts.md §3), as pure functions.

The gateway posts events (``{"event": "sms:received", "payload": {...}}``); an
older gateway build posts a flat body (``{"from": ..., "message": ...}``); a
body may also be a JSON array of events (a batch), taken event by event.
:func:`parse_event` turns each into a :class:`WebhookEvent`; only a received
SMS carries an :class:`IncomingSms`. Anything we do not understand raises
:class:`InvalidWebhook` with a reason fit for a 400 response.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from handlers.messages import SMS_TEXT_LIMIT
from handlers.phones import normalise_phone

__all__ = ["GATEWAY_EVENTS", "IncomingSms", "InvalidWebhook", "SignatureError", "WebhookEvent",
           "expected_signature", "load_body", "normalise_phone", "parse_event", "parse_webhook",
           "verify_signature"]

#: Timestamps further than this from now are replays.
SIGNATURE_WINDOW_SECONDS = 300
RECEIVED = "sms:received"
#: Every event type the gateway defines (its domain/WebHookEvent.kt); only RECEIVED is acted on.
GATEWAY_EVENTS = frozenset({RECEIVED, "sms:sent", "sms:delivered", "sms:failed", "sms:cancelled",
                            "sms:data-received", "mms:received", "mms:downloaded", "system:ping",
                            "app:started"})
#: A batch of received SMS (``payload.messages``), from the gateway's receiver/batch-webhooks branch.
BATCH_RECEIVED = "sms:batch:received"
#: The most events one batch body may hold (the 16 KiB body limit holds fewer anyway).
MAX_BATCH = 100
#: ``X-Timestamp``: unix seconds in ASCII digits (``int()`` alone also takes
#: other scripts' digits, signs, blanks and underscores).
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}", re.ASCII)
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}", re.ASCII)


class InvalidWebhook(ValueError):
    """The body is not a webhook we understand; the message says why."""


class SignatureError(ValueError):
    """Missing, stale or wrong signature; the message says which."""


class _Received(BaseModel):
    """The payload of ``sms:received``: ``sender`` (preferred) or ``phoneNumber`` (deprecated)."""

    model_config = ConfigDict(extra="ignore")
    messageId: str | None = Field(default=None, max_length=255)
    message: str = Field(max_length=SMS_TEXT_LIMIT)
    sender: str | None = Field(default=None, max_length=40)
    phoneNumber: str | None = Field(default=None, max_length=40)
    simNumber: int | None = None
    receivedAt: datetime | None = None


class _GatewayEvent(BaseModel):
    """Any event: ``payload`` is checked further only for ``sms:received``."""

    model_config = ConfigDict(extra="ignore")
    deviceId: str | None = None
    event: str = Field(min_length=1, max_length=100)
    id: str | None = Field(default=None, max_length=255)
    webhookId: str | None = None
    payload: Any = None


class _LegacyBody(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    from_: str = Field(alias="from", min_length=1, max_length=40)
    message: str = Field(max_length=SMS_TEXT_LIMIT)
    device_id: str | None = None
    timestamp: str | None = None


@dataclass(frozen=True)
class IncomingSms:
    sms_id: str
    #: E.164 when ``sender`` reads as a phone number, else None.
    phone_number: str | None
    text: str
    received_at: datetime | None
    #: The sender as the gateway wrote it (for the log when it is not the person's phone).
    sender: str = ""
    #: Whether ``sms_id`` is the gateway's (``messageId`` or the event's ``id``): only
    #: then is a second delivery recognised as a duplicate (docs/contracts.md §3).
    gateway_id: bool = True


@dataclass(frozen=True)
class WebhookEvent:
    """One event as the gateway sent it. Type, ids and payload are kept for the
    event types acted on later (delivery reports of ``sms:sent/delivered/failed``)."""

    event: str
    event_id: str | None = None
    message_id: str | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)
    sms: IncomingSms | None = None

    @property
    def ignored(self) -> str | None:
        """Why nothing is done with this event, or None when it is a received SMS."""
        if self.sms is not None:
            return None
        if self.event in GATEWAY_EVENTS:
            return f"event {self.event!r} is not acted on"
        return f"event {self.event!r} is not one the gateway defines"


def own_id() -> str:
    """An id of our own for a delivery that carries none of the gateway's: never a duplicate."""
    return f"local:{uuid.uuid4().hex}"


#: What JSON may hold (``\u0000``, a lone ``\ud800``) but no text column or
#: UTF-8 encoder takes: replaced by U+FFFD, so such a body is read, not a 500.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _storable(value: Any) -> Any:
    """``value`` (decoded JSON) with :data:`_UNSTORABLE` replaced in every string."""
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_storable(v) for v in value]
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    return value


def load_body(body: bytes) -> tuple[list[Any], bool]:
    """The events of a body, and whether it was a batch (a JSON array of
    events, or one ``sms:batch:received`` event holding several messages)."""
    try:
        data = _storable(json.loads(body))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidWebhook(f"body is not JSON: {exc}") from None
    except RecursionError:  # [[[[...]]]]: 16 KiB of it is deeper than the parser goes
        raise InvalidWebhook("body is nested too deeply") from None
    if isinstance(data, dict):
        messages = data.get("payload", {}).get("messages") if isinstance(data.get("payload"), dict) else None
        if data.get("event") != BATCH_RECEIVED or not isinstance(messages, list) or not messages:
            return [data], False
        # The gateway's batch event: each message is an sms:received payload of its own.
        data = [{"event": RECEIVED, "deviceId": data.get("deviceId"), "payload": m} for m in messages]
    if not isinstance(data, list):
        raise InvalidWebhook("body must be a JSON object (or an array of them)")
    if not data:
        raise InvalidWebhook("batch is empty")
    if len(data) > MAX_BATCH:
        raise InvalidWebhook(f"a batch holds at most {MAX_BATCH} events")
    return data, True


def _reason(exc: ValidationError, *within: str) -> str:
    first = exc.errors()[0]
    where = ".".join(str(x) for x in (*within, *first["loc"])) or "body"
    return f"{where}: {first['msg']}"


def parse_event(data: Any, region: str | None = None, new_id: Callable[[], str] = own_id) -> WebhookEvent:
    """One event of either shape; numbers without a country code are read in ``region``."""
    if not isinstance(data, dict):
        raise InvalidWebhook("body must be a JSON object")
    try:
        if "payload" in data or "event" in data:
            return _gateway_event(_GatewayEvent.model_validate(data), region, new_id)
        legacy = _LegacyBody.model_validate(data)
    except ValidationError as exc:
        raise InvalidWebhook(_reason(exc)) from None
    received = None
    if legacy.timestamp:
        try:
            received = datetime.fromisoformat(legacy.timestamp)
        except ValueError:
            received = None
    sms = IncomingSms(sms_id=new_id(), phone_number=normalise_phone(legacy.from_, region), text=legacy.message,
                      received_at=received, sender=legacy.from_, gateway_id=False)
    return WebhookEvent(event=RECEIVED, payload=data, sms=sms)


def _gateway_event(ev: _GatewayEvent, region: str | None, new_id: Callable[[], str]) -> WebhookEvent:
    payload: dict[str, Any] = ev.payload if isinstance(ev.payload, dict) else {}
    message_id = payload.get("messageId")
    event = WebhookEvent(event=ev.event, event_id=ev.id, payload=payload,
                         message_id=message_id if isinstance(message_id, str) else None)
    if ev.event != RECEIVED:
        return event
    if ev.payload is None:
        raise InvalidWebhook("payload: Field required")
    try:
        p = _Received.model_validate(ev.payload)
    except ValidationError as exc:
        raise InvalidWebhook(_reason(exc, "payload")) from None
    sender = p.sender or p.phoneNumber
    if sender is None:
        raise InvalidWebhook("payload: sender (or the deprecated phoneNumber) is required")
    gateway_id = p.messageId or ev.id
    sms = IncomingSms(sms_id=gateway_id or new_id(), phone_number=normalise_phone(sender, region), text=p.message,
                      received_at=p.receivedAt, sender=sender, gateway_id=gateway_id is not None)
    return WebhookEvent(event=ev.event, event_id=ev.id, message_id=p.messageId, payload=payload, sms=sms)


def parse_webhook(body: bytes, region: str | None = None, new_id: Callable[[], str] = own_id) -> WebhookEvent:
    """A body holding one event; raise :class:`InvalidWebhook`."""
    items, batch = load_body(body)
    if batch:
        raise InvalidWebhook("body must be a JSON object")
    return parse_event(items[0], region, new_id)


def expected_signature(key: bytes, body: bytes, timestamp: str) -> str:
    return hmac.new(key, body + timestamp.encode(), hashlib.sha256).hexdigest()


def verify_signature(key: bytes, body: bytes, timestamp: str | None, signature: str | None, now: float) -> None:
    """Check ``X-Signature`` over body + ``X-Timestamp``; raise :class:`SignatureError`.
    Headers of any characters are refused with a reason (never a crash)."""
    if not timestamp or not signature:
        raise SignatureError("X-Timestamp and X-Signature headers are required")
    if not _UNIX_SECONDS.fullmatch(timestamp):
        raise SignatureError("X-Timestamp must be unix seconds")
    if abs(now - int(timestamp)) > SIGNATURE_WINDOW_SECONDS:
        raise SignatureError("X-Timestamp is outside the 300 s window (a replay?)")
    given = signature.strip().lower()
    if not _HEX_SHA256.fullmatch(given):
        raise SignatureError("X-Signature must be 64 hex digits (HMAC-SHA256)")
    if not hmac.compare_digest(expected_signature(key, body, timestamp).encode(), given.encode()):
        raise SignatureError("X-Signature does not match the body")
