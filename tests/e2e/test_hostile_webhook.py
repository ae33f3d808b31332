"""The webhook over a real socket, as a hostile or faulty world meets it
(issue 17 items 5, 7, 8, 9 and the header half of 15; issue 22 items 1, 2):
no answer is lost, none is acted on twice because of an id we made up, and
no header or notation turns into a 500 or a silent drop."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from handlers.inbound import GATEWAY_EVENTS, expected_signature
from standins.peers import gateway_event, webhook_body, webhook_headers
from tests.support.harness import PHONE, Pipeline

KEY = "webhook-signing-key"
PATH = "/orchestrator/sms-response"


async def raw_post(p: Pipeline, head: list[bytes], pieces: list[bytes], pause: float = 0.0,
                   timeout: float = 20) -> tuple[int, dict[str, Any]]:
    """POST over a plain socket to the live worker: the header lines exactly as
    given (bytes, any characters), the body in ``pieces`` sent ``pause`` apart."""
    reader, writer = await asyncio.open_connection("127.0.0.1", p.port)
    try:
        writer.write(b"\r\n".join([f"POST {PATH} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close",
                                   *head]) + b"\r\n\r\n")
        await writer.drain()
        for piece in pieces:
            await asyncio.sleep(pause)
            writer.write(piece)
            await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    _, _, body = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), json.loads(body) if body else {}


def signed_head(body: bytes, key: str = KEY) -> list[bytes]:
    stamp = str(int(time.time()))
    return [b"Content-Type: application/json", f"X-Timestamp: {stamp}".encode(),
            f"X-Signature: {expected_signature(key.encode(), body, stamp)}".encode()]


async def answer_in_turn(p: Pipeline, bodies: list[dict[str, Any]]) -> None:
    """One email per body; each body (a `1`) answers the draft then on the phone, which is sent."""
    before = len(p.smtp.messages)
    for n, body in enumerate(bodies):
        mid = await p.new_email(subject=f"email {n}")
        await p.reaches(mid, "awaiting_user")
        raw = json.dumps(body).encode()
        response = await p.http.post(PATH, content=raw, headers=webhook_headers(raw, None))
        assert response.json()["status"] == "accepted", (n, response.text)
        await p.reaches(mid, "reply_sent")
    await p.emails(before + len(bodies))


async def test_a_body_sent_in_pieces_is_read_whole(make_pipeline: Any) -> None:
    """Item 5: a long SMS arrives in several TCP segments; it is read to its end, then checked."""
    p: Pipeline = await make_pipeline(SMS_WEBHOOK_SIGNING_KEY=KEY)
    mid = await p.new_email()
    await p.reaches(mid, "awaiting_user")
    body = json.dumps(p.webhook_body("1" + " " * 3500)).encode()  # blanks around a command are ignored
    pieces = [body[i:i + 700] for i in range(0, len(body), 700)]
    status, answer = await raw_post(p, [*signed_head(body), f"Content-Length: {len(body)}".encode()],
                                    pieces, pause=0.05)
    assert (status, answer.get("status")) == (200, "accepted"), answer
    await p.reaches(mid, "reply_sent")
    await p.emails(1)

    ping = json.dumps(gateway_event("system:ping", {"health": {"status": "pass"}, "pad": "x" * 3000})).encode()
    chunks = [b"%x\r\n%s\r\n" % (len(c), c) for c in (ping[i:i + 500] for i in range(0, len(ping), 500))]
    status, answer = await raw_post(p, [*signed_head(ping), b"Transfer-Encoding: chunked"],
                                    [*chunks, b"0\r\n\r\n"], pause=0.05)
    assert (status, answer.get("status")) == (200, "ignored"), answer

    big = b'{"pad": "' + b"x" * 17000 + b'"}'
    status, answer = await raw_post(p, [*signed_head(big), b"Transfer-Encoding: chunked"],
                                    [b"%x\r\n%s\r\n" % (len(big), big), b"0\r\n\r\n"])
    assert status == 413 and "larger than" in answer["error"]


async def test_answers_without_a_gateway_id_are_never_dropped_as_duplicates(pipeline: Pipeline) -> None:
    """Item 7: the old flat body, and an event with no messageId, id nor
    receivedAt: the same `1` answering successive drafts is acted on each time."""
    flat = {"from": PHONE, "message": "1"}
    bare = gateway_event("sms:received", {"message": "1", "sender": PHONE})
    del bare["id"]
    await answer_in_turn(pipeline, [flat, flat, bare, bare])
    rows = await pipeline.query("SELECT sms_id, outcome FROM inbound_sms ORDER BY accepted_at")
    assert len({r["sms_id"] for r in rows}) == 4 and all(r["outcome"] for r in rows)


async def test_the_phone_in_any_notation_is_the_phone(pipeline: Pipeline) -> None:
    """Item 8: national, tel:, spaced or bidi-marked forms of YOUR_PHONE_NUMBER
    are the person (each gets the help SMS a word like "hello" gets); other
    senders are ignored with a WARNING naming the number as given and as read."""
    notations = ["15551234567", "(555) 123-4567", "tel:+1-555-123-4567", "\u200e+1 555 123 4567\u200f",
                 "\u202a+15551234567\u202c", "+1\u00a0555\u00a0123\u00a04567"]
    for n, number in enumerate(notations):
        response = await pipeline.reply_sms("hello", phone=number)
        assert response.json()["status"] == "accepted", (number, response.text)
        await pipeline.sms_at_least(n + 1)
    await pipeline.sms_count(len(notations))
    for stranger in ("+15550000000", "BANK", "(555) 000-0000"):
        response = await pipeline.reply_sms("hello", phone=stranger)
        assert response.json()["status"] == "ignored"
    await pipeline.sms_count(len(notations))
    log = pipeline.worker.log_path.read_text()
    assert "ignored an SMS from 'BANK' (read as no phone number with PHONE_REGION=US)" in log
    assert "ignored an SMS from '(555) 000-0000' (read as +15550000000 with PHONE_REGION=US)" in log
    rows = await pipeline.query("SELECT phone_number FROM inbound_sms WHERE outcome = 'foreign_number'")
    assert sorted(r["phone_number"] for r in rows) == ["+15550000000", "+15550000000", "BANK"]


async def test_only_declared_json_is_read(pipeline: Pipeline) -> None:
    """Item 9: what a web page can send cross-site without a preflight (no
    Content-Type, or a "simple" one) is refused 415 and changes nothing."""
    mid = await pipeline.new_email()
    await pipeline.reaches(mid, "awaiting_user")
    trail = await pipeline.trail(mid)
    body = json.dumps(pipeline.webhook_body("1")).encode()
    for head in ([], [b"Content-Type: text/plain;charset=UTF-8"], [b"Content-Type: application/x-www-form-urlencoded"],
                 [b"Content-Type: multipart/form-data; boundary=x"], [b"Content-Type: text/json"]):
        status, answer = await raw_post(pipeline, [*head, f"Content-Length: {len(body)}".encode()], [body])
        assert status == 415 and "application/json" in answer["error"], head
    assert await pipeline.query("SELECT * FROM inbound_sms") == []
    await asyncio.sleep(1)
    assert await pipeline.trail(mid) == trail and await pipeline.state(mid) == "awaiting_user"
    assert webhook_headers(body, None)["Content-Type"] == "application/json"
    for ctype in ("application/json; charset=utf-8", "application/vnd.sms-gateway+json"):
        status, answer = await raw_post(pipeline, [f"Content-Type: {ctype}".encode(),
                                                   f"Content-Length: {len(body)}".encode()], [body])
        assert (status, answer.get("status")) == (200, "accepted" if ctype.startswith("application/json")
                                                  else "duplicate"), answer
    await pipeline.reaches(mid, "reply_sent")


async def test_headers_of_any_characters_are_a_401_with_a_reason(make_pipeline: Any) -> None:
    """Item 15 (the webhook's half): a non-ASCII or undecodable X-Signature or X-Timestamp."""
    p: Pipeline = await make_pipeline(SMS_WEBHOOK_SIGNING_KEY=KEY)
    body = json.dumps(p.webhook_body("1")).encode()
    good = signed_head(body)
    stamp, signature = good[1], good[2]
    cases = [
        [stamp, "X-Signature: é".encode() + signature[len("X-Signature: ") + 1:]],
        [stamp, b"X-Signature: " + b"\xff" * 64],
        [stamp, "X-Signature: ００".encode()],
        ["X-Timestamp: ١٧٩٥٦٠٠٠٠٠".encode(), signature],
        [b"X-Timestamp: \xff\xfe", signature],
    ]
    for n, headers in enumerate(cases):
        status, answer = await raw_post(p, [b"Content-Type: application/json", *headers,
                                            f"Content-Length: {len(body)}".encode()], [body])
        assert status == 401 and answer["error"], (n, status, answer)
    assert await p.query("SELECT * FROM inbound_sms") == []
    assert p.worker.log_path.read_text().count("webhook refused from") == len(cases)


async def test_todays_gateway_payload_and_every_event_type(pipeline: Pipeline) -> None:
    """Issue 22 items 1, 2: `sender` alone and `phoneNumber` alone are answers;
    every event type the gateway defines, and one it does not, is a 2xx that
    changes nothing; neither number is a 400 naming both; a batch is taken event by event."""
    mid = await pipeline.new_email()
    await pipeline.reaches(mid, "awaiting_user")
    trail = await pipeline.trail(mid)
    samples: dict[str, Any] = {
        "sms:sent": {"messageId": "s1", "recipient": PHONE, "phoneNumber": PHONE, "simNumber": 1, "partsCount": 1,
                     "sentAt": "2026-11-24T10:15:00.000+01:00"},
        "sms:delivered": {"messageId": "s1", "recipient": PHONE, "deliveredAt": "2026-11-24T10:15:01.000+01:00"},
        "sms:failed": {"messageId": "s1", "recipient": PHONE, "failedAt": "2026-11-24T10:15:01.000+01:00",
                       "reason": "no signal"},
        "sms:cancelled": {"messageId": "s1", "recipient": PHONE, "cancelledAt": "2026-11-24T10:15:01.000+01:00"},
        "sms:data-received": {"messageId": "d1", "sender": PHONE, "data": "AAE=", "receivedAt": "2026-11-24T10:15"},
        "mms:received": {"messageId": "mm1", "sender": PHONE, "subject": "1", "size": 10},
        "mms:downloaded": {"messageId": "mm1", "sender": PHONE, "body": "1"},
        "system:ping": {"health": {"status": "pass"}}, "app:started": {},
        "some:future-event": None,
    }
    assert set(samples) >= GATEWAY_EVENTS - {"sms:received"}
    for event, payload in samples.items():
        raw = json.dumps(gateway_event(event, payload)).encode()
        response = await pipeline.http.post(PATH, content=raw, headers=webhook_headers(raw, None))
        assert response.status_code == 200 and response.json()["status"] == "ignored", (event, response.text)
        assert event in response.json()["reason"]
    neither = json.dumps(webhook_body("1", PHONE, fields=("recipient",))).encode()
    response = await pipeline.http.post(PATH, content=neither, headers=webhook_headers(neither, None))
    assert response.status_code == 400
    assert "sender" in response.json()["error"] and "phoneNumber" in response.json()["error"]
    await asyncio.sleep(1)
    assert await pipeline.trail(mid) == trail and await pipeline.query("SELECT * FROM inbound_sms") == []
    assert pipeline.worker.log_path.read_text().count("nothing done") == len(samples)

    batch = json.dumps([gateway_event("system:ping", {}), webhook_body("1", PHONE, fields=("sender",)),
                        {"event": "sms:received"}]).encode()
    response = await pipeline.http.post(PATH, content=batch, headers=webhook_headers(batch, None))
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["ignored", "accepted", "invalid"], results
    await pipeline.reaches(mid, "reply_sent")
    await answer_in_turn(pipeline, [webhook_body("1", PHONE, fields=("phoneNumber",)),
                                    webhook_body("1", PHONE, fields=("sender", "recipient"))])
    await pipeline.emails(3)


async def test_text_no_column_can_store_is_read_not_a_500(pipeline: Pipeline) -> None:
    """JSON may spell a NUL (``\\u0000``) or a lone surrogate (``\\ud800``),
    which neither PostgreSQL's text nor UTF-8 takes: the answer is read with
    U+FFFD in their place (schemathesis once found the NUL as a 500)."""
    mid = await pipeline.new_email()
    await pipeline.reaches(mid, "awaiting_user")
    for n, text in enumerate(["hello\u0000", "he\ud800llo"]):
        response = await pipeline.reply_sms(text, sms_id=f"m-\u0000{n}")  # JSON spells them as escapes
        assert response.status_code == 200 and response.json()["status"] == "accepted", response.text
    await pipeline.sms_count(3)  # the draft, and a help SMS for each (neither is a command)
    rows = await pipeline.query("SELECT sms_id, body FROM inbound_sms ORDER BY accepted_at")
    assert [r["body"] for r in rows] == ["hello\ufffd", "he\ufffdllo"] and rows[0]["sms_id"] == "m-\ufffd0"
    assert await pipeline.state(mid) == "awaiting_user"
