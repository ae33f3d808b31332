"""The worker on a secured cluster: SASL_SSL with SCRAM and mutual TLS, on
the real broker's secured listeners (scripts/services), and the clear line
and /health answer when the login, the certificate or a topic is wrong."""

from __future__ import annotations

import re
import ssl
import subprocess
from pathlib import Path
from typing import Any

import faust
import httpx
import pytest
import trustme

from streams.kafka.access import aiokafka_config, confluent_config, faust_credentials
from streams.settings import ConfigError, KafkaSettings, load_settings

from tests.support.harness import ORCHESTRATOR, Pipeline, clean_env, eventually
from tests.support.services import SecuredKafka, secured_kafka


@pytest.fixture(scope="module")
def secured() -> SecuredKafka:
    return secured_kafka()


def kafka_settings(**env: str) -> KafkaSettings:
    return load_settings(KafkaSettings, **{k.lower(): v for k, v in env.items()})


# ------------------------------------------------------- one settings object


def test_plaintext_is_the_default_and_every_client_agrees() -> None:
    k = kafka_settings(KAFKA_BOOTSTRAP_SERVERS="a:9092,b:9092")
    assert confluent_config(k)["security.protocol"] == "plaintext"
    assert "sasl.username" not in confluent_config(k)
    assert aiokafka_config(k) == {"bootstrap_servers": "a:9092,b:9092", "security_protocol": "PLAINTEXT"}
    assert faust_credentials(k) is None


def test_sasl_ssl_reaches_all_three_client_families_alike(secured: SecuredKafka) -> None:
    k = kafka_settings(**secured.sasl_env())
    rd = confluent_config(k)
    assert (rd["security.protocol"], rd["sasl.mechanism"], rd["sasl.username"], rd["sasl.password"]) == (
        "sasl_ssl", "SCRAM-SHA-512", secured.username, secured.password)
    assert rd["ssl.ca.location"] == str(secured.ca_file)
    assert rd["ssl.endpoint.identification.algorithm"] == "https"  # verification stays on
    aio = aiokafka_config(k)
    assert (aio["security_protocol"], aio["sasl_mechanism"], aio["sasl_plain_username"],
            aio["sasl_plain_password"]) == ("SASL_SSL", "SCRAM-SHA-512", secured.username, secured.password)
    context: ssl.SSLContext = aio["ssl_context"]
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    credentials = faust_credentials(k)
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.protocol.value, credentials.mechanism.value, credentials.username) == (
        "SASL_SSL", "SCRAM-SHA-512", secured.username)
    assert credentials.ssl_context is not None and credentials.ssl_context.verify_mode is ssl.CERT_REQUIRED


def test_mutual_tls_hands_the_client_certificate_to_every_client(secured: SecuredKafka) -> None:
    k = kafka_settings(**secured.mtls_env())
    rd = confluent_config(k)
    assert (rd["ssl.certificate.location"], rd["ssl.key.location"]) == (
        str(secured.client_cert), str(secured.client_key))
    assert "sasl.mechanism" not in rd
    assert aiokafka_config(k)["security_protocol"] == "SSL"
    credentials = faust_credentials(k)
    assert isinstance(credentials, faust.SSLCredentials)


