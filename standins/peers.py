"""Stand-ins for the orchestrator's peers, as real servers on loopback.

They speak the contracts of docs/contracts.md exactly and record what they were
sent, so tests assert on what a peer saw, not on the orchestrator's database.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import trustme
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from handlers.inbound import expected_signature
from handlers.lessons import lessons_in


def _ephemeral_ports() -> range:
    """The ports the kernel hands out to outgoing connections (Linux's default when unreadable)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return range(int(low), int(high) + 1)
    except (OSError, ValueError):
        return range(32768, 61000)


_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on, for a server to bind a moment later.

    Chosen below the kernel's ephemeral range: a port the kernel picked (bind to
    port 0) can be taken by any outgoing connection (a Kafka client, say)
    before the server binds it, which made a test's server fail with "address
    already in use". Ports handed out by this process are not handed out again.
    """
    ephemeral = _ephemeral_ports()
    candidates = range(20000, max(20001, min(ephemeral.start, 32768)))
    for _ in range(200):
        port = random.choice(candidates)
        if port in _handed_out or port in ephemeral:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port found in {candidates}")


class _HttpStub:
    def __init__(self) -> None:
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def routes(self) -> list[web.RouteDef]:
        """The peer's own endpoints; ``GET /health`` is added for every peer."""
        raise NotImplementedError

    async def start(self) -> None:
        app = web.Application()
        app.add_routes([*self.routes(), web.get("/health", _health)])
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()


