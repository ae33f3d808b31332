"""HTTP views on faust's aiohttp server: the SMS webhook, draft pages, health.

Views answer quickly and leave the work to the agents. Errors are JSON
``{"error": reason}`` with the right status; never a stack trace. The
webhook's body and signature are described in docs/contracts.md §3.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import aiohttp_jinja2
import psycopg
import psycopg_pool
from aiohttp import web

from handlers.deliveries import DeliveryReport, read_report
from handlers.inbound import (
    InvalidWebhook,
    SignatureError,
    WebhookEvent,
    load_body,
    parse_event,
    verify_signature,
)
from handlers.links import token_matches
from handlers.messages import InboundSms
from handlers.phones import printable
from streams.observability import metrics
from streams.people.directory import Directory
from streams.settings import Settings
from streams.stages import Stages, deliveries
from streams.storage.people import PeopleStore
from streams.storage.repository import WorkflowRepository
from streams.web import api, dashboard, openapi, pages
from streams.web.api import error_response
from streams.web.appkeys import DIRECTORY, HEALTH, PEOPLE_STORE, REPO, SETTINGS, STAGES
from streams.web.health import HealthReporter

log = logging.getLogger(__name__)

MAX_WEBHOOK_BODY = 16 * 1024
#: How long the whole webhook body may take to arrive (a client that trickles it holds nothing longer).
BODY_TIMEOUT = 30.0


def _is_json(request: web.Request) -> bool:
    """``application/json`` or ``…+json``, declared: a request without a
    Content-Type is refused, because a web page can send one cross-site
    without a CORS preflight (README, Security)."""
    if "Content-Type" not in request.headers:
        return False
    ctype = request.content_type
    return ctype == "application/json" or (ctype.startswith("application/") and ctype.endswith("+json"))


async def read_body(request: web.Request, limit: int) -> bytes | web.Response:
    """The whole raw body, however many TCP pieces it came in; a 413 response
    when it is larger than ``limit``, a 408 when it takes over BODY_TIMEOUT."""
    if request.content_length is not None and request.content_length > limit:
        return error_response(413, f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(BODY_TIMEOUT):
            while size <= limit:  # each read gives at least one byte, or b"" at the end
                chunk = await request.content.read(limit + 1 - size)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
    except TimeoutError:
        return error_response(408, f"body not received within {BODY_TIMEOUT:.0f} s")
    if size > limit:
        return error_response(413, f"body larger than {limit} bytes")
    return b"".join(chunks)


async def sms_response(request: web.Request) -> web.Response:
    """The SMS Gateway's webhook: verify, record once, hand to the command agent.
    A batch (a JSON array of events) is taken event by event (docs/contracts.md §3)."""
    settings = request.app[SETTINGS]
    if not _is_json(request):
        return error_response(415, "Content-Type must be application/json")
    body = await read_body(request, MAX_WEBHOOK_BODY)
    if isinstance(body, web.Response):
        return body
    if settings.sms_webhook_signing_key is not None:
        try:
            verify_signature(settings.sms_webhook_signing_key.get_secret_value().encode(), body,
                             request.headers.get("X-Timestamp"), request.headers.get("X-Signature"),
                             time.time())
        except SignatureError as exc:
            log.warning("webhook refused from %s: %s", request.remote, exc)
            return error_response(401, str(exc))
    try:
        items, batch = load_body(body)
        if not batch:
            return web.json_response(await _take(request, parse_event(items[0], settings.phone_region)))
    except InvalidWebhook as exc:
        return error_response(400, str(exc))
    results: list[dict[str, Any]] = []
    for n, item in enumerate(items):
        try:
            results.append(await _take(request, parse_event(item, settings.phone_region)))
        except InvalidWebhook as exc:
            results.append({"status": "invalid", "error": f"[{n}] {exc}"})
    if all(r["status"] == "invalid" for r in results):
        return error_response(400, f"no event of the batch is valid: {results[0]['error']}")
    return web.json_response({"status": "batch", "results": results})


async def _take(request: web.Request, event: WebhookEvent) -> dict[str, Any]:
    """Act on one event: a received SMS is recorded once and handed on; the rest are answered 2xx and ignored."""
    settings = request.app[SETTINGS]
    sms = event.sms
    report = read_report(event.event, event.message_id, event.payload)
    if report is not None:
        return await _take_report(request, event.event, report)
    if sms is None:
        log.info("webhook: %s; nothing done", event.ignored)
        return {"status": "ignored", "reason": event.ignored}
    person = await request.app[STAGES].person_of_phone(sms.phone_number)  # any person's phone is ours
    own = person is not None
    number = person.phone if person is not None else (sms.phone_number or printable(sms.sender))
    async with request.app[REPO].transaction() as tx:
        fresh = await tx.sms.record(sms.sms_id, number, sms.text, sms.received_at,
                                    outcome=None if own else "foreign_number")
        if fresh and own:
            await tx.publish(InboundSms(sms_id=sms.sms_id, phone_number=number, text=sms.text,
                                        received_at=sms.received_at))
    if not own:
        log.warning("ignored an SMS from %r (read as %s with PHONE_REGION=%s): not YOUR_PHONE_NUMBER"
                    " nor any person's phone",
                    sms.sender, sms.phone_number or "no phone number", settings.phone_region)
        return {"status": "ignored", "reason": "sender is not the configured phone"}
    if not fresh:
        return {"status": "duplicate", "sms_id": sms.sms_id}
    return {"status": "accepted", "sms_id": sms.sms_id}


async def _take_report(request: web.Request, event: str, report: DeliveryReport) -> dict[str, Any]:
    """A delivery report (``sms:sent/delivered/failed``): recorded, and a failed
    draft on the phone handed to the notify agent, in one transaction (stages/deliveries.py)."""
    async with request.app[REPO].transaction() as tx:
        taken = await deliveries.take_report(tx, report)
    if taken.status == "ignored":
        reason = f"event {event!r} is about SMS {report.sms_id!r}, which is not a draft's"
        log.info("webhook: %s (or its id is not recorded yet: adopted then); kept, nothing done", reason)
        return {"status": "ignored", "reason": reason}
    log.info("webhook: %s for SMS %r: %s%s", event, report.sms_id, taken.status,
             "; the draft is withdrawn to be texted again" if taken.withdrawn else "")
    return {"status": taken.status, "delivery": report.status.value}


async def draft_page(request: web.Request) -> web.Response:
    """A long draft as a readable page, behind its HMAC token."""
    message_id = request.match_info["message_id"]  # aiohttp decoded it once
    token = request.query.get("t", "")
    if not token or not token_matches(request.app[SETTINGS].draft_link_key, message_id, token):
        return error_response(404, "no such draft")
    wf = await request.app[REPO].get(message_id)
    if wf is None or not wf.ai_reply_text:
        return error_response(404, "no such draft")
    response = aiohttp_jinja2.render_template("draft.html", request, {
        "wf": wf, "subject": wf.email_subject or "(no subject)", "demo": request.app[SETTINGS].demo,
        "nonce": pages.nonce(request)})
    response.headers.update(pages.HEADERS)
    return response


async def health(request: web.Request) -> web.Response:
    """The health report (kept a second, health.py); its details only for an
    authorised caller (api.authorised), the status alone for anyone else."""
    report = await request.app[HEALTH].cached_report()
    body = report if api.authorised(request) else {"status": report["status"]}
    return web.json_response(body, status=200 if report["status"] == "ok" else 503,
                             dumps=lambda o: json.dumps(o, default=str))


async def metrics_view(request: web.Request) -> web.Response:
    """Prometheus text; the database and lag gauges are read now (a part that
    cannot be read keeps its last value, and /health says why)."""
    try:
        metrics.set_database_view(*await request.app[REPO].gauges(timeout=3))
    except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
        log.warning("metrics: database gauges not read: %s", exc)
    try:
        metrics.set_lag(await request.app[HEALTH].partition_lag())
    except Exception as exc:  # noqa: BLE001 - reported by /health
        log.warning("metrics: consumer lag not read: %s", exc)
    return web.Response(body=metrics.exposition(), headers={"Content-Type": metrics.CONTENT_TYPE})


ROUTES = [
    web.post("/orchestrator/sms-response", sms_response),
    web.get("/drafts/{message_id:.+}", draft_page),
    web.get("/health", health),
    web.get("/metrics", metrics_view),
]


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every error as ``{"error": reason}``; never a stack trace; 503 while the database is away."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason)
    except (psycopg.OperationalError, psycopg_pool.PoolTimeout):
        return error_response(503, "database unavailable")
    except Exception:  # noqa: BLE001 - logged with its trace, answered without it
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, "internal error")


def attach(web_app: web.Application, settings: Settings, repo: WorkflowRepository, stages: Stages,
           health_reporter: HealthReporter, people_store: PeopleStore | None = None,
           directory: Directory | None = None) -> None:
    """Add the views, what they read and the middlewares to faust's aiohttp
    application. ``people_store`` and ``directory``: the people the admin
    page manages and the worker's cache of them (docs/design.md, "Many people")."""
    document = openapi.document()

    async def openapi_json(request: web.Request) -> web.Response:
        return web.json_response(document)

    web_app[SETTINGS] = settings
    web_app[REPO] = repo
    web_app[STAGES] = stages
    web_app[HEALTH] = health_reporter
    web_app[PEOPLE_STORE] = people_store or PeopleStore(repo.pool, repo.clock)
    web_app[DIRECTORY] = directory
    web_app.middlewares.extend([json_errors, api.auth_middleware(settings.api_token)])
    web_app.add_routes(ROUTES + api.ROUTES + [web.get("/openapi.json", openapi_json)])
    # Pages another package handed over with pages.register (the demo's phone and sent mail).
    dashboard.attach(web_app, settings.api_token.get_secret_value() if settings.api_token else None,
                     demo=settings.demo, extra=pages.registered())
