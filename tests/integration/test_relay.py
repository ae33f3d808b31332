"""The outbox relay against the real broker: a record Kafka refuses for good
is set aside (recorded, counted, listed) and the rows after it go on; a
broker that does not answer is waited out, never set aside."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from handlers.messages import EmailPending
from streams.cli.kafka_tools import dlq_list
from streams.kafka.access import confluent_config
from streams.kafka.topics import ensure_topics
from streams.observability import metrics
from streams.pipeline.relay import OutboxRelay, new_producer
from streams.settings import KafkaSettings
from streams.storage.repository import Pool, WorkflowRepository


def kafka_settings(endpoints: Any, prefix: str) -> KafkaSettings:
    return KafkaSettings(kafka_bootstrap_servers=endpoints.kafka_bootstrap_servers, kafka_topic_prefix=prefix,
                         kafka_topic_partitions=1)


def read_all(kafka: KafkaSettings, topic: str, n: int) -> list[tuple[bytes | None, bytes]]:
    """Every (key, value) on logical ``topic`` once there are ``n`` (or 30 s have passed)."""
    consumer = Consumer(confluent_config(kafka, **{"group.id": f"t-{uuid.uuid4().hex}",
                                                   "auto.offset.reset": "earliest"}))
    consumer.subscribe([f"{kafka.kafka_topic_prefix}{topic}"])
    got: list[tuple[bytes | None, bytes]] = []
    try:
        for _ in range(60):
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got.append((msg.key(), msg.value() or b""))
            if len(got) >= n:
                break
    finally:
        consumer.close()
    return got


async def outbox_rows(pool: Pool) -> int:
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT count(*) AS n FROM kafka_outbox")).fetchone()
    assert row is not None
    return int(row["n"])


async def insert_raw(pool: Pool, topic: str, key: str, payload: str) -> None:
    async with pool.connection() as conn:
        await conn.execute("INSERT INTO kafka_outbox (topic, message_key, payload) VALUES (%s, %s, %s)",
                           (topic, key, payload))


def refused(topic: str, error: str) -> float:
    """``orchestrator_outbox_unpublishable_total{topic, error}`` as a scrape shows it."""
    found = metrics.REGISTRY.get_sample_value("orchestrator_outbox_unpublishable_total",
                                              {"topic": topic, "error": error})
    return found or 0.0


async def drain(relay: OutboxRelay, pool: Pool) -> None:
    """Drain until the outbox is empty (the set-aside notices are published by a later pass), at most 5 passes."""
    for _ in range(5):
        await relay.drain_once()
        if await outbox_rows(pool) == 0:
            return
    raise AssertionError(f"the outbox still holds {await outbox_rows(pool)} row(s)")


async def test_a_record_too_large_for_the_producer_is_set_aside_and_the_rows_after_it_go(
        pool: Pool, repo: WorkflowRepository, topic_prefix: str, endpoints: Any) -> None:
    kafka = kafka_settings(endpoints, topic_prefix)
    await asyncio.to_thread(ensure_topics, kafka)
    before = refused("emails.pending", "MSG_SIZE_TOO_LARGE")
    await repo.publish(EmailPending(message_id="<first@x>"))
    huge = EmailPending(message_id="<huge@x>").to_json().replace('"message_id"', '"padding":"' + "x" * 1_500_000
                                                                   + '","message_id"')
    await insert_raw(pool, "emails.pending", "<huge@x>", huge)  # over the producer's 1 MB message.max.bytes
    await repo.publish(EmailPending(message_id="<after-1@x>"))
    await repo.publish(EmailPending(message_id="<after-2@x>"))
    relay = OutboxRelay(pool, "", new_producer(kafka), topic_prefix)

    await drain(relay, pool)

    published = await asyncio.to_thread(read_all, kafka, "emails.pending", 3)
    assert [k for k, _ in published] == [b"<first@x>", b"<after-1@x>", b"<after-2@x>"]
    assert relay.published == 4  # three records and the notice on the deadletter topic
    assert refused("emails.pending", "MSG_SIZE_TOO_LARGE") == before + 1
    async with pool.connection() as conn:
        [row] = await (await conn.execute("SELECT * FROM dead_letter_log")).fetchall()
    assert (row["source_topic"], row["record_key"], row["stage"], row["kind"], row["error_class"]) == (
        "emails.pending", "<huge@x>", "relay", "unpublishable", "MSG_SIZE_TOO_LARGE")
    assert bytes(row["raw_value"]) == huge.encode() and bytes(row["raw_key"]) == b"<huge@x>"
    [listed] = await repo.dead_letters()  # the dashboard's listing: its size, not its bytes
    assert (listed["kind"], listed["value_bytes"]) == ("unpublishable", len(huge.encode()))
    lines: list[str] = []
    await asyncio.to_thread(dlq_list, kafka, lines.append)
    assert lines[-1] == "1 dead letter(s)"
    assert "emails.pending" in lines[0] and "stage=relay" in lines[0] and "kind=unpublishable" in lines[0]
    assert "key=<huge@x>" in lines[0] and "MSG_SIZE_TOO_LARGE" in lines[0]


async def test_a_record_the_broker_refuses_is_set_aside_without_its_batch(
        pool: Pool, repo: WorkflowRepository, topic_prefix: str, endpoints: Any) -> None:
    kafka = kafka_settings(endpoints, topic_prefix)
    admin = AdminClient({"bootstrap.servers": endpoints.kafka_bootstrap_servers})
    small = NewTopic(f"{topic_prefix}emails.pending", 1, 1, config={"max.message.bytes": "3000"})
    for future in admin.create_topics([small]).values():
        await asyncio.to_thread(future.result, 15)
    await asyncio.to_thread(ensure_topics, kafka)  # the others; this one is left as it is
    for n in range(3):
        await repo.publish(EmailPending(message_id=f"<before-{n}@x>"))
    big = EmailPending(message_id="<big@x>", subject="s" * 3500).to_json()  # fits the producer, not the topic
    await insert_raw(pool, "emails.pending", "<big@x>", big)
    for n in range(3):
        await repo.publish(EmailPending(message_id=f"<after-{n}@x>"))
    relay = OutboxRelay(pool, "", new_producer(kafka), topic_prefix)

    await drain(relay, pool)

    # The broker refused the producer's whole batch; each record but the big one went on its own.
    published = await asyncio.to_thread(read_all, kafka, "emails.pending", 6)
    assert sorted(k or b"" for k, _ in published) == sorted(
        f"<{w}-{n}@x>".encode() for w in ("before", "after") for n in range(3))
    [letter] = await asyncio.to_thread(read_all, kafka, "deadletter", 1)
    assert letter == (b"<big@x>", b"")  # too large for Kafka: the bytes are in dead_letter_log
    async with pool.connection() as conn:
        [row] = await (await conn.execute("SELECT kind, raw_value FROM dead_letter_log")).fetchall()
    assert row["kind"] == "unpublishable" and bytes(row["raw_value"]) == big.encode()


async def test_a_broker_that_does_not_answer_is_waited_out_never_set_aside(
        pool: Pool, repo: WorkflowRepository, topic_prefix: str) -> None:
    nowhere = Producer({"bootstrap.servers": "127.0.0.1:9", "message.timeout.ms": 1500,
                        "enable.idempotence": True, "acks": "all"})
    await repo.publish(EmailPending(message_id="<waits@x>"))
    relay = OutboxRelay(pool, "", nowhere, topic_prefix)
    try:
        await relay.drain_once()
    except RuntimeError as exc:
        assert "Kafka delivery failed" in str(exc)
    else:
        raise AssertionError("a batch the broker never confirmed was taken as published")
    assert await outbox_rows(pool) == 1
    async with pool.connection() as conn:
        assert await (await conn.execute("SELECT * FROM dead_letter_log")).fetchall() == []
