"""Fuzz (issue 17): hostile emails through the whole flow of a live worker.

Each email (subject, sender, bodies of any shape: tests/support/fuzzing.py)
is taken, drafted and texted, or ends in a state that says why; a ``1``
then sends the reply, to one address, with clean headers, or (only when the
sender names no address at all) fails saying why. Nothing waits behind it:
each example's email is the only one on the phone.
"""

from __future__ import annotations

import asyncio
import json
import re
from email.utils import getaddresses
from typing import Any

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from tests.support.fuzzing import LogWatch, describe, email_rows, materialise, raw_request
from tests.support.harness import Pipeline, eventually

FUZZ = settings(max_examples=10, deadline=120_000, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.large_base_example])
#: Where an email may rest before the person answers: on the phone, or a state that says why.
RESTING = {"awaiting_user", "filtered", "failed"}
AN_ADDRESS = re.compile(r"[a-z0-9._+-]+@[a-z0-9-]+\.(com|example|org)")


async def test_hostile_emails_are_answered_or_say_why(pipeline: Pipeline) -> None:
    p = pipeline
    watch = LogWatch(p.worker.log_path)
    ended: list[str] = []

    @FUZZ
    @given(row=email_rows())
    def one(row: dict[str, Any]) -> None:  # in a thread of its own: the stub peers keep the test's loop
        note(f"row={describe(row)}")
        try:
            ended.append(asyncio.run(_example(p, materialise(row))))
        except AssertionError:
            print(f"failing example: row={describe(row)}")
            raise
        bad = watch.new_bad()
        assert not bad, "the worker logged:\n" + "\n".join(bad)
        assert p.worker.running, p.worker.log_tail()

    await asyncio.to_thread(one)
    print(f"how the emails ended: {sorted(ended)}")
    assert (await p.http.get("/health")).status_code == 200


async def _example(p: Pipeline, row: dict[str, Any]) -> str:
    sent = len(p.smtp.messages)
    mid = await p.new_email(**row)

    async def resting() -> str | None:
        state = await p.state(mid)
        return state if state in RESTING else None

    state = await eventually(resting, 30, f"{mid} on the phone or in a state that says why")
    if state != "awaiting_user":
        [why] = await p.query("SELECT error_message FROM workflow_state WHERE message_id = %s", mid)
        assert state == "filtered" or why["error_message"], f"{state} without a reason"
        return state
    body = json.dumps(p.webhook_body("1")).encode()  # p.http belongs to the test's loop, not this one
    answer = await raw_request(p.port, "POST", "/orchestrator/sms-response",
                               [(b"Content-Type", b"application/json")], body)
    assert answer.status == 200 and answer.json()["status"] == "accepted", answer

    async def done() -> str | None:
        state = await p.state(mid)
        return state if state in ("reply_sent", "failed") else None

    state = await eventually(done, 30, f"{mid} sent (or failed) after its 1")
    if state == "failed":
        [why] = await p.query("SELECT error_message FROM workflow_state WHERE message_id = %s", mid)
        assert not AN_ADDRESS.search(row["from_address"]), \
            f"approved, then failed though the sender names an address: {why['error_message']}"
        assert why["error_message"], "failed without a reason"
        return "failed after approval (no address)"
    await eventually(lambda: _more(p, sent), 10, "the reply at the SMTP server")
    reply = p.smtp.messages[sent]
    recipients = [address for _, address in getaddresses([str(reply["To"])]) if address]
    assert len(recipients) == 1, f"the reply's To names {len(recipients)} address(es): {reply['To']!r}"
    for header in ("To", "Subject", "In-Reply-To", "References"):
        assert not re.search(r"[\r\n]", str(reply[header] or "")), f"{header} of the reply: {reply[header]!r}"
    return "reply_sent"


async def _more(p: Pipeline, count: int) -> bool:
    return len(p.smtp.messages) > count
