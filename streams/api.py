"""The status and management API (the deployed service's endpoints).

Message-IDs arrive URL-encoded in the path (``%3Cabc%40mail%3E``); aiohttp
decodes them once. Responses are pydantic models; errors are
``{"error": reason}`` with 400/401/403/404/409 as fits.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from handlers.messages import DraftReady, EmailPending, ReplyApproved, TopicMessage
from handlers.workflow import WorkflowState

from . import topics
from .repository import AuditEntry, Workflow

if TYPE_CHECKING:
    from .runtime import Runtime

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
        sms_sent_at=wf.sms_sent_at, reply_message_id=wf.reply_message_id,
        reply_sent_at=wf.reply_sent_at,
        audit_trail=[AuditEntryView(from_state=a.from_state, to_state=a.to_state,
                                    transition_reason=a.transition_reason, error_details=a.error_details,
                                    created_at=a.created_at) for a in trail],
    )


def respond(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(text=model.model_dump_json(), status=status, content_type="application/json")


def fail(status: int, reason: str) -> web.Response:
    return respond(ErrorBody(error=reason), status)


#: Where a retry restarts, by the stage that failed: the state to enter and the
#: message that sets the stage going again.
RETRY_FROM: dict[str | None, tuple[WorkflowState, str]] = {
    "draft": (S.PENDING, topics.EMAILS_PENDING),
    None: (S.PENDING, topics.EMAILS_PENDING),
    "notify": (S.AI_GENERATED, topics.DRAFTS_READY),
    "send": (S.USER_APPROVED, topics.REPLIES_APPROVED),
}


def _restart_message(topic: str, wf: Workflow) -> TopicMessage:
    if topic == topics.EMAILS_PENDING:
        return EmailPending(message_id=wf.message_id, from_address=wf.email_from, subject=wf.email_subject,
                            received_at=wf.email_received_at)
    if topic == topics.DRAFTS_READY:
        return DraftReady(message_id=wf.message_id, iteration=wf.edit_iteration)
    return ReplyApproved(message_id=wf.message_id)


MAX_OFFSET = 1_000_000_000


def _page_args(request: web.Request) -> tuple[int, int] | web.Response:
    try:
        limit = int(request.query.get("limit", "50"))
        offset = int(request.query.get("offset", "0"))
    except ValueError:
        return fail(400, "limit and offset must be integers")
    if not 1 <= limit <= 500 or not 0 <= offset <= MAX_OFFSET:
        return fail(400, f"limit must be 1..500 and offset 0..{MAX_OFFSET}")
    return limit, offset


def routes(runtime: Runtime) -> list[web.RouteDef]:
    repo = runtime.repo

    async def listing(request: web.Request, state: WorkflowState) -> web.Response:
        args = _page_args(request)
        if isinstance(args, web.Response):
            return args
        limit, offset = args
        async with repo.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT *, count(*) OVER () AS total FROM workflow_state WHERE current_state = %s"
                " ORDER BY created_at, id LIMIT %s OFFSET %s",
                (state.value, limit, offset),
            )
            rows = await cur.fetchall()
            if rows:
                total = int(rows[0]["total"])
            else:
                cur = await conn.execute("SELECT count(*) AS n FROM workflow_state WHERE current_state = %s",
                                         (state.value,))
                row = await cur.fetchone()
                total = int(row["n"]) if row else 0
        return respond(WorkflowPage(items=[summary(Workflow.from_row(r)) for r in rows],
                                    total=total, limit=limit, offset=offset))

    async def pending(request: web.Request) -> web.Response:
        return await listing(request, S.AWAITING_USER)

    async def failed(request: web.Request) -> web.Response:
        return await listing(request, S.FAILED)

    async def status(request: web.Request) -> web.Response:
        async with repo.pool.connection() as conn:
            cur = await conn.execute("SELECT current_state, count(*) AS n FROM workflow_state GROUP BY 1")
            by_state = {str(r["current_state"]): int(r["n"]) for r in await cur.fetchall()}
        done = {S.REPLY_SENT, S.USER_IGNORED, S.TIMEOUT}
        return respond(WorkflowStatus(
            total=sum(by_state.values()), by_state=by_state,
            awaiting_user=by_state.get(S.AWAITING_USER, 0), failed=by_state.get(S.FAILED, 0),
            completed=sum(by_state.get(s, 0) for s in done),
            in_progress=sum(n for s, n in by_state.items() if s not in done | {S.FAILED, S.AWAITING_USER}),
        ))

    async def one(request: web.Request) -> web.Response:
        message_id = request.match_info["message_id"]
        wf = await repo.get(message_id)
        if wf is None:
            return fail(404, f"no workflow for {message_id}")
        return respond(detail(wf, list(await repo.audit_trail(message_id))))

    async def retry(request: web.Request) -> web.Response:
        message_id = request.match_info["message_id"]
        async with repo.transaction() as tx:
            wf = await tx.get(message_id, for_update=True)
            if wf is None:
                return fail(404, f"no workflow for {message_id}")
            if wf.current_state is S.TIMEOUT:
                target, topic = S.AI_GENERATED, topics.DRAFTS_READY
            elif wf.current_state is S.FAILED:
                target, topic = RETRY_FROM.get(wf.failed_stage, RETRY_FROM[None])
                if target is S.AI_GENERATED and not wf.ai_reply_text:
                    target, topic = RETRY_FROM[None]
            else:
                return fail(409, f"only failed or timed-out workflows can be retried; this one is "
                                 f"{wf.current_state.value}")
            await tx.transition(message_id, wf.current_state, target, "retry requested over the API",
                                error_message=None, send_attempted_at=None)
            await tx.publish(topic, message_id, _restart_message(topic, wf))
        return respond(ActionResult(message_id=message_id, current_state=target.value,
                                    detail=f"restarted at {target.value}"))

    async def timeout(request: web.Request) -> web.Response:
        message_id = request.match_info["message_id"]
        wf = await repo.get(message_id)
        if wf is None:
            return fail(404, f"no workflow for {message_id}")
        if not await repo.transition(message_id, S.AWAITING_USER, S.TIMEOUT, "timed out over the API"):
            return fail(409, f"only a workflow awaiting the user can be timed out; this one is "
                             f"{wf.current_state.value}")
        return respond(ActionResult(message_id=message_id, current_state=S.TIMEOUT.value, detail="timed out"))

    return [
        web.get("/workflow/status", status),
        web.get("/workflow/pending", pending),
        web.get("/workflow/failed", failed),
        web.post("/workflow/timeout/{message_id:.+}", timeout),
        web.post("/workflow/{message_id:.+}/retry", retry),
        web.get("/workflow/{message_id:.+}", one),
    ]


def auth_middleware(runtime: Runtime) -> Any:
    """``Authorization: Bearer <API_TOKEN>`` on /workflow/* when API_TOKEN is set."""
    token = runtime.settings.api_token

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token is not None and request.path.startswith("/workflow"):
            header = request.headers.get("Authorization", "")
            scheme, _, given = header.partition(" ")
            if scheme.lower() != "bearer" or not given:
                response = fail(401, "Authorization: Bearer <API_TOKEN> required")
                response.headers["WWW-Authenticate"] = "Bearer"
                return response
            if not hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode()):
                return fail(403, "invalid API token")
        return await handler(request)

    return middleware
