"""``orchestrator doctor``: one line per dependency, ✓ or ✗ with the reason.

Checks what the worker needs, the way the worker reaches it, without changing
anything: the configuration, PostgreSQL and the schema, the Kafka login, the
topics and what the worker's principal may do with them, the AI generator and
the SMS gateway (their ``/health``), the SMTP login (EHLO and AUTH, then
QUIT: nothing is sent), and the people (PEOPLE_KEYS opens every stored password). A part of the configuration that is wrong does not
stop the checks that do not need it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from confluent_kafka import KafkaException, TopicCollection
from confluent_kafka.admin import AclOperation  # type: ignore[attr-defined]
from pydantic import BaseModel

from handlers.clock import SystemClock
from handlers.errors import PeerError
from handlers.people_keys import KeysError, PeopleKeys
from streams.kafka.access import KafkaUnavailable, probe, uses_sasl
from streams.kafka.topics import missing_topics, topic_names
from streams.observability.logs import redact_url
from streams.peers.http import UNREACHABLE, PeerHttp
from streams.peers.smtp import SmtpSender
from streams.settings import ConfigError, DatabaseSettings, KafkaSettings, Settings, load_settings
from streams.storage.database import create_pool, missing_schema
from streams.storage.people import PeopleStore

#: What the worker does with every topic: read it (the agents), write it (the outbox relay).
NEEDED_ON_TOPICS = (AclOperation.DESCRIBE, AclOperation.READ, AclOperation.WRITE)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'✓' if self.ok else '✗'} {self.name}: {self.detail}"


def _load(cls: type[BaseModel]) -> tuple[Any, str | None]:
    try:
        return load_settings(cls), None  # type: ignore[type-var]
    except ConfigError as exc:
        return None, str(exc)


async def run_checks() -> list[Check]:
    """Every check, in the order a person would fix things."""
    checks: list[Check] = []
    settings, problem = _load(Settings)
    checks.append(Check("configuration", problem is None,
                        "complete" if problem is None else "; ".join(problem.splitlines())))
    database, _ = (settings, None) if settings else _load(DatabaseSettings)
    kafka, _ = (settings, None) if settings else _load(KafkaSettings)
    if database is not None:
        checks.append(await _postgres(database))
    if kafka is not None:
        checks += await asyncio.to_thread(_kafka, kafka)
    if settings is not None:
        http = PeerHttp(5.0)
        try:
            checks.append(await _peer(http, "AI generator", str(settings.ai_reply_generator_url),
                                      "AI_REPLY_GENERATOR_URL"))
            checks.append(await _peer(http, "SMS gateway", str(settings.sms_gateway_url), "SMS_GATEWAY_URL"))
        finally:
            await http.close()
        checks.append(await asyncio.to_thread(_smtp, settings))
        reached = any(c.name == "PostgreSQL" and c.ok for c in checks)
        people = await _people(settings) if reached else None  # a database we cannot reach is said once
        if people is not None:
            checks.append(people)
    return checks


async def _people(s: Settings) -> Check | None:
    """The people of the deployment, and whether PEOPLE_KEYS opens every stored
    password; None when there are none (a single-person deployment, as before)."""
    name = "people"
    pool = create_pool(s.conninfo, 2)
    try:
        await pool.open(wait=True, timeout=10)
        rows = await PeopleStore(pool, SystemClock()).everyone()
    except Exception as exc:  # noqa: BLE001 - reported, like every check
        return Check(name, False, f"could not read them ({type(exc).__name__}: {str(exc)[:200]})")
    finally:
        await pool.close()
    if not rows:
        return None
    tokens = [(row, token) for row in rows for token in (row.smtp_password, row.imap_password) if token]
    if not tokens:
        return Check(name, True, f"{len(rows)} person(s) besides the default person; no stored password")
    if s.people_keys is None:
        return Check(name, False, f"{len(rows)} person(s), {len(tokens)} stored password(s), but PEOPLE_KEYS is"
                                  " not set: their replies cannot be sent")
    keys = PeopleKeys(s.people_keys.get_secret_value())
    locked = sorted({f"{row.name} (id {row.id})" for row, token in tokens if not _opens(keys, token)})
    if locked:
        return Check(name, False, f"PEOPLE_KEYS opens no key of the password(s) of {', '.join(locked[:10])}")
    return Check(name, True, f"{len(rows)} person(s); PEOPLE_KEYS opens every stored password")


def _opens(keys: PeopleKeys, token: str) -> bool:
    try:
        keys.decrypt(token)
    except KeysError:
        return False
    return True


async def _postgres(s: DatabaseSettings) -> Check:
    name = "PostgreSQL"
    try:
        missing = await missing_schema(s.conninfo)
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Check(name, False, f"cannot connect ({reason}); check DATABASE_URL or DB_*")
    if missing:
        return Check(name, False, f"connected, but the schema lacks {', '.join(missing[:8])}"
                                  f"{' …' if len(missing) > 8 else ''}; run `orchestrator db init`")
    return Check(name, True, "connected; schema complete")


def _kafka(k: KafkaSettings) -> list[Check]:
    how = k.kafka_security_protocol + (f" {k.kafka_sasl_mechanism} as {k.kafka_sasl_username}" if uses_sasl(k)
                                       else "")
    try:
        admin, metadata = probe(k, timeout=10)
    except KafkaUnavailable as exc:
        return [Check("Kafka login", False, str(exc))]
    checks = [Check("Kafka login", True, f"{k.kafka_bootstrap_servers} ({how}), "
                                         f"{len(metadata.brokers)} broker(s)")]
    names = topic_names(k)
    missing = missing_topics(k, metadata)
    if missing:
        fix = "the worker creates them at start" if k.kafka_create_topics else \
            "KAFKA_CREATE_TOPICS=false: create them (README: Deploying on your cluster)"
        checks.append(Check("Kafka topics", k.kafka_create_topics, f"missing {', '.join(missing)} ({fix})"))
    present = [n for n in names if n in metadata.topics]
    denied: list[str] = []
    if present:
        for topic, future in admin.describe_topics(TopicCollection(present),
                                                   include_authorized_operations=True).items():
            try:
                allowed = set(future.result(timeout=10).authorized_operations or ())
            except KafkaException as exc:
                denied.append(f"{topic} ({exc.args[0].str()})")
                continue
            lacking = [op.name for op in NEEDED_ON_TOPICS if op not in allowed]
            if lacking:
                denied.append(f"{topic} (no {'/'.join(lacking)})")
    if denied:
        checks.append(Check("Kafka permissions", False, "; ".join(denied)))
    elif present:
        checks.append(Check("Kafka topics", True,
                            f"{len(present)} of {len(names)} present; DESCRIBE, READ and WRITE allowed"))
    return checks


async def _peer(http: PeerHttp, name: str, url: str, variable: str) -> Check:
    target = url.rstrip("/") + "/health"
    shown = redact_url(target)  # never a password in userinfo on the terminal
    try:
        status = await http.health(target, timeout=5.0)
    except UNREACHABLE as exc:
        return Check(name, False, f"unreachable at {shown} ({type(exc).__name__}); check {variable} "
                                  f"and that the service runs")
    if status != 200:
        return Check(name, False, f"{shown} answered HTTP {status}")
    return Check(name, True, f"{shown} answered 200")


def _smtp(s: Settings) -> Check:
    sender = SmtpSender(s.gmail_smtp_server, s.gmail_smtp_port, s.smtp_security_mode, s.email_address,
                        s.email_password.get_secret_value(), s.smtp_ca_file, min(s.smtp_timeout, 15.0))
    where = f"{s.gmail_smtp_server}:{s.gmail_smtp_port} ({s.smtp_security_mode})"
    try:
        sender.check_login()
    except PeerError as exc:
        detail = str(exc).removeprefix(f"{exc.peer}: ")
        if "login refused" in detail:
            detail += "; check EMAIL_ADDRESS and EMAIL_PASSWORD (for Gmail, an app password)"
        return Check("SMTP", False, f"{where}: {detail}")
    return Check("SMTP", True, f"{where}: logged in as {s.email_address} (nothing sent)")


def doctor(out: Callable[[str], None] = print) -> int:
    """Run the checks, print a line each; 0 when all pass, 1 otherwise."""
    checks = asyncio.run(run_checks())
    for check in checks:
        out(check.line())
    return 0 if all(c.ok for c in checks) else 1
