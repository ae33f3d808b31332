"""Hostile emails at intake, on real PostgreSQL with the real poller (issue 17,
items 1-3): an email the HTML parser cannot read, a 25 MB body or a huge
subject is taken like any other and never holds the emails after it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest

from handlers.emails import (
    HTML_PREVIEW_CHARS,
    PREVIEW_CHARS,
    SUBJECT_CHARS,
    TEXT_PREVIEW_CHARS,
    IntakeFields,
    intake_fields,
)
from streams.pipeline.poller import EmailPoller
from streams.storage.repository import Pool, WorkflowRepository

from tests.support.factories import insert_email


class RolledBack(Exception):
    """Raised to roll a transaction back."""

#: Outlook's downlevel-revealed conditional with a space: the stdlib HTMLParser
#: raises AssertionError ("expected name token") on it.
OUTLOOK_HTML = ("<html><head><style>p{margin:0}</style></head><body><![ if !mso ]><table><tr><td>"
                "<p>Your invoice&nbsp;is ready</p></td></tr></table><![endif]><![mso]>x</body></html>")


async def previews(pool: Pool) -> dict[str, str]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT message_id, email_body_preview FROM workflow_state")
        return {r["message_id"]: r["email_body_preview"] for r in await cur.fetchall()}


async def pending(pool: Pool) -> list[str]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT message_id FROM processed_emails WHERE status = 'pending'")
        return [r["message_id"] for r in await cur.fetchall()]


@asynccontextmanager
async def loop_gaps() -> AsyncIterator[list[float]]:
    """The longest time the event loop went without running a 1 ms ticker, in
    seconds (one value, filled at exit): how long the poll held the loop."""
    longest = [0.0]

    async def tick() -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            longest[0] = max(longest[0], time.perf_counter() - before)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.01)
    try:
        yield longest
    finally:
        ticker.cancel()


async def test_an_email_the_html_parser_cannot_read_does_not_block_the_others(
        repo: WorkflowRepository, pool: Pool, database: str) -> None:
    now = datetime.now(UTC)
    async with pool.connection() as conn:
        bad = await insert_email(conn, body_text=None, body_html=OUTLOOK_HTML, received_at=now - timedelta(hours=1))
        good = [await insert_email(conn, received_at=now - timedelta(minutes=n)) for n in (3, 2, 1)]
    poller = EmailPoller(repo, database, interval=60)
    assert await poller.poll_once() == 4
    assert await poller.poll_once() == 0
    taken = await previews(pool)
    assert set(taken) == {bad, *good} and await pending(pool) == []
    assert "Your invoice is ready" in taken[bad]


async def test_a_25_mb_email_is_read_only_as_far_as_its_preview_needs(
        repo: WorkflowRepository, pool: Pool, database: str) -> None:
    now = datetime.now(UTC)
    paragraph = "<tr><td style=\"padding:8px\"><p>Big newsletter &amp; more text here.</p></td></tr>\n"
    huge_html = "<html><body><table>" + paragraph * (25_000_000 // len(paragraph)) + "</table></body></html>"
    async with pool.connection() as conn:
        big = await insert_email(conn, body_text=None, body_html=huge_html, subject="S" * 100_000,
                                 received_at=now - timedelta(hours=1))
        big_text = await insert_email(conn, body_text="word " * 2_000_000, received_at=now - timedelta(minutes=30))
        good = [await insert_email(conn, received_at=now - timedelta(minutes=n)) for n in (2, 1)]
    del huge_html

    # What the claim moves: only the start of each body and of the subject.
    with pytest.raises(RolledBack):  # leave them pending for the poller
        async with repo.transaction() as tx:
            claimed = {e.message_id: e for e in await tx.claim_pending_emails(10)}
            raise RolledBack
    assert len(claimed[big].body_html or "") <= HTML_PREVIEW_CHARS
    assert len(claimed[big_text].body_text or "") <= TEXT_PREVIEW_CHARS
    assert len(claimed[big].subject or "") <= SUBJECT_CHARS + 1

    poller = EmailPoller(repo, database, interval=60)
    async with loop_gaps() as longest:
        started = time.perf_counter()
        assert await poller.poll_once() == 4
        took = time.perf_counter() - started
    print(f"\npoll of 4 emails incl. a 25 MB HTML and a 10 MB text body: {took * 1000:.0f} ms,"
          f" longest event-loop gap {longest[0] * 1000:.1f} ms")
    taken = await previews(pool)
    assert set(taken) == {big, big_text, *good} and await pending(pool) == []
    assert taken[big].startswith("Big newsletter & more text here.") and len(taken[big]) <= PREVIEW_CHARS
    assert len(taken[big_text]) <= PREVIEW_CHARS
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT email_subject FROM workflow_state WHERE message_id = %s", (big,))
        row = await cur.fetchone()
        cur = await conn.execute("SELECT max(octet_length(payload::text)) AS n FROM kafka_outbox"
                                 " WHERE topic = 'emails.pending'")
        largest = await cur.fetchone()
    assert row is not None and len(row["email_subject"]) <= SUBJECT_CHARS
    assert largest is not None and largest["n"] < 4 * SUBJECT_CHARS  # the record fits any broker


async def test_an_email_whose_preview_cannot_be_made_is_taken_with_a_plain_one(
        repo: WorkflowRepository, pool: Pool, database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a parser may still do wrong, it fails one email, not the batch."""
    def failing_on_bad(subject: str | None, sender: str, text: str | None, html: str | None) -> IntakeFields:
        if html and "BAD" in html:
            raise RecursionError("a parser bug")
        return intake_fields(subject, sender, text, html)

    monkeypatch.setattr("streams.pipeline.poller.intake_fields", failing_on_bad)
    now = datetime.now(UTC)
    async with pool.connection() as conn:
        bad = await insert_email(conn, body_text=None, body_html="<p>BAD</p>", received_at=now - timedelta(hours=1))
        good = await insert_email(conn, received_at=now - timedelta(minutes=1))
    assert await EmailPoller(repo, database, interval=60).poll_once() == 2
    taken = await previews(pool)
    assert taken[bad] == "(no preview: the body could not be read)" and taken[good].startswith("Hi, are we")
