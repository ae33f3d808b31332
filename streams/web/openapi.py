"""The OpenAPI 3 document of the HTTP API, built from the response models so
it cannot drift from them (a test also compares its paths with the routes)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from streams.web.api import ActionResult, ErrorBody, WorkflowDetail, WorkflowPage, WorkflowStatus


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[BaseModel] | dict[str, Any], description: str) -> dict[str, Any]:
    schema = _ref(model) if isinstance(model, type) else model
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    reasons = {400: "Malformed request", 401: "Missing or invalid credentials", 403: "Wrong token",
               404: "Unknown workflow", 409: "Not allowed from the current state", 413: "Body too large",
               415: "Wrong content type", 503: "A dependency is unavailable"}
    return {str(c): _json(ErrorBody, reasons[c]) for c in codes}


MESSAGE_ID = {"name": "message_id", "in": "path", "required": True,
              "description": "The email's RFC 5322 Message-ID, URL-encoded (e.g. %3Cabc%40mail.example%3E)",
              "schema": {"type": "string", "minLength": 1}}
PAGE = [{"name": "limit", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}},
        {"name": "offset", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 0, "maximum": 1_000_000_000, "default": 0}}]
MANAGEMENT: list[dict[str, list[str]]] = [{"bearerAuth": []}, {}]

WEBHOOK_BODY = {
    "oneOf": [
        {"type": "object", "required": ["event", "payload"], "properties": {
            "deviceId": {"type": "string"}, "event": {"type": "string", "example": "sms:received"},
            "id": {"type": "string"}, "webhookId": {"type": "string"},
            "payload": {"type": "object", "required": ["message"], "properties": {
                "messageId": {"type": "string", "maxLength": 255}, "message": {"type": "string", "maxLength": 5000},
                "sender": {"type": "string", "minLength": 1, "maxLength": 40},
                "recipient": {"type": "string", "nullable": True},
                "phoneNumber": {"type": "string", "minLength": 1, "maxLength": 40, "deprecated": True},
                "simNumber": {"type": "integer"}, "receivedAt": {"type": "string", "format": "date-time"}}}}},
        {"type": "object", "required": ["from", "message"], "properties": {
            "from": {"type": "string", "minLength": 1, "maxLength": 40},
            "message": {"type": "string", "maxLength": 5000},
            "device_id": {"type": "string"}, "timestamp": {"type": "string"}}},
    ]
}
WEBHOOK_RESULT = {"type": "object", "required": ["status"], "properties": {
    "status": {"type": "string", "enum": ["accepted", "duplicate", "ignored", "batch"]},
    "sms_id": {"type": "string"}, "reason": {"type": "string"},
    "results": {"type": "array", "items": {"type": "object"}, "description": "one per event of a batch"}}}


def document() -> dict[str, Any]:
    models: list[type[BaseModel]] = [ActionResult, ErrorBody, WorkflowDetail, WorkflowPage, WorkflowStatus]
    schemas: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return {
        "openapi": "3.0.3",
        "info": {"title": "Email Auto-Reply Orchestrator", "version": "1.0.0"},
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearerAuth": {
                "type": "http", "scheme": "bearer",
                "description": "API_TOKEN, required when it is set: the admin, who sees every workflow. Without"
                               " an Authorization header, a person's dashboard session cookie (signed in with a"
                               " code texted to their phone) answers /workflow calls with that person's"
                               " workflows alone (another's is 404); a POST with it must carry the session's"
                               " CSRF token in X-CSRF-Token."}},
        },
        "paths": {
            "/health": {"get": {"summary": "Health; the dependency checks and workflow counts only with API_TOKEN or the admin's session when API_TOKEN is set",
                                "responses": {"200": _json({"type": "object"}, "Ready and healthy"),
                                              "503": _json({"type": "object"}, "Starting or unhealthy")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics (text exposition format)", "security": MANAGEMENT,
                                 "responses": {"200": {"description": "The metrics",
                                                       "content": {"text/plain": {"schema": {"type": "string"}}}},
                                               **_errors(401, 403)}}},
            "/workflow/status": {"get": {"summary": "Workflow statistics", "security": MANAGEMENT,
                                         "responses": {"200": _json(WorkflowStatus, "Counts"),
                                                       **_errors(401, 403)}}},
            "/workflow/pending": {"get": {"summary": "Workflows awaiting the person's answer",
                                          "security": MANAGEMENT, "parameters": PAGE,
                                          "responses": {"200": _json(WorkflowPage, "A page"),
                                                        **_errors(400, 401, 403)}}},
            "/workflow/failed": {"get": {"summary": "Failed workflows", "security": MANAGEMENT,
                                         "parameters": PAGE,
                                         "responses": {"200": _json(WorkflowPage, "A page"),
                                                       **_errors(400, 401, 403)}}},
            "/workflow/{message_id}": {"get": {"summary": "One workflow with its draft, edits and audit trail",
                                               "security": MANAGEMENT, "parameters": [MESSAGE_ID],
                                               "responses": {"200": _json(WorkflowDetail, "The workflow"),
                                                             **_errors(401, 403, 404)}}},
            "/workflow/{message_id}/retry": {"post": {
                "summary": "Restart a failed or timed-out workflow at the stage that failed",
                "security": MANAGEMENT, "parameters": [MESSAGE_ID],
                "responses": {"200": _json(ActionResult, "Restarted"), **_errors(401, 403, 404, 409)}}},
            "/workflow/timeout/{message_id}": {"post": {
                "summary": "Time out a workflow awaiting the person", "security": MANAGEMENT,
                "parameters": [MESSAGE_ID],
                "responses": {"200": _json(ActionResult, "Timed out"), **_errors(401, 403, 404, 409)}}},
            "/orchestrator/sms-response": {"post": {
                "summary": "The SMS Gateway's webhook for an incoming SMS",
                "parameters": [{"name": "X-Timestamp", "in": "header", "required": False,
                                "schema": {"type": "string"}},
                               {"name": "X-Signature", "in": "header", "required": False,
                                "schema": {"type": "string"}}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": WEBHOOK_BODY}}},
                "responses": {"200": _json(WEBHOOK_RESULT, "Accepted, duplicate or ignored"),
                              **_errors(400, 401, 413, 415)}}},
            "/drafts/{message_id}": {"get": {
                "summary": "A long draft as a readable page",
                "parameters": [MESSAGE_ID, {"name": "t", "in": "query", "required": True,
                                            "schema": {"type": "string"}}],
                "responses": {"200": {"description": "The page", "content": {"text/html": {
                    "schema": {"type": "string"}}}}, **_errors(404)}}},
            "/openapi.json": {"get": {"summary": "This document",
                                      "responses": {"200": _json({"type": "object"}, "OpenAPI 3")}}},
        },
    }
