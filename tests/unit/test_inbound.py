"""The webhook body parser and signature check (docs/contracts.md §3)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handlers.inbound import (
    GATEWAY_EVENTS,
    IncomingSms,
    InvalidWebhook,
    SignatureError,
    expected_signature,
    load_body,
    normalise_phone,
    parse_event,
    parse_webhook,
    verify_signature,
)
from handlers.phones import check_region, region_of

EVENT: dict[str, Any] = {
    "deviceId": "dev-1", "event": "sms:received", "id": "evt-123", "webhookId": "wh-1",
    "payload": {"messageId": "m-77", "message": "2 make it more casual", "sender": "+15551234567",
                "recipient": "+15550009999", "phoneNumber": "+15551234567", "simNumber": 1,
                "receivedAt": "2026-11-24T10:15:00.000+00:00"}}


def received(body: dict[str, Any] | bytes, region: str | None = None) -> IncomingSms:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    sms = parse_webhook(raw, region).sms
    assert sms is not None
    return sms


def with_payload(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(json.dumps(EVENT))
    for name, value in changes.items():
        if value is None:
            body["payload"].pop(name, None)
        else:
            body["payload"][name] = value
    return body


def test_the_gateway_event() -> None:
    event = parse_webhook(json.dumps(EVENT).encode())
    sms = event.sms
    assert sms is not None and event.event == "sms:received"
    assert (sms.sms_id, sms.phone_number, sms.text, sms.gateway_id) == (
        "m-77", "+15551234567", "2 make it more casual", True)
    assert sms.received_at is not None and sms.received_at.isoformat() == "2026-11-24T10:15:00+00:00"
    assert (event.event_id, event.message_id, event.payload["recipient"]) == ("evt-123", "m-77", "+15550009999")


@pytest.mark.parametrize("fields", [("sender",), ("phoneNumber",), ("sender", "phoneNumber")])
def test_sender_or_the_deprecated_phone_number(fields: tuple[str, ...]) -> None:
    body = with_payload(**{name: None for name in ("sender", "phoneNumber") if name not in fields})
    assert received(body).phone_number == "+15551234567"


def test_sender_wins_over_phone_number() -> None:
    assert received(with_payload(phoneNumber="+15550000000")).phone_number == "+15551234567"


def test_neither_sender_nor_phone_number_is_refused_naming_both() -> None:
    with pytest.raises(InvalidWebhook, match="sender.*phoneNumber"):
        parse_webhook(json.dumps(with_payload(sender=None, phoneNumber=None)).encode())


def test_without_any_gateway_id_each_delivery_is_its_own_message() -> None:
    """Issue 17 item 7: no id from the gateway, no duplicate; two identical
    bodies are two answers (a `1` to one draft, then a `1` to the next)."""
    flat = {"from": "+1 (555) 123-4567", "message": "1"}
    a, b = received(flat), received(flat)
    assert a.phone_number == "+15551234567" and a.text == "1"
    assert a.sms_id != b.sms_id and not a.gateway_id
    bare = with_payload(messageId=None, receivedAt=None)
    del bare["id"]
    c, d = received(bare), received(bare)
    assert c.sms_id != d.sms_id and not c.gateway_id


def test_the_gateway_ids_are_kept() -> None:
    assert received(EVENT).sms_id == received(EVENT).sms_id == "m-77"
    assert received(with_payload(messageId=None)).sms_id == "evt-123"


@pytest.mark.parametrize("event", sorted(GATEWAY_EVENTS - {"sms:received"}) + ["sms:new-kind", "x"])
def test_other_events_are_read_loosely_and_ignored(event: str) -> None:
    parsed = parse_webhook(json.dumps({"event": event, "id": "e-1", "payload": {"messageId": "7"}}).encode())
    assert parsed.sms is None and parsed.ignored and event in parsed.ignored
    assert (parsed.event_id, parsed.message_id) == ("e-1", "7")
    payload: Any
    for payload in (None, [], "x", {}):
        assert parse_webhook(json.dumps({"event": event, "payload": payload}).encode()).sms is None


def test_a_batch_is_taken_event_by_event() -> None:
    items, batch = load_body(json.dumps([EVENT, {"event": "system:ping"}, 1]).encode())
    assert batch and len(items) == 3
    assert parse_event(items[0]).sms is not None and parse_event(items[1]).sms is None
    with pytest.raises(InvalidWebhook):
        parse_event(items[2])
    grouped = {"event": "sms:batch:received", "payload": {"messages": [EVENT["payload"], EVENT["payload"]]}}
    items, batch = load_body(json.dumps(grouped).encode())
    assert batch and [parse_event(i).sms for i in items] == [received(EVENT)] * 2


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b"not json", "body is not JSON"), (b"[1]", "body must be a JSON object"), (b'"x"', "JSON object"),
     (b'{"event": "sms:received"}', "payload: Field required"),
     (b'{"event": "sms:received", "payload": {"sender": "+1555"}}', "payload.message: Field required"),
     (b'{"payload": {"message": "1"}}', "event: Field required"),
     (b'{"from": "+1555"}', "message: Field required"), (b"\xff\xfe", "body is not JSON"),
     (b"[]", "batch is empty"), (b"[" * 8000 + b"]" * 8000, "nested too deeply")],
)
def test_bad_bodies_say_why(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidWebhook, match=reason):
        parse_webhook(body)


@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_no_body_crashes_the_parser(body: bytes) -> None:
    try:
        items, _ = load_body(body)
        for item in items:
            try:
                parse_event(item, "US")
            except InvalidWebhook:
                pass
    except InvalidWebhook:
        pass


@given(st.text(max_size=500), st.text(min_size=1, max_size=60).filter(lambda s: s.strip() != ""))
def test_event_round_trip(message: str, sms_id: str) -> None:
    """Text and id arrive as sent, but for what no text column stores (NUL, a
    lone surrogate), which reads as U+FFFD."""
    sms = received(with_payload(message=message, messageId=sms_id))
    storable = re.compile("[\x00\ud800-\udfff]")
    assert (sms.text, sms.sms_id) == (storable.sub("\ufffd", message), storable.sub("\ufffd", sms_id))


@pytest.mark.parametrize("raw", [
    "+15551234567", "+1 555 123 4567", "+1-555-123-4567", "001 555 123 4567", "15551234567", "(555) 123-4567",
    "555.123.4567", "tel:+1-555-123-4567", "\u200e+1 555 123 4567", "\u202a+15551234567\u202c",
    "\u2066(555) 123-4567\u2069", "+1\u00a0555\u00a0123\u00a04567", "\uff0b\uff11\uff15\uff15\uff15\uff11\uff12\uff13\uff14\uff15\uff16\uff17",
])
def test_phone_numbers_in_any_notation_normalise(raw: str) -> None:
    """Issue 17 item 8: national (in PHONE_REGION), tel: URIs, bidi marks, fullwidth digits."""
    assert normalise_phone(raw, "US") == "+15551234567"


def test_national_numbers_need_a_region() -> None:
    assert normalise_phone("(555) 123-4567") is None
    assert normalise_phone("07700 900123", "GB") == "+447700900123"
    assert normalise_phone("BANK", "US") is None and normalise_phone("", "US") is None


def test_regions() -> None:
    assert (region_of("+15551234567"), region_of("+447700900123"), region_of("+4915112345678")) == ("US", "GB", "DE")
    assert region_of(None) is None and region_of("nonsense") is None
    assert check_region(" gb ") == "GB"
    with pytest.raises(ValueError, match="two-letter"):
        check_region("XX")


KEY = b"shared-key"
BODY = json.dumps(EVENT).encode()


def test_a_valid_signature_passes() -> None:
    ts = "1795600000"
    sig = hmac.new(KEY, BODY + ts.encode(), hashlib.sha256).hexdigest()
    assert sig == expected_signature(KEY, BODY, ts)
    verify_signature(KEY, BODY, ts, sig, now=1795600100)
    verify_signature(KEY, BODY, ts, f" {sig.upper()} ", now=1795600100)


@pytest.mark.parametrize(
    ("ts", "sig", "now", "reason"),
    [(None, "x", 0, "headers are required"), ("1795600000", None, 0, "headers are required"),
     ("soon", "x", 0, "unix seconds"), ("1795600000", "SIG", 1795600301, "outside the 300 s window"),
     ("1795600000", "SIG", 1795599699, "outside the 300 s window"),
     ("1795600000", "0" * 64, 1795600000, "does not match"),
     ("1795600001", "SIG", 1795600000, "does not match"),
     # Issue 17 item 15: headers of any characters are refused with a reason, never a crash.
     ("1795600000", "é" * 64, 1795600000, "64 hex digits"), ("1795600000", "x", 1795600000, "64 hex digits"),
     ("1795600000", "\udcff" * 64, 1795600000, "64 hex digits"),
     ("\u0661\u0667\u0669\u0665\u0666\u0660\u0660\u0660\u0660\u0660", "SIG", 1795600000, "unix seconds"),
     ("1_795_600_000", "SIG", 1795600000, "unix seconds"), (" 1795600000", "SIG", 1795600000, "unix seconds"),
     ("\udcff", "SIG", 1795600000, "unix seconds")],
)
def test_bad_signatures_are_refused(ts: str | None, sig: str | None, now: float, reason: str) -> None:
    good = expected_signature(KEY, BODY, "1795600000")
    with pytest.raises(SignatureError, match=reason):
        verify_signature(KEY, BODY, ts, good if sig == "SIG" else sig, now)


@given(st.text(max_size=80), st.text(max_size=80))
def test_no_header_crashes_the_signature_check(ts: str, sig: str) -> None:
    try:
        verify_signature(KEY, BODY, ts, sig, 1795600000)
    except SignatureError:
        pass


def test_a_valid_signature_over_another_body_is_refused() -> None:
    ts = "1795600000"
    sig = expected_signature(KEY, b'{"other": 1}', ts)
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature(KEY, BODY, ts, sig, 1795600000)


def test_a_long_sender_fits_what_is_stored() -> None:
    body = {"from": "0" * 39, "message": "", "device_id": "", "timestamp": ""}
    sms = received(body)
    assert sms.received_at is None and sms.sender == "0" * 39
