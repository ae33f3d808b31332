"""What an operator watches: Prometheus metrics that move as work is done,
and JSON log lines that name the workflow and never a secret."""

from __future__ import annotations

import json
import time
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.support.harness import Pipeline
from tests.support.services import SecuredKafka, secured_kafka

SECRETS = {
    "EMAIL_PASSWORD": "smtp-pw-Zq81xv",
    "API_TOKEN": "api-token-Hn27pw",
    "SMS_WEBHOOK_SIGNING_KEY": "webhook-key-Lk55ty",
    "DRAFT_LINK_SECRET": "link-secret-Rr09aa",
}


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    """The sample ``name{labels}``, which must be there."""
    key = (name, tuple(sorted(labels.items())))
    assert key in found, f"no sample {name}{labels} in the scrape"
    return found[key]


def value_before(found: Samples, name: str, **labels: str) -> float:
    """A counter's sample before the work, 0 when absent: a labelled counter
    appears only once it has first moved."""
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_move_and_logs_are_json_without_secrets(make_pipeline: Any) -> None:
    secured: SecuredKafka = secured_kafka()
    p: Pipeline = await make_pipeline(**SECRETS, **secured.sasl_env(), LOG_FORMAT="json")
    auth = {"Authorization": f"Bearer {SECRETS['API_TOKEN']}"}
    assert (await p.http.get("/metrics")).status_code == 401  # the same rule as /workflow/*
    before = samples((await p.http.get("/metrics", headers=auth)).text)

    mid = await p.new_email()
    await p.reaches(mid, "awaiting_user")
    texted_at = p.sms.sent_at[0].timestamp()
    scrape = await p.http.get("/metrics", headers=auth)
    assert scrape.headers["Content-Type"].startswith("text/plain; version=")
    waiting = samples(scrape.text)
    assert value(waiting, "orchestrator_workflows", state="awaiting_user") == 1
    # The draft has waited since it was texted: no less than 0, no more than until now.
    assert 0 <= value(waiting, "orchestrator_oldest_awaiting_answer_seconds") <= time.time() - texted_at + 1
    assert (await p.reply_sms("1", key=SECRETS["SMS_WEBHOOK_SIGNING_KEY"])).status_code == 200
    await p.reaches(mid, "reply_sent")
    after = samples((await p.http.get("/metrics", headers=auth)).text)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value_before(before, name, **labels)

    assert moved("orchestrator_transitions_total", from_state="awaiting_user", to_state="user_approved") == 1
    assert moved("orchestrator_transitions_total", from_state="none", to_state="pending") == 1
    assert moved("orchestrator_stage_seconds_count", stage="draft") >= 1
    assert moved("orchestrator_stage_seconds_count", stage="send") >= 1
    assert moved("orchestrator_peer_request_seconds_count", peer="ai_reply_generator", outcome="200") == 1
    assert moved("orchestrator_peer_request_seconds_count", peer="sms_gateway", outcome="200") >= 2
    assert moved("orchestrator_peer_request_seconds_count", peer="smtp", outcome="sent") == 1
    assert moved("orchestrator_outbox_published_total") >= 8
    assert value(after, "orchestrator_workflows", state="reply_sent") == 1
    assert value(after, "orchestrator_workflows", state="awaiting_user") == 0
    assert ("orchestrator_outbox_rows", ()) in after
    lag_topics = {dict(labels)["topic"] for name, labels in after if name == "orchestrator_consumer_lag"}
    assert f"{p.prefix}emails.pending" in lag_topics

    await p.stop()
    log = p.worker.log_path.read_text()
    for name, secret in {**SECRETS, "KAFKA_SASL_PASSWORD": secured.password,
                         "DATABASE_URL's password": "orchestrator-db-secret"}.items():
        assert secret not in log, f"{name} appears in the log"
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert len(lines) > 20
    for line in lines:
        assert {"time", "level", "logger", "message", "message_id", "state", "trace_id"} <= set(line), line
    [row] = await p.query("SELECT trace_id FROM workflow_state WHERE message_id = %s", mid)
    about = [line for line in lines if line["message_id"] == mid]
    assert about and {line["trace_id"] for line in about if line["trace_id"]} >= {row["trace_id"]}
