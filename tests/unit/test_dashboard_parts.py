"""The dashboard's parts without a server: charts, sessions and CSRF tokens,
pages rendered from their templates, and the demo generator's drafts."""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from handlers.edits import context_instructions
from handlers.workflow import WorkflowState
from standins.demo import plausible_draft
from streams.storage.records import AuditEntry, Email, Workflow
from streams.web import charts, dashboard
from streams.web.dashboard import Guard, workflow_view
from streams.web.pages import ExtraPages, render


def titles(svg: str) -> list[str]:
    root = ET.fromstring(svg)  # well-formed, whatever the labels held
    return [el.text or "" for el in root.iter("{http://www.w3.org/2000/svg}title")]


def test_a_chart_escapes_what_it_is_given() -> None:
    svg = charts.stacked_bars("<b>title</b>", ["2026-11-24", "2026-11-25"], [("<script>", "#000")],
                              {("2026-11-25", "<script>"): 3}, column_label="day")
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert titles(svg) == ["<b>title</b>", "2026-11-25: 3 <script>"]


def test_the_decision_histogram_buckets_by_time() -> None:
    svg = charts.histogram("answers", [30, 45, 100, 2 * 86400])
    assert titles(svg)[1:] == ["<1 min: 2 answers", "<5 min: 1 answers", "longer: 1 answers"]


def test_sessions_and_csrf_tokens_cannot_be_forged() -> None:
    guard = Guard.for_token("token-1")
    session = guard.new_session()
    assert guard.valid_session(session)
    expires, mac = session.split(".")
    assert not guard.valid_session(f"{int(expires) + 1}.{mac}")  # a longer life is not for the asking
    assert not guard.valid_session(f"{int(time.time()) - 1}.{mac}")
    assert not Guard.for_token("token-2").valid_session(session)  # a new token ends every session
    assert "token-1" not in session

    class Request:
        def __init__(self, cookie: str | None) -> None:
            self.cookies: dict[str, Any] = {"orchestrator_session": cookie} if cookie else {}

    mine, other = Request(session), Request(guard.new_session() + "x")
    assert guard.check_csrf(mine, guard.csrf(mine))  # type: ignore[arg-type]
    assert not guard.check_csrf(other, guard.csrf(mine))  # type: ignore[arg-type]
    assert not guard.check_csrf(mine, "")  # type: ignore[arg-type]
    assert Guard.for_token(None).required is False


HOSTILE = "<script>alert(1)</script>"
SENDER = '"Eve" <eve@example.com>'
ODD_ID = '<a"onmouseover=alert(1)@x>'


def test_a_page_shows_hostile_values_as_text() -> None:
    """Every value a template prints is escaped (autoescaping on), in text and in attributes."""
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    wf = Workflow(ODD_ID, WorkflowState.FAILED, None, HOSTILE, SENDER, None, None, now, f"draft {HOSTILE}", now,
                  None, now, None, None, None, None, 0, failed_stage="generate", error_message=HOSTILE,
                  edit_history=[{"instructions": HOSTILE, "draft": HOSTILE}])
    email = Email(ODD_ID, HOSTILE, SENDER, None, now, "pending", body_text=HOSTILE)
    trail = [AuditEntry(1, None, "email_pending", HOSTILE, HOSTILE, now)]
    app = web.Application()
    dashboard.attach(app, "token-1")
    for query in ("", "?partial=1"):
        request = make_mocked_request("GET", "/workflows/x" + query, app=app)
        response = render(request, "workflow.html", HOSTILE, **workflow_view(wf, email, trail))
        page = response.text or ""
        assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert SENDER not in page and "&#34;Eve&#34; &lt;eve@example.com&gt;" in page
        assert 'value="&lt;a&#34;onmouseover=alert(1)@x&gt;"' in page  # the Retry form's field
        assert page.count("<script") == (0 if query else 1)  # only the page's own, nonce-tagged
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]  # the live part too


EMAIL = {"from_address": "Maria Garcia <maria@example.com>", "subject": "Lunch on Thursday?",
         "body_text": "Are you free for lunch on Thursday?"}


def edits(first: str, *wishes: str) -> dict[str, str]:
    """The generator's request for a regeneration, as the orchestrator words it."""
    return {"email_message_id": "<m>", "context_instructions": context_instructions(first, wishes)}


def test_the_demo_generator_answers_the_email_and_folds_in_instructions() -> None:
    first = plausible_draft(EMAIL, {"email_message_id": "<m>"})
    assert first.startswith("Hi Maria,") and '"Lunch on Thursday?"' in first and "works for me" in first
    shorter = plausible_draft(EMAIL, edits(first, "make it shorter"))
    assert len(shorter) < len(first) and "\n" not in shorter
    both = plausible_draft(EMAIL, edits(first, "make it shorter", "more casual please"))
    assert both.startswith("Hey Maria!") and "\n" not in both  # every instruction so far, not just the last
    assert "Unfortunately" in plausible_draft(EMAIL, edits(first, "decline politely"))
    assert "Mention the new place." in plausible_draft(EMAIL, edits(first, "mention the new place"))


def test_a_page_runs_only_the_script_and_style_its_policy_names() -> None:
    """The CSP allows one nonce, new for each response, and only the page's own tags carry it."""
    app = web.Application()
    dashboard.attach(app, "token-1")
    nonces = []
    for _ in range(2):
        response = render(make_mocked_request("GET", "/signin", app=app), "signin.html", "Sign in", problem="",
                          next="/")
        policy = dict(part.strip().split(" ", 1) for part in response.headers["Content-Security-Policy"].split(";"))
        assert policy["default-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
        [nonce] = re.findall(r"'nonce-([^']+)'", policy["script-src"])
        assert policy["style-src"] == f"'nonce-{nonce}'"
        page = response.text or ""
        tags = re.findall(r"<(script|style)\b([^>]*)>", page)
        assert tags and all(f'nonce="{nonce}"' in attributes for _, attributes in tags), tags
        nonces.append(nonce)
    assert nonces[0] != nonces[1]


async def test_pages_another_package_hands_over_are_behind_the_sign_in() -> None:
    async def elsewhere(_: web.Request) -> web.Response:
        return web.Response(text="the other package's page")

    app = web.Application()
    dashboard.attach(app, "token-1", extra=[ExtraPages(routes=[web.get("/elsewhere", elsewhere)], package="standins")])
    async with TestClient(TestServer(app)) as client:
        page = await client.get("/elsewhere", allow_redirects=False)
        assert page.status == 303 and page.headers["Location"].startswith("/signin?")
        form = await client.post("/elsewhere", allow_redirects=False)
        assert form.status in (403, 405)
