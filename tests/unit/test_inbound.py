"""The webhook body parser and signature check (docs/contracts.md §3)."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handlers.inbound import (
    InvalidWebhook,
    SignatureError,
    expected_signature,
    normalise_phone,
    parse_webhook,
    verify_signature,
)

EVENT = {"deviceId": "dev-1", "event": "sms:received", "id": "evt-123", "webhookId": "wh-1",
         "payload": {"messageId": "m-77", "message": "2 make it more casual", "phoneNumber": "+15551234567",
                     "simNumber": 1, "receivedAt": "2026-11-24T10:15:00.000+00:00"}}


def test_the_gateway_event() -> None:
    sms = parse_webhook(json.dumps(EVENT).encode())
    assert (sms.event, sms.sms_id, sms.phone_number, sms.text) == (
        "sms:received", "m-77", "+15551234567", "2 make it more casual")
    assert sms.received_at is not None and sms.received_at.isoformat() == "2026-11-24T10:15:00+00:00"


def test_the_old_flat_body_gets_a_stable_id() -> None:
    body = {"from": "+1 (555) 123-4567", "message": "1", "device_id": "d", "timestamp": "2026-11-24T10:15:00Z"}
    a, b = parse_webhook(json.dumps(body).encode()), parse_webhook(json.dumps(body).encode())
    assert a.phone_number == "+15551234567" and a.text == "1"
    assert a.sms_id == b.sms_id and a.sms_id.startswith("sha256:")


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b"not json", "body is not JSON"), (b"[1]", "body must be a JSON object"),
     (b'{"event": "sms:received"}', "payload: Field required"),
     (b'{"payload": {"message": "1"}}', "event: Field required"),
     (b'{"from": "+1555"}', "message: Field required"), (b"\xff\xfe", "body is not JSON")],
)
def test_bad_bodies_say_why(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidWebhook, match=reason):
        parse_webhook(body)


@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_no_body_crashes_the_parser(body: bytes) -> None:
    try:
        parse_webhook(body)
    except InvalidWebhook:
        pass


@given(st.text(max_size=500), st.text(min_size=1, max_size=60).filter(lambda s: s.strip() != ""))
def test_event_round_trip(message: str, sms_id: str) -> None:
    body = json.loads(json.dumps(EVENT))
    body["payload"].update(message=message, messageId=sms_id)
    sms = parse_webhook(json.dumps(body).encode())
    assert (sms.text, sms.sms_id) == (message, sms_id)


@pytest.mark.parametrize("raw", ["+15551234567", "+1 555 123 4567", "+1-555-123-4567", "001 555 123 4567"])
def test_phone_numbers_normalise(raw: str) -> None:
    assert normalise_phone(raw) == "+15551234567"


KEY = b"shared-key"
BODY = json.dumps(EVENT).encode()


def test_a_valid_signature_passes() -> None:
    ts = "1795600000"
    sig = hmac.new(KEY, BODY + ts.encode(), hashlib.sha256).hexdigest()
    assert sig == expected_signature(KEY, BODY, ts)
    verify_signature(KEY, BODY, ts, sig, now=1795600100)


@pytest.mark.parametrize(
    ("ts", "sig", "now", "reason"),
    [(None, "x", 0, "headers are required"), ("1795600000", None, 0, "headers are required"),
     ("soon", "x", 0, "unix seconds"), ("1795600000", "SIG", 1795600301, "outside the 300 s window"),
     ("1795600000", "SIG", 1795599699, "outside the 300 s window"),
     ("1795600000", "0" * 64, 1795600000, "does not match"),
     ("1795600001", "SIG", 1795600000, "does not match")],
)
def test_bad_signatures_are_refused(ts: str | None, sig: str | None, now: float, reason: str) -> None:
    good = expected_signature(KEY, BODY, "1795600000")
    with pytest.raises(SignatureError, match=reason):
        verify_signature(KEY, BODY, ts, good if sig == "SIG" else sig, now)


def test_a_valid_signature_over_another_body_is_refused() -> None:
    ts = "1795600000"
    sig = expected_signature(KEY, b'{"other": 1}', ts)
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature(KEY, BODY, ts, sig, 1795600000)


def test_a_long_sender_fits_what_is_stored() -> None:
    body = {"from": "0" * 39, "message": "", "device_id": "", "timestamp": ""}
    sms = parse_webhook(json.dumps(body).encode())
    assert len(sms.phone_number) <= 40 and sms.received_at is None
