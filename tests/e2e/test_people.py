"""Many people on one deployment (docs/design.md, "Many people"), on the real
worker, Kafka and PostgreSQL: three people, each with their own phone and
their own stand-in mailbox (an SMTP server with its own login). Each email
reaches its owner's phone; each person's answers reach only their drafts;
each reply leaves through its owner's login, from its owner's address; a
wrong password parks only its owner's sends, and texts only them."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from handlers.people_keys import PeopleKeys
from handlers.sms_text import LOGIN_PEER
from standins import SmtpServer

from tests.support.factories import new_message_id
from tests.support.harness import PHONE, Pipeline, eventually

KEY = PeopleKeys.new_key()
PEOPLE = [  # name, phone, address, password
    ("Ann", "+15550000001", "ann@a.example", "pw-ann"),
    ("Bob", "+15550000002", "bob@b.example", "pw-bob"),
    ("Cat", "+15550000003", "cat@c.example", "pw-cat"),
]
SENDERS = {"Ann": "Xavier <x@sender.example>", "Bob": "Yvonne <y@sender.example>", "Cat": "Zed <z@sender.example>"}


async def _add_people(database: str, servers: dict[str, SmtpServer], wrong: frozenset[str] = frozenset()) -> dict[str, int]:
    """The people rows, as `orchestrator people add` writes them (passwords encrypted)."""
    keys = PeopleKeys(KEY)
    ids = {}
    async with await psycopg.AsyncConnection.connect(database) as conn:
        for name, phone, address, password in PEOPLE:
            cur = await conn.execute(
                "INSERT INTO people (name, phone, smtp_server, smtp_port, smtp_security, smtp_login, smtp_password)"
                " VALUES (%s, %s, '127.0.0.1', %s, 'ssl', %s, %s) RETURNING id",
                (name, phone, servers[name].port, address, keys.encrypt("wrong" if name in wrong else password)))
            row = await cur.fetchone()
            assert row is not None
            ids[name] = row[0]
            await conn.execute("INSERT INTO person_addresses (address, person_id) VALUES (%s, %s)", (address, row[0]))
        await conn.commit()
    return ids


async def _email(database: str, sender: str, *, mailbox: str | None = None, to: str = "someone@else.example",
                 subject: str = "Lunch?") -> str:
    """An email as a monitor serving several mailboxes writes it (``mailbox``), or one that names its recipients."""
    mid = new_message_id()
    async with await psycopg.AsyncConnection.connect(database) as conn:
        await conn.execute(
            "INSERT INTO processed_emails (message_id, subject, from_address, to_addresses, received_at, status,"
            " body_text, mailbox) VALUES (%s, %s, %s, %s, %s, 'pending', 'Shall we?', %s)",
            (mid, subject, sender, [to], datetime.now(UTC) - timedelta(minutes=5), mailbox))
        await conn.commit()
    return mid


def _texts_to(p: Pipeline, phone: str) -> list[str]:
    return [s["message"] for s in p.sms.sent if s["to"] == phone]


def _code(text: str) -> str:
    found = re.search(r"\n([A-Z][2-9]): 1=Send", text)
    assert found, text
    return found.group(1)


async def _pipeline(make_pipeline: Any, tmp_path: Path, wrong: frozenset[str] = frozenset(),
                    **settings: str) -> tuple[Pipeline, dict[str, SmtpServer], dict[str, int]]:
    servers = {}
    for name, _, address, password in PEOPLE:
        (tmp_path / name).mkdir()
        servers[name] = SmtpServer(tmp_path / name, address, password)
        servers[name].start()
    bundle = tmp_path / "people-ca.pem"  # the worker trusts each stand-in mailbox's throwaway CA
    bundle.write_text("".join(s.ca_file.read_text() for s in servers.values()))
    p: Pipeline = await make_pipeline(SMTP_CA_FILE=str(bundle), PEOPLE_KEYS=KEY, PEOPLE_REFRESH="0.2", **settings)
    ids = await _add_people(p.database, servers, wrong)
    await asyncio.sleep(0.5)  # past PEOPLE_REFRESH: the worker knows them
    return p, servers, ids


async def test_three_people_each_answer_only_their_drafts_and_each_reply_leaves_through_its_owner(
        make_pipeline: Any, tmp_path: Path) -> None:
    p, servers, ids = await _pipeline(make_pipeline, tmp_path)
    try:
        ann = await _email(p.database, SENDERS["Ann"], mailbox="Ann <ANN@a.example>")  # the monitor says whose
        bob = await _email(p.database, SENDERS["Bob"], to="Bob B <bob@b.example>")  # the recipients say whose
        cat = await _email(p.database, SENDERS["Cat"], mailbox="cat@c.example")
        for mid in (ann, bob, cat):
            await p.reaches(mid, "awaiting_user", timeout=60)
        owners = {r["message_id"]: r["person_id"] for r in await p.query(
            "SELECT message_id, person_id FROM workflow_state WHERE message_id = ANY(%s)", [ann, bob, cat])}
        assert owners == {ann: ids["Ann"], bob: ids["Bob"], cat: ids["Cat"]}
        texts = {name: _texts_to(p, phone) for name, phone, _, _ in PEOPLE}
        assert [len(t) for t in texts.values()] == [1, 1, 1], texts  # each draft on its owner's phone, and only there
        assert texts["Ann"][0].startswith("Xavier") and texts["Bob"][0].startswith("Yvonne")
        assert _texts_to(p, PHONE) == []  # the default person is texted nothing
        codes = {name: _code(t[0]) for name, t in texts.items()}

        # Bob names another's draft by its code (codes are each person's own: one that is not also
        # his): unknown to him, and that draft is untouched.
        other, code = next((n, c) for n, c in codes.items() if n != "Bob" and c != codes["Bob"])
        await p.reply_sms(f"{code} 1", phone="+15550000002")
        await eventually(lambda: _said(p, "+15550000002", code), 20, "Bob told the code is not his")
        assert await p.state({"Ann": ann, "Cat": cat}[other]) == "awaiting_user"
        # A stranger's phone answers nothing.
        await p.reply_sms("1", phone="+15559999999")

        # Each person answers bare "1": their own draft, sent through their own login.
        for name, phone, _, _ in PEOPLE:
            await p.reply_sms("1", phone=phone)
        for mid in (ann, bob, cat):
            await p.reaches(mid, "reply_sent", timeout=30)
        for (name, _, address, _), mid in zip(PEOPLE, (ann, bob, cat)):
            [reply] = servers[name].messages
            assert servers[name].logins == [address]  # through the owner's login, once
            assert reply["From"] == address and reply["In-Reply-To"] == mid
            assert SENDERS[name].split("<")[1].rstrip(">") in reply["To"]
        assert p.smtp.messages == []  # nothing through the worker's own account
        assert await p.state(ann) == "reply_sent"
    finally:
        for server in servers.values():
            server.stop()


async def _said(p: Pipeline, phone: str, needle: str) -> bool:
    return any(needle in t for t in _texts_to(p, phone))


async def test_a_wrong_password_parks_only_its_owners_sends_and_texts_only_them(
        make_pipeline: Any, tmp_path: Path) -> None:
    p, servers, ids = await _pipeline(make_pipeline, tmp_path, wrong=frozenset({"Cat"}), RETRY_PARK_BASE="0.5",
                                      RETRY_PARK_MAX="1", PHONE_MODE="each")
    try:
        ann = await _email(p.database, SENDERS["Ann"], mailbox="ann@a.example")
        cat = await _email(p.database, SENDERS["Cat"], mailbox="cat@c.example")
        cat2 = await _email(p.database, SENDERS["Cat"], mailbox="cat@c.example", subject="And dinner?")
        for mid in (ann, cat, cat2):
            await p.reaches(mid, "awaiting_user", timeout=60)
        codes = [_code(t) for t in _texts_to(p, "+15550000003")]
        assert len(codes) == 2
        await p.reply_sms(f"{codes[0]} 1", phone="+15550000003")  # Cat sends: her server refuses her login
        await p.reply_sms("1", phone="+15550000001")  # Ann sends: unaffected
        await p.reaches(ann, "reply_sent", timeout=30)
        await eventually(lambda: _parked_count(p, cat, cat2), 30, "Cat's send parked on her login")
        await p.reply_sms(f"{codes[1]} 1", phone="+15550000003")
        await eventually(lambda: _both_parked(p, cat, cat2), 30, "Cat's second send parked too")
        told = [t for t in _texts_to(p, "+15550000003") if "refused your login" in t]
        assert len(told) == 1, _texts_to(p, "+15550000003")  # once for the outage, not per email
        assert [t for t in _texts_to(p, "+15550000001") if "refused your login" in t] == []  # only Cat is told
        assert servers["Cat"].messages == [] and len(servers["Ann"].messages) == 1

        # The admin fixes her password: both replies leave on their own, once each.
        async with await psycopg.AsyncConnection.connect(p.database) as conn:
            await conn.execute("UPDATE people SET smtp_password = %s, updated_at = now() WHERE id = %s",
                               (PeopleKeys(KEY).encrypt("pw-cat"), ids["Cat"]))
            await conn.commit()
        await p.reaches(cat, "reply_sent", timeout=30)
        await p.reaches(cat2, "reply_sent", timeout=30)
        await asyncio.sleep(1)
        sent = sorted([m["In-Reply-To"] for m in servers["Cat"].messages])
        assert sent == sorted([cat, cat2])
    finally:
        for server in servers.values():
            server.stop()


async def _parked_count(p: Pipeline, *mids: str) -> int:
    count = 0
    for mid in mids:
        count += await _parked(p, mid)
    return count


async def _both_parked(p: Pipeline, *mids: str) -> bool:
    return await _parked_count(p, *mids) == len(mids)


async def _parked(p: Pipeline, mid: str) -> bool:
    rows = await p.query("SELECT current_state, park_peer FROM workflow_state WHERE message_id = %s", mid)
    return bool(rows) and rows[0]["current_state"] == "user_approved" and rows[0]["park_peer"] == LOGIN_PEER


async def test_an_email_to_a_mailbox_nobody_has_ends_unrouted(make_pipeline: Any, tmp_path: Path) -> None:
    p, servers, _ = await _pipeline(make_pipeline, tmp_path)
    try:
        lost = await _email(p.database, "Q <q@sender.example>", mailbox="nobody@z.example")
        await p.reaches(lost, "unrouted", timeout=30)
        assert await p.email_status(lost) == "unrouted"
        assert [t for t in p.sms.sent] == []  # nobody is texted about it
        trail = await p.trail(lost)
        assert trail[-1] == ("pending", "unrouted")
    finally:
        for server in servers.values():
            server.stop()
