"""The operator's commands, run as a person would: ``orchestrator doctor``,
``tail``, ``dlq list|replay`` and ``topics list|describe``."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from confluent_kafka import Producer

from standins import free_port

from tests.support.harness import ORCHESTRATOR, Pipeline, clean_env
from tests.support.services import secured_kafka


def run(p: Pipeline, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ORCHESTRATOR), *args], env=p.env | {"LOG_FORMAT": "text"} | env,
                          cwd=p.worker.log_path.parent, capture_output=True, text=True, timeout=120)


async def arun(p: Pipeline, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run, p, *args, **env)


async def test_doctor_says_all_is_well_and_names_each_culprit(pipeline: Pipeline) -> None:
    healthy = await arun(pipeline, "doctor")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    lines = healthy.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "✓ configuration", "✓ PostgreSQL", "✓ Kafka login", "✓ Kafka topics", "✓ AI generator", "✓ SMS gateway",
        "✓ SMTP"]
    assert "nothing sent" in lines[-1] and pipeline.smtp.messages == []

    closed = f"http://127.0.0.1:{free_port()}"
    secured = secured_kafka()
    cases = {
        "PostgreSQL": {"DATABASE_URL": f"postgresql://nobody:x@127.0.0.1:{free_port()}/none"},
        "Kafka login": secured.sasl_env(KAFKA_SASL_PASSWORD="wrong-password"),
        "AI generator": {"AI_REPLY_GENERATOR_URL": closed},
        "SMS gateway": {"SMS_GATEWAY_URL": closed},
        "SMTP": {"EMAIL_PASSWORD": "not-the-app-password"},
    }
    results = await asyncio.gather(*(arun(pipeline, "doctor", **env) for env in cases.values()))
    for (culprit, _), result in zip(cases.items(), results, strict=True):
        failed = [line for line in result.stdout.splitlines() if line.startswith("✗")]
        assert result.returncode == 1, result.stdout
        assert [line.split(":")[0] for line in failed] == [f"✗ {culprit}"], result.stdout
    said = {culprit: next(line for line in r.stdout.splitlines() if line.startswith("✗"))
            for culprit, r in zip(cases, results, strict=True)}
    assert "cannot connect" in said["PostgreSQL"] and "DATABASE_URL" in said["PostgreSQL"]
    assert "login refused for KAFKA_SASL_USERNAME=" in said["Kafka login"]
    assert "unreachable" in said["AI generator"] and "AI_REPLY_GENERATOR_URL" in said["AI generator"]
    assert "SMS_GATEWAY_URL" in said["SMS gateway"]
    assert "login refused (535)" in said["SMTP"] and "EMAIL_PASSWORD" in said["SMTP"]


async def test_doctor_reports_a_bad_setting_and_still_checks_the_rest(pipeline: Pipeline) -> None:
    result = await arun(pipeline, "doctor", YOUR_PHONE_NUMBER="555")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("✗ configuration: YOUR_PHONE_NUMBER: must be an E.164 phone number")
    assert any(line.startswith("✓ PostgreSQL") for line in lines)
    assert any(line.startswith("✓ Kafka login") for line in lines)


async def test_tail_prints_a_workflow_as_readable_lines(pipeline: Pipeline) -> None:
    mid = await pipeline.new_email()
    await pipeline.reaches(mid, "awaiting_user")
    result = await arun(pipeline, "tail", "--from-beginning", "--exit")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if mid in line]
    assert [line.split("  ")[2] for line in lines] == [
        "- -> pending", "pending -> ai_generating", "ai_generating -> ai_generated",
        "ai_generated -> sms_sending", "sms_sending -> awaiting_user"]
    [row] = await pipeline.query("SELECT trace_id FROM workflow_state WHERE message_id = %s", mid)
    assert all(line.endswith(f"trace={row['trace_id']}") for line in lines)
    other = await arun(pipeline, "tail", "emails.pending", "--from-beginning", "--exit")
    assert mid in other.stdout and '"message_id"' in other.stdout


async def test_dead_letters_are_listed_and_replayed_to_their_topic(pipeline: Pipeline) -> None:
    # A dead letter is logged at ERROR: this poison is sent on purpose, and dead-lettered twice.
    pipeline.expect_log(r"^ERROR streams\.pipeline\.consumer: dead-lettering a message from emails\.pending "
                        r"\(key <poison@x>\): undecodable message")
    producer = Producer({"bootstrap.servers": pipeline.kafka})
    producer.produce(f"{pipeline.prefix}emails.pending", b"\xff not json", b"<poison@x>")
    producer.flush(10)
    await asyncio.to_thread(pipeline.dead_letters, 1)

    listed = await arun(pipeline, "dlq", "list")
    assert listed.returncode == 0, listed.stderr
    [line] = [line for line in listed.stdout.splitlines() if "<poison@x>" in line]
    letter_id = line.split()[0]
    assert "emails.pending[" in line and "stage=draft" in line and "kind=poison" in line
    assert "UndecodableMessage: undecodable message" in line

    dry = await arun(pipeline, "dlq", "replay", letter_id, "--dry-run")
    assert dry.returncode == 0 and f"would replay {letter_id} to {pipeline.prefix}emails.pending" in dry.stdout
    assert len(await asyncio.to_thread(pipeline.records, "emails.pending")) == 1  # nothing sent

    replayed = await arun(pipeline, "dlq", "replay", "--all")
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 1 dead letter(s)" in replayed.stdout
    [_, again] = await asyncio.to_thread(pipeline.records, "emails.pending", 2)
    assert (again.key, again.value) == (b"<poison@x>", b"\xff not json")  # the original bytes
    assert again.headers["orchestrator-replayed-from"] == f"deadletter:{letter_id}".encode()
    # Still poison, so the worker dead-letters it again: nothing lost, nothing stuck.
    await asyncio.to_thread(pipeline.dead_letters, 2)

    unknown = await arun(pipeline, "dlq", "replay", "9:999")
    assert unknown.returncode != 0 and "no dead letter 9:999" in unknown.stderr


async def test_topics_list_and_describe(pipeline: Pipeline) -> None:
    listed = await arun(pipeline, "topics", "list")
    assert listed.returncode == 0, listed.stderr
    assert f"{pipeline.prefix}emails.pending  partitions=2  replication=1" in listed.stdout
    assert len(listed.stdout.splitlines()) == 9
    described = await arun(pipeline, "topics", "describe", "sms.inbound")
    assert described.returncode == 0, described.stderr
    assert described.stdout.splitlines()[0].startswith(f"{pipeline.prefix}sms.inbound  partitions=2")
    assert "partition 1: leader=1" in described.stdout and "lag=" in described.stdout


def test_a_command_on_a_cluster_it_cannot_use_says_why_in_one_line(tmp_path: Path) -> None:
    secured = secured_kafka()
    env = clean_env(**secured.sasl_env(KAFKA_SASL_PASSWORD="wrong-password"))
    result = subprocess.run([str(ORCHESTRATOR), "topics", "list"], env=env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("orchestrator: kafka: login refused for KAFKA_SASL_USERNAME=")
    assert len(result.stderr.strip().splitlines()) == 1



async def test_what_came_from_outside_reaches_the_terminal_escaped(pipeline: Pipeline) -> None:
    """A record's key and value may hold terminal escapes and bidi overrides:
    ``tail`` and ``dlq list`` print them escaped, and keep every letter."""
    pipeline.expect_log(r"^ERROR streams\.pipeline\.consumer: dead-lettering a message from emails\.pending")
    key = "<\x1b[2J\u202egrüße-日本@x>".encode()
    producer = Producer({"bootstrap.servers": pipeline.kafka})
    producer.produce(f"{pipeline.prefix}emails.pending", b"\x1b]0;pwned\x07 not json \xc2\x9b31m", key)
    producer.flush(10)
    await asyncio.to_thread(pipeline.dead_letters, 1)
    listed, tailed = await asyncio.gather(arun(pipeline, "dlq", "list"),
                                          arun(pipeline, "tail", "emails.pending", "--from-beginning", "--exit"))
    for result in (listed, tailed):
        assert result.returncode == 0, result.stderr
        [line] = [line for line in result.stdout.splitlines() if "grüße" in line]
        assert "<\\x1b[2J\\u202egrüße-日本@x>" in line, line
        for raw in ("\x1b", "\u202e", "\x07", "\x9b"):
            assert raw not in result.stdout, (raw, result.stdout)
    assert "\\x1b]0;pwned\\x07 not json \\x9b31m" in tailed.stdout
