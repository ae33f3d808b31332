"""The broker and the database go away mid-run and come back: every workflow
completes without a manual step, and /health tells the truth meanwhile.

These stop and restart the shared services, so they run only against the
services scripts/services runs (scripts/test sets ORCH_SERVICES_MANAGED then;
in CI it always is).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from typing import Any

import httpx
import pytest

from tests.support.harness import PHONE, Pipeline, eventually
from tests.support.services import ROOT

pytestmark = [
    pytest.mark.skipif(os.environ.get("ORCH_SERVICES_MANAGED") != "1",
                       reason="stops the services: only against those scripts/services runs (always so in CI)"),
    pytest.mark.serial,  # no other test may run while the broker or the database is away
]


def services(*args: str) -> None:
    subprocess.run([str(ROOT / "scripts" / "services"), *args], check=True, capture_output=True)


async def health(p: Pipeline) -> tuple[int, dict[str, Any]]:
    try:
        response = await p.http.get("/health", timeout=15)
        return response.status_code, response.json()
    except httpx.HTTPError as exc:
        return 0, {"error": str(exc)}


def check_ok(body: dict[str, Any], name: str) -> object:
    """``checks.<name>.ok`` of a /health body (None when it is not there)."""
    return body.get("checks", {}).get(name, {}).get("ok")


async def outbox(p: Pipeline) -> list[tuple[str, str | None]]:
    """The rows waiting in the outbox: (topic, key)."""
    return [(r["topic"], r["message_key"])
            for r in await p.query("SELECT topic, message_key FROM kafka_outbox ORDER BY id")]


async def test_kafka_down_for_20_seconds(pipeline: Pipeline) -> None:
    first = await pipeline.new_email(subject="before")
    await pipeline.reaches(first, "awaiting_user")
    assert await eventually(lambda: _empty(pipeline), 20, "the outbox drained before the outage")
    # The Kafka client logs at ERROR while the broker is away: this test takes it away.
    pipeline.expect_log(r"^ERROR aiokafka(\.\S+)?: ")
    services("down", "kafka")
    down_at = time.monotonic()
    try:
        # The person answers and a new email arrives while the broker is away:
        # both are accepted into PostgreSQL (the outbox) and wait there.
        response = await pipeline.reply_sms("1", sms_id="during-1")
        assert response.status_code == 200 and response.json() == {"status": "accepted", "sms_id": "during-1"}
        second = await pipeline.new_email(subject="during")

        async def both_waiting() -> list[tuple[str, str | None]] | None:
            rows = await outbox(pipeline)
            return rows if {("sms.inbound", PHONE), ("emails.pending", second)} <= set(rows) else None

        await eventually(both_waiting, 20, "the answer and the new email in the outbox")

        async def unhealthy() -> bool:
            status, body = await health(pipeline)
            return status == 503 and check_ok(body, "kafka") is False

        await eventually(unhealthy, 20, "/health = 503 with kafka not ok")
        await asyncio.sleep(max(0.0, 20 - (time.monotonic() - down_at)))  # the outage lasts 20 s
        # Still there at the end of the outage, and nothing acted on them meanwhile.
        assert await both_waiting()
        assert (await pipeline.state(first), await pipeline.state(second)) == ("awaiting_user", "pending")
    finally:
        services("up", "kafka")
    await pipeline.reaches(first, "reply_sent", timeout=120)
    await pipeline.reaches(second, "awaiting_user", timeout=60)
    await eventually(lambda: _empty(pipeline), 30, "the outbox drained after the outage")

    seen: list[object] = []

    async def healthy() -> bool:
        status, body = await health(pipeline)
        seen[:] = [body]
        return status == 200

    try:
        await eventually(healthy, 60, "/health = 200 after the broker came back")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last /health: {seen}") from None
    assert [m["In-Reply-To"] for m in await pipeline.emails(1)] == [first]


async def _empty(p: Pipeline) -> bool:
    return await outbox(p) == []


async def test_postgres_restarted_mid_run(pipeline: Pipeline) -> None:
    first = await pipeline.new_email(subject="before")
    await pipeline.reaches(first, "awaiting_user")
    services("down", "postgres")
    try:
        async def unhealthy() -> bool:
            status, body = await health(pipeline)
            return status == 503 and check_ok(body, "database") is False

        await eventually(unhealthy, 20, "/health = 503 with the database not ok")
        # The webhook cannot record the SMS: it says so, and the gateway retries.
        response = await pipeline.http.post("/orchestrator/sms-response", json=pipeline.webhook_body("1", sms_id="m-1"))
        assert response.status_code == 503 and response.json() == {"error": "database unavailable"}
        await asyncio.sleep(5)
    finally:
        services("up", "postgres")
    response = await pipeline.reply_sms("1", sms_id="m-1")
    assert response.json()["status"] == "accepted"
    second = await pipeline.new_email(subject="after")
    await pipeline.reaches(first, "reply_sent", timeout=60)
    await pipeline.reaches(second, "awaiting_user", timeout=60)

    async def healthy() -> bool:
        return (await health(pipeline))[0] == 200

    await eventually(healthy, 60, "/health = 200 after the database came back")
