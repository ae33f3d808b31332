"""Configuration: defaults from the deployed service, clear errors naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streams.settings import ConfigError, DatabaseSettings, Settings, load_settings

from tests.support.harness import clean_env

REQUIRED = {
    "EMAIL_ADDRESS": "me@gmail.com",
    "EMAIL_PASSWORD": "app-password",
    "YOUR_PHONE_NUMBER": "+15551234567",
    "DATABASE_URL": "postgresql://u:p@127.0.0.1:5432/db",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in list(os.environ):
        if name.upper() in Settings.model_fields or name.upper() in {f.upper() for f in Settings.model_fields}:
            monkeypatch.delenv(name)
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    return REQUIRED


def test_defaults_match_the_deployed_service(env: dict[str, str]) -> None:
    s = load_settings(Settings)
    assert (s.gmail_smtp_server, s.gmail_smtp_port, s.smtp_security_mode) == ("smtp.gmail.com", 465, "ssl")
    assert (s.db_port, s.db_name) == (5432, "email_auto_reply")
    assert (s.poll_interval, s.user_response_timeout) == (120, 86400)
    assert (s.max_retry_attempts, s.max_edit_iterations, s.sms_format) == (3, 10, "condensed")
    assert (s.host, s.port) == ("0.0.0.0", 8003)
    assert "app-password" not in repr(s)


def test_port_587_means_starttls(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GMAIL_SMTP_PORT", "587")
    assert load_settings(Settings).smtp_security_mode == "starttls"
    monkeypatch.setenv("SMTP_SECURITY", "plain")
    assert load_settings(Settings).smtp_security_mode == "plain"


def test_database_url_wins_over_db_vars(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_HOST", "elsewhere")
    monkeypatch.setenv("DB_USER", "readwrite")
    assert load_settings(Settings).conninfo == env["DATABASE_URL"]
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.setenv("DB_PASSWORD", "pw")
    info = load_settings(DatabaseSettings).conninfo
    assert "host=elsewhere" in info and "user=readwrite" in info and "dbname=email_auto_reply" in info


def test_phone_number_is_normalised(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YOUR_PHONE_NUMBER", "+1 (555) 123-4567")
    assert load_settings(Settings).your_phone_number == "+15551234567"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("YOUR_PHONE_NUMBER", "5551234", "YOUR_PHONE_NUMBER: must be an E.164 phone number"),
        ("GMAIL_SMTP_PORT", "smtp", "GMAIL_SMTP_PORT: "),
        ("POLL_INTERVAL", "-1", "POLL_INTERVAL: "),
        ("SMS_FORMAT", "tiny", "SMS_FORMAT: "),
        ("SMTP_SECURITY", "tls", "SMTP_SECURITY: "),
        ("KAFKA_BOOTSTRAP_SERVERS", "kafka", "KAFKA_BOOTSTRAP_SERVERS: must be a comma-separated host:port"),
        ("AI_REPLY_GENERATOR_URL", "not a url", "AI_REPLY_GENERATOR_URL: "),
        ("SMTP_CA_FILE", "/nonexistent/ca.pem", "SMTP_CA_FILE: no such file"),
        ("QUIET_HOURS", "late", "QUIET_HOURS: must look like 22:00-07:00"),
        ("QUIET_HOURS", "25:00-07:00", "QUIET_HOURS: hours are 00-23 and minutes 00-59"),
        ("TIMEZONE", "Mars/Olympus", "TIMEZONE: unknown time zone 'Mars/Olympus'"),
        ("REMINDER_AFTER", "-5", "REMINDER_AFTER: "),
        ("AGENT_STALL_TIMEOUT", "2", "AGENT_STALL_TIMEOUT: Input should be greater than or equal to 10"),
    ],
)
def test_a_malformed_value_is_named(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings(Settings)
    assert str(info.value).startswith(message)
    assert len(str(info.value).splitlines()) == 1


def test_missing_required_values_are_each_named(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YOUR_PHONE_NUMBER")
    monkeypatch.delenv("EMAIL_PASSWORD")
    with pytest.raises(ConfigError) as info:
        load_settings(Settings)
    assert sorted(str(info.value).splitlines()) == [
        "EMAIL_PASSWORD: is required but not set",
        "YOUR_PHONE_NUMBER: is required but not set",
    ]


def test_the_command_stops_with_one_line_naming_the_variable(tmp_path: Path) -> None:
    env = clean_env(**REQUIRED | {"YOUR_PHONE_NUMBER": "call me maybe"})
    result = subprocess.run(
        [sys.executable, "-m", "streams.cli", "worker"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "orchestrator: configuration error: YOUR_PHONE_NUMBER: must be an E.164 phone number such as +15551234567"
    )


def test_listening_beyond_loopback_needs_the_key_and_the_token(env: dict[str, str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings(Settings)  # HOST defaults to 0.0.0.0
    assert s.unauthenticated_exposure is not None
    assert s.unauthenticated_exposure.startswith("SMS_WEBHOOK_SIGNING_KEY and API_TOKEN must be set when HOST=0.0.0.0")
    monkeypatch.setenv("API_TOKEN", "t")
    assert load_settings(Settings).unauthenticated_exposure.startswith(  # type: ignore[union-attr]
        "SMS_WEBHOOK_SIGNING_KEY must be set")
    monkeypatch.setenv("SMS_WEBHOOK_SIGNING_KEY", "k")
    assert load_settings(Settings).unauthenticated_exposure is None
    monkeypatch.delenv("API_TOKEN")
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.53"):
        assert load_settings(Settings, host=host).unauthenticated_exposure is None, host
    for host in ("192.0.2.10", "::", "myhost.example"):
        assert load_settings(Settings, host=host).unauthenticated_exposure is not None, host


def _worker(env: dict[str, str], **extra: str) -> subprocess.CompletedProcess[str]:
    orchestrator = Path(sys.executable).with_name("orchestrator")
    return subprocess.run([str(orchestrator), "worker"], env=clean_env(**env, **extra), cwd=Path.cwd(),
                          capture_output=True, text=True, timeout=60)


def test_the_worker_refuses_to_listen_openly_without_the_key_or_token(env: dict[str, str]) -> None:
    result = _worker(env, HOST="0.0.0.0", API_TOKEN="t")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "orchestrator: configuration error: SMS_WEBHOOK_SIGNING_KEY must be set when HOST=0.0.0.0 "
        "(reachable from other machines); set it, listen on HOST=127.0.0.1, or set "
        "ALLOW_UNAUTHENTICATED=true to accept that risk")


def test_the_sent_folder_is_checked_for_gmail_unless_turned_off(env: dict[str, str]) -> None:
    assert load_settings(Settings).imap_host == "imap.gmail.com"
    assert load_settings(Settings, imap_server="off").imap_host is None
    assert load_settings(Settings, gmail_smtp_server="relay.example").imap_host is None
    assert load_settings(Settings, gmail_smtp_server="relay.example", imap_server="imap.example").imap_host \
        == "imap.example"
    s = load_settings(Settings)
    assert (s.imap_port, s.imap_sent_folder) == (993, "[Gmail]/Sent Mail")
