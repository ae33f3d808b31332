"""The dashboard, served by the worker's web server: plain HTML from the
server, a few lines of inline script for live updates, no build chain.

Pages: ``/`` (counts by state, the draft on the phone and the queue behind
it, drafts awaiting an answer, failed workflows with a Retry button, recent
dead letters, and two charts), ``/workflows/{message_id}`` (the timeline,
the email, every draft version with the instructions that produced it, the
reply sent) and ``/dead-letters``. Each page reloads its live part every few
seconds (``?partial=1``); without script it is still a complete page.

Safe by default: every value is HTML-escaped and the Content-Security-Policy
allows only this page's own nonce-tagged script and style. When ``API_TOKEN``
is set, the pages ask for it once (``/signin``) and keep an HttpOnly,
SameSite=Strict session cookie that never holds the token itself. Every
state-changing form carries a CSRF token bound to the session.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web
from aiohttp.typedefs import Middleware

from handlers.workflow import AWAITING_STATES, TERMINAL_STATES, WorkflowState, plan_retry
from streams.stages.core import NotAllowedNow, UnknownWorkflow
from streams.storage.records import Workflow
from streams.web import charts
from streams.web.appkeys import HEALTH, REPO, SETTINGS, STAGES

S = WorkflowState
SESSION_COOKIE = "orchestrator_session"
SESSION_SECONDS = 12 * 3600
LIVE_SECONDS = 3
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Pages (and their forms) under the dashboard's sign-in rule.
PAGE_PREFIXES = ("/workflows/", "/dead-letters", "/actions/", "/demo/")

OUTCOMES: tuple[tuple[WorkflowState, str], ...] = (
    (S.REPLY_SENT, "#2e8b57"), (S.USER_IGNORED, "#999999"), (S.FAILED, "#c0392b"), (S.TIMEOUT, "#e69500"),
)


def is_page(path: str) -> bool:
    return path == "/" or path.startswith(PAGE_PREFIXES) or path in ("/signin", "/signout")


@dataclass(frozen=True)
class Guard:
    """Sessions and CSRF tokens; the key comes from API_TOKEN, else is made per process."""

    key: bytes
    required: bool

    @classmethod
    def for_token(cls, token: str | None) -> Guard:
        if token:
            return cls(hashlib.sha256(b"orchestrator-dashboard:" + token.encode()).digest(), True)
        return cls(secrets.token_bytes(32), False)

    def _mac(self, text: str) -> str:
        return hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()

    def new_session(self) -> str:
        expires = int(time.time()) + SESSION_SECONDS
        return f"{expires}.{self._mac(f'session:{expires}')}"

    def valid_session(self, value: str | None) -> bool:
        if not value or "." not in value:
            return False
        expires, mac = value.split(".", 1)
        return (expires.isdigit() and int(expires) > time.time()
                and hmac.compare_digest(mac, self._mac(f"session:{expires}")))

    def csrf(self, request: web.Request) -> str:
        return self._mac(f"csrf:{request.cookies.get(SESSION_COOKIE, 'anonymous')}")

    def check_csrf(self, request: web.Request, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(str(given), self.csrf(request))

    def token_matches(self, given: str, token: str) -> bool:
        return hmac.compare_digest(given.encode(), token.encode())


GUARD: web.AppKey[Guard] = web.AppKey("dashboard_guard", Guard)


def sign_in_middleware(guard: Guard) -> Middleware:
    """When API_TOKEN is set, dashboard pages need a session: pages redirect to
    /signin, forms are refused."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if (guard.required and is_page(request.path) and request.path not in ("/signin", "/signout")
                and not guard.valid_session(request.cookies.get(SESSION_COOKIE))):
            if request.method == "GET":
                raise web.HTTPSeeOther("/signin?" + urlencode({"next": request.path_qs}))
            raise web.HTTPForbidden(reason="sign in first")
        return await handler(request)

    return middleware


# ----------------------------------------------------------------------- layout


def e(value: object) -> str:
    """HTML-escape anything (None shows as an empty string)."""
    return html.escape("" if value is None else str(value))


