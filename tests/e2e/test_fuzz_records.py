"""Fuzz (issue 17): Kafka records of any bytes on every topic the worker
reads, produced to a live worker beside good records and a real email.

Keys and values of any bytes (NUL and invalid UTF-8 included), JSON of the
wrong shape, the right fields with values of any type, values near the
broker's limit, headers of any bytes. Each record that does not decode is
dead-lettered exactly once; one that decodes is acted on or left with a
reason, dead-lettered at most once; a good record produced in the same
batch still has its effect; the worker never logs an error beyond the dead
letters' own lines, never exits, its /health stays ok, and a real email is
answered before and after the campaign.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import psycopg
from confluent_kafka import Producer
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st

from handlers.clock import SystemClock
from handlers.messages import EmailPending
from streams.kafka import topics
from streams.storage.database import create_pool
from streams.storage.repository import WorkflowRepository

from tests.support.factories import insert_email, new_message_id
from tests.support.fuzzing import (
    DeadLetters,
    LogWatch,
    describe,
    materialise,
    messages_for,
    record_headers,
    record_keys,
    record_values,
)
from tests.support.harness import LogEntry, Pipeline

#: Every topic the worker's agents read (streams/pipeline/agents.py).
READ = [topics.EMAILS_PENDING, topics.EDITS_REQUESTED, topics.DRAFTS_READY, topics.PHONE_FREED,
        topics.SMS_INBOUND, topics.REPLIES_APPROVED]
#: A sender the draft stage skips (an automated one): a good record's effect is ``filtered``, not a draft.
AUTOMATED = "noreply@news.example"
#: How long an example waits for its dead letters and its good record's effect (each takes well under a second).
WAIT = 10.0
#: The campaign's time: past it no example is tried, so a failure's shrinking ends too.
BUDGET = 120.0
DEAD_LETTER_LINE = "ERROR streams.pipeline.consumer: dead-lettering a message from "

FUZZ = settings(max_examples=40, deadline=60_000, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.large_base_example,
                                       HealthCheck.filter_too_much])

RECORDS = st.lists(st.sampled_from(READ).flatmap(lambda topic: st.tuples(
    st.just(topic), record_keys(), st.one_of(messages_for(topic), record_values(), messages_for(topic), st.none()),
    record_headers())),
    min_size=1, max_size=5)


def decodes(topic: str, value: bytes | None) -> bool:
    """Whether the worker reads ``value`` as the topic's message (else it is poison)."""
    try:
        topics.MODELS[topic].model_validate_json(value or b"")
    except Exception:  # noqa: BLE001 - whatever stops decoding makes it poison
        return False
    return True


def a_dead_letter_line(entry: LogEntry) -> bool:
    """The line each dead letter is logged with, on purpose (nothing after it)."""
    return entry.text.startswith(DEAD_LETTER_LINE) and "Traceback (most recent call last)" not in entry.text


