"""The outbox relay: publishes ``kafka_outbox`` rows to Kafka, then deletes them.

Rows are written in the same transaction as the state change that causes them,
so nothing is published for a change that rolled back and nothing is lost for
one that committed. One relay publishes at a time (a transaction-scoped
advisory lock), in id order, with confluent-kafka's idempotent producer
(acks=all); rows are deleted only after every delivery in the batch is
confirmed. A crash in between republishes the batch: consumers are idempotent.

A record Kafka refuses for good (:data:`REFUSALS`: too large, invalid, a
topic it may not write) must not hold the rows after it: it is tried once
more on its own (a broker refuses a whole producer batch for one record too
large), and if refused again it is set aside (``dead_letter_log``, kind
``unpublishable``, with its bytes; a notice on the deadletter topic; the
``orchestrator_outbox_unpublishable`` metric) while the rest of the batch is
deleted as published. Any other error (the broker away, a timeout) is
retried with the whole batch, never set aside. See docs/topics.md, "Dead letters".

The value stays plain JSON; what describes it travels in headers: the
CloudEvents Kafka binding in binary mode (``ce_specversion``, ``ce_id`` (the
row's ``event_id``, the same when a batch is published again), ``ce_source``,
``ce_type``, ``ce_time``, ``content-type``), made with the CloudEvents SDK, and a
W3C ``traceparent`` in the workflow's trace (see :mod:`streams.observability.tracing`).
The SQL (the lock, the batch, the delete) is in :mod:`streams.storage.outbox`.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from cloudevents.http import CloudEvent
from cloudevents.kafka import to_binary
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from handlers.messages import DLQ_HEADER, SCHEMA_VERSION, DeadLetter
from streams.kafka.access import confluent_config
from streams.kafka.topics import full_name
from streams.observability import metrics
from streams.observability.tracing import new_trace_id, traceparent
from streams.settings import KafkaSettings
from streams.storage.base import Pool
from streams.storage.database import run_on_notify
from streams.storage.outbox import OutboxBatches, Refused

log = logging.getLogger(__name__)

SOURCE = "email-orchestrator"
BATCH = 500
#: How long a batch may take to be confirmed (then it is published again), and
#: how often a slow confirmation is reported meanwhile.
DELIVERY_TIMEOUT = 30.0
DELIVERY_CHECK = 5.0
#: Kafka's answers that no retry mends: the record is set aside. Every other
#: error is taken for transient and the batch is published again.
REFUSALS = frozenset({
    KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE, KafkaError.INVALID_RECORD,
    KafkaError.INVALID_MSG, KafkaError.INVALID_TIMESTAMP, KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.TOPIC_EXCEPTION,
    KafkaError.POLICY_VIOLATION, KafkaError._INVALID_ARG,
})
#: Refusals of a record's size: its value cannot travel on the deadletter topic either.
TOO_LARGE = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE})


def new_producer(kafka: KafkaSettings) -> Producer:
    return Producer(confluent_config(
        kafka,
        **{"enable.idempotence": True, "acks": "all", "linger.ms": 2, "message.timeout.ms": 30000,
           "client.id": "orchestrator-outbox"},
    ))


def cloud_event_headers(event_id: str, topic: str, at: datetime, source: str = SOURCE) -> dict[str, bytes]:
    """The CloudEvents Kafka binding's headers (binary mode) for a record of logical ``topic``."""
    event = CloudEvent({
        "id": event_id,
        "source": f"/{source}",
        "type": f"{source}.{topic}.v{SCHEMA_VERSION}",
        "time": at.isoformat(),
        # A dead letter holds another record's bytes, which need not be JSON.
        "datacontenttype": "application/octet-stream" if topic == DeadLetter.topic else "application/json",
    })
    headers: dict[str, bytes] = to_binary(event, data_marshaller=lambda _: b"").headers
    return headers