def when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def link(wf: Workflow, text: str | None = None) -> str:
    return f'<a href="/workflows/{quote(wf.message_id, safe="")}">{e(text or wf.email_subject or "(no subject)")}</a>'


STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#24344d;color:#fff;padding:.6em 1.2em;display:flex;gap:1.2em;align-items:center;flex-wrap:wrap}
header a{color:#fff;text-decoration:none}header strong{margin-right:1em}
.demo{background:#ffdd57;color:#222;padding:.5em 1.2em;font-weight:600}
main,.below{padding:1em 1.2em;max-width:72em}
section{background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:.8em 1em;margin:0 0 1em}
h1{font-size:1.3em;margin:.2em 0 .6em}h2{font-size:1.05em;margin:.1em 0 .6em}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.3em .5em;border-bottom:1px solid #eee;
vertical-align:top}
.counts{display:flex;flex-wrap:wrap;gap:.6em}.count{border:1px solid #e3e3e3;border-radius:6px;padding:.4em .7em;
background:#fff}.count b{font-size:1.3em;display:block}
pre{white-space:pre-wrap;font:inherit;background:#f4f4f4;padding:.6em;border-radius:4px;margin:.3em 0}
.muted{color:#666}.error{color:#a3231a}.charts{display:flex;flex-wrap:wrap;gap:1em}
button{font:inherit;padding:.25em .8em;cursor:pointer}
.sms{max-width:28em}.sms .in,.sms .out{padding:.5em .7em;border-radius:10px;margin:.4em 0;white-space:pre-wrap}
.sms .out{background:#e8eefb}.sms .in{background:#dcf5dc;margin-left:4em}
"""

SCRIPT = """
(function(){var live=document.getElementById('live');if(!live)return;
setInterval(function(){if(document.hidden)return;
var u=new URL(location.href);u.searchParams.set('partial','1');
fetch(u,{credentials:'same-origin'}).then(function(r){return r.ok?r.text():null})
.then(function(t){if(t!==null&&t!==live.innerHTML)live.innerHTML=t}).catch(function(){})},%d000)})();
""" % LIVE_SECONDS


def render(request: web.Request, title: str, live: str, below: str = "") -> web.Response:
    """A whole page, or only its live part for ``?partial=1``."""
    headers = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
               "X-Frame-Options": "DENY"}
    if request.query.get("partial"):
        return web.Response(text=live, content_type="text/html", charset="utf-8", headers=headers)
    settings = request.app[SETTINGS]
    guard = request.app[GUARD]
    nonce = secrets.token_urlsafe(16)
    headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; img-src 'self' data:; "
        f"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    nav = ['<a href="/">Status</a>', '<a href="/dead-letters">Dead letters</a>']
    if settings.demo:
        nav += ['<a href="/demo/phone">Phone</a>', '<a href="/demo/sent">Sent mail</a>']
    if guard.required and guard.valid_session(request.cookies.get(SESSION_COOKIE)):
        nav.append(f'<form method="post" action="/signout"><input type="hidden" name="csrf" '
                   f'value="{guard.csrf(request)}"><button>Sign out</button></form>')
    banner = ('<div class="demo" id="demo-banner">DEMO: the AI generator, the SMS gateway, the phone and the mail '
              'server are stand-ins on this machine. Nothing is sent anywhere. Set real settings (README) to run '
              'it for real.</div>' if settings.demo else "")
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{e(title)} · Email Auto-Reply Orchestrator</title><style nonce="{nonce}">{STYLE}</style></head>'
            f'<body><header><strong>Email Auto-Reply Orchestrator</strong>{"".join(nav)}</header>{banner}'
            f'<main><h1>{e(title)}</h1><div id="live">{live}</div></main>'
            f'<div class="below">{below}</div><script nonce="{nonce}">{SCRIPT}</script></body></html>')
    return web.Response(text=page, content_type="text/html", charset="utf-8", headers=headers)


def table(headings: Iterable[str], rows: list[list[str]], empty: str) -> str:
    if not rows:
        return f'<p class="muted">{e(empty)}</p>'
    head = "".join(f"<th>{e(h)}</th>" for h in headings)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def retry_button(request: web.Request, wf: Workflow) -> str:
    if plan_retry(wf.current_state, wf.failed_stage, has_draft=bool(wf.ai_reply_text)) is None:
        return ""
    return (f'<form method="post" action="/actions/retry"><input type="hidden" name="message_id" '
            f'value="{e(wf.message_id)}"><input type="hidden" name="csrf" value="{request.app[GUARD].csrf(request)}">'
            f'<button class="retry">Retry</button></form>')


# ------------------------------------------------------------------------ pages


async def status_page(request: web.Request) -> web.Response:
    repo, settings = request.app[REPO], request.app[SETTINGS]
    counts = await repo.count_by_state()
    on_phone, queue = await repo.phone_view(settings.your_phone_number)
    awaiting = await repo.recent(AWAITING_STATES)
    failed = await repo.recent(frozenset({S.FAILED, S.TIMEOUT}), limit=30)
    finished = await repo.recent(TERMINAL_STATES - {S.FAILED, S.TIMEOUT}, limit=15)
    letters = await repo.dead_letters(limit=10)
    parked = await repo.parked()
    days = [(datetime.now(UTC) - timedelta(days=n)).strftime("%Y-%m-%d") for n in range(13, -1, -1)]
    outcomes = await repo.outcomes_by_day(frozenset(state for state, _ in OUTCOMES), 14)
    decisions = await repo.decision_seconds()

    total = sum(counts.values())
    cells = [f'<div class="count" data-state="all"><b>{total}</b>all</div>'] + [
        f'<div class="count" data-state="{e(state.value)}"><b>{counts.get(state.value, 0)}</b>{e(state.value)}</div>'
        for state in WorkflowState if counts.get(state.value)]
    phone = (f'<p id="on-phone">On the phone: {link(on_phone)} from {e(on_phone.email_from)} '
             f'<span class="muted">({e(on_phone.current_state.value)}, sent {e(when(on_phone.sms_sent_at))})</span>'
             f'</p>' if on_phone else '<p id="on-phone" class="muted">Nothing on the phone.</p>')
    queue_rows = [[link(wf), e(wf.email_from), e(wf.current_state.value)] for wf in queue
                  if on_phone is None or wf.message_id != on_phone.message_id]
    awaiting_rows = [[link(wf), e(wf.email_from), e(when(wf.sms_sent_at))] for wf in awaiting]
    failed_rows = [[link(wf), e(wf.current_state.value), e(wf.failed_stage), f'<span class="error">'
                    f'{e(wf.error_message)}</span>', retry_button(request, wf)] for wf in failed]
    finished_rows = [[link(wf), e(wf.email_from), e(wf.current_state.value), e(when(wf.updated_at))]
                     for wf in finished]
    letter_rows = [[e(when(d["at"])), e(d["source_topic"]), e(d["stage"]), e(d["kind"]),
                    f'{e(d["error_class"])}: {e(d["error_message"])}'] for d in letters]
    live = (
        f'<section><h2>Workflows by state</h2><div class="counts">{"".join(cells)}</div></section>'
        f'{peers_section(request, parked)}'
        f'<section><h2>The phone</h2>{phone}<h2>Waiting for the phone ({len(queue_rows)})</h2>'
        f'{table(["email", "from", "state"], queue_rows, "No draft is waiting.")}</section>'
        f'<section id="awaiting"><h2>Awaiting an answer ({len(awaiting_rows)})</h2>'
        f'{table(["email", "from", "texted"], awaiting_rows, "No draft awaits an answer.")}</section>'
        f'<section id="finished"><h2>Recently finished</h2>'
        f'{table(["email", "from", "outcome", "at"], finished_rows, "Nothing finished yet.")}</section>'
        f'<section id="failed"><h2>Failed or timed out ({len(failed_rows)})</h2>'
        f'{table(["email", "state", "stage", "error", ""], failed_rows, "Nothing failed.")}</section>'
        f'<section><h2>Recent dead letters</h2>'
        f'{table(["at", "topic", "stage", "kind", "error"], letter_rows, "No dead letters.")}</section>')
    charts_html = (
        '<section><h2>Pictures</h2><div class="charts">'
        + charts.stacked_bars("Workflows by outcome per day (last 14 days, UTC)", days,
                              [(state.value, colour) for state, colour in OUTCOMES],
                              {(day, state): n for (day, state), n in outcomes.items()}, column_label="day")
        + charts.histogram("Time from the draft reaching the phone to the answer", decisions)
        + "</div></section>")
    return render(request, "Status", live + charts_html)


def peers_section(request: web.Request, parked: dict[str, Any]) -> str:
    """The generator calls in flight, and what a peer outage holds (each
    workflow is tried again on its own schedule: nothing to do)."""
    pool = request.app[HEALTH].generation
    calls = (f'<span id="generation">Generator calls in flight: <b>{len(pool.in_flight)}</b> of {int(pool.limit)}'
             + (f' <span class="error">(lowered from {pool.concurrency}: the generator asked to slow down)</span>'
                if int(pool.limit) < pool.concurrency else '') + '</span>')
    if not parked["count"]:
        return f'<section id="peers"><h2>Peers</h2><p>{calls}. Nothing is held: every peer answers.</p></section>'
    rows = [[e(peer), str(held["count"]), e(when(held["since"])), e(when(held["next_attempt_at"])),
             str(held["attempts"])] for peer, held in sorted(parked["by_peer"].items())]
    return (f'<section id="peers"><h2>Peers</h2><p>{calls}.</p>'
            f'<h2>Held by a peer outage ({parked["count"]})</h2>'
            + table(["peer", "workflows", "since", "next try", "attempts"], rows, "")
            + '<p class="muted">Each is tried again on its own; nothing to do.</p></section>')


async def workflow_page(request: web.Request) -> web.Response:
    repo = request.app[REPO]
    message_id = request.match_info["message_id"]
    wf = await repo.get(message_id)
    if wf is None:
        raise web.HTTPNotFound(reason=f"no workflow for {message_id}")
    email = await repo.email(message_id)
    trail = await repo.audit_trail(message_id)
    timeline = [[e(when(t.created_at)), f"{e(t.from_state or '-')} &rarr; <b>{e(t.to_state)}</b>",
                 e(t.transition_reason), f'<span class="error">{e(t.error_details)}</span>'] for t in trail]
    versions = []
    if wf.ai_first_draft or (wf.ai_reply_text and not wf.edit_history):
        versions.append(("first draft", wf.ai_first_draft or wf.ai_reply_text))
    versions += [(f'edit {n}: "{h.get("instructions", "")}"', h.get("draft")) for n, h in
                 enumerate(wf.edit_history, 1)]
    drafts = "".join(f'<h2>{e(label)}</h2><pre class="draft">{e(text)}</pre>' for label, text in versions)
    sent = (f'<p>Sent {e(when(wf.reply_sent_at))} as <code>{e(wf.reply_message_id)}</code>:</p>'
            f'<pre>{e(wf.ai_reply_text)}</pre>' if wf.reply_sent_at else '<p class="muted">No reply sent.</p>')
    body = (email.body_text if email and email.body_text else wf.email_body_preview) or ""
    live = (
        f'<section><p><b>{e(wf.email_subject or "(no subject)")}</b> from {e(wf.email_from)}</p>'
        f'<p>State: <b id="state">{e(wf.current_state.value)}</b>'
        f'{" &middot; failed in " + e(wf.failed_stage) if wf.failed_stage else ""}'
        f'{" &middot; <span class=error>" + e(wf.error_message) + "</span>" if wf.error_message else ""}</p>'
        f'{retry_button(request, wf)}</section>'
        f'<section><h2>Timeline</h2>{table(["at", "transition", "reason", "error"], timeline, "No entries.")}'
        f'</section><section><h2>Drafts</h2>{drafts or "<p class=muted>No draft yet.</p>"}</section>'
        f'<section><h2>Reply</h2>{sent}</section>')
    email_html = (f'<section><h2>The email</h2><p class="muted">Message-ID <code>{e(wf.message_id)}</code>, received '
                  f'{e(when(email.received_at if email else wf.email_received_at))}</p><pre>{e(body)}</pre></section>')
    return render(request, wf.email_subject or "(no subject)", live, email_html)


async def dead_letters_page(request: web.Request) -> web.Response:
    letters = await request.app[REPO].dead_letters(limit=200)
    rows = [[e(when(d["at"])), e(d["source_topic"]), e(d["record_key"]), e(d["stage"]), e(d["kind"]),
             e(d["attempts"]), f'{e(d["error_class"])}: {e(d["error_message"])}'] for d in letters]
    live = (f'<section>{table(["at", "topic", "key", "stage", "kind", "attempts", "error"], rows, "No dead letters.")}'
            f'<p class="muted">The records themselves are on the deadletter topic: '
            f'<code>orchestrator dlq list</code>, <code>orchestrator dlq replay</code>.</p></section>')
    return render(request, "Dead letters", live)


async def retry_action(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    if not request.app[GUARD].check_csrf(request, str(form.get("csrf", ""))):
        raise web.HTTPForbidden(reason="invalid or missing CSRF token; reload the page")
    message_id = str(form.get("message_id", ""))
    try:
        await request.app[STAGES].retry(message_id, "retried from the dashboard")
    except UnknownWorkflow as exc:
        raise web.HTTPNotFound(reason=str(exc)) from None
    except NotAllowedNow as exc:
        raise web.HTTPConflict(reason=str(exc)) from None
    raise web.HTTPSeeOther(f"/workflows/{quote(message_id, safe='')}")


# ---------------------------------------------------------------------- sign-in


def _next(value: object) -> str:
    target = str(value or "/")
    return target if target.startswith("/") and not target.startswith("//") else "/"


async def signin_page(request: web.Request, problem: str = "") -> web.Response:
    guard = request.app[GUARD]
    note = f'<p class="error">{e(problem)}</p>' if problem else ""
    live = (f'<section>{note}<form method="post" action="/signin"><input type="hidden" name="next" '
            f'value="{e(_next(request.query.get("next")))}"><input type="hidden" name="csrf" '
            f'value="{guard.csrf(request)}"><label>API token <input type="password" name="token" '
            f'autocomplete="current-password" autofocus></label> <button>Sign in</button></form></section>')
    response = render(request, "Sign in", live)
    if problem:
        response.set_status(401)
    return response


async def signin(request: web.Request) -> web.StreamResponse:
    guard, settings = request.app[GUARD], request.app[SETTINGS]
    if not guard.required or settings.api_token is None:
        raise web.HTTPSeeOther("/")
    form = await request.post()
    if not guard.check_csrf(request, str(form.get("csrf", ""))):
        raise web.HTTPForbidden(reason="invalid or missing CSRF token; reload the page")
    if not guard.token_matches(str(form.get("token", "")), settings.api_token.get_secret_value()):
        return await signin_page(request, "That is not the API token.")
    response = web.HTTPSeeOther(_next(form.get("next")))
    response.set_cookie(SESSION_COOKIE, guard.new_session(), max_age=SESSION_SECONDS, httponly=True,
                        samesite="Strict", secure=request.secure, path="/")
    raise response


async def signout(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    if not request.app[GUARD].check_csrf(request, str(form.get("csrf", ""))):
        raise web.HTTPForbidden(reason="invalid or missing CSRF token; reload the page")
    response = web.HTTPSeeOther("/signin")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


ROUTES = [
    web.get("/", status_page),
    web.get("/workflows/{message_id:.+}", workflow_page),
    web.get("/dead-letters", dead_letters_page),
    web.post("/actions/retry", retry_action),
    web.get("/signin", signin_page),
    web.post("/signin", signin),
    web.post("/signout", signout),
]


def attach(web_app: web.Application, api_token: str | None) -> None:
    guard = Guard.for_token(api_token)
    web_app[GUARD] = guard
    web_app.middlewares.append(sign_in_middleware(guard))
    web_app.add_routes(ROUTES)

