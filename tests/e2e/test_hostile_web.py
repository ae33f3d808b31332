"""The worker's web server against a hostile or careless client, over a real
socket: sign-in and its redirect, headers that are not ASCII, ``/health`` for
strangers, the session cookie behind a TLS proxy, the headers of every page,
peer URLs with credentials in the log, and malformed HTTP (issue 17, 13-16)."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import httpx
from aiohttp import web

from handlers.links import draft_token
from standins import free_port

from tests.support.harness import Pipeline, delete_topics, log_entries

TOKEN = "hostile-token-Vb73"


async def sign_in(http: httpx.AsyncClient, next_path: str = "/", **headers: str) -> httpx.Response:
    """Sign in as a browser does: the form's CSRF token, then the API token (no redirect followed)."""
    form = await http.get("/signin")
    match = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert match, form.text
    return await http.post("/signin", data={"csrf": match.group(1), "token": TOKEN, "next": next_path},
                           headers=headers, follow_redirects=False)


async def test_a_signed_in_session_opens_the_workflow_pages(make_pipeline: Any) -> None:
    """13: ``/workflows/…`` is a dashboard page, not the bearer-guarded ``/workflow/…`` API."""
    p: Pipeline = await make_pipeline(API_TOKEN=TOKEN)
    mid = await p.new_email(subject="Behind the sign-in")
    await p.reaches(mid, "awaiting_user")
    page_path = "/workflows/" + quote(mid, safe="")
    before = await p.http.get(page_path, follow_redirects=False)
    assert before.status_code == 303 and before.headers["Location"].startswith("/signin?next=")
    assert (await sign_in(p.http)).status_code == 303
    page = await p.http.get(page_path)
    assert page.status_code == 200, page.text
    assert "Behind the sign-in" in page.text and "Timeline" in page.text
    # The API keeps its own rule: the bearer token, not the session.
    assert (await p.http.get("/workflow/status")).status_code == 401
    assert (await p.http.get("/workflowsX", follow_redirects=False)).status_code == 404


HOSTILE_NEXT = ["/\t/evil.example", "/%09/evil.example", "//evil.example", "/\\evil.example",
                "https://evil.example/", "/%2F/evil.example", " /evil", "java\tscript:alert(1)"]


async def test_sign_in_never_sends_the_browser_off_site(make_pipeline: Any) -> None:
    """14: after the token is typed, the browser goes to a local path or to ``/``."""
    p: Pipeline = await make_pipeline(API_TOKEN=TOKEN)
    form = await p.http.get("/signin", params={"next": "/\t/evil.example"})  # ?next=/%09/evil.example
    assert 'name="next" value="/"' in form.text
    for hostile in HOSTILE_NEXT:
        response = await sign_in(p.http, hostile)
        assert response.status_code == 303 and response.headers["Location"] == "/", hostile
    kept = "/workflows/%3Ca%40b%3E?partial=1"
    assert unquote((await sign_in(p.http, kept)).headers["Location"]) == unquote(kept)  # (aiohttp re-quotes)


async def test_headers_that_are_not_ascii_are_refused_with_a_reason(make_pipeline: Any) -> None:
    """15: a non-ASCII ``Authorization`` header or session cookie is a 401 with a reason, never a 500."""
    p: Pipeline = await make_pipeline(API_TOKEN=TOKEN)
    for value in ("Bearer t\xf6ken".encode("latin-1"), "Bearer tök€n".encode(), b"Bearer \xff\xfe",
                  "Bearér x".encode()):
        response = await p.http.get("/workflow/status", headers={b"Authorization": value})
        assert response.status_code == 401, (value, response.text)
        assert "ASCII" in response.json()["error"]
    for cookie in ("orchestrator_session=1999999999.\xe9\xe9".encode("latin-1"),
                   "orchestrator_session=١٩٩٩٩٩٩٩٩٩.abc".encode(), b"orchestrator_session=\xff\xfe"):
        headers = {b"Cookie": cookie}
        signin = await p.http.get("/signin", headers=headers)
        assert signin.status_code == 401 and "session cookie" in signin.text, (cookie, signin.text)
        home = await p.http.get("/", headers=headers, follow_redirects=False)
        assert home.status_code == 303 and home.headers["Location"].startswith("/signin"), cookie
        form = await p.http.post("/actions/retry", headers=headers, data={"csrf": "é", "message_id": "x"})
        assert form.status_code == 403 and form.json()["error"] == "sign in first", cookie
        assert (await p.http.get("/health", headers=headers)).status_code == 200


async def _counting_peer(hits: list[float], delay: float) -> web.AppRunner:
    """A peer whose ``GET /health`` is counted and answers after ``delay`` seconds."""
    async def health(_: web.Request) -> web.Response:
        hits.append(time.monotonic())
        await asyncio.sleep(delay)
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.add_routes([web.get("/health", health)])
    runner = web.AppRunner(app)
    await runner.setup()
    return runner


