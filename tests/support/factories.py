"""Test data: rows as the Email Monitor writes them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from handlers.messages import EditRequested, EmailPending
from handlers.workflow import WorkflowState
from streams.storage.records import Workflow
from streams.storage.repository import Pool, WorkflowRepository

_counter = 0


def new_message_id(local: str = "") -> str:
    return f"<{local or uuid.uuid4().hex[:12]}@mail.example>"


async def insert_email(
    conn: psycopg.AsyncConnection[Any],
    *,
    message_id: str | None = None,
    subject: str | None = "Meeting tomorrow at 2pm?",
    from_address: str = "John Smith <john@example.com>",
    to_addresses: list[str] | None = None,
    body_text: str | None = "Hi, are we still on for tomorrow at 2pm?\n\nJohn",
    body_html: str | None = None,
    received_at: datetime | None = None,
    status: str = "pending",
    in_reply_to: str | None = None,
    commit: bool = True,
) -> str:
    """Insert one ``processed_emails`` row and commit; returns its message_id."""
    global _counter
    _counter += 1
    message_id = message_id or new_message_id()
    received_at = received_at or (datetime.now(UTC) - timedelta(minutes=10) + timedelta(milliseconds=_counter))
    await conn.execute(
        "INSERT INTO processed_emails (message_id, subject, from_address, to_addresses,"
        " received_at, status, body_text, body_html, in_reply_to)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            message_id,
            subject,
            from_address,
            to_addresses or ["me@example.com"],
            received_at,
            status,
            body_text,
            body_html,
            in_reply_to,
        ),
    )
    if commit:
        await conn.commit()
    return message_id


def draft_request(wf: Workflow) -> EmailPending | EditRequested:
    """The message the draft agent gets for ``wf``: a new email's, or an edit's."""
    if wf.current_state is WorkflowState.USER_EDIT_REQUESTED:
        return EditRequested(message_id=wf.message_id, instructions=wf.user_edit_instructions or "?",
                             iteration=wf.edit_iteration)
    return EmailPending(message_id=wf.message_id, from_address=wf.email_from)


async def start_workflow(repo: WorkflowRepository, pool: Pool, **email: object) -> str:
    """Insert an email and start its workflow in ``pending``, as the poller would."""
    async with pool.connection() as conn:
        message_id = await insert_email(conn, **email)  # type: ignore[arg-type]
    async with repo.transaction() as tx:
        [claimed] = [e for e in await tx.claim_pending_emails(100) if e.message_id == message_id]
        assert await tx.create_workflow(claimed, body_preview="preview", reason="test")
    return message_id
