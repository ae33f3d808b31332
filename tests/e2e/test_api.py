"""The status and management API over a running worker."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from tests.support.harness import Pipeline

path = Pipeline.workflow_path


async def test_one_workflow_with_awkward_message_ids(pipeline: Pipeline) -> None:
    odd = "<a/b+c%20d@mail.example>"
    mid = await pipeline.new_email(message_id=odd, subject="Odd")
    await pipeline.reaches(mid, "awaiting_user")
    await pipeline.reply_sms("2 shorter please")
    await pipeline.sms_count(2)
    await pipeline.reaches(mid, "awaiting_user")
    body = (await pipeline.http.get(path(odd))).json()
    assert body["message_id"] == odd
    assert body["current_state"] == "awaiting_user"
    assert body["email_subject"] == "Odd"
    assert body["ai_reply_text"] == "Revised draft 2 (1. shorter please)"
    assert body["edit_history"] == [{"instructions": "shorter please", "draft": "Revised draft 2 (1. shorter please)"}]
    assert body["user_edit_instructions"] == "shorter please" and body["edit_iteration"] == 1
    assert body["audit_trail"][0]["transition_reason"] == "picked up by the poller"
    assert [a["to_state"] for a in body["audit_trail"]] == [
        "pending", "ai_generating", "ai_generated", "sms_sending", "awaiting_user",
        "user_edit_requested", "ai_generating", "ai_generated", "sms_sending", "awaiting_user"]
    missing = await pipeline.http.get(path("<nope@x>"))
    assert missing.status_code == 404 and missing.json() == {"error": "no workflow for <nope@x>"}


async def test_lists_status_and_pagination(pipeline: Pipeline) -> None:
    pipeline.ai.unknown.update({"<u1@x>", "<u2@x>", "<u3@x>"})
    for n in (1, 2, 3):
        await pipeline.new_email(message_id=f"<u{n}@x>")
    ok = await pipeline.new_email()
    await pipeline.reaches(ok, "awaiting_user")
    for n in (1, 2, 3):
        await pipeline.reaches(f"<u{n}@x>", "failed")
    page = (await pipeline.http.get("/workflow/failed", params={"limit": 2})).json()
    assert (page["total"], page["limit"], page["offset"], len(page["items"])) == (3, 2, 0, 2)
    rest = (await pipeline.http.get("/workflow/failed", params={"limit": 2, "offset": 2})).json()
    assert {i["message_id"] for i in page["items"] + rest["items"]} == {"<u1@x>", "<u2@x>", "<u3@x>"}
    assert rest["items"][0]["failed_stage"] == "draft"
    assert "404" in rest["items"][0]["error_message"]
    pending = (await pipeline.http.get("/workflow/pending")).json()
    assert [i["message_id"] for i in pending["items"]] == [ok]
    status = (await pipeline.http.get("/workflow/status")).json()
    assert status["total"] == 4 and status["failed"] == 3 and status["awaiting_user"] == 1
    assert status["by_state"] == {"failed": 3, "awaiting_user": 1}
    for bad in ({"limit": "x"}, {"limit": 0}, {"limit": 501}, {"offset": -1}, {"offset": 10**30}):
        response = await pipeline.http.get("/workflow/pending", params=bad)
        assert response.status_code == 400 and "limit" in response.json()["error"]


async def test_retry_restarts_a_failed_draft(pipeline: Pipeline) -> None:
    pipeline.ai.unknown.add("<late@x>")
    mid = await pipeline.new_email(message_id="<late@x>")
    await pipeline.reaches(mid, "failed")
    assert any("Gave up on the email from John Smith" in m for m in await pipeline.sms_count(1))
    pipeline.ai.unknown.clear()  # the generator has caught up with the email
    response = await pipeline.http.post(path(mid, "retry"))
    assert response.status_code == 200
    assert response.json() == {"message_id": mid, "current_state": "pending", "detail": "restarted at pending"}
    await pipeline.reaches(mid, "awaiting_user")
    await pipeline.reply_sms("1")
    await pipeline.reaches(mid, "reply_sent")
    again = await pipeline.http.post(path(mid, "retry"))
    assert again.status_code == 409 and "reply_sent" in again.json()["error"]
    assert (await pipeline.http.post(path("<nope@x>", "retry"))).status_code == 404


async def test_manual_timeout_presents_the_next_draft(pipeline: Pipeline) -> None:
    first, second = await pipeline.new_emails({"subject": "first"}, {"subject": "second"})
    [sms] = await pipeline.sms_count(1)
    shown, other = (first, second) if "first" in sms else (second, first)
    response = await pipeline.http.post("/workflow/timeout/" + quote(shown, safe=""))
    assert response.status_code == 200 and response.json()["current_state"] == "timeout"
    assert await pipeline.email_status(shown) == "timeout"
    await pipeline.reaches(other, "awaiting_user")
    again = await pipeline.http.post("/workflow/timeout/" + quote(shown, safe=""))
    assert again.status_code == 409
    # A timed-out draft can be put back on the phone.
    assert (await pipeline.http.post(path(shown, "retry"))).json()["current_state"] == "ai_generated"
    await pipeline.reply_sms("3")
    await pipeline.reaches(shown, "awaiting_user")


async def test_unknown_paths_and_methods_are_json_errors(pipeline: Pipeline) -> None:
    for method, url, status in [("GET", "/nope", 404), ("DELETE", "/workflow/status", 405),
                                ("GET", "/router/", 404), ("GET", "/graph/", 404), ("GET", "/stats/", 404),
                                ("GET", "/table/", 404)]:
        response = await pipeline.http.request(method, url)
        assert response.status_code == status, url
        assert response.headers["Content-Type"].startswith("application/json")
        assert "error" in response.json()


async def test_openapi_document_matches_the_routes(pipeline: Pipeline) -> None:
    doc = (await pipeline.http.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    documented = {(p, m.upper()) for p, ops in doc["paths"].items() for m in ops}
    from streams.web.api import ROUTES as API_ROUTES
    from streams.web.server import ROUTES as WEB_ROUTES

    served = set()
    for route in [*WEB_ROUTES, *API_ROUTES]:
        assert isinstance(route, web.RouteDef)
        served.add((route.path.replace(":.+}", "}"), route.method))
    served.add(("/openapi.json", "GET"))
    assert documented == served


async def test_management_needs_the_token_when_set(make_pipeline: Any) -> None:
    p = await make_pipeline(API_TOKEN="s3cret-token")
    no_header = await p.http.get("/workflow/status")
    assert no_header.status_code == 401 and no_header.headers["WWW-Authenticate"] == "Bearer"
    wrong = await p.http.get("/workflow/status", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403
    right = await p.http.get("/workflow/status", headers={"Authorization": "Bearer s3cret-token"})
    assert right.status_code == 200
    for url in ("/workflow/pending", path("<x@y>"), "/workflow/failed"):
        assert (await p.http.get(url)).status_code == 401
    assert (await p.http.post(path("<x@y>", "retry"))).status_code == 401
    health = await p.http.get("/health")  # supervisors need no token, and strangers learn only the status
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    detailed = await p.http.get("/health", headers={"Authorization": "Bearer s3cret-token"})
    assert detailed.json()["status"] == "ok" and detailed.json()["checks"]["database"]["ok"] is True
    log = p.worker.log_path.read_text()
    assert "s3cret-token" not in log and "app-password" not in log


async def test_allowed_to_listen_openly_unauthenticated_it_starts_and_says_so(make_pipeline: Any) -> None:
    p = await make_pipeline(HOST="0.0.0.0", ALLOW_UNAUTHENTICATED="true")
    report = (await p.http.get("/health")).json()
    assert report["status"] == "ok"
    assert report["security"]["unauthenticated"] is True
    assert report["security"]["warning"].startswith("SMS_WEBHOOK_SIGNING_KEY and API_TOKEN must be set")
    assert "ALLOW_UNAUTHENTICATED=true: SMS_WEBHOOK_SIGNING_KEY and API_TOKEN must be set when HOST=0.0.0.0" \
        in p.worker.log_path.read_text()