async def _health(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def default_draft(body: dict[str, Any], n: int) -> str:
    """A draft that shows what it was asked: the newest instruction, and the lessons it carries."""
    context = (body.get("context_instructions") or "").strip()
    lessons = lessons_in(context)
    applied = f" (lessons: {'; '.join(lessons)})" if lessons else ""
    if lessons:
        context = context.split("\n\n", 1)[1] if "\n\n" in context else ""
    if context:
        last = context.splitlines()[-1]
        return f"Revised draft {n} ({last}){applied}"
    return f"Thanks for your email. Yes, that works for me. (draft {n}){applied}"


class AiGeneratorStub(_HttpStub):
    """``POST /generate-reply``. ``failures`` answers (status codes) come first."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[dict[str, Any]] = []
        self.failures: list[int] = []
        self.unknown: set[str] = set()
        self.draft_for: Callable[[dict[str, Any], int], str] = default_draft
        self.delay = 0.0
        #: Sent as Retry-After with the injected failures, when set.
        self.retry_after: str | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        #: (loop time, status) of every answer, in order; loop time of every request's arrival.
        self.answered: list[tuple[float, int]] = []
        self.arrived: list[float] = []
        #: (loop time, calls in flight with this one) at every request's arrival.
        self.started: list[tuple[float, int]] = []

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/generate-reply", self.generate)]

    async def generate(self, request: web.Request) -> web.Response:
        self.arrived.append(asyncio.get_running_loop().time())
        body = await request.json()
        self.requests.append(body)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.started.append((asyncio.get_running_loop().time(), self.in_flight))
        try:
            response = await self._answer(body)
        finally:
            self.in_flight -= 1
        self.answered.append((asyncio.get_running_loop().time(), response.status))
        return response

    async def _answer(self, body: dict[str, Any]) -> web.Response:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.failures:
            headers = {"Retry-After": self.retry_after} if self.retry_after else None
            return web.json_response({"detail": "injected"}, status=self.failures.pop(0), headers=headers)
        if body["email_message_id"] in self.unknown:
            return web.json_response({"detail": "Email not found"}, status=404)
        draft = self.draft_for(body, len(self.requests))
        return web.json_response({
            "draft_id": f"d{len(self.requests)}",
            "full_draft": draft,
            "short_summary": None,
            "length": len(draft),
            "is_sms_friendly": len(draft) <= 300,
            "tokens_used": 42,
            "model_version": "stub-1",
            "generated_at": datetime.now(UTC).isoformat(),
        })

    def for_email(self, message_id: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["email_message_id"] == message_id]


class SmsGatewayStub(_HttpStub):
    """``POST /sms/send``. ``failures`` answers ``success: false`` first."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[dict[str, str]] = []
        #: When each of ``sent`` arrived.
        self.sent_at: list[datetime] = []
        self.failures = 0
        self.attempts = 0
        #: Seconds between taking a message (it is in ``sent``) and answering.
        self.delay = 0.0
        #: When set, asked about each message first: an answer to give instead of
        #: taking it (a 429 with Retry-After, say), or None to take it.
        self.refuse: Callable[[str], web.Response | None] | None = None
        #: When set, the seconds to hold each message's answer (instead of ``delay``).
        self.hold: Callable[[str], float] | None = None
        #: When set (the worker's webhook URL), each message taken is reported back
        #: there as the gateway does (docs/contracts.md §3), ``report_delay`` seconds
        #: after its answer, signed with ``signing_key`` when there is one.
        self.webhook_url: str | None = None
        self.signing_key: str | None = None
        self.report_delay = 0.05
        #: The gateway's ids are this and a count (a demo that keeps its database gives each run its own).
        self.id_prefix = "sms-"
        #: The events reported for each message taken (its text), in order.
        self.report: Callable[[str], Sequence[str]] = lambda _: ("sms:sent", "sms:delivered")
        #: When set, awaited with each message before it is taken (the demo keeps them in its
        #: database, so its phone shows them after a restart); if it fails, the message is not taken.
        self.keep: Callable[[dict[str, str]], Awaitable[None]] | None = None
        #: (event, message_id, the webhook's HTTP status; 0 when unreachable) of every report posted.
        self.reports: list[tuple[str, str, int]] = []
        self._reporting: set[asyncio.Task[None]] = set()

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/sms/send", self.send)]

    async def stop(self) -> None:
        for task in list(self._reporting):
            task.cancel()
        await asyncio.gather(*self._reporting, return_exceptions=True)
        await super().stop()

    def _report_later(self, message_id: str, to: str, text: str) -> None:
        if self.webhook_url is None:
            return
        events = tuple(self.report(text))

        async def post_all() -> None:
            await asyncio.sleep(self.report_delay)
            for event in events:
                await self.post_event(event, message_id, to)

        task = asyncio.get_running_loop().create_task(post_all())
        self._reporting.add(task)
        task.add_done_callback(self._reporting.discard)

    async def post_event(self, event: str, message_id: str, to: str, *,
                         reason: str = "RESULT_ERROR_GENERIC_FAILURE") -> int:
        """Post one delivery report for ``message_id`` to ``webhook_url`` (the
        gateway's payload: ``sms:sent``, ``sms:delivered`` or ``sms:failed``);
        returns the webhook's HTTP status (0 when it cannot be reached)."""
        assert self.webhook_url is not None, "webhook_url is not set"
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        payload: dict[str, Any] = {"messageId": message_id, "phoneNumber": to, "sender": GATEWAY_NUMBER,
                                   "recipient": to, "simNumber": 1}
        details: dict[str, dict[str, Any]] = {"sms:sent": {"sentAt": now, "partsCount": 1},
                                              "sms:delivered": {"deliveredAt": now},
                                              "sms:failed": {"failedAt": now, "reason": reason}}
        body = json.dumps(gateway_event(event, payload | details.get(event, {}))).encode()
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as client, \
                    client.post(self.webhook_url, data=body, headers=webhook_headers(body, self.signing_key)) as response:
                status = response.status
        except (aiohttp.ClientError, TimeoutError):
            status = 0
        self.reports.append((event, message_id, status))
        return status

    async def send(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.attempts += 1
        assert set(body) == {"to", "message"}, body
        assert 1 <= len(body["message"]) <= 1600
        if self.failures:
            self.failures -= 1
            return web.json_response({"success": False, "message_id": None, "error": "modem busy"})
        if self.refuse is not None and (refusal := self.refuse(body["message"])) is not None:
            return refusal
        if self.keep is not None:
            await self.keep(body)
        self.sent.append(body)
        self.sent_at.append(datetime.now(UTC))
        answer = {"success": True, "message_id": f"{self.id_prefix}{len(self.sent)}", "error": None}
        if delay := (self.hold(body["message"]) if self.hold is not None else self.delay):
            await asyncio.sleep(delay)
        self._report_later(str(answer["message_id"]), body["to"], body["message"])
        return web.json_response(answer)

    @property
    def messages(self) -> list[str]:
        return [s["message"] for s in self.sent]


@dataclass
class Inbox:
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Answers to give instead of accepting, first come first served (e.g. "451 try later").
    refusals: list[str] = field(default_factory=list)
    attempts: int = 0
    #: When each of ``messages`` arrived (``time.time()``).
    arrived: list[float] = field(default_factory=list)
    #: The login each of ``messages`` was handed over through (None: the session had not logged in).
    logins: list[str | None] = field(default_factory=list)
    #: When set, awaited with each message's bytes before it is accepted (the demo keeps
    #: them in its database); if it fails, the message is not accepted.
    keep: Callable[[bytes], Awaitable[None]] | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.attempts += 1
            if self.refusals:
                return self.refusals.pop(0)
        msg = message_from_bytes(envelope.content, policy=policy.default)
        if self.keep is not None:
            await self.keep(envelope.content)
        with self.lock:
            self.messages.append(msg)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self.arrived.append(time.time())
            login = getattr(session, "auth_data", None)
            self.logins.append(login if isinstance(login, str) else None)
        return "250 OK"


class _WithoutLegacyLoginWarning(logging.Filter):
    """aiosmtpd 1.4 warns "Session.login_data is deprecated" at every login it
    completes itself: one line per email sent, about aiosmtpd's own code."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


logging.getLogger("mail.log").addFilter(_WithoutLegacyLoginWarning())


class SmtpServer:
    """A real SMTP server with implicit TLS (a throwaway CA) and AUTH.

    It accepts ``username`` and, besides it, every login of ``accounts``
    (login -> password; may be added to while it runs): one server for many
    people's mailboxes. ``inbox.logins`` says which login handed over each message."""

    def __init__(self, directory: Path, username: str, password: str,
                 accounts: Mapping[str, str] | None = None) -> None:
        self.ca = trustme.CA()
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        self.ca_file = directory / "smtp-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        self.inbox = Inbox()
        self.port = free_port()
        self.logins: list[str] = []
        self.username, self.password = username, password
        self.accounts: dict[str, str] = dict(accounts or {})

        def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
            login = data.login.decode() if isinstance(data, LoginPassword) else None
            expected = password if login == username else self.accounts.get(login or "")
            if login is not None and expected is not None and data.password.decode() == expected:
                self.logins.append(login)
                # Kept on the session (session.auth_data): the inbox records it with each message.
                return AuthResult(success=True, auth_data=login)
            # handled=False with a message: aiosmtpd answers at once (a bare failure stalls the client).
            return AuthResult(success=False, handled=False, message="535 5.7.8 Username and Password not accepted")

        self.controller = Controller(
            self.inbox, hostname="127.0.0.1", port=self.port, ssl_context=context,
            authenticator=authenticate, auth_require_tls=False,
        )

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    @property
    def messages(self) -> list[EmailMessage]:
        with self.inbox.lock:
            return list(self.inbox.messages)


def worker_settings(ai: AiGeneratorStub, sms: SmsGatewayStub, smtp: SmtpServer) -> dict[str, str]:
    """The worker's settings that point it at these stand-ins (the account is the SMTP server's)."""
    return {
        "AI_REPLY_GENERATOR_URL": ai.url,
        "SMS_GATEWAY_URL": sms.url,
        "GMAIL_SMTP_SERVER": "127.0.0.1",
        "GMAIL_SMTP_PORT": str(smtp.port),
        "SMTP_SECURITY": "ssl",
        "SMTP_CA_FILE": str(smtp.ca_file),
        "EMAIL_ADDRESS": smtp.username,
        "EMAIL_PASSWORD": smtp.password,
    }


#: The stand-in gateway phone's own SIM number: ``recipient`` of what it receives.
GATEWAY_NUMBER = "+15550009999"


def gateway_event(event: str, payload: Any, *, device_id: str = "dev-1", webhook_id: str = "wh-1") -> dict[str, Any]:
    """An event as the SMS gateway posts it to a webhook (docs/contracts.md §3)."""
    return {"deviceId": device_id, "event": event, "id": f"evt-{uuid.uuid4().hex[:10]}", "webhookId": webhook_id,
            "payload": payload}


def webhook_body(text: str, phone: str, *, sms_id: str | None = None, received_at: str | None = None,
                 device_id: str = "dev-1", webhook_id: str = "wh-1",
                 fields: tuple[str, ...] = ("sender", "recipient", "phoneNumber")) -> dict[str, Any]:
    """What the SMS gateway posts to the orchestrator for a received SMS
    (docs/contracts.md §3): ``sender`` and ``recipient``, and the deprecated
    ``phoneNumber``; ``fields`` leaves out those not named (an older or a newer gateway)."""
    numbers = {"sender": phone, "recipient": GATEWAY_NUMBER, "phoneNumber": phone}
    return gateway_event("sms:received", {
        "messageId": sms_id or f"m-{uuid.uuid4().hex[:10]}", "message": text,
        **{name: number for name, number in numbers.items() if name in fields},
        "simNumber": 1, "receivedAt": received_at or datetime.now(UTC).isoformat(timespec="milliseconds")},
        device_id=device_id, webhook_id=webhook_id)


def webhook_headers(body: bytes, key: str | None) -> dict[str, str]:
    """The gateway's headers for ``body``: signed (X-Timestamp, X-Signature) when there is a key."""
    headers = {"Content-Type": "application/json"}
    if key:
        stamp = str(int(time.time()))
        headers |= {"X-Timestamp": stamp, "X-Signature": expected_signature(key.encode(), body, stamp)}
    return headers
