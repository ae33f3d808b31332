"""schema.sql on a fresh database, twice, and over the deployed service's tables."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from streams.storage.database import apply_schema

DEPLOYED = """
CREATE TABLE processed_emails (
    id SERIAL PRIMARY KEY,
    message_id VARCHAR(255) UNIQUE NOT NULL,
    subject TEXT,
    from_address VARCHAR(255) NOT NULL,
    to_addresses TEXT[],
    received_at TIMESTAMPTZ NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    status VARCHAR(50) NOT NULL DEFAULT 'pending',
    reply_draft TEXT,
    error_message TEXT,
    thread_id VARCHAR(255),
    in_reply_to VARCHAR(255),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- The deployed orchestrator's tables, with its column list and plain timestamps.
CREATE TABLE workflow_state (
    id SERIAL PRIMARY KEY,
    message_id VARCHAR(255) UNIQUE NOT NULL REFERENCES processed_emails(message_id),
    email_subject TEXT, email_from VARCHAR(255), email_to VARCHAR(255), email_body_preview TEXT,
    current_state VARCHAR(50) NOT NULL, previous_state VARCHAR(50),
    ai_reply_text TEXT, ai_reply_generated_at TIMESTAMP,
    sms_message_id VARCHAR(255), sms_sent_at TIMESTAMP, sms_phone_number VARCHAR(20),
    user_command VARCHAR(50), user_edit_instructions TEXT, user_responded_at TIMESTAMP,
    edit_iteration INTEGER DEFAULT 0,
    reply_sent_at TIMESTAMP, reply_message_id VARCHAR(255),
    error_message TEXT, retry_count INTEGER DEFAULT 0,
    created_at TIMESTAMP DEFAULT now(), updated_at TIMESTAMP DEFAULT now(), timeout_at TIMESTAMP
);
CREATE TABLE workflow_audit_log (
    id SERIAL PRIMARY KEY,
    message_id VARCHAR(255) REFERENCES processed_emails(message_id),
    from_state VARCHAR(50), to_state VARCHAR(50), transition_reason TEXT, error_details TEXT,
    created_at TIMESTAMP DEFAULT now()
);
INSERT INTO processed_emails (message_id, subject, from_address, received_at, status)
VALUES ('<old-1@mail.example>', 'Old one', 'a@example.com', '2026-01-01T10:00:00Z', 'sent'),
       ('<old-2@mail.example>', 'Waiting', 'b@example.com', '2026-01-02T10:00:00Z', 'orchestrating');
INSERT INTO workflow_state (message_id, email_subject, current_state, previous_state, ai_reply_text,
                            edit_iteration, reply_sent_at, created_at, timeout_at)
VALUES ('<old-1@mail.example>', 'Old one', 'reply_sent', 'user_approved', 'Thanks!', 2,
        '2026-01-01 11:00:00', '2026-01-01 10:00:01', NULL),
       ('<old-2@mail.example>', 'Waiting', 'awaiting_user', 'sms_sending', 'Sure.', 0,
        NULL, '2026-01-02 10:00:01', '2026-01-03 10:00:01');
INSERT INTO workflow_audit_log (message_id, from_state, to_state, transition_reason, created_at)
VALUES ('<old-1@mail.example>', 'user_approved', 'reply_sent', 'sent', '2026-01-01 11:00:00');
"""


def columns(conn: psycopg.Connection[tuple[object, ...]], table: str) -> dict[str, str]:
    rows = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s",
        (table,),
    ).fetchall()
    return {str(name): str(kind) for name, kind in rows}


async def test_fresh_database_twice(empty_database: str) -> None:
    await apply_schema(empty_database)
    await apply_schema(empty_database)  # idempotent
    with psycopg.connect(empty_database) as conn:
        tables = {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")}
        assert {"processed_emails", "workflow_state", "workflow_audit_log", "inbound_sms",
                "phone_conversation", "kafka_outbox"} <= tables
        assert {"body_text", "body_html"} <= columns(conn, "processed_emails").keys()


async def test_upgrades_the_deployed_tables_in_place(empty_database: str) -> None:
    with psycopg.connect(empty_database) as conn:
        conn.execute(DEPLOYED)
    await apply_schema(empty_database)
    with psycopg.connect(empty_database) as conn:
        ws = columns(conn, "workflow_state")
        deployed = ["message_id", "email_subject", "email_from", "email_to", "email_body_preview",
                    "current_state", "previous_state", "ai_reply_text", "ai_reply_generated_at",
                    "sms_message_id", "sms_sent_at", "sms_phone_number", "user_command",
                    "user_edit_instructions", "user_responded_at", "edit_iteration", "reply_sent_at",
                    "reply_message_id", "error_message", "retry_count", "created_at", "updated_at",
                    "timeout_at"]
        assert set(deployed) <= ws.keys()
        assert {"edit_history", "failed_stage", "send_attempted_at", "email_received_at"} <= ws.keys()
        assert all(kind != "timestamp without time zone" for kind in ws.values())
        assert all(kind != "timestamp without time zone" for kind in columns(conn, "workflow_audit_log").values())
        rows = conn.execute(
            "SELECT message_id, current_state, ai_reply_text, edit_iteration, reply_sent_at, edit_history"
            " FROM workflow_state ORDER BY message_id").fetchall()
        assert rows == [
            ("<old-1@mail.example>", "reply_sent", "Thanks!", 2, datetime(2026, 1, 1, 11, tzinfo=UTC), []),
            ("<old-2@mail.example>", "awaiting_user", "Sure.", 0, None, []),
        ]
        assert conn.execute("SELECT count(*) FROM workflow_audit_log").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM processed_emails").fetchone() == (2,)
    await apply_schema(empty_database)  # and again: still harmless


async def test_a_new_pending_email_notifies(database: str) -> None:
    async with await psycopg.AsyncConnection.connect(database, autocommit=True) as listener:
        await listener.execute("LISTEN orchestrator_pending_email")
        async with await psycopg.AsyncConnection.connect(database, autocommit=True) as writer:
            await writer.execute(
                "INSERT INTO processed_emails (message_id, from_address, received_at)"
                " VALUES ('<n@x>', 'a@b.c', now())")
        notes = [n async for n in listener.notifies(timeout=5, stop_after=1)]
        assert [n.payload for n in notes] == ["<n@x>"]


@pytest.mark.parametrize("status", ["filtered"])
async def test_other_statuses_do_not_notify(database: str, status: str) -> None:
    async with await psycopg.AsyncConnection.connect(database, autocommit=True) as listener:
        await listener.execute("LISTEN orchestrator_pending_email")
        async with await psycopg.AsyncConnection.connect(database, autocommit=True) as writer:
            await writer.execute(
                "INSERT INTO processed_emails (message_id, from_address, received_at, status)"
                " VALUES ('<f@x>', 'a@b.c', now(), %s)", (status,))
        assert [n async for n in listener.notifies(timeout=0.5)] == []
