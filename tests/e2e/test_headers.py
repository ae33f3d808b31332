"""What travels beside each record's JSON: CloudEvents attributes and one
W3C trace per workflow, read back with kcat as an operator would."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer

from handlers.messages import EmailPending
from streams.kafka.access import confluent_config
from streams.kafka.topics import ensure_topics
from streams.pipeline.relay import OutboxRelay, new_producer
from streams.settings import KafkaSettings
from streams.storage.repository import Pool, WorkflowRepository

from tests.support.factories import insert_email
from tests.support.harness import Pipeline
from tests.support.services import ROOT

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-01$")


@pytest.fixture(scope="module")
def kcat() -> str:
    if shutil.which("kcat") is None:
        subprocess.run([str(ROOT / "scripts" / "services"), "up", "tools"], check=True)
    found = shutil.which("kcat")
    assert found, "kcat is not installed"
    return found


def read_with_kcat(kcat: str, servers: str, topic: str) -> list[tuple[str, dict[str, str], str]]:
    """(key, headers, value) of every record on ``topic``, as kcat prints them."""
    out = subprocess.run([kcat, "-b", servers, "-C", "-t", topic, "-o", "beginning", "-e", "-q",
                          "-f", "%k\x1f%h\x1f%s\x1e"], capture_output=True, text=True, timeout=60, check=True)
    records = []
    for chunk in filter(None, out.stdout.split("\x1e")):
        key, headers, value = chunk.split("\x1f")
        records.append((key, dict(h.split("=", 1) for h in headers.split(",") if h), value))
    return records


def trace_of(traceparent: str) -> str:
    match = TRACEPARENT.match(traceparent)
    assert match, traceparent
    return match.group(1)


async def test_every_record_of_a_workflow_carries_cloudevents_and_one_trace(
        pipeline: Pipeline, kcat: str) -> None:
    mid = await pipeline.new_email(subject="Traced")
    await pipeline.reaches(mid, "awaiting_user")
    await pipeline.reply_sms("1")
    await pipeline.reaches(mid, "reply_sent")
    [row] = await pipeline.query("SELECT trace_id FROM workflow_state WHERE message_id = %s", mid)

    seen: dict[str, list[dict[str, str]]] = {}
    ids: set[str] = set()
    for topic in ("emails.pending", "drafts.ready", "replies.approved", "workflow.events", "phone.freed",
                  "sms.inbound"):
        for key, headers, value in await asyncio.to_thread(read_with_kcat, kcat, pipeline.kafka,
                                                           pipeline.prefix + topic):
            assert value.startswith("{") and '"schema_version"' in value  # the value is the plain JSON
            assert headers["ce_specversion"] == "1.0"
            assert headers["ce_type"] == f"email-orchestrator.{topic}.v1"
            assert headers["ce_source"] == "/email-orchestrator"
            assert headers["content-type"] == "application/json"
            assert re.match(r"^\d{4}-\d\d-\d\dT", headers["ce_time"])
            assert uuid.UUID(headers["ce_id"]) and headers["ce_id"] not in ids
            ids.add(headers["ce_id"])
            assert TRACEPARENT.match(headers["traceparent"]), headers
            if mid in value:
                seen.setdefault(topic, []).append(headers)
    assert set(seen) >= {"emails.pending", "drafts.ready", "replies.approved", "workflow.events",
                         "phone.freed"}
    traces = {trace_of(h["traceparent"]) for hs in seen.values() for h in hs}
    assert traces == {row["trace_id"]}  # one trace for the workflow, begun when its email was picked up
    assert len(seen["workflow.events"]) == 7

    # The worker's log lines of that workflow name the same trace.
    log = pipeline.worker.log_path.read_text()
    assert row["trace_id"] in log


async def test_a_republished_outbox_row_keeps_its_event_id(pool: Pool, repo: WorkflowRepository,
                                                           topic_prefix: str, endpoints: Any) -> None:
    kafka = KafkaSettings(kafka_bootstrap_servers=endpoints.kafka_bootstrap_servers,
                          kafka_topic_prefix=topic_prefix, kafka_topic_partitions=1)
    await asyncio.to_thread(ensure_topics, kafka)
    async with pool.connection() as conn:
        mid = await insert_email(conn)
    await repo.publish(EmailPending(message_id=mid))
    relay = OutboxRelay(pool, "", new_producer(kafka), topic_prefix)
    async with pool.connection() as conn:
        rows = await (await conn.execute("SELECT * FROM kafka_outbox")).fetchall()
    # Published, then the worker dies before the rows are deleted: the next relay publishes them again.
    await relay._publish(rows)
    await relay._publish(rows)

    consumer = Consumer(confluent_config(kafka, **{"group.id": f"t-{uuid.uuid4().hex}",
                                                   "auto.offset.reset": "earliest"}))
    consumer.subscribe([f"{topic_prefix}emails.pending"])
    got = []
    for _ in range(60):
        msg = await asyncio.to_thread(consumer.poll, 0.5)
        if msg is not None and msg.error() is None:
            got.append(dict(msg.headers() or ()))
        if len(got) == 2:
            break
    consumer.close()
    assert len(got) == 2
    assert got[0]["ce_id"] == got[1]["ce_id"] == str(rows[0]["event_id"]).encode()
    assert got[0]["traceparent"] == got[1]["traceparent"]
