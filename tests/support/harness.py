"""The end-to-end harness: ``orchestrator worker`` as a real process, wired to
real Kafka, a database of the test's own, stub peers and a TLS SMTP server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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
PHONE = "+15551234567"
ORCHESTRATOR = Path(sys.executable).with_name("orchestrator")


async def eventually(check: Callable[[], Awaitable[T]], timeout: float = 30.0, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy (bounded in time)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last  # type: ignore[no-any-return]
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


class Worker:
    """One ``orchestrator worker`` process."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = int(env.get("PORT", "0"))

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([str(ORCHESTRATOR), "worker"], env=self.env, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self, kill: bool = False) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
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

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


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
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "KAFKA_", "SMTP_"))}
        self.env.update(worker_settings(self.ai, self.sms, self.smtp))
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
        return webhook_body(text, phone, sms_id=sms_id, received_at="2026-11-24T10:15:00.000+00:00")

    async def reply_sms(self, text: str, phone: str = PHONE, sms_id: str | None = None,
                        key: str | None = None) -> httpx.Response:
        body = json.dumps(self.webhook_body(text, phone, sms_id)).encode()
        return await self.http.post("/orchestrator/sms-response", content=body, headers=webhook_headers(body, key))

    async def sms_count(self, n: int, timeout: float = 30) -> list[str]:
        async def enough() -> list[str] | None:
            return self.sms.messages if len(self.sms.messages) >= n else None

        return await eventually(enough, timeout, f"{n} SMS at the gateway (have {self.sms.messages})")

    async def emails(self, n: int, timeout: float = 30) -> list[Any]:
        async def enough() -> list[Any] | None:
            return self.smtp.messages if len(self.smtp.messages) >= n else None

        return await eventually(enough, timeout, f"{n} email(s) at the SMTP server")

    async def query(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        async with await psycopg.AsyncConnection.connect(self.database, row_factory=dict_row) as conn:
            cur = await conn.execute(sql, params)  # type: ignore[arg-type]
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

    def records(self, topic: str, at_least: int = 1, timeout: float = 20) -> list[KafkaRecord]:
        """The records on logical ``topic``, from the beginning (a throwaway consumer group)."""
        from confluent_kafka import Consumer

        consumer = Consumer({"bootstrap.servers": self.kafka, "group.id": f"read-{uuid.uuid4().hex}",
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
        consumer.subscribe([f"{self.prefix}{topic}"])
        found: list[KafkaRecord] = []
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and len(found) < at_least:
                msg = consumer.poll(0.5)
                if msg is not None and msg.error() is None:
                    found.append(KafkaRecord(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(),
                                             dict(msg.headers() or ())))
        finally:
            consumer.close()
        return found

    def dead_letters(self, at_least: int = 1, timeout: float = 20) -> list[dict[str, Any]]:
        """The dead letters: original ``key`` and ``value`` bytes, and their
        ``__connect.errors.*`` headers by their short names (``topic``, ``stage``, ...)."""
        return [{"key": r.key, "value": r.value}
                | {name.removeprefix(DLQ_HEADER): v.decode() for name, v in r.headers.items()
                   if name.startswith(DLQ_HEADER)}
                for r in self.records("deadletter", at_least, timeout)]

    @staticmethod
    def workflow_path(message_id: str, action: str = "") -> str:
        """``/workflow/{URL-encoded message_id}[/action]``."""
        return f"/workflow/{quote(message_id, safe='')}" + (f"/{action}" if action else "")

    def draft_path(self, message_id: str) -> str:
        return f"/drafts/{quote(message_id, safe='')}"


def delete_topics(servers: str, prefix: str) -> None:
    """Delete a test's topics, so the shared broker does not carry every earlier
    test's partitions (it slowed down as they piled up over a suite run)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": servers})
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    for future in (admin.delete_topics(names, operation_timeout=10).values() if names else []):
        try:
            future.result(timeout=15)
        except Exception:  # noqa: BLE001 - best effort: a leftover topic only costs the broker a little
            pass
