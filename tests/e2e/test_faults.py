"""Failing peers and bad input: retried, recorded, dead-lettered, never lost."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
from confluent_kafka import Producer

from tests.support.harness import Pipeline, eventually


async def test_a_poison_message_is_dead_lettered_and_the_agent_goes_on(pipeline: Pipeline) -> None:
    # A dead letter is logged at ERROR, for an operator to look at: these two are sent on purpose.
    pipeline.expect_log(r"^ERROR streams\.pipeline\.consumer: dead-lettering a message from emails\.pending "
                        r"\(key <poison@x>\): undecodable message",
                        r"^ERROR streams\.pipeline\.consumer: dead-lettering a message from sms\.inbound "
                        r"\(key \+15551234567\): undecodable message")
    producer = Producer({"bootstrap.servers": pipeline.kafka})
    producer.produce(f"{pipeline.prefix}emails.pending", b"{this is not json", b"<poison@x>")
    producer.produce(f"{pipeline.prefix}sms.inbound", b'{"schema_version": 1}', b"+15551234567")
    producer.flush(10)
    mid = await pipeline.new_email()
    await pipeline.reaches(mid, "awaiting_user")
    letters = await asyncio.to_thread(pipeline.dead_letters, 2)
    by_topic = {d["topic"].removeprefix(pipeline.prefix): d for d in letters}
    poison = by_topic["emails.pending"]
    # The original bytes and key, and headers saying where they came from and why.
    assert (poison["value"], poison["key"]) == (b"{this is not json", b"<poison@x>")
    assert (poison["kind"], poison["stage"], poison["attempts"]) == ("poison", "draft", "1")
    assert poison["partition"].isdigit() and poison["offset"].isdigit()
    assert poison["exception.class.name"] == "UndecodableMessage"
    assert "undecodable" in poison["exception.message"]
    assert "sms_id" in by_topic["sms.inbound"]["exception.message"]


async def test_sms_gateway_failing_twice_is_retried(pipeline: Pipeline) -> None:
    pipeline.sms.failures = 2
    mid = await pipeline.new_email()
    await pipeline.reaches(mid, "awaiting_user")
    await pipeline.sms_count(1)
    assert pipeline.sms.attempts == 3
    [row] = await pipeline.query("SELECT sms_message_id FROM workflow_state WHERE message_id = %s", mid)
    assert row["sms_message_id"] == "sms-1"


async def test_sms_gateway_failing_past_the_budget_fails_the_workflow(make_pipeline: Any) -> None:
    p: Pipeline = await make_pipeline(MAX_RETRY_ATTEMPTS="3", RETRY_DEADLINE="0")  # no parking
    p.sms.failures = 3
    mid = await p.new_email()
    await p.reaches(mid, "failed")
    [row] = await p.query("SELECT failed_stage, error_message, retry_count FROM workflow_state"
                          " WHERE message_id = %s", mid)
    assert row["failed_stage"] == "notify"
    assert "modem busy" in row["error_message"] and row["retry_count"] == 2
    assert await p.email_status(mid) == "failed"
    [letter] = await asyncio.to_thread(p.dead_letters, 1)
    assert (letter["stage"], letter["attempts"], letter["kind"]) == ("notify", "3", "exhausted")
    assert letter["topic"] == f"{p.prefix}drafts.ready" and letter["key"] == mid.encode()
    assert letter["exception.class.name"] == "TransientError" and "modem busy" in letter["exception.message"]
    [failure_sms] = await p.sms_count(1)  # the gateway is back for the give-up notice
    assert failure_sms.startswith("Gave up on the email from John Smith (Meeting tomorrow at 2pm?)")
    assert failure_sms.endswith("It can be retried from the orchestrator.")
    # The retry endpoint puts the same draft back on the phone, without a new generation.
    await p.http.post(p.workflow_path(mid, "retry"))
    await p.reaches(mid, "awaiting_user")
    await p.sms_count(2)
    assert len(p.ai.for_email(mid)) == 1


async def test_generator_5xx_is_retried_and_404_is_not(pipeline: Pipeline) -> None:
    pipeline.ai.failures = [503, 500]
    mid = await pipeline.new_email()
    await pipeline.reaches(mid, "awaiting_user")
    assert len(pipeline.ai.for_email(mid)) == 3
    pipeline.ai.unknown.add("<gone@x>")
    gone = await pipeline.new_email(message_id="<gone@x>")
    await pipeline.reaches(gone, "failed")
    assert len(pipeline.ai.for_email(gone)) == 1
    [row] = await pipeline.query("SELECT failed_stage, error_message FROM workflow_state WHERE message_id = %s", gone)
    assert row == {"failed_stage": "draft",
                   "error_message": "AI Reply Generator: 404: the generator does not know this email"}


async def test_generator_down_for_30_seconds_then_back(make_pipeline: Any) -> None:
    # A retry budget that spans the outage (about 75 s of backoff in expectation), and parking off
    # (RETRY_DEADLINE=0: fail once the in-call retries are spent), so only that budget can ride it out.
    p: Pipeline = await make_pipeline(MAX_RETRY_ATTEMPTS="40", RETRY_BACKOFF_BASE="1", RETRY_BACKOFF_MAX="4",
                                      RETRY_DEADLINE="0")
    await p.ai.stop()
    down_at = time.monotonic()
    mid = await p.new_email()
    await p.reaches(mid, "ai_generating", timeout=10)

    async def reports_ai_down() -> bool:
        body = (await p.http.get("/health")).json()
        return body["checks"]["ai_reply_generator"]["ok"] is False and body["status"] == "ok"

    await eventually(reports_ai_down, 10, "/health reporting the generator down (but the worker fine)")
    while time.monotonic() - down_at < 30:  # the outage: all through it the draft is being retried
        assert await p.state(mid) == "ai_generating"
        await asyncio.sleep(0.5)
    await p.ai.start()
    await p.reaches(mid, "awaiting_user", timeout=30)
    assert (await p.http.get("/health")).json()["checks"]["ai_reply_generator"]["ok"] is True


async def test_smtp_4xx_is_retried_and_sent_once(pipeline: Pipeline) -> None:
    pipeline.smtp.inbox.refusals = ["451 4.3.0 try again later"]
    mid = await pipeline.new_email()
    await pipeline.reaches(mid, "awaiting_user")
    await pipeline.reply_sms("1")
    await pipeline.reaches(mid, "reply_sent")
    await pipeline.emails(1)
    assert pipeline.smtp.inbox.attempts == 2


async def test_smtp_5xx_fails_and_retry_sends_with_the_same_message_id(pipeline: Pipeline) -> None:
    pipeline.smtp.inbox.refusals = ["554 5.7.1 rejected"]
    mid = await pipeline.new_email()
    await pipeline.reaches(mid, "awaiting_user")
    await pipeline.reply_sms("1")
    await pipeline.reaches(mid, "failed")
    [row] = await pipeline.query("SELECT failed_stage, send_attempted_at, reply_message_id FROM workflow_state"
                                 " WHERE message_id = %s", mid)
    assert row["failed_stage"] == "send" and row["send_attempted_at"] is None
    await pipeline.emails(0)
    assert pipeline.smtp.inbox.attempts == 1
    response = await pipeline.http.post(pipeline.workflow_path(mid, "retry"))
    assert response.json()["current_state"] == "user_approved"
    await pipeline.reaches(mid, "reply_sent")
    [email] = await pipeline.emails(1)
    assert email["Message-ID"] == row["reply_message_id"]


async def test_an_unanswered_draft_times_out_and_the_next_is_presented(make_pipeline: Any) -> None:
    p: Pipeline = await make_pipeline(USER_RESPONSE_TIMEOUT="1.5")
    first, second = await p.new_emails({"subject": "first"}, {"subject": "second"})
    sms = (await p.sms_at_least(1))[0]  # the next one follows the timeout within seconds
    shown, other = (first, second) if "first" in sms else (second, first)
    await p.reaches(shown, "timeout", timeout=15)
    assert await p.email_status(shown) == "timeout"
    await p.reaches(other, "awaiting_user")
    await p.reply_sms("1")  # answers the draft now on the phone, not the timed-out one
    await p.reaches(other, "reply_sent")
    assert [m["In-Reply-To"] for m in await p.emails(1)] == [other]


async def test_health_reports_an_agent_with_lag_and_no_progress(make_pipeline: Any) -> None:
    p: Pipeline = await make_pipeline(AGENT_STALL_TIMEOUT="10")
    mid = await p.new_email()
    await p.reaches(mid, "awaiting_user")

    async def stalled() -> dict[str, Any] | None:
        response = await p.http.get("/health")
        body = response.json()
        agents = body["agents"]
        others_fine = all(a["ok"] for name, a in agents.items() if name != "command")
        wedged = not agents["command"]["ok"] and agents["command"]["lag"] > 0
        return body if response.status_code == 503 and wedged and others_fine else None

    # Another session holds the workflow's row: the command agent's answer to
    # "1" waits on it, its record unacknowledged, as a wedged agent would.
    async with await psycopg.AsyncConnection.connect(p.database) as holder:
        await holder.execute("SELECT 1 FROM workflow_state WHERE message_id = %s FOR UPDATE", (mid,))
        await p.reply_sms("1")
        body = await eventually(stalled, 30, "/health = 503 naming the command agent")
        assert body["status"] == "unhealthy" and body["checks"]["database"]["ok"]
        assert await p.state(mid) == "awaiting_user"
        await holder.rollback()

    async def recovered() -> bool:
        return (await p.http.get("/health")).status_code == 200

    await eventually(recovered, 60, "/health = 200 once the agent moves again")
    await p.reaches(mid, "reply_sent")
    await p.emails(1)


async def test_health_shows_the_generator_calls_in_flight(make_pipeline: Any) -> None:
    p: Pipeline = await make_pipeline(GENERATION_CONCURRENCY="8")
    p.ai.delay = 3.0
    ids = await p.new_emails({"subject": "one"}, {"subject": "two"}, {"subject": "three"})

    async def three_in_flight() -> dict[str, Any] | None:
        generation = (await p.http.get("/health")).json()["generation"]
        return generation if generation["in_flight"] == 3 else None

    generation = await eventually(three_in_flight, 10, "three generator calls in flight")
    assert (generation["limit"], generation["concurrency"], generation["error"]) == (8, 8, None)
    page = (await p.http.get("/")).text
    assert "Generator calls in flight: <b>3</b> of 8</span>. Nothing is held: every peer answers." in page

    async def all_drafted() -> bool:
        return {await p.state(mid) for mid in ids} <= {"ai_generated", "sms_sending", "awaiting_user"}

    await eventually(all_drafted, 20, "three drafts")

    async def none_in_flight() -> dict[str, Any] | None:
        generation = (await p.http.get("/health")).json()["generation"]
        return generation if generation["in_flight"] == 0 else None

    assert (await eventually(none_in_flight, 5, "the calls ended"))["finished"] == 3


async def test_an_unexpected_error_fails_the_workflow_instead_of_stranding_it(pipeline: Pipeline) -> None:
    # The unexpected error this test provokes is logged with its traceback, as any would be.
    pipeline.expect_log(r"^ERROR streams\.pipeline\.generation: generation of <\S+> failed unexpectedly\n"
                        r"(.*\n)*psycopg\.DataError: PostgreSQL text fields cannot contain NUL")
    pipeline.ai.draft_for = lambda body, n: "Sure\x00thing"  # PostgreSQL cannot store NUL in text
    mid = await pipeline.new_email()
    await pipeline.reaches(mid, "failed")
    [row] = await pipeline.query("SELECT failed_stage, error_message FROM workflow_state WHERE message_id = %s", mid)
    assert row["failed_stage"] == "draft" and "NUL" in row["error_message"]
    [letter] = await asyncio.to_thread(pipeline.dead_letters, 1)
    assert (letter["topic"], letter["kind"], letter["stage"]) == (
        f"{pipeline.prefix}emails.pending", "permanent", "draft")
    [sms] = await pipeline.sms_count(1)
    assert sms.startswith("Gave up on the email from John Smith")
    pipeline.ai.draft_for = lambda body, n: "Sure thing"
    await pipeline.http.post(pipeline.workflow_path(mid, "retry"))
    await pipeline.reaches(mid, "awaiting_user")