class OutboxRelay:
    """Drains the outbox whenever woken (NOTIFY) and at least every ``interval`` s."""

    def __init__(self, pool: Pool, conninfo: str, producer: Producer, prefix: str, interval: float = 1.0,
                 source: str = SOURCE) -> None:
        self.outbox = OutboxBatches(pool)
        self.conninfo = conninfo
        self.producer = producer
        self.prefix = prefix
        self.source = source  # ce_source is /<source>; ce_type is <source>.<topic>.v<schema version>
        self.interval = interval
        self.last_error: str | None = None
        self.published = 0

    async def run(self) -> None:
        """Relay until cancelled; survives database and broker outages."""
        await run_on_notify(self.conninfo, "orchestrator_outbox", self.interval, self._drain,
                            self._failed, "outbox relay")

    async def _drain(self) -> None:
        while await self.drain_once():
            pass

    def _failed(self, error: str) -> None:
        self.last_error = error

    async def drain_once(self) -> bool:
        """Publish one batch, setting aside what Kafka refuses for good; True
        when a full batch went (there may be more)."""
        refused: list[Refused] = []
        async with self.outbox.take(BATCH) as batch:
            if batch is None:
                return False
            if batch.rows:
                refused = await self._refused_alone(await self._publish(batch.rows))
                await batch.delete()
                if refused:
                    await batch.set_aside(refused)
        for r in refused:
            log.error("outbox relay: Kafka refused a %s record for good (%s): set aside in dead_letter_log",
                      r.row["topic"], r.reason)
            metrics.UNPUBLISHABLE.labels(r.row["topic"], r.error).inc()
            metrics.DEAD_LETTERS.labels("relay", "unpublishable").inc()
        self.published += len(batch.rows) - len(refused)
        metrics.PUBLISHED.inc(len(batch.rows) - len(refused))
        self.last_error = None
        return len(batch.rows) == BATCH

    def record(self, row: dict[str, Any]) -> tuple[bytes | None, bytes, list[tuple[str, str | bytes | None]]]:
        """The Kafka record of an outbox row: key, value and headers."""
        dead = row["topic"] == DeadLetter.topic
        if dead:
            key, value = row["raw_key"], row["raw_value"]
        else:
            key = row["message_key"].encode() if row["message_key"] is not None else None
            value = row["payload"].encode()
        headers = cloud_event_headers(str(row["event_id"]), row["topic"], row["created_at"], self.source)
        trace = (row["trace_id"] or new_trace_id()).strip()
        headers["traceparent"] = traceparent(trace, row["event_id"].hex[:16]).encode()
        for name, text in (row["headers"] or {}).items():
            if name == DLQ_HEADER + "topic":
                text = full_name(self.prefix, text)  # stored logical: the prefix is configuration
            headers[name] = str(text).encode()
        return key, value, list(headers.items())

    async def _refused_alone(self, refused: list[tuple[dict[str, Any], KafkaError]]) -> list[Refused]:
        """Of rows refused in a batch, those Kafka refuses again on their own
        (a broker refuses a whole producer batch for one record too large)."""
        alone = []
        for candidate, _ in refused:
            for row, error in await self._publish([candidate]):
                key, value, _ = self.record(row)
                alone.append(Refused(row, key, value, error.name(), f"{error.str()} ({len(value)} bytes)",
                                     error.code() in TOO_LARGE))
        return alone

    async def _publish(self, rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], KafkaError]]:
        """Publish ``rows``; return those Kafka refused for good (:data:`REFUSALS`),
        with why. Raises when any other error (or no answer in time) came back."""
        errors: dict[int, KafkaError] = {}

        def delivered(n: int) -> Any:
            def note(err: KafkaError | None, _: Message) -> None:
                if err is not None:
                    errors[n] = err
            return note

        for n, row in enumerate(rows):
            key, value, headers = self.record(row)
            try:
                self.producer.produce(full_name(self.prefix, row["topic"]), value, key, headers=headers,
                                      on_delivery=delivered(n))
            except KafkaException as exc:  # refused before it left, e.g. larger than message.max.bytes
                errors[n] = exc.args[0]
        remaining, waited = len(rows), 0.0
        while waited < DELIVERY_TIMEOUT:
            remaining = await asyncio.to_thread(self.producer.flush, DELIVERY_CHECK)
            if not remaining:
                break
            waited += DELIVERY_CHECK
            log.warning("outbox relay: Kafka has not confirmed %d of %d record(s) after %.0f s",
                        remaining, len(rows), waited)
        transient = [e for e in errors.values() if e.code() not in REFUSALS]
        if remaining or transient:
            raise RuntimeError(f"Kafka delivery failed ({remaining} undelivered): {transient[:1]}")
        return [(rows[n], errors[n]) for n in sorted(errors)]
