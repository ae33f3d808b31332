"""The demo: what ``orchestrator demo`` (and ``scripts/run`` with nothing
configured) runs beside the worker. The stand-in peers, on loopback, with a
generator that writes a plausible reply from the email and folds in the
person's edit instructions; a phone that is a web page (``/demo/phone``,
answering through the real webhook path); an SMTP server that keeps what
would have been sent (``/demo/sent``); and a handful of sample emails, written
to ``processed_emails`` as the Email Monitor would.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from aiohttp import web

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


class DemoWorld:
    """The stand-ins, running in a thread of their own beside the worker."""

    def __init__(self, directory: Path, conninfo: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.conninfo = conninfo
        self.ai = AiGeneratorStub()
        self.ai.draft_for = self._draft
        self.ai.delay = 1.5  # a generator takes a moment; the dashboard shows it working
        self.sms = SmsGatewayStub()
        self.smtp = SmtpServer(directory, ADDRESS, PASSWORD)
        #: What the person typed on the phone page: (when, text).
        self.typed: list[tuple[datetime, str]] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()

    def _draft(self, body: dict[str, Any], n: int) -> str:
        with psycopg.connect(self.conninfo, row_factory=psycopg.rows.dict_row) as conn:
            email = conn.execute("SELECT from_address, subject, body_text FROM processed_emails"
                                 " WHERE message_id = %s", (body["email_message_id"],)).fetchone()
        return plausible_draft(email, body)

    def start(self) -> None:
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
        """The sample emails, as the Email Monitor writes them (new Message-IDs each run)."""
        run = uuid.uuid4().hex[:8]
        now = datetime.now(UTC)
        ids = []
        with psycopg.connect(self.conninfo) as conn:
            for n, sample in enumerate(SAMPLES):
                message_id = f"<demo-{run}-{n + 1}@demo.invalid>"
                conn.execute(
                    "INSERT INTO processed_emails (message_id, subject, from_address, to_addresses, received_at,"
                    " status, body_text, in_reply_to) VALUES (%s, %s, %s, %s, %s, 'pending', %s, %s)",
                    (message_id, sample.subject, sample.sender, [ADDRESS], now - timedelta(minutes=10 - n),
                     sample.body, sample.in_reply_to))
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
    from streams.web.dashboard import GUARD, e, render

    world = _world()
    bubbles = [(at, "out", text) for at, text in zip(world.sms.sent_at, world.sms.messages, strict=False)]
    bubbles += [(at, "in", text) for at, text in world.typed]
    bubbles.sort(key=lambda b: b[0])
    thread = "".join(f'<div class="{kind}" data-kind="{kind}">{e(text)}<div class="muted">'
                     f'{at.strftime("%H:%M:%S")}</div></div>' for at, kind, text in bubbles)
    csrf = request.app[GUARD].csrf(request)
    quick = "".join(f'<button name="quick" value="{e(v)}" class="quick">{e(v)}</button> '
                    for v in ("1", "2 make it shorter", "3"))
    form = (f'<section class="sms"><form method="post" action="/demo/phone" id="answer">'
            f'<input type="hidden" name="csrf" value="{csrf}">'
            f'<input name="text" id="sms-text" placeholder="1 = send, 2 <changes> = edit, 3 = ignore" size="32" '
            f'autocomplete="off"> <button id="send-sms">Send</button><p>{quick}</p></form>'
            f'<p class="muted">Answers go to the orchestrator through its real webhook, as the SMS gateway '
            f'would send them.</p></section>')
    live = f'<section class="sms" id="thread">{thread or "<p class=muted>No SMS yet.</p>"}</section>'
    return render(request, f"The phone ({PHONE})", live, form)


async def phone_answer(request: web.Request) -> web.StreamResponse:
    from streams.web.appkeys import SETTINGS
    from streams.web.dashboard import GUARD

    world = _world()
    form = await request.post()
    if not request.app[GUARD].check_csrf(request, str(form.get("csrf", ""))):
        raise web.HTTPForbidden(reason="invalid or missing CSRF token; reload the page")
    text = str(form.get("quick") or form.get("text") or "").strip()
    if not text:
        raise web.HTTPSeeOther("/demo/phone")
    settings = request.app[SETTINGS]
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
    world.typed.append((now, text))
    raise web.HTTPSeeOther("/demo/phone")


async def sent_page(request: web.Request) -> web.Response:
    from streams.web.dashboard import e, render

    world = _world()
    items = []
    for message in reversed(world.smtp.messages):
        headers = "".join(f"<tr><th>{e(name)}</th><td>{e(message.get(name))}</td></tr>"
                          for name in ("Date", "From", "To", "Subject", "Message-ID", "In-Reply-To", "References")
                          if message.get(name))
        body = message.get_body(("plain",))
        text = body.get_content() if body is not None else ""
        items.append(f'<section class="mail"><table>{headers}</table><pre>{e(text)}</pre></section>')
    live = "".join(items) or '<p class="muted">Nothing sent yet: answer 1 on the phone.</p>'
    return render(request, "Sent mail (kept here, never delivered)", live)


def attach_pages(web_app: web.Application) -> None:
    web_app.add_routes([web.get("/demo/phone", phone_page), web.post("/demo/phone", phone_answer),
                        web.get("/demo/sent", sent_page)])


