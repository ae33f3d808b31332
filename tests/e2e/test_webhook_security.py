"""The SMS webhook refuses what it should, changes nothing when it does, and says why."""

from __future__ import annotations

import json
import time
from typing import Any

from tests.support.harness import Pipeline
from handlers.inbound import expected_signature

KEY = "webhook-signing-key"


async def post(p: Pipeline, body: bytes, **headers: str) -> Any:
    return await p.http.post("/orchestrator/sms-response", content=body,
                             headers={"Content-Type": "application/json", **headers})


def signed(body: bytes, ts: int | None = None, key: str = KEY) -> dict[str, str]:
    stamp = str(ts if ts is not None else int(time.time()))
    return {"X-Timestamp": stamp, "X-Signature": expected_signature(key.encode(), body, stamp)}


async def test_spoofing_attempts_change_nothing(make_pipeline: Any) -> None:
    p: Pipeline = await make_pipeline(SMS_WEBHOOK_SIGNING_KEY=KEY)
    mid = await p.new_email()
    await p.reaches(mid, "awaiting_user")
    trail = await p.trail(mid)
    body = json.dumps(p.webhook_body("1")).encode()
    other = json.dumps(p.webhook_body("1")).encode()
    now = int(time.time())
    attempts = {
        "unsigned": {},
        "forged": {"X-Timestamp": str(now), "X-Signature": "0" * 64},
        "old": signed(body, now - 301),
        "future": signed(body, now + 330),  # beyond 300 s even if this loop takes 29 s under load
        "other key": signed(body, key="guess"),
        "other body": signed(other),
    }
    for name, headers in attempts.items():
        response = await post(p, body, **headers)
        assert response.status_code == 401, name
        assert response.json()["error"], name
    log = p.worker.log_path.read_text()
    assert log.count("webhook refused from") == len(attempts)
    assert await p.trail(mid) == trail
    assert await p.query("SELECT * FROM inbound_sms") == []

    wrong_number = json.dumps(p.webhook_body("1", phone="+15550000000")).encode()
    response = await post(p, wrong_number, **signed(wrong_number))
    assert response.json()["status"] == "ignored"
    assert await p.trail(mid) == trail

    response = await post(p, body, **signed(body))
    assert response.json()["status"] == "accepted"
    await p.reaches(mid, "reply_sent")
    replay = await post(p, body, **signed(body))
    assert replay.json()["status"] == "duplicate"
    await p.emails(1)


async def test_bad_requests_get_a_reason(pipeline: Pipeline) -> None:
    ok = json.dumps(pipeline.webhook_body("1")).encode()
    cases = [
        (b"{not json", {}, 400, "body is not JSON"),
        (b'{"event": "sms:received"}', {}, 400, "payload: Field required"),
        (b'"text"', {}, 400, "JSON object"),
        (ok, {"Content-Type": "text/plain"}, 415, "application/json"),
        (b'{"x": "' + b"a" * 20000 + b'"}', {}, 413, "larger than"),
        (b"[" * 8000 + b"]" * 8000, {}, 400, "nested too deeply"),  # was a 500 with a traceback
    ]
    for body, headers, status, reason in cases:
        response = await pipeline.http.post("/orchestrator/sms-response", content=body,
                                            headers={"Content-Type": "application/json", **headers})
        assert response.status_code == status, (body[:30], response.text)
        assert reason in response.json()["error"]
    not_sms = pipeline.webhook_body("1")
    not_sms["event"] = "sms:sent"
    response = await pipeline.http.post("/orchestrator/sms-response", json=not_sms)
    assert response.json()["status"] == "ignored" and "'sms:sent'" in response.json()["reason"]
    assert await pipeline.query("SELECT * FROM inbound_sms") == []
