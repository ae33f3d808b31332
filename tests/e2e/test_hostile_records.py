"""Records no one should have written, on the worker's topics: any bytes are
dead-lettered once with their bytes intact, the records beside them are still
acted on, a bug writes one dead letter, and a workflow whose record was lost
is set going again by the sweep (docs/topics.md, "Dead letters")."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from confluent_kafka import Producer

from handlers.messages import EmailPending
from handlers.workflow import WorkflowState
from streams.kafka.topics import ensure_topics
from streams.settings import KafkaSettings
from streams.storage.repository import Pool, WorkflowRepository

from tests.support.factories import start_workflow
from tests.support.harness import Pipeline, eventually

S = WorkflowState
#: Keys and values no producer of ours writes: NUL in the key, bytes that are not UTF-8.
NUL_KEY = (b"<nul\x00key@x>", b"{not json\x00")
NOT_UTF8 = (b"\xff\xfe<bad\x00@x>", b"\xff\xfe\x00{\"message_id\": 1}")
#: Decodes, but names a workflow by an id with NUL in it: the stage's SQL refuses it.
NUL_ID = (b"<ok@x>", b'{"schema_version": 1, "message_id": "<a\\u0000b@x>"}')


async def test_hostile_keys_are_dead_lettered_once_and_the_records_beside_them_are_acted_on(
        make_pipeline: Any, pool: Pool, repo: WorkflowRepository, endpoints: Any, topic_prefix: str) -> None:
    # Two workflows whose records travel in one batch with three hostile ones: produced
    # before the worker starts, on one partition, so its first fetch takes them together.
    kafka = KafkaSettings(kafka_bootstrap_servers=endpoints.kafka_bootstrap_servers,
                          kafka_topic_prefix=topic_prefix, kafka_topic_partitions=2)
    await asyncio.to_thread(ensure_topics, kafka)
    good = [await start_workflow(repo, pool) for _ in range(2)]
    async with pool.connection() as conn:
        await conn.execute("DELETE FROM kafka_outbox")  # their workflow.events: not this test's business
    producer = Producer({"bootstrap.servers": endpoints.kafka_bootstrap_servers})
    for key, value in (NUL_KEY, (good[0].encode(), EmailPending(message_id=good[0]).to_json().encode()),
                       NOT_UTF8, NUL_ID, (good[1].encode(), EmailPending(message_id=good[1]).to_json().encode())):
        producer.produce(f"{topic_prefix}emails.pending", value, key, partition=0)
    assert await asyncio.to_thread(producer.flush, 10) == 0

    p: Pipeline = await make_pipeline()
    p.expect_log(r"^ERROR streams\.pipeline\.consumer: dead-lettering a message from emails\.pending",
                 r"^ERROR streams\.pipeline\.consumer: draft: a batch of \d+ failed",
                 r"^ERROR streams\.pipeline\.consumer: emails\.pending: giving up on a message",
                 r"^ERROR streams\.pipeline\.consumer: emails\.pending: could not mark .* failed")

    await eventually(lambda: _all_drafted(p, good), 30, "both drafts made")  # the good records had their effect
    letters = await asyncio.to_thread(p.dead_letters, 3)
    assert sorted((d["key"], d["value"]) for d in letters) == sorted([NUL_KEY, NOT_UTF8, NUL_ID])
    assert sorted(d["kind"] for d in letters) == ["permanent", "poison", "poison"]
    rows = await p.query("SELECT record_key, kind FROM dead_letter_log ORDER BY id")
    assert sorted(r["record_key"] for r in rows) == sorted(["<nul\\x00key@x>", "\\xff\\xfe<bad\\x00@x>", "<ok@x>"])


async def _all_drafted(p: Pipeline, ids: list[str]) -> bool:
    states = [await p.state(mid) for mid in ids]
    return all(s in (S.AI_GENERATED.value, S.AWAITING_USER.value) for s in states)


async def test_a_bug_in_a_stage_writes_one_dead_letter(pipeline: Pipeline) -> None:
    pipeline.expect_log(r"^ERROR streams\.pipeline\.consumer: emails\.pending: giving up on a message",
                        r"^ERROR streams\.pipeline\.consumer: dead-lettering a message from emails\.pending "
                        r"\(key <bug@x>\)")
    async with await psycopg.AsyncConnection.connect(pipeline.database, autocommit=True) as conn:
        # A bug, planted: the draft stage's move to ai_generating fails with an error that is no outage.
        await conn.execute(
            "CREATE FUNCTION plant_bug() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " IF NEW.message_id = '<bug@x>' AND NEW.current_state = 'ai_generating' THEN"
            " RAISE EXCEPTION 'a bug in the draft stage'; END IF; RETURN NEW; END $$")
        await conn.execute("CREATE TRIGGER plant_bug BEFORE UPDATE ON workflow_state FOR EACH ROW"
                           " EXECUTE FUNCTION plant_bug()")
    await pipeline.new_email(message_id="<bug@x>")
    await pipeline.reaches("<bug@x>", "failed")
    [letter] = await asyncio.to_thread(pipeline.dead_letters, 1)
    assert (letter["key"], letter["stage"], letter["kind"]) == (b"<bug@x>", "draft", "permanent")
    assert "a bug in the draft stage" in letter["exception.message"]
    assert [r["kind"] for r in await pipeline.query("SELECT kind FROM dead_letter_log")] == ["permanent"]


async def test_the_sweep_sets_going_a_workflow_whose_record_was_lost(
        make_pipeline: Any, pool: Pool, repo: WorkflowRepository) -> None:
    # Three workflows whose record never came (a loss), unchanged for an hour, and one just now.
    lost = {state: await start_workflow(repo, pool) for state in (S.PENDING, S.USER_EDIT_REQUESTED,
                                                                   S.USER_APPROVED)}
    fresh = await start_workflow(repo, pool)
    # And a send begun an hour ago whose sender died after another worker stopped waiting for it.
    begun = await start_workflow(repo, pool)
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    async with pool.connection() as conn:
        await conn.execute("DELETE FROM kafka_outbox")
        for state, mid in lost.items():
            await conn.execute(
                "UPDATE workflow_state SET current_state = %s, updated_at = %s, ai_reply_text = %s,"
                " user_edit_instructions = %s, edit_iteration = %s WHERE message_id = %s",
                (state.value, hour_ago, "Yes, 2pm works. Best, Me", "shorter",
                 1 if state is S.USER_EDIT_REQUESTED else 0, mid))
        await conn.execute("UPDATE workflow_state SET current_state = %s WHERE message_id = %s",
                           (S.USER_APPROVED.value, fresh))
        await conn.execute(
            "UPDATE workflow_state SET current_state = %s, updated_at = %s, send_attempted_at = %s,"
            " reply_message_id = %s, ai_reply_text = %s WHERE message_id = %s",
            (S.USER_APPROVED.value, hour_ago, hour_ago, "<begun-reply@x>", "Begun", begun))
    p: Pipeline = await make_pipeline(STALLED_GRACE="120")

    await p.reaches(lost[S.USER_APPROVED], "reply_sent", timeout=40)
    [sent] = await p.emails(1)
    assert "2pm works" in sent.get_content()
    await eventually(lambda: _moved_on(p, lost[S.PENDING], lost[S.USER_EDIT_REQUESTED]), 30, "drafts made")
    assert await p.state(fresh) == S.USER_APPROVED.value  # within its grace: left to its record
    # The begun send is settled as cut off (no Sent folder here: "outcome unknown"), never sent again.
    await p.reaches(begun, "failed", timeout=40)
    [wf] = await p.query("SELECT error_message FROM workflow_state WHERE message_id = %s", begun)
    assert "outcome unknown: a worker stopped while this reply was being sent" in wf["error_message"], wf
    records = await asyncio.to_thread(p.records, "replies.approved", 2)
    assert sorted(r.key or b"" for r in records) == sorted([lost[S.USER_APPROVED].encode(), begun.encode()])
    await p.emails(1)  # the begun send was not sent again


async def _moved_on(p: Pipeline, *ids: str) -> bool:
    states = [await p.state(mid) for mid in ids]
    return all(s not in (S.PENDING.value, S.USER_EDIT_REQUESTED.value, S.AI_GENERATING.value) for s in states)
