"""The dashboard, served by the worker's web server: pages from Jinja2
templates (``templates/``, see ``pages.py``), a few lines of inline script for
live updates, no build chain.

Pages: ``/`` (counts by state, the draft on the phone and the queue behind
it, drafts awaiting an answer, failed workflows with a Retry button, recent
dead letters, and two charts), ``/workflows/{message_id}`` (the timeline,
the email, every draft version with the instructions that produced it, the
reply sent, and while a draft awaits an answer the buttons that answer it as
the phone would: ``actions.py``) and ``/dead-letters``. Each page reloads its live part every few
seconds (``?partial=1``); without script it is still a complete page.

Safe by default: every value is HTML-escaped by the templates and the
Content-Security-Policy allows only this page's own nonce-tagged script and
style. The sign-in rule, sessions and CSRF tokens are in ``guard.py``, the
sign-in pages in ``signin.py``; who sees what in ``access.py`` (a person
signed in sees only their own workflows, their phone and their figures).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from aiohttp import web
from markupsafe import Markup

from handlers.workflow import (
    AWAITING_STATES,
    DECIDABLE_STATES,
    TERMINAL_STATES,
    WorkflowState,
)
from streams.stages import NotAllowedNow, UnknownWorkflow
from streams.storage.records import AuditEntry, Email, Workflow
from streams.web import actions, charts, pages
from streams.web.access import page_middleware, viewer_of, visible
from streams.web.analytics import ROUTES as ANALYTICS_ROUTES
from streams.web.appkeys import HEALTH, REPO, SETTINGS, STAGES
from streams.web.lessons import ROUTES as LESSON_ROUTES
from streams.web.people import ROUTES as PEOPLE_ROUTES
from streams.web.signin import ROUTES as SIGN_IN_ROUTES
from streams.web.vips import ROUTES as VIP_ROUTES
from streams.web.guard import GUARD, Guard
from streams.web.pages import ExtraPages, render

__all__ = ["GUARD", "Guard", "ROUTES", "attach"]

S = WorkflowState

OUTCOMES: tuple[tuple[WorkflowState, str], ...] = (
    (S.REPLY_SENT, "#2e8b57"), (S.USER_IGNORED, "#999999"), (S.FAILED, "#c0392b"), (S.TIMEOUT, "#e69500"),
)


async def status_page(request: web.Request) -> web.Response:
    """The deployment at a glance for the admin (the default person's phone);
    for a person, their own workflows, phone and figures alone."""
    repo, settings, viewer = request.app[REPO], request.app[SETTINGS], viewer_of(request)
    of = viewer.person
    counts = await repo.count_by_state(of=of)
    on_phone, queue = await repo.phone_view(settings.your_phone_number if viewer.admin else viewer.phone, of=of)
    days = [(datetime.now(UTC) - timedelta(days=n)).strftime("%Y-%m-%d") for n in range(13, -1, -1)]
    outcomes = await repo.outcomes_by_day(frozenset(state for state, _ in OUTCOMES), 14, of=of)
    return render(
        request, "status.html", "Status" if viewer.admin else f"Status of {viewer.name}",
        total=sum(counts.values()),
        counts=[(state.value, counts[state.value]) for state in WorkflowState if counts.get(state.value)],
        pool=request.app[HEALTH].generation,
        parked=await repo.parked(of=of),
        on_phone=on_phone,
        queue=[wf for wf in queue if on_phone is None or wf.message_id != on_phone.message_id],
        awaiting=await repo.recent(AWAITING_STATES, of=of),
        finished=await repo.recent(TERMINAL_STATES - {S.FAILED, S.TIMEOUT}, limit=15, of=of),
        failed=await repo.recent(frozenset({S.FAILED, S.TIMEOUT}), limit=30, of=of),
        letters=await repo.dead_letters(limit=10) if viewer.admin else [],
        # The charts escape their own labels (charts.py): markup made here, not given.
        outcome_chart=Markup(charts.stacked_bars(
            "Workflows by outcome per day (last 14 days, UTC)", days,
            [(state.value, colour) for state, colour in OUTCOMES], dict(outcomes), column_label="day")),
        decision_chart=Markup(charts.histogram("Time from the draft reaching the phone to the answer",
                                               await repo.decision_seconds(of=of))))


def draft_versions(wf: Workflow) -> list[tuple[str, str | None]]:
    """Every draft in order, labelled with the instructions that produced it."""
    versions: list[tuple[str, str | None]] = []
    if wf.ai_first_draft or (wf.ai_reply_text and not wf.edit_history):
        versions.append(("first draft", wf.ai_first_draft or wf.ai_reply_text))
    versions += [(f'edit {n}: "{h.get("instructions", "")}"', h.get("draft"))
                 for n, h in enumerate(wf.edit_history, 1)]
    return versions


def workflow_view(wf: Workflow, email: Email | None, trail: Sequence[AuditEntry], *,
                  note: str = "", problem: str = "") -> dict[str, Any]:
    """What ``workflow.html`` shows of one workflow; ``note`` and ``problem``
    say what became of an answer given on the page."""
    return {"wf": wf, "trail": trail, "versions": draft_versions(wf),
            "received": email.received_at if email else wf.email_received_at,
            "body": (email.body_text if email and email.body_text else wf.email_body_preview) or "",
            "answerable": wf.current_state in DECIDABLE_STATES and bool(wf.ai_reply_text),
            "note": note, "problem": problem}


async def workflow_page(request: web.Request) -> web.Response:
    return await show_workflow(request, request.match_info["message_id"], queued=request.query.get("queued", ""))


async def show_workflow(request: web.Request, message_id: str, *, queued: str = "", problem: str = "",
                        status: int = 200) -> web.Response:
    """The workflow's page; ``queued`` names an answer just given on it (``actions.note``).
    Another person's workflow is answered as one that does not exist."""
    repo = request.app[REPO]
    wf = await visible(request, message_id)
    if wf is None:
        raise web.HTTPNotFound(reason=f"no workflow for {message_id}")
    note = actions.note(queued, pending=wf.current_state in DECIDABLE_STATES)
    view = workflow_view(wf, await repo.email(message_id), await repo.audit_trail(message_id),
                         note=note, problem=problem)
    return render(request, "workflow.html", wf.email_subject or "(no subject)", status=status, **view)


async def dead_letters_page(request: web.Request) -> web.Response:
    letters = await request.app[REPO].dead_letters(limit=200)
    return render(request, "dead_letters.html", "Dead letters", letters=letters)


async def retry_action(request: web.Request) -> web.StreamResponse:
    form = await request.app[GUARD].require_csrf(request)
    message_id = form.get("message_id", "")
    if await visible(request, message_id) is None:
        raise web.HTTPNotFound(reason=f"no workflow for {message_id}")
    try:
        await request.app[STAGES].retry(message_id, "retried from the dashboard")
    except UnknownWorkflow as exc:
        raise web.HTTPNotFound(reason=str(exc)) from None
    except NotAllowedNow as exc:
        raise web.HTTPConflict(reason=str(exc)) from None
    raise web.HTTPSeeOther(f"/workflows/{quote(message_id, safe='')}")


async def answer_action(request: web.Request) -> web.StreamResponse:
    """Send, ignore or edit from a workflow's page, as the phone would
    (``actions.py``); a refused answer shows the page again with the reason."""
    try:
        return await actions.queue_answer(request)
    except actions.Refused as refused:
        form = await request.post()  # read and checked already: aiohttp keeps it
        return await show_workflow(request, str(form.get("message_id", "")), problem=refused.reason,
                                   status=refused.status)


ROUTES = [
    web.get("/", status_page),
    web.get("/workflows/{message_id:.+}", workflow_page),
    web.get("/dead-letters", dead_letters_page),
    web.post("/actions/retry", retry_action),
    web.post(actions.PATH, answer_action),
    *SIGN_IN_ROUTES,
    *LESSON_ROUTES,
    *ANALYTICS_ROUTES,
    *VIP_ROUTES,
    *PEOPLE_ROUTES,
]


def attach(web_app: web.Application, api_token: str | None, *, demo: bool = False,
           extra: Sequence[ExtraPages] = ()) -> None:
    """The dashboard's pages, sign-in rule and templates, and any ``extra`` pages
    another package handed over (``pages.register``)."""
    guard = Guard.for_token(api_token)
    web_app[GUARD] = guard
    handed_over = {route.path for more in extra for route in more.routes}
    web_app.middlewares.append(page_middleware(guard, handed_over))
    pages.setup(web_app, demo=demo, extra=extra)
    web_app.add_routes(ROUTES)
    for more in extra:
        web_app.add_routes(more.routes)
