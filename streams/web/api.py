"""The status and management API (the deployed service's endpoints).

Message-IDs arrive URL-encoded in the path (``%3Cabc%40mail%3E``); aiohttp
decodes them once. Responses are pydantic models; errors are
``{"error": reason}`` with 400/401/403/404/409 as fits. The views read the
repository and ask the stages to act; which states count as what, and where
a retry restarts, is :mod:`handlers.workflow`'s to say.

Who asks decides what is answered (``access.py``): the bearer API_TOKEN is the
admin, who sees every workflow; a person's dashboard session cookie (sent
without an Authorization header) sees only that person's, and another
person's workflow is a 404, as one that does not exist.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from datetime import datetime

from aiohttp import web
from aiohttp.typedefs import Middleware
from pydantic import BaseModel, ConfigDict, SecretStr

from handlers.workflow import (
    AWAITING_STATES,
    COMPLETED_STATES,
    IN_PROGRESS_STATES,
    WorkflowState,
)
from streams.stages import NotAllowedNow, UnknownWorkflow
from streams.storage.records import AuditEntry, Workflow
from streams.web.access import session_viewer, viewer_of, visible
from streams.web.appkeys import REPO, SETTINGS, STAGES
from streams.web.guard import ADMIN, GUARD, VIEWER, Viewer

S = WorkflowState
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class AuditEntryView(_Model):
    """One ``workflow_audit_log`` row."""

    from_state: str | None
    to_state: str
    transition_reason: str | None
    error_details: str | None
    created_at: datetime


class EditView(_Model):
    instructions: str
    draft: str


class WorkflowSummary(_Model):
    """A workflow in a list; field names are the ``workflow_state`` columns."""

    message_id: str
    current_state: str
    email_subject: str | None
    email_from: str | None
    email_received_at: datetime | None
    edit_iteration: int
    error_message: str | None
    failed_stage: str | None
    retry_count: int
    created_at: datetime | None
    updated_at: datetime | None
    timeout_at: datetime | None
    #: Set while a peer outage holds the workflow: the stage that waits, why,
    #: since when, how many parks so far, and when it is tried next (null
    #: while that try is under way).
    park_stage: str | None
    park_reason: str | None
    parked_since: datetime | None
    park_attempts: int
    next_attempt_at: datetime | None


class WorkflowDetail(WorkflowSummary):
    """One workflow with its draft, every edit and its audit trail."""

    previous_state: str | None
    email_to: str | None
    email_body_preview: str | None
    ai_reply_text: str | None
    ai_reply_generated_at: datetime | None
    edit_history: list[EditView]
    user_edit_instructions: str | None
    user_command: str | None
    user_responded_at: datetime | None
    sms_message_id: str | None
    sms_sent_at: datetime | None
    #: What the SMS gateway last reported of the draft SMS ``sms_message_id``:
    #: ``sent``, ``delivered`` or ``failed`` (null: no report yet), the
    #: gateway's time of it, and a failure's reason (docs/contracts.md §3).
    sms_delivery_status: str | None = None
    sms_delivery_at: datetime | None = None
    sms_delivery_error: str | None = None
    reply_message_id: str | None
    reply_sent_at: datetime | None
    audit_trail: list[AuditEntryView]


class WorkflowPage(_Model):
    items: list[WorkflowSummary]
    total: int
    limit: int
    offset: int


class WorkflowStatus(_Model):
    total: int
    by_state: dict[str, int]
    awaiting_user: int
    failed: int
    in_progress: int
    completed: int


class ActionResult(_Model):
    message_id: str
    current_state: str
    detail: str


class ErrorBody(_Model):
    error: str


def summary(wf: Workflow) -> WorkflowSummary:
    return WorkflowSummary(
        message_id=wf.message_id, current_state=wf.current_state.value, email_subject=wf.email_subject,
        email_from=wf.email_from, email_received_at=wf.email_received_at, edit_iteration=wf.edit_iteration,
        error_message=wf.error_message, failed_stage=wf.failed_stage, retry_count=wf.retry_count,
        created_at=wf.created_at, updated_at=wf.updated_at, timeout_at=wf.timeout_at,
        park_stage=wf.park_stage, park_reason=wf.park_reason, parked_since=wf.parked_since,
        park_attempts=wf.park_attempts, next_attempt_at=wf.next_attempt_at,
    )


def detail(wf: Workflow, trail: list[AuditEntry]) -> WorkflowDetail:
    return WorkflowDetail(
        **summary(wf).model_dump(),
        previous_state=wf.previous_state, email_to=wf.email_to, email_body_preview=wf.email_body_preview,
        ai_reply_text=wf.ai_reply_text, ai_reply_generated_at=wf.ai_reply_generated_at,
        edit_history=[EditView(instructions=str(e.get("instructions", "")), draft=str(e.get("draft", "")))
                      for e in wf.edit_history],
        user_edit_instructions=wf.user_edit_instructions, user_command=wf.user_command,
        user_responded_at=wf.user_responded_at, sms_message_id=wf.sms_message_id,
        sms_sent_at=wf.sms_sent_at, sms_delivery_status=wf.sms_delivery_status,
        sms_delivery_at=wf.sms_delivery_at, sms_delivery_error=wf.sms_delivery_error,
        reply_message_id=wf.reply_message_id,
        reply_sent_at=wf.reply_sent_at,
        audit_trail=[AuditEntryView(from_state=a.from_state, to_state=a.to_state,
                                    transition_reason=a.transition_reason, error_details=a.error_details,
                                    created_at=a.created_at) for a in trail],
    )


def respond(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(text=model.model_dump_json(), status=status, content_type="application/json")


def error_response(status: int, reason: str) -> web.Response:
    """An HTTP error as ``{"error": reason}``."""
    return respond(ErrorBody(error=reason), status)


MAX_OFFSET = 1_000_000_000


def _page_args(request: web.Request) -> tuple[int, int] | web.Response:
    try:
        limit = int(request.query.get("limit", "50"))
        offset = int(request.query.get("offset", "0"))
    except ValueError:
        return error_response(400, "limit and offset must be integers")
    if not 1 <= limit <= 500 or not 0 <= offset <= MAX_OFFSET:
        return error_response(400, f"limit must be 1..500 and offset 0..{MAX_OFFSET}")
    return limit, offset


async def _listing(request: web.Request, state: WorkflowState) -> web.Response:
    args = _page_args(request)
    if isinstance(args, web.Response):
        return args
    limit, offset = args
    items, total = await request.app[REPO].page(state, limit, offset, of=viewer_of(request).person)
    return respond(WorkflowPage(items=[summary(wf) for wf in items], total=total, limit=limit, offset=offset))


async def pending(request: web.Request) -> web.Response:
    return await _listing(request, S.AWAITING_USER)


async def failed(request: web.Request) -> web.Response:
    return await _listing(request, S.FAILED)


async def status(request: web.Request) -> web.Response:
    by_state = await request.app[REPO].count_by_state(of=viewer_of(request).person)

    def total(states: frozenset[WorkflowState]) -> int:
        return sum(by_state.get(s.value, 0) for s in states)

    return respond(WorkflowStatus(
        total=sum(by_state.values()), by_state=by_state,
        awaiting_user=total(AWAITING_STATES), failed=by_state.get(S.FAILED.value, 0),
        completed=total(COMPLETED_STATES), in_progress=total(IN_PROGRESS_STATES),
    ))


async def one(request: web.Request) -> web.Response:
    message_id = request.match_info["message_id"]
    wf = await visible(request, message_id)
    if wf is None:
        return error_response(404, f"no workflow for {message_id}")
    return respond(detail(wf, list(await request.app[REPO].audit_trail(message_id))))


async def retry(request: web.Request) -> web.Response:
    message_id = request.match_info["message_id"]
    if await visible(request, message_id) is None:
        return error_response(404, f"no workflow for {message_id}")
    try:
        state = await request.app[STAGES].retry(message_id, "retry requested over the API")
    except UnknownWorkflow as exc:
        return error_response(404, str(exc))
    except NotAllowedNow as exc:
        return error_response(409, str(exc))
    return respond(ActionResult(message_id=message_id, current_state=state.value,
                                detail=f"restarted at {state.value}"))


async def timeout(request: web.Request) -> web.Response:
    message_id = request.match_info["message_id"]
    if await visible(request, message_id) is None:
        return error_response(404, f"no workflow for {message_id}")
    try:
        await request.app[STAGES].time_out(message_id, "timed out over the API")
    except UnknownWorkflow as exc:
        return error_response(404, str(exc))
    except NotAllowedNow as exc:
        return error_response(409, str(exc))
    return respond(ActionResult(message_id=message_id, current_state=S.TIMEOUT.value, detail="timed out"))


ROUTES = [
    web.get("/workflow/status", status),
    web.get("/workflow/pending", pending),
    web.get("/workflow/failed", failed),
    web.post("/workflow/timeout/{message_id:.+}", timeout),
    web.post("/workflow/{message_id:.+}/retry", retry),
    web.get("/workflow/{message_id:.+}", one),
]


def guarded(path: str) -> bool:
    """The API and the metrics: ``/workflow`` and what is under it, by path segment
    (the dashboard's ``/workflows/…`` pages are not the API; guard.py guards them)."""
    return path in ("/workflow", "/metrics") or path.startswith("/workflow/")


def bearer_refusal(request: web.Request, token: SecretStr) -> web.Response | None:
    """None when the request carries ``Authorization: Bearer <token>``; else the
    401 (missing, malformed, not ASCII) or 403 (wrong token) that says why."""
    header = request.headers.get("Authorization", "")
    if not header.isascii():  # aiohttp hands undecodable bytes over as surrogates
        return _unauthorized("the Authorization header must be ASCII: Bearer <API_TOKEN>")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return _unauthorized("Authorization: Bearer <API_TOKEN> required")
    if not hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode()):
        return error_response(403, "invalid API token")
    return None