@pytest.mark.parametrize(("env", "line"), [
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"},
     "KAFKA_SASL_USERNAME: is required when KAFKA_SECURITY_PROTOCOL=SASL_SSL"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"},
     "KAFKA_SASL_MECHANISM: is required when KAFKA_SECURITY_PROTOCOL=SASL_SSL"),
    ({"KAFKA_SASL_MECHANISM": "PLAIN"},
     "KAFKA_SASL_MECHANISM: is set but KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not log in"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_KEY_FILE": "{key}"},
     "KAFKA_SSL_CERT_FILE: is required with KAFKA_SSL_KEY_FILE (mutual TLS needs both)"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_FILE": "/nonexistent/ca.pem"},
     "KAFKA_SSL_CA_FILE: cannot read /nonexistent/ca.pem"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_FILE": "{key}"},
     "KAFKA_SSL_CA_FILE: not a PEM CA certificate"),
    ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL: Input should be 'PLAINTEXT'"),
    ({"KAFKA_SASL_MECHANISM": "GSSAPI", "KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "KAFKA_SASL_MECHANISM: Input"),
])
def test_inconsistent_security_settings_stop_with_the_variable_named(
        secured: SecuredKafka, env: dict[str, str], line: str) -> None:
    env = {k: v.format(key=secured.client_key) for k, v in env.items()}
    with pytest.raises(ConfigError) as caught:
        kafka_settings(**env)
    assert any(reported.startswith(line) for reported in str(caught.value).splitlines()), str(caught.value)


def test_the_worker_refuses_to_start_on_a_bad_setting_with_one_line(tmp_path: Path) -> None:
    env = clean_env(EMAIL_ADDRESS="me@example.com", EMAIL_PASSWORD="x", YOUR_PHONE_NUMBER="+15551234567",
                    DATABASE_URL="postgresql://nobody@127.0.0.1:1/none", KAFKA_SECURITY_PROTOCOL="SASL_SSL",
                    KAFKA_SASL_MECHANISM="SCRAM-SHA-512", KAFKA_SASL_PASSWORD="pw")
    done = subprocess.run([str(ORCHESTRATOR), "worker"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == ("orchestrator: configuration error: KAFKA_SASL_USERNAME: is required when "
                                   "KAFKA_SECURITY_PROTOCOL=SASL_SSL")


# ------------------------------------------------------- the real broker


async def test_happy_path_and_a_kill_over_sasl_ssl_with_scram(make_pipeline: Any, secured: SecuredKafka) -> None:
    p: Pipeline = await make_pipeline(**secured.sasl_env())
    first = await p.new_email(subject="Over TLS?")
    await p.reaches(first, "awaiting_user")
    assert (await p.reply_sms("1")).status_code == 200
    [email] = await p.emails(1)
    assert email["Subject"] == "Re: Over TLS?"
    await p.reaches(first, "reply_sent")

    # Killed with a draft on the phone and another email on its way: the
    # restarted worker logs in again and finishes both, each once. Both are
    # drafted at once, and whichever draft is ready first goes to the phone.
    emails = await p.new_emails({"subject": "Second"}, {"subject": "Third"})
    shown = await eventually(p.awaiting_one, 30, "a draft on the phone")
    [other] = [mid for mid in emails if mid != shown]
    p.worker.stop(kill=True)
    p.worker.start()
    await p.wait_healthy()
    assert (await p.reply_sms("1")).status_code == 200
    await p.reaches(shown, "reply_sent")
    await p.reaches(other, "awaiting_user")
    assert (await p.reply_sms("1")).status_code == 200
    await p.reaches(other, "reply_sent")
    sent = await p.emails(3)
    assert sorted(m["Subject"] for m in sent) == ["Re: Over TLS?", "Re: Second", "Re: Third"]
    assert "Traceback" not in p.worker.log_path.read_text()


def test_topics_are_created_over_mutual_tls(secured: SecuredKafka, topic_prefix: str, tmp_path: Path) -> None:
    env = clean_env(**secured.mtls_env(), KAFKA_TOPIC_PREFIX=topic_prefix)
    done = subprocess.run([str(ORCHESTRATOR), "topics", "create"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"{topic_prefix}emails.pending" in done.stdout


def untrusted_ca(tmp_path: Path) -> str:
    path = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return str(path)


@pytest.mark.parametrize(("case", "reason"), [
    ("wrong password", "kafka: login refused for KAFKA_SASL_USERNAME=orchestrator"),
    ("untrusted CA", "kafka: TLS handshake failed: the broker's certificate is not trusted by KAFKA_SSL_CA_FILE="),
    ("missing topic", "kafka: missing topics "),
])
async def test_a_bad_cluster_setting_gives_one_line_and_a_503_naming_kafka(
        make_pipeline: Any, database: str, endpoints: Any, topic_prefix: str, tmp_path: Path,
        secured: SecuredKafka, case: str, reason: str) -> None:
    env = secured.sasl_env()
    if case == "wrong password":
        env["KAFKA_SASL_PASSWORD"] = "not-the-password"
    elif case == "untrusted CA":
        env["KAFKA_SSL_CA_FILE"] = untrusted_ca(tmp_path)
    else:
        env["KAFKA_CREATE_TOPICS"] = "false"  # and this test's prefix has no topics
    p = Pipeline(database, endpoints.kafka_bootstrap_servers, topic_prefix, tmp_path, **env)
    # The one line this test asks for is an ERROR. A worker stopped before
    # Kafka ever let it start stops cleanly (exit 0), as any asked-for stop:
    # the harness fails the test on any other exit status.
    p.expect_log(f"^ERROR streams\\.worker: {re.escape(reason)}")
    await p.start(wait_healthy=False)
    try:
        async def unhealthy() -> dict[str, Any] | None:
            try:
                response = await p.http.get("/health")
            except httpx.HTTPError:
                return None
            return response.json() if response.status_code == 503 else None

        report = await eventually(unhealthy, 60, "/health = 503")
        said = reason.removeprefix("kafka: ")
        assert report["checks"]["kafka"]["ok"] is False
        assert report["checks"]["kafka"]["error"].startswith(said), report
        lines = await eventually(lambda: _lines_with(p, reason), 30, f"a log line {reason!r}")
        assert len(lines) == 1, lines
        assert p.worker.proc is not None and p.worker.proc.poll() is None  # waiting, not crash-looping
        log = p.worker.log_path.read_text()
        assert "Traceback" not in log and env.get("KAFKA_SASL_PASSWORD", "") not in log
    finally:
        await p.stop()


async def _lines_with(p: Pipeline, text: str) -> list[str]:
    return [line for line in p.worker.log_path.read_text().splitlines() if text in line]


async def test_on_a_cluster_that_forbids_creating_topics_the_worker_uses_only_the_documented_ones(
        make_pipeline: Any, topic_prefix: str, endpoints: Any, tmp_path: Path) -> None:
    env = clean_env(KAFKA_BOOTSTRAP_SERVERS=endpoints.kafka_bootstrap_servers, KAFKA_TOPIC_PREFIX=topic_prefix,
                    KAFKA_TOPIC_PARTITIONS="2")
    created = subprocess.run([str(ORCHESTRATOR), "topics", "create"], env=env, cwd=tmp_path, capture_output=True,
                             text=True, timeout=60)
    assert created.returncode == 0, created.stderr
    p: Pipeline = await make_pipeline(KAFKA_CREATE_TOPICS="false")
    mid = await p.new_email()
    await p.reaches(mid, "awaiting_user")
    from confluent_kafka.admin import AdminClient

    names = AdminClient({"bootstrap.servers": endpoints.kafka_bootstrap_servers}).list_topics(timeout=10).topics
    ours = sorted(n.removeprefix(topic_prefix) for n in names if n.startswith(topic_prefix))
    assert ours == sorted(["emails.pending", "edits.requested", "drafts.ready", "sms.inbound", "replies.approved",
                           "phone.freed", "workflow.events", "drafts.undelivered", "deadletter"])