async def test_records_of_any_bytes_never_stop_the_worker(pipeline: Pipeline) -> None:
    p = pipeline
    p.expect_log(r"^ERROR streams\.pipeline\.consumer: dead-lettering a message from ")
    first = await p.new_email()  # a real email flowing while the campaign runs
    producer = Producer({"bootstrap.servers": p.kafka, "linger.ms": 5})
    letters = DeadLetters(p.kafka, topics.full_name(p.prefix, topics.DEADLETTER))
    watch = LogWatch(p.worker.log_path)
    poison: set[tuple[str, str, str]] = set()
    decoded: set[tuple[str, str, str]] = set()
    seen: Counter[str] = Counter()
    budget = time.monotonic() + BUDGET

    @FUZZ
    @given(records=RECORDS, at=st.integers(0, 5))
    def one(records: list[tuple[str, bytes | None, Any, list[tuple[str, bytes]]]], at: int) -> None:
        assume(time.monotonic() < budget)  # past it, nothing more is tried (a failure found is reported as it is)
        note(f"records={describe(records)}")
        try:
            _example(records, at)
        except AssertionError:  # a live worker may not fail the same way twice: say which example did
            print(f"failing example: at={at}, records={describe(records)}")
            raise

    def _example(records: list[tuple[str, bytes | None, Any, list[tuple[str, bytes]]]], at: int) -> None:
        good = asyncio.run(_workflow_without_its_record(p.database))
        batch = [(t, k, materialise(v), h) for t, k, v, h in records]
        batch.insert(min(at, len(batch)), (topics.EMAILS_PENDING, good.encode(),
                                           EmailPending(message_id=good, from_address=AUTOMATED).to_json().encode(),
                                           []))
        where = _produce(producer, p.prefix, batch)
        expected = {w for w, (t, _, v, _) in zip(where, batch) if w is not None and not decodes(t, v)}
        poison.update(expected)
        decoded.update(w for w, (t, _, v, _) in zip(where, batch) if w is not None and decodes(t, v))
        bad: list[str] = []

        def done() -> bool:
            """Every poison record dead-lettered and the good one acted on; fails at once on an error line."""
            bad.extend(watch.new_bad(a_dead_letter_line))
            assert not bad, "the worker logged:\n" + "\n".join(bad)
            assert p.worker.running, p.worker.log_tail()
            letters.read(0.2)
            return expected <= set(letters.origins) and asyncio.run(p.state(good)) == "filtered"

        _until(done, WAIT, lambda: f"dead letters of {sorted(expected - set(letters.origins))} and {good} "
                                   f"filtered (it is {asyncio.run(p.state(good))})")
        letters.read(0.3)  # a second letter of the same record comes within this
        twice = [w for w in where if w is not None and letters.origins[w] > 1]
        assert not twice, f"dead-lettered more than once: {twice}"
        bad.extend(watch.new_bad(a_dead_letter_line))
        assert not bad, "the worker logged:\n" + "\n".join(bad)
        seen["examples"] += 1

    try:
        await asyncio.to_thread(one)
        await asyncio.to_thread(letters.read, 1.0)
        print(f"examples: {seen['examples']}; records that did not decode: {len(poison)}, that did: {len(decoded)};"
              f" dead letters: {letters.letters}")
        counts = Counter({origin: n for origin, n in letters.origins.items() if origin in poison | decoded})
        assert all(counts[origin] == 1 for origin in poison), "poison not dead-lettered exactly once"
        assert all(n == 1 for n in counts.values()), "a record dead-lettered more than once"
    finally:
        letters.close()
    assert p.worker.running
    assert (await p.http.get("/health")).status_code == 200
    for mid in (first, await p.new_email()):  # the one that flowed during the campaign, and one after it
        await p.reaches(mid, "awaiting_user")
        assert (await p.reply_sms("1")).json()["status"] == "accepted"
        await p.reaches(mid, "reply_sent")
    await p.emails(2)


def _produce(producer: Producer, prefix: str, batch: list[tuple[str, bytes | None, bytes | None,
                                                                  list[tuple[str, bytes]]]]
             ) -> list[tuple[str, str, str] | None]:
    """Produce ``batch`` at once; where each record landed (None: the broker refused it)."""
    where: list[tuple[str, str, str] | None] = [None] * len(batch)

    def delivered(n: int) -> Any:
        def report(error: Any, msg: Any) -> None:
            if error is None:
                where[n] = (msg.topic(), str(msg.partition()), str(msg.offset()))
        return report

    for n, (topic, key, value, headers) in enumerate(batch):
        pairs: list[tuple[str, str | bytes | None]] = list(headers)
        producer.produce(topics.full_name(prefix, topic), value, key, headers=pairs, on_delivery=delivered(n))
    assert producer.flush(30) == 0, "records not delivered within 30 s"
    return where


async def _workflow_without_its_record(database: str) -> str:
    """A workflow in ``pending`` whose ``emails.pending`` record was never
    published: only the record the test produces can move it on."""
    async with await psycopg.AsyncConnection.connect(database) as conn:
        message_id = await insert_email(conn, message_id=new_message_id(), status="orchestrating",
                                        from_address=AUTOMATED)
    pool = create_pool(database, max_size=1)
    await pool.open(wait=True)
    try:
        repo = WorkflowRepository(pool, SystemClock())
        async with repo.transaction() as tx:
            email = await tx.email(message_id)
            assert email is not None
            assert await tx.create_workflows([(email, "preview")], reason="started by the fuzz campaign")
    finally:
        await pool.close()
    return message_id


def _until(check: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what()}")
