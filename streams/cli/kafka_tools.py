"""The operator's Kafka commands: ``tail``, ``dlq list``, ``dlq replay``,
``topics list`` and ``topics describe``.

They reach the cluster exactly as the worker does (:mod:`streams.kafka.access`)
and read with partitions assigned directly, so they never join (or disturb)
the worker's consumer group and never commit an offset. What they print of a
record (key, value, headers) is escaped for the terminal (:mod:`streams.cli.terminal`).
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, Message, Producer, TopicPartition
from tqdm import tqdm

from handlers.messages import DLQ_HEADER, DeadLetter, WorkflowEvent
from streams.cli.terminal import for_terminal
from streams.kafka.access import confluent_config, probe
from streams.kafka.topics import ALL, full_name, topic_names
from streams.observability.tracing import trace_id_of
from streams.pipeline.relay import cloud_event_headers
from streams.settings import KafkaSettings

Out = Callable[[str], None]


def _consumer(k: KafkaSettings) -> Consumer:
    return Consumer(confluent_config(k, **{"group.id": f"{k.kafka_topic_prefix}operator-{uuid.uuid4().hex[:8]}",
                                           "enable.auto.commit": False, "auto.offset.reset": "earliest"}))


def read(k: KafkaSettings, topic: str, *, from_beginning: bool, until_end: bool,
         idle: float = 1.0) -> Iterator[Message]:
    """Records of Kafka ``topic``: from the beginning or only new ones; stop
    at the end (``until_end``) or wait for more until interrupted."""
    consumer = _consumer(k)
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            raise SystemExit(f"orchestrator: no topic {topic}")
        partitions = sorted(metadata.partitions)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in partitions}
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        consumer.assign([TopicPartition(topic, p, start) for p in partitions])
        # Where "the end" is: the high watermark now (an empty partition has none to reach).
        pending = {p for p, (low, high) in ends.items() if high > low} if from_beginning else set()
        if until_end and not pending:
            return
        while True:
            message = consumer.poll(idle)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise SystemExit(f"orchestrator: reading {topic}: {error.str()}")
            yield message
            partition, offset = message.partition() or 0, message.offset() or 0
            if until_end and offset + 1 >= ends[partition][1]:
                pending.discard(partition)
                if not pending:
                    return
    finally:
        consumer.close()


def _headers(message: Message) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for header in message.headers() or []:
        name, value = header[0], header[1]
        found[name] = value.encode() if isinstance(value, str) else (value or b"")
    return found


def describe_record(topic: str, message: Message) -> str:
    """One readable line for a record of logical ``topic``."""
    headers = _headers(message)
    trace = trace_id_of(headers)
    suffix = f"  trace={trace}" if trace else ""
    value = message.value() or b""
    if topic == WorkflowEvent.topic:
        try:
            event = WorkflowEvent.model_validate_json(value)
        except ValueError:
            pass
        else:
            error = f" ({event.error})" if event.error else ""
            return (f"{event.at.isoformat(timespec='seconds')}  {event.message_id}  "
                    f"{event.from_state or '-'} -> {event.to_state}  {event.reason}{error}{suffix}")
    at = headers.get("ce_time", b"").decode() or _timestamp(message)
    key = (message.key() or b"").decode("utf-8", "replace")
    return f"{at}  {topic}  {key}  {value.decode('utf-8', 'replace')}{suffix}"


def _timestamp(message: Message) -> str:
    kind, ms = message.timestamp()
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds") if ms > 0 else "-"


def tail(k: KafkaSettings, topic: str, *, from_beginning: bool, until_end: bool, out: Out = print) -> int:
    if topic not in ALL:
        raise SystemExit(f"orchestrator: unknown topic {topic!r}; one of {', '.join(ALL)}")
    for message in read(k, full_name(k.kafka_topic_prefix, topic), from_beginning=from_beginning,
                        until_end=until_end):
        out(for_terminal(describe_record(topic, message)))
    return 0


# ----------------------------------------------------------------- dead letters


@dataclass(frozen=True)
class Letter:
    """A record of the dead-letter topic, read back."""

    id: str  # partition:offset in the dead-letter topic
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]

    def header(self, name: str) -> str:
        return self.headers.get(DLQ_HEADER + name, b"").decode("utf-8", "replace")

    @property
    def source_topic(self) -> str:
        return self.header("topic")


def letters(k: KafkaSettings) -> list[Letter]:
    found = []
    for message in read(k, full_name(k.kafka_topic_prefix, DeadLetter.topic), from_beginning=True,
                        until_end=True):
        found.append(Letter(f"{message.partition()}:{message.offset()}", message.key(), message.value() or b"",
                            _headers(message)))
    return found


def dlq_list(k: KafkaSettings, out: Out = print) -> int:
    found = letters(k)
    for letter in found:
        at = letter.headers.get("ce_time", b"").decode()[:19] or "-"
        key = (letter.key or b"").decode("utf-8", "replace")
        where = letter.source_topic.removeprefix(k.kafka_topic_prefix)
        if letter.header("partition"):
            where += f"[{letter.header('partition')}]@{letter.header('offset')}"
        out(for_terminal(f"{letter.id}  {at}  {where}  stage={letter.header('stage')}  kind={letter.header('kind')}  "
                         f"attempts={letter.header('attempts')}  key={key}  "
                         f"{letter.header('exception.class.name')}: {letter.header('exception.message')}"))
    out(f"{len(found)} dead letter(s)")
    return 0


def dlq_replay(k: KafkaSettings, ids: Sequence[str], replay_all: bool, dry_run: bool, out: Out = print) -> int:
    """Publish chosen dead letters' original key and value to their original
    topic (the worker handles them as new records; its stages are idempotent)."""
    if not ids and not replay_all:
        raise SystemExit("orchestrator: name dead letters by ID (see `orchestrator dlq list`) or pass --all")
    found = letters(k)
    by_id = {letter.id: letter for letter in found}
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        raise SystemExit(f"orchestrator: no dead letter {', '.join(unknown)}")
    chosen = found if replay_all else [by_id[i] for i in ids]
    known = set(topic_names(k))
    skipped = [letter for letter in chosen if letter.source_topic not in known]
    for letter in skipped:
        out(for_terminal(f"skip {letter.id}: its topic {letter.source_topic or '(none)'} is not one of this "
                         f"orchestrator's"))
    chosen = [letter for letter in chosen if letter.source_topic in known]
    if dry_run:
        for letter in chosen:
            out(for_terminal(f"would replay {letter.id} to {letter.source_topic}"))
        out(f"{len(chosen)} dead letter(s) would be replayed (dry run)")
        return 0
    producer = Producer(confluent_config(k, **{"enable.idempotence": True, "acks": "all"}))
    failures: list[str] = []
    with tqdm(total=len(chosen), unit="record", desc="replaying", disable=None, file=sys.stderr) as bar:
        for letter in chosen:
            logical = letter.source_topic.removeprefix(k.kafka_topic_prefix)
            headers = cloud_event_headers(str(uuid.uuid4()), logical, datetime.now(UTC))
            if "traceparent" in letter.headers:
                headers["traceparent"] = letter.headers["traceparent"]
            headers["orchestrator-replayed-from"] = f"{DeadLetter.topic}:{letter.id}".encode()

            def delivered(err: KafkaError | None, _: Message, letter_id: str = letter.id) -> None:
                if err is not None:
                    failures.append(f"{letter_id}: {err.str()}")
                bar.update(1)

            producer.produce(letter.source_topic, letter.value, letter.key, headers=list(headers.items()),
                             on_delivery=delivered)
            producer.poll(0)
        producer.flush(60)
    for failure in failures:
        out(for_terminal(f"failed {failure}"))
    out(f"replayed {len(chosen) - len(failures)} dead letter(s)")
    return 1 if failures else 0


# ----------------------------------------------------------------------- topics


def topics_list(k: KafkaSettings, out: Out = print) -> int:
    _, metadata = probe(k)
    missing = 0
    for name in topic_names(k):
        topic = metadata.topics.get(name)
        if topic is None:
            missing += 1
            out(f"{name}  MISSING")
            continue
        replicas = {len(p.replicas) for p in topic.partitions.values()}
        out(f"{name}  partitions={len(topic.partitions)}  replication={'/'.join(map(str, sorted(replicas)))}")
    return 1 if missing else 0


def topics_describe(k: KafkaSettings, names: Sequence[str], out: Out = print) -> int:
    """Per partition: leader, replicas, in-sync replicas, end offset and the
    worker group's committed offset and lag."""
    _, metadata = probe(k)
    wanted = [full_name(k.kafka_topic_prefix, n) if n in ALL else n for n in names] or topic_names(k)
    consumer = Consumer(confluent_config(k, **{"group.id": k.app_id, "enable.auto.commit": False}))
    try:
        for name in wanted:
            topic = metadata.topics.get(name)
            if topic is None:
                out(f"{name}  MISSING")
                continue
            out(f"{name}  partitions={len(topic.partitions)}  (group {k.app_id})")
            partitions = [TopicPartition(name, p) for p in sorted(topic.partitions)]
            committed = {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=10)}
            for p in sorted(topic.partitions):
                info = topic.partitions[p]
                _, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)
                done = committed.get(p, -1)
                lag = high - done if done >= 0 else high
                out(f"  partition {p}: leader={info.leader} replicas={list(info.replicas)} isr={list(info.isrs)} "
                    f"end={high} committed={done if done >= 0 else '-'} lag={lag}")
    finally:
        consumer.close()
    return 0