async def test_health_is_cheap_and_tells_strangers_only_the_status(make_pipeline: Any) -> None:
    """16a: concurrent callers share one report, kept a second; only an
    authorised caller (API token or session) reads the details."""
    hits: list[float] = []
    runner = await _counting_peer(hits, delay=0.5)
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        p: Pipeline = await make_pipeline(API_TOKEN=TOKEN, SMS_GATEWAY_URL=f"http://127.0.0.1:{port}")
        stranger = await p.http.get("/health")
        assert stranger.status_code == 200 and stranger.json() == {"status": "ok"}
        auth = {"Authorization": f"Bearer {TOKEN}"}
        detailed = (await p.http.get("/health", headers=auth)).json()
        assert detailed["status"] == "ok" and detailed["checks"]["sms_gateway"]["ok"] is True
        assert (await p.http.get("/health", headers={"Authorization": "Bearer wrong"})).json() == {"status": "ok"}
        assert (await sign_in(p.http)).status_code == 303
        assert "checks" in (await p.http.get("/health")).json()  # the session's cookie

        await asyncio.sleep(1.5)  # past the cache
        hits.clear()
        answers = await asyncio.gather(*(p.http.get("/health", headers=auth) for _ in range(40)))
        assert {a.status_code for a in answers} == {200}
        assert len({a.text for a in answers}) == 1  # one report for all of them
        assert len(hits) == 1, hits
        started = time.monotonic()
        while time.monotonic() - started < 3:  # sequential callers: a report a second at most
            await p.http.get("/health")
        assert 2 <= len(hits) <= 5, hits
    finally:
        await runner.cleanup()


async def test_the_session_cookie_is_secure_behind_a_tls_proxy(make_pipeline: Any) -> None:
    """16c: a sign-in that came over TLS (here: through a proxy saying so) gets a Secure cookie."""
    p: Pipeline = await make_pipeline(API_TOKEN=TOKEN)
    async with httpx.AsyncClient(base_url=p.base_url) as http:
        proxied = await sign_in(http, **{"X-Forwarded-Proto": "https"})
    assert proxied.status_code == 303
    cookie = proxied.headers["Set-Cookie"]
    assert "orchestrator_session=" in cookie and "; Secure" in cookie and "HttpOnly" in cookie, cookie
    async with httpx.AsyncClient(base_url=p.base_url) as http:
        plain = await sign_in(http)
    assert "Secure" not in plain.headers["Set-Cookie"]  # plain HTTP on loopback still signs in

    always: Pipeline = await make_pipeline(API_TOKEN=TOKEN, COOKIE_SECURE="true")
    async with httpx.AsyncClient(base_url=always.base_url) as http:
        assert "; Secure" in (await sign_in(http)).headers["Set-Cookie"]


async def test_every_html_page_carries_the_security_headers(make_pipeline: Any) -> None:
    """16d: the live part of a page (``?partial=1``) and the draft page carry the CSP too."""
    p: Pipeline = await make_pipeline(DRAFT_LINK_SECRET="link-secret-Hq41")
    mid = await p.new_email(subject="A draft to read")
    await p.reaches(mid, "awaiting_user")
    token = draft_token(b"draft-link:link-secret-Hq41", mid)
    for path in ("/", "/?partial=1", "/workflows/" + quote(mid, safe="") + "?partial=1", "/dead-letters?partial=1",
                 f"{p.draft_path(mid)}?t={token}"):
        response = await p.http.get(path)
        assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/html"), path
        policy = response.headers.get("Content-Security-Policy", "")
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy, path
        assert response.headers["X-Frame-Options"] == "DENY" and response.headers["Cache-Control"] == "no-store"
        nonces = set(re.findall(r"'nonce-([^']+)'", policy))
        tags = re.findall(r"<(script|style)\b([^>]*)>", response.text)
        assert all(f'nonce="{n}"' in attributes for _, attributes in tags for n in nonces), (path, tags)


async def test_peer_urls_are_logged_without_their_credentials(database: str, endpoints: Any, topic_prefix: str,
                                                             tmp_path: Path) -> None:
    """16b: a peer URL with ``user:password@`` is logged with the userinfo replaced."""
    p = Pipeline(database, endpoints.kafka_bootstrap_servers, topic_prefix, tmp_path, LOG_FORMAT="json")
    p.env["AI_REPLY_GENERATOR_URL"] = p.ai.url.replace("http://", "http://orch:peer-pw-Tt62@")
    try:
        await p.start()
        mid = await p.new_email()
        await p.reaches(mid, "awaiting_user")
    finally:
        await p.stop()
        await asyncio.to_thread(delete_topics, endpoints.kafka_bootstrap_servers, topic_prefix)
    log = p.worker.log_path.read_text()
    assert "peer-pw-Tt62" not in log
    messages = [json.loads(line)["message"] for line in log.splitlines() if line.startswith("{")]
    assert any("POST http://***@127.0.0.1:" in m for m in messages), messages[-20:]


MALFORMED = [
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
]


def _send_raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        answer = b""  # the server answers and closes the connection
        while chunk := s.recv(4096):
            answer += chunk
            if len(answer) > 65536:
                break
        return answer


async def test_a_malformed_request_is_one_line_not_an_error(make_pipeline: Any) -> None:
    """16f: aiohttp's "Error handling request" for a bad request from outside is
    a WARNING without a traceback (the harness fails on any undeclared ERROR)."""
    p: Pipeline = await make_pipeline(LOG_FORMAT="text")
    for data in MALFORMED:
        answer = await asyncio.to_thread(_send_raw, p.port, data)
        assert b" 400 " in answer[:16], (data, answer[:200])
    assert (await p.http.get("/health")).status_code == 200
    await p.stop()
    said = [e for e in log_entries(p.worker.log_path.read_text()) if "Error handling request" in e.text]
    assert len(said) == len(MALFORMED), said
    assert all(e.level == "WARNING" and "\n" not in e.text for e in said), said
    assert all(re.search(r"Error handling request from 127\.0\.0\.1: \w+(Error|Message|Length)\b", e.text)
               for e in said), said