def authorised(request: web.Request) -> bool:
    """Whether the caller may read what is the operator's (the /health details):
    the API token, or the admin's dashboard session (not a person's); anyone
    when API_TOKEN is unset, as the API itself then is."""
    token = request.app[SETTINGS].api_token
    return token is None or bearer_refusal(request, token) is None or request.app[GUARD].admin_session(request)


def _unauthorized(reason: str) -> web.Response:
    response = error_response(401, reason)
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


#: Methods that change nothing: a person's session needs no CSRF token for them.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"


async def api_viewer(request: web.Request, token: SecretStr | None) -> Viewer | web.Response:
    """Who an API call is from, or the response refusing it.

    Without an Authorization header, a person's dashboard session cookie is
    that person (on /workflow…, not /metrics); a call that changes something
    must then carry the session's CSRF token in ``X-CSRF-Token`` (the page's
    ``csrf`` field), so another site cannot act with the cookie. Otherwise the
    bearer API_TOKEN is the admin (401/403 without it); with API_TOKEN unset
    everyone is, as before. The admin's own session cookie does not open the
    API: the admin's key there is the bearer."""
    if "Authorization" not in request.headers and request.path != "/metrics":
        person = await session_viewer(request)
        if person is not None and not person.admin:
            if (request.method not in SAFE_METHODS
                    and not request.app[GUARD].check_csrf(request, request.headers.get(CSRF_HEADER))):
                return error_response(403, f"a call signed in by a session cookie must carry the session's"
                                           f" CSRF token in {CSRF_HEADER}")
            return person
    if token is None:
        return ADMIN
    refusal = bearer_refusal(request, token)
    return ADMIN if refusal is None else refusal


def auth_middleware(token: SecretStr | None) -> Middleware:
    """On /workflow, /workflow/* and /metrics: who asks (:func:`api_viewer`),
    put on the request for the views; ``Authorization: Bearer <API_TOKEN>``
    when API_TOKEN is set and no person's session is sent."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if guarded(request.path):
            viewer = await api_viewer(request, token)
            if isinstance(viewer, web.Response):
                return viewer
            request[VIEWER] = viewer
        return await handler(request)

    return middleware
