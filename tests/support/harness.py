"""The end-to-end harness: ``orchestrator worker`` as a real process, wired to
real Kafka, a database of the test's own, stub peers and a TLS SMTP server."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import psycopg
from psycopg.rows import dict_row

from handlers.messages import DLQ_HEADER
from standins import (
    AiGeneratorStub,
    SmsGatewayStub,
    SmtpServer,
    free_port,
    webhook_body,
    webhook_headers,
    worker_settings,
)

from tests.support.factories import insert_email

T = TypeVar("T")
M = TypeVar("M")
PHONE = "+15551234567"
#: How long nothing new must arrive before "exactly n" is believed: a second
#: send comes milliseconds after the first, a redelivered record well within it.
QUIET = 1.0
ORCHESTRATOR = Path(sys.executable).with_name("orchestrator")
#: Whether the relay has published everything queued (asked by the async and the threaded waits alike).
OUTBOX_EMPTY = "SELECT NOT EXISTS (SELECT 1 FROM kafka_outbox) AS empty"


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float = 30.0,
                     what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy (bounded in time)."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


@dataclass(frozen=True)
class KafkaRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


#: What a worker keeps of the environment the tests run in: where programs
#: are, a home and the locale. Nothing else (a developer's QUIET_HOURS,
#: RETRY_DEADLINE, SKIP_SENDERS, ...) reaches it; the rest is the harness's.
KEPT_ENV = ("PATH", "HOME", "LANG")


def clean_env(**settings: str) -> dict[str, str]:
    """The environment of an ``orchestrator`` process: :data:`KEPT_ENV`, then ``settings``."""
    return {name: os.environ[name] for name in KEPT_ENV if name in os.environ} | settings


#: A log entry a test must declare (:meth:`Pipeline.expect_log`): an ERROR or
#: CRITICAL line, or a traceback at any level.
BAD_LEVELS = ("ERROR", "CRITICAL")
TRACEBACK = "Traceback (most recent call last)"
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d[ T]\S+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


@dataclass
class LogEntry:
    level: str | None  # None: lines the logging setup did not write (a library's own stderr)
    text: str
    json: bool = False  # one JSON line: nothing follows it

    @property
    def bad(self) -> bool:
        return self.level in BAD_LEVELS or TRACEBACK in self.text


def log_entries(text: str) -> list[LogEntry]:
    """A worker's log as entries: a JSON line is one, read as "LEVEL logger:
    message" and its traceback; a LOG_FORMAT=text line is one with the lines
    that follow it (its traceback); other lines are grouped until the next."""
    entries: list[LogEntry] = []
    for line in text.splitlines():
        record = _json_record(line)
        if record is not None:
            level = str(record.get("level", ""))
            body = f"{level} {record.get('logger', '')}: {record.get('message', '')}"
            if record.get("exc_info"):
                body += f"\n{record['exc_info']}"
            entries.append(LogEntry(level, body, json=True))
        elif match := TEXT_LINE.match(line):
            entries.append(LogEntry(match.group(1), line))
        elif entries and not entries[-1].json:
            entries[-1].text += f"\n{line}"
        else:
            entries.append(LogEntry(None, line))
    return entries


def _json_record(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) and "level" in record else None


class Worker:
    """One ``orchestrator worker`` process, in a working directory of its own
    (no developer's ``.env`` is read) and the environment it is given."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = int(env.get("PORT", "0"))
        #: How each run that ended ended: (exit status or None when it would
        #: not stop, what happened); a run killed on purpose is not listed.
        self.ended: list[tuple[int | None, str]] = []
        self._accounted: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        self._note_if_ended()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([str(ORCHESTRATOR), "worker"], env=self.env, cwd=self.log_path.parent,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def _note_if_ended(self) -> None:
        """A run that ended while nobody was stopping it."""
        if self.proc is not None and self.proc is not self._accounted and self.proc.poll() is not None:
            self._accounted = self.proc
            self.ended.append((self.proc.returncode, f"exited by itself with status {self.proc.returncode}"))

    def stop(self, kill: bool = False) -> None:
        """SIGTERM (the run must then end with status 0 within 30 s), or SIGKILL on purpose."""
        self._note_if_ended()
        if self.proc is None or self.proc.poll() is not None:
            return
        self._accounted = self.proc
        if kill:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            self.ended.append((None, "did not stop within 30 s of SIGTERM (killed)"))
            return
        self.ended.append((self.proc.returncode, f"exited with status {self.proc.returncode} after SIGTERM"))

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def problems(self, expected_log: list[re.Pattern[str]], expected_exits: set[int]) -> list[str]:
        """What a test must have declared and did not: bad log entries, and exits other than 0."""
        found = [f"{self.log_path.name}: exit: {how}" for status, how in self.ended if status not in expected_exits]
        if self.log_path.exists():
            found += [f"{self.log_path.name}: {entry.text}" for entry in log_entries(self.log_path.read_text(
                errors="replace")) if entry.bad and not any(p.search(entry.text) for p in expected_log)]
        return found


class Pipeline:
    """A running orchestrator and its peers, with helpers to drive it like a user."""

    def __init__(self, database: str, kafka: str, prefix: str, tmp: Path, **overrides: str) -> None:
        self.database = database
        self.kafka = kafka
        self.prefix = prefix
        self.ai = AiGeneratorStub()
        self.sms = SmsGatewayStub()
        self.smtp = SmtpServer(tmp, "me@example.com", overrides.get("EMAIL_PASSWORD", "app-password"))
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = clean_env(**worker_settings(self.ai, self.sms, self.smtp))
        self.env.update({
            "YOUR_PHONE_NUMBER": PHONE,
            "DATABASE_URL": database,
            "KAFKA_BOOTSTRAP_SERVERS": kafka,
            "KAFKA_TOPIC_PREFIX": prefix,
            "KAFKA_TOPIC_PARTITIONS": "2",
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "ORCHESTRATOR_BASE_URL": self.base_url,
            "POLL_INTERVAL": "5",
            "RETRY_BACKOFF_BASE": "0.05",
            "RETRY_BACKOFF_MAX": "0.2",
            "TIMEOUT_CHECK_INTERVAL": "0.5",
            "GENERATION_LEASE": "6",  # a killed worker's drafts are taken over within 6 s
            "DATA_DIR": str(tmp / "data"),
            "LOG_LEVEL": "info",
        })
        self.env.update(overrides)
        self.worker = Worker(self.env, tmp / "worker.log")
        #: Workers beyond the first, in the same consumer group (see :meth:`another_worker`).
        self.others: list[Worker] = []
        self.http = httpx.AsyncClient(base_url=self.base_url, timeout=10)
        self._stopped = False
        self._expected_log: list[re.Pattern[str]] = []
        self._expected_exits = {0}

    def expect_log(self, *patterns: str) -> None:
        """Declare the worker log entries this test provokes on purpose: an
        ERROR or CRITICAL line, or a traceback, each matched by one of the
        regular expressions (searched in "LEVEL logger: message" and its
        traceback). Any other such entry fails the test when it stops."""
        self._expected_log += [re.compile(p) for p in patterns]

    def expect_exit(self, *statuses: int) -> None:
        """Declare exit statuses, besides 0, that a worker may end with (one not killed on purpose)."""
        self._expected_exits.update(statuses)

    def problems(self) -> list[str]:
        """What went wrong in the workers that the test did not declare (:meth:`expect_log`, :meth:`expect_exit`)."""
        return [problem for worker in (self.worker, *self.others)
                for problem in worker.problems(self._expected_log, self._expected_exits)]

    def another_worker(self) -> Worker:
        """Start one more ``orchestrator worker`` in the same group, on a port of its own."""
        port = free_port()
        worker = Worker(dict(self.env, PORT=str(port), ORCHESTRATOR_BASE_URL=f"http://127.0.0.1:{port}"),
                        self.worker.log_path.with_name(f"worker-{len(self.others) + 2}.log"))
        worker.start()
        self.others.append(worker)
        return worker

    async def start(self, wait_healthy: bool = True) -> None:
        await self.ai.start()
        await self.sms.start()
        self.smtp.start()
        self.worker.start()
        if wait_healthy:
            await self.wait_healthy()

    async def wait_healthy(self, timeout: float = 90) -> None:
        async def healthy() -> bool:
            assert self.worker.proc is not None
            if self.worker.proc.poll() is not None:
                raise AssertionError(f"worker exited:\n{self.worker.log_tail()}")
            try:
                return (await self.http.get("/health")).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            await eventually(healthy, timeout, "GET /health = 200")
        except AssertionError:
            print(self.worker.log_tail(), file=sys.stderr)
            raise

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for other in self.others:
            other.stop()
        self.worker.stop()
        print(f"--- worker log ({self.worker.log_path}) ---\n{self.worker.log_tail(150)}")
        await self.http.aclose()
        await self.ai.stop()
        await self.sms.stop()
        self.smtp.stop()
        if problems := self.problems():
            raise AssertionError("the worker did what the test did not declare (Pipeline.expect_log, expect_exit):\n"
                                 + "\n".join(problems))

    # ------------------------------------------------------------ as a user

    async def new_email(self, **fields: Any) -> str:
        async with await psycopg.AsyncConnection.connect(self.database) as conn:
            return await insert_email(conn, **fields)

    async def new_emails(self, *emails: dict[str, Any]) -> list[str]:
        """Several emails arriving together (one transaction)."""
        async with await psycopg.AsyncConnection.connect(self.database) as conn:
            ids = [await insert_email(conn, commit=False, **fields) for fields in emails]
            await conn.commit()
            return ids

    def webhook_body(self, text: str, phone: str = PHONE, sms_id: str | None = None) -> dict[str, Any]:
        """The gateway's body for an SMS the person sends now (``receivedAt`` now)."""
        return webhook_body(text, phone, sms_id=sms_id)

    async def reply_sms(self, text: str, phone: str = PHONE, sms_id: str | None = None,
                        key: str | None = None) -> httpx.Response:
        body = json.dumps(self.webhook_body(text, phone, sms_id)).encode()
        return await self.http.post("/orchestrator/sms-response", content=body, headers=webhook_headers(body, key))

    async def sms_count(self, n: int, timeout: float = 30, quiet: float = QUIET) -> list[str]:
        """Exactly ``n`` SMS at the gateway: waits for ``n``, then for the
        outbox to drain and ``quiet`` seconds without a new one, and asserts
        there are ``n`` (a duplicate a moment later is seen, not missed)."""
        return await self._exactly(lambda: self.sms.messages, n, timeout, quiet, "SMS at the gateway")

    async def emails(self, n: int, timeout: float = 30, quiet: float = QUIET) -> list[EmailMessage]:
        """Exactly ``n`` emails at the SMTP server (as :meth:`sms_count`)."""
        return await self._exactly(lambda: self.smtp.messages, n, timeout, quiet, "email(s) at the SMTP server")

    async def sms_at_least(self, n: int, timeout: float = 30) -> list[str]:
        """The SMS at the gateway once there are ``n`` or more: progress, not a count."""
        await self._at_least(lambda: self.sms.messages, n, timeout, "SMS at the gateway")
        return list(self.sms.messages)

    async def emails_at_least(self, n: int, timeout: float = 30) -> list[EmailMessage]:
        """The emails at the SMTP server once there are ``n`` or more: progress, not a count."""
        await self._at_least(lambda: self.smtp.messages, n, timeout, "email(s) at the SMTP server")
        return list(self.smtp.messages)

    @staticmethod
    async def _at_least(seen: Callable[[], Sequence[object]], n: int, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while len(seen()) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {n} {what}; have {list(seen())}")
            await asyncio.sleep(0.05)

    async def _exactly(self, seen: Callable[[], list[M]], n: int, timeout: float, quiet: float,
                       what: str) -> list[M]:
        await self._at_least(seen, n, timeout, what)
        await self.settle(lambda: len(seen()), n, quiet)
        found = list(seen())
        assert len(found) == n, f"expected exactly {n} {what}, got {len(found)}: {found}"
        return found

    async def settle(self, count: Callable[[], int], most: int, quiet: float = QUIET, timeout: float = 30) -> None:
        """Until the outbox is drained and ``count()`` has stayed the same for
        ``quiet`` seconds (or has passed ``most``): what a worker still had in
        hand has had its chance to show."""
        deadline = time.monotonic() + timeout
        while True:
            before = count()
            drained = await self.outbox_empty()
            await asyncio.sleep(quiet)
            if count() > most or (drained and count() == before and await self.outbox_empty()):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"not settled after {timeout}s: the outbox "
                                     f"{'is drained' if drained else 'still holds rows'}, and the count went "
                                     f"from {before} to {count()}")

    async def outbox_empty(self) -> bool:
        try:
            rows = await self.query(OUTBOX_EMPTY)
        except psycopg.OperationalError:  # the database away: nothing drains
            return False
        return bool(rows[0]["empty"])

    async def query(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        async with await psycopg.AsyncConnection.connect(self.database, row_factory=dict_row) as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchall()

    async def state(self, message_id: str) -> str | None:
        rows = await self.query("SELECT current_state FROM workflow_state WHERE message_id = %s", message_id)
        return rows[0]["current_state"] if rows else None

    async def reaches(self, message_id: str, state: str, timeout: float = 30) -> None:
        async def there() -> bool:
            return await self.state(message_id) == state

        try:
            await eventually(there, timeout, f"{message_id} in {state}")
        except AssertionError as exc:  # say where it is at the end, not where it was at the start
            raise AssertionError(f"{exc} (it is in {await self.state(message_id)})") from None

    async def awaiting_one(self) -> str | None:
        """The message_id of the draft awaiting the person's answer, if any."""
        rows = await self.query("SELECT message_id FROM workflow_state WHERE current_state = 'awaiting_user'")
        return str(rows[0]["message_id"]) if rows else None

    async def email_status(self, message_id: str) -> str:
        rows = await self.query("SELECT status FROM processed_emails WHERE message_id = %s", message_id)
        return str(rows[0]["status"])

    async def trail(self, message_id: str) -> list[tuple[str | None, str]]:
        rows = await self.query(
            "SELECT from_state, to_state FROM workflow_audit_log WHERE message_id = %s ORDER BY id", message_id)
        return [(r["from_state"], r["to_state"]) for r in rows]

    def records(self, topic: str, at_least: int = 1, timeout: float = 20, quiet: float = QUIET) -> list[KafkaRecord]:
        """Every record on logical ``topic``, from the beginning: once there are
        ``at_least``, the outbox is left to drain and ``quiet`` seconds to pass,
        and the topic is read to its end again, so a record beyond those
        expected is returned too (fewer when ``timeout`` passes first)."""
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        name = f"{self.prefix}{topic}"
        consumer = Consumer({"bootstrap.servers": self.kafka, "group.id": f"read-{uuid.uuid4().hex}",
                             "enable.auto.commit": False})
        found: list[KafkaRecord] = []
        deadline = time.monotonic() + timeout
        try:
            partitions = _partitions(consumer, name, deadline)
            consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in partitions])
            position = {p: consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)[0] for p in partitions}

            def read_to_end() -> None:
                ends = {p: consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1] for p in partitions}
                stop_at = time.monotonic() + 30
                while any(position[p] < ends[p] for p in partitions):
                    if time.monotonic() > stop_at:
                        raise AssertionError(f"could not read {name} to its end {ends}; at {position}")
                    msg = consumer.poll(0.5)
                    if msg is None or msg.error() is not None:
                        continue
                    found.append(_record(msg))
                    position[found[-1].partition] = found[-1].offset + 1

            read_to_end()
            while len(found) < at_least and time.monotonic() < deadline:
                time.sleep(0.2)
                read_to_end()
            settle_until = time.monotonic() + 30  # a topic that never stops growing is returned as it is then
            while len(found) >= at_least and time.monotonic() < settle_until:
                before = len(found)
                self._outbox_drained(deadline + 30)
                time.sleep(quiet)
                read_to_end()
                if len(found) == before:
                    break
        finally:
            consumer.close()
        return found

    def _outbox_drained(self, deadline: float) -> None:
        """Until the outbox is empty (:meth:`outbox_empty`, for a thread)."""
        while True:
            try:
                with psycopg.connect(self.database) as conn:
                    if conn.execute(OUTBOX_EMPTY).fetchone() == (True,):
                        return
            except psycopg.OperationalError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("the outbox was never drained")
            time.sleep(0.1)

    def dead_letters(self, n: int = 1, timeout: float = 20) -> list[dict[str, Any]]:
        """Exactly ``n`` dead letters (asserted, read as :meth:`records` reads):
        original ``key`` and ``value`` bytes, and their ``__connect.errors.*``
        headers by their short names (``topic``, ``stage``, ...)."""
        letters = [{"key": r.key, "value": r.value}
                   | {name.removeprefix(DLQ_HEADER): v.decode() for name, v in r.headers.items()
                      if name.startswith(DLQ_HEADER)}
                   for r in self.records("deadletter", n, timeout)]
        assert len(letters) == n, f"expected exactly {n} dead letter(s), found {len(letters)}: {letters}"
        return letters

    @staticmethod
    def workflow_path(message_id: str, action: str = "") -> str:
        """``/workflow/{URL-encoded message_id}[/action]``."""
        return f"/workflow/{quote(message_id, safe='')}" + (f"/{action}" if action else "")

    def draft_path(self, message_id: str) -> str:
        return f"/drafts/{quote(message_id, safe='')}"


def _partitions(consumer: Any, topic: str, deadline: float) -> list[int]:
    """The partitions of ``topic`` (waiting, until ``deadline``, for it to exist)."""
    while True:
        found = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if found is not None and found.error is None and found.partitions:
            return sorted(found.partitions)
        if time.monotonic() > deadline:
            raise AssertionError(f"no topic {topic}")
        time.sleep(0.2)


def _record(msg: Any) -> KafkaRecord:
    headers = {name: value or b"" for name, value in msg.headers() or ()}
    return KafkaRecord(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value() or b"", headers)


def delete_topics(servers: str, prefix: str) -> None:
    """Delete a test's topics, so the shared broker does not carry every earlier
    test's partitions (it slowed down as they piled up over a suite run)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": servers})
    try:
        names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    except KafkaException:  # the broker away (an outage test of another run): the topics stay
        return
    for future in (admin.delete_topics(names, operation_timeout=10).values() if names else []):
        try:
            future.result(timeout=15)
        except Exception:  # noqa: BLE001 - best effort: a leftover topic only costs the broker a little
            pass
