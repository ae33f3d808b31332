"""The demo: what ``orchestrator demo`` (and ``scripts/run`` with nothing
configured) runs beside the worker. The stand-in peers, on loopback, with a
generator that writes a plausible reply from the email and folds in the
person's edit instructions; a phone that is a web page (``/demo/phone``,
answering through the real webhook path); an SMTP server that keeps what
would have been sent (``/demo/sent``); and a handful of sample emails, written
to ``processed_emails`` as the Email Monitor would.

A second run continues the first: the samples keep their Message-IDs (added
once), and what the phone and the mail server got is kept in the demo's
database (:class:`Kept`), so both pages show what the orchestrator believes
they got, across restarts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import threading
import uuid
from email import message_from_bytes, policy
from email.message import EmailMessage
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from aiohttp import web
from dotenv import dotenv_values

from streams.cli.plugins import Command
from streams.settings import ConfigError, DatabaseSettings, Settings, load_settings
from streams.web.guard import GUARD
from streams.web.pages import ExtraPages, register, render

from .peers import AiGeneratorStub, SmsGatewayStub, SmtpServer, webhook_body, webhook_headers, worker_settings

log = logging.getLogger(__name__)

PHONE = "+15550100100"
ADDRESS = "you@demo.invalid"
PASSWORD = "demo-app-password"


@dataclass(frozen=True)
class Sample:
    sender: str
    subject: str
    body: str
    in_reply_to: str | None = None


SAMPLES = (
    Sample("Maria Garcia <maria@example.com>", "Lunch on Thursday?",
           "Hi! Are you free for lunch on Thursday around 12:30? There's a new place near the office.\n\nMaria"),
    Sample("Tom Becker <tom.becker@example.org>", "Q3 report: numbers for slide 4",
           "Hello,\n\ncould you send me the final Q3 numbers for slide 4 by Friday? The draft deck is "
           "attached.\n\nThanks,\nTom", in_reply_to="<q3-deck-1@example.org>"),
    Sample("Priya Shah <priya@example.net>", "Can we move our call?",
           "Something came up tomorrow morning. Could we move our 10:00 call to the afternoon?\n\nPriya"),
)


def _first_name(sender: str) -> str:
    name = sender.split("<")[0].strip().strip('"') or sender.split("@")[0]
    return name.split()[0] if name else "there"


_INSTRUCTION = re.compile(r"^\s*\d+\.\s+(.+?)\s*$", re.M)
_STYLE_WORDS = ("casual", "friendly", "formal", "decline", "say no", "can't", "short")


def plausible_draft(email: dict[str, Any] | None, body: dict[str, Any]) -> str:
    """A reply a person might write to ``email``, with every instruction so far
    folded in (they arrive numbered in ``context_instructions``, oldest first)."""
    sender = _first_name(email["from_address"]) if email else "there"
    subject = (email or {}).get("subject") or "your email"
    text = (email or {}).get("body_text") or ""
    wishes = _INSTRUCTION.findall(body.get("context_instructions") or "")
    said = " ".join(wishes).lower()
    greeting, closing = f"Hi {sender},", "Best regards,\nMe"
    if "casual" in said or "friendly" in said:
        greeting, closing = f"Hey {sender}!", "Cheers!"
    if "formal" in said:
        greeting, closing = f"Dear {sender},", "Kind regards,\nMe"
    if "decline" in said or "say no" in said or "can't" in said:
        middle = f"Thanks for asking about \"{subject}\". Unfortunately that won't work for me this time."
    elif "?" in text:
        middle = f"Thanks for your message about \"{subject}\". Yes, that works for me."
    else:
        middle = f"Thanks for your message about \"{subject}\". I'll take care of it."
    extra = "".join(f" {w.rstrip('.')[:1].upper()}{w.rstrip('.')[1:]}." for w in wishes
                    if not any(word in w.lower() for word in _STYLE_WORDS))
    if "short" in said:
        return f"{greeting} {middle.split('. ')[-1]}{extra} {closing.splitlines()[0]}"
    return f"{greeting}\n\n{middle}{extra}\n\n{closing}"


#: The demo's own tables, in the database its workflows are in (not in schema.sql: a
#: deployment has no demo), so the phone and the sent mail live and end with them.
KEPT_SCHEMA = """
CREATE TABLE IF NOT EXISTS demo_phone (
    id BIGSERIAL PRIMARY KEY, at TIMESTAMPTZ NOT NULL DEFAULT now(),
    direction TEXT NOT NULL CHECK (direction IN ('out', 'in')), text TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS demo_sent (
    id BIGSERIAL PRIMARY KEY, at TIMESTAMPTZ NOT NULL DEFAULT now(), raw BYTEA NOT NULL);
"""
#: How many SMS and how many emails are kept (the newest; older ones are dropped).
KEPT_LIMIT = 500


class Kept:
    """What the demo's phone and mail server got, kept where a restart finds it.

    Written before the stand-in takes the SMS or email (a failed write is a
    failed send, which the worker retries), so the pages never miss what the
    orchestrator believes was delivered."""

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo

    def create(self) -> None:
        with psycopg.connect(self.conninfo) as conn:
            conn.execute(KEPT_SCHEMA)

    async def sms(self, direction: str, text: str) -> None:
        async with await psycopg.AsyncConnection.connect(self.conninfo) as conn:
            await conn.execute("INSERT INTO demo_phone (direction, text) VALUES (%s, %s)", (direction, text))
            await conn.execute("DELETE FROM demo_phone WHERE id <= (SELECT id FROM demo_phone ORDER BY id DESC"
                               " OFFSET %s LIMIT 1)", (KEPT_LIMIT,))

    async def mail(self, raw: bytes) -> None:
        async with await psycopg.AsyncConnection.connect(self.conninfo) as conn:
            await conn.execute("INSERT INTO demo_sent (raw) VALUES (%s)", (raw,))
            await conn.execute("DELETE FROM demo_sent WHERE id <= (SELECT id FROM demo_sent ORDER BY id DESC"
                               " OFFSET %s LIMIT 1)", (KEPT_LIMIT,))

    async def phone(self) -> list[tuple[datetime, str, str]]:
        """The SMS thread, oldest first: (when, "out" = texted to the phone or "in" = typed on it, text)."""
        async with await psycopg.AsyncConnection.connect(self.conninfo) as conn:
            cursor = await conn.execute("SELECT at, direction, text FROM demo_phone ORDER BY id")
            return [(at, direction, text) for at, direction, text in await cursor.fetchall()]

    async def sent(self) -> list[EmailMessage]:
        """The emails the mail server accepted, newest first."""
        async with await psycopg.AsyncConnection.connect(self.conninfo) as conn:
            cursor = await conn.execute("SELECT raw FROM demo_sent ORDER BY id DESC")
            return [message_from_bytes(raw, policy=policy.default) for (raw,) in await cursor.fetchall()]


class DemoWorld:
    """The stand-ins, running in a thread of their own beside the worker."""

    def __init__(self, directory: Path, conninfo: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.conninfo = conninfo
        self.ai = AiGeneratorStub()
        self.ai.draft_for = self._draft
        self.ai.delay = 1.5  # a generator takes a moment; the dashboard shows it working
        self.kept = Kept(conninfo)
        self.sms = SmsGatewayStub()
        self.sms.keep = self._keep_sms
        self.smtp = SmtpServer(directory, ADDRESS, PASSWORD)
        self.smtp.inbox.keep = self.kept.mail
        #: The settings the worker runs with (the phone answers through its webhook).
        self.worker_settings: Settings | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()

    def _draft(self, body: dict[str, Any], n: int) -> str:
        with psycopg.connect(self.conninfo, row_factory=psycopg.rows.dict_row) as conn:
            email = conn.execute("SELECT from_address, subject, body_text FROM processed_emails"
                                 " WHERE message_id = %s", (body["email_message_id"],)).fetchone()
        return plausible_draft(email, body)

    async def _keep_sms(self, body: dict[str, str]) -> None:
        await self.kept.sms("out", body["message"])

    def start(self) -> None:
        self.kept.create()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self.ai.start())
            self._loop.run_until_complete(self.sms.start())
            self._ready.set()
            self._loop.run_forever()

        threading.Thread(target=run, name="demo-peers", daemon=True).start()
        self.smtp.start()
        if not self._ready.wait(30):
            raise RuntimeError("the demo's stand-in peers did not start")

    def settings(self) -> dict[str, str]:
        """The worker's settings that point at the stand-ins."""
        return {"DEMO": "true", **worker_settings(self.ai, self.sms, self.smtp), "IMAP_SERVER": "off",
                "YOUR_PHONE_NUMBER": PHONE}

    def insert_samples(self) -> list[str]:
        """The sample emails, as the Email Monitor writes them; the Message-IDs of those added.

        Each sample has the same Message-ID in every run, so a second run adds
        nothing and continues the first (its workflows, the draft on the phone,
        the phone's SMS). Chosen over wiping the previous run's data: that would
        mean deleting the orchestrator's rows behind its back, with its Kafka
        messages about them still in flight; continuing is what the dashboard,
        the phone and the sent mail can all show truthfully."""
        now = datetime.now(UTC)
        ids = []
        with psycopg.connect(self.conninfo) as conn:
            for n, sample in enumerate(SAMPLES):
                message_id = f"<demo-sample-{n + 1}@demo.invalid>"
                added = conn.execute(
                    "INSERT INTO processed_emails (message_id, subject, from_address, to_addresses, received_at,"
                    " status, body_text, in_reply_to) VALUES (%s, %s, %s, %s, %s, 'pending', %s, %s)"
                    " ON CONFLICT (message_id) DO NOTHING",
                    (message_id, sample.subject, sample.sender, [ADDRESS], now - timedelta(minutes=10 - n),
                     sample.body, sample.in_reply_to)).rowcount
                if added:
                    ids.append(message_id)
        return ids


#: The demo running in this process (set by ``orchestrator demo``).
WORLD: DemoWorld | None = None


# ------------------------------------------------------------------- the pages


def _world() -> DemoWorld:
    if WORLD is None:
        raise web.HTTPNotFound(reason="the demo's stand-ins are not running in this process")
    return WORLD


async def phone_page(request: web.Request) -> web.Response:
    bubbles = await _world().kept.phone()
    return render(request, "demo_phone.html", f"The phone ({PHONE})", bubbles=bubbles,
                  quick=("1", "2 make it shorter", "3"), limit=KEPT_LIMIT)


async def phone_answer(request: web.Request) -> web.StreamResponse:
    world = _world()
    form = await request.app[GUARD].require_csrf(request)
    text = (form.get("quick") or form.get("text") or "").strip()
    if not text:
        raise web.HTTPSeeOther("/demo/phone")
    settings = world.worker_settings
    if settings is None:
        raise web.HTTPNotFound(reason="the demo's worker is not running in this process")
    now = datetime.now(UTC)
    body = json.dumps(webhook_body(text, PHONE, device_id="demo-phone", webhook_id="demo",
                                   received_at=now.isoformat(timespec="milliseconds"))).encode()
    key = settings.sms_webhook_signing_key
    url = f"http://127.0.0.1:{settings.port}/orchestrator/sms-response"
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(url, content=body,
                                   headers=webhook_headers(body, key.get_secret_value() if key else None))
    if response.status_code != 200:
        raise web.HTTPBadGateway(reason=f"the webhook answered {response.status_code}: {response.text[:200]}")
    await world.kept.sms("in", text)
    raise web.HTTPSeeOther("/demo/phone")


MAIL_HEADERS = ("Date", "From", "To", "Subject", "Message-ID", "In-Reply-To", "References")


async def sent_page(request: web.Request) -> web.Response:
    mails = []
    for message in await _world().kept.sent():
        body = message.get_body(("plain",))
        mails.append(([(name, message.get(name)) for name in MAIL_HEADERS if message.get(name)],
                      body.get_content() if body is not None else ""))
    return render(request, "demo_sent.html", "Sent mail (kept here, never delivered)", mails=mails,
                  limit=KEPT_LIMIT)


#: The demo's pages, handed to the dashboard (templates in standins/templates/).
PAGES = ExtraPages(routes=[web.get("/demo/phone", phone_page), web.post("/demo/phone", phone_answer),
                           web.get("/demo/sent", sent_page)],
                   package="standins", nav=[("Phone", "/demo/phone"), ("Sent mail", "/demo/sent")])


# ----------------------------------------------------------------- the command


#: Settings that mean a real deployment: with any of them, there is no demo.
REAL_SETTINGS = ("EMAIL_ADDRESS", "EMAIL_PASSWORD", "YOUR_PHONE_NUMBER", "AI_REPLY_GENERATOR_URL", "SMS_GATEWAY_URL",
                 "GMAIL_SMTP_SERVER")

banner = logging.getLogger("streams.demo")  # the name the demo's banner lines have always carried


def run(_: argparse.Namespace) -> int:
    """``orchestrator demo``: the stand-ins, the sample emails, then the worker with the demo's pages."""
    global WORLD
    from streams.storage.database import apply_schema  # the worker's own imports, for this command only
    from streams.worker import run_worker

    found = [name for name in REAL_SETTINGS if os.environ.get(name) or dotenv_values(".env").get(name)]
    if found:
        raise ConfigError(f"{found[0]}: is set, so this is not a demo; run `orchestrator worker` (the demo runs "
                          f"only with no peer or account settings)")
    host, port = os.environ.get("HOST", "127.0.0.1"), os.environ.get("PORT", "8003")
    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    for line in ("=" * 72,
                 "DEMO MODE: the AI generator, the SMS gateway, the phone and the mail server are",
                 "stand-ins on this machine (loopback only). Nothing leaves it: no SMS, no email.",
                 f"Dashboard: {base}/   Phone: {base}/demo/phone   Sent mail: {base}/demo/sent",
                 "To run it for real, set your settings (cp .env.example .env; README).",
                 "=" * 72):
        banner.warning("%s", line)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's line per connection
    database = load_settings(DatabaseSettings)
    asyncio.run(apply_schema(database.conninfo))
    world = DemoWorld(Path(os.environ.get("DATA_DIR", "/tmp/email-orchestrator")) / "demo", database.conninfo)
    world.start()
    WORLD = world
    register(PAGES)
    os.environ.update(world.settings())
    os.environ.setdefault("KAFKA_TOPIC_PREFIX", "demo.")
    os.environ.setdefault("POLL_INTERVAL", "5")
    os.environ.setdefault("ORCHESTRATOR_BASE_URL", base)
    settings = world.worker_settings = load_settings(Settings)
    # The gateway reports what it texts back to the webhook, so the dashboard shows "delivered".
    world.sms.webhook_url = f"http://127.0.0.1:{settings.port}/orchestrator/sms-response"
    key = settings.sms_webhook_signing_key
    world.sms.signing_key = key.get_secret_value() if key else None
    world.sms.id_prefix = f"sms-{uuid.uuid4().hex[:6]}-"
    if not world.insert_samples():
        banner.warning("The sample emails are from an earlier demo run (kept in this database): this run "
                       "continues it; the phone and sent mail pages show what they got then.")
    return run_worker(settings)


#: ``orchestrator demo``, through the entry point group ``orchestrator.commands`` (pyproject.toml).
COMMAND = Command("the worker with stand-in peers and sample emails; nothing leaves the machine", run, serves=True)
