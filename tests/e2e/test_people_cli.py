"""``orchestrator people``, run as an operator would, against a real
PostgreSQL database: add, list, show, set, remove, new-key and rotate-keys,
with nothing but DATABASE_URL, PEOPLE_KEYS and PHONE_REGION set, and no
password ever on the command line, on the screen or in the table in clear."""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest

from handlers.people_keys import KeysError, PeopleKeys
from streams.storage.repository import Pool, WorkflowRepository

from tests.support.factories import start_workflow
from tests.support.harness import ORCHESTRATOR, clean_env

ALICE_SMTP = "alice-Sm7p-secret"
CAROL_IMAP = "carol-1map-secret"


class Operator:
    """Runs ``orchestrator people ...`` with only the people commands' settings,
    and keeps every answer so a test can say what was never printed."""

    def __init__(self, database: str, cwd: Path, keys: str) -> None:
        self.env = clean_env(DATABASE_URL=database, PEOPLE_KEYS=keys, LOG_FORMAT="text")
        self.cwd = cwd
        self.said: list[str] = []

    async def __call__(self, *args: str, stdin: str | None = None, **env: str
                       ) -> subprocess.CompletedProcess[str]:
        def run() -> subprocess.CompletedProcess[str]:
            return subprocess.run([str(ORCHESTRATOR), "people", *args], env=self.env | env, cwd=self.cwd,
                                  input=stdin or "", capture_output=True, text=True, timeout=60)

        result = await asyncio.to_thread(run)
        self.said += [result.stdout, result.stderr]
        return result


def added_id(result: subprocess.CompletedProcess[str]) -> int:
    assert result.returncode == 0, result.stderr
    found = re.match(r"^added person (\d+): ", result.stdout)
    assert found, result.stdout
    return int(found.group(1))


def fields(shown: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert shown.returncode == 0, shown.stderr
    return dict(line.split(": ", 1) for line in shown.stdout.splitlines())


def refused(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The one line a refused command printed."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr.strip()


async def stored(pool: Pool, person_id: int) -> dict[str, Any]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT * FROM people WHERE id = %s", (person_id,))
        row = await cur.fetchone()
        assert row is not None
        return row


async def test_people_are_added_listed_shown_and_changed_with_no_password_in_sight(
        database: str, pool: Pool, tmp_path: Path) -> None:
    key = PeopleKeys.new_key()
    people = Operator(database, tmp_path, key)
    alice, bob, carol = await asyncio.gather(
        people("add", "Alice", "--phone", "+15551230001", "--address", "alice@x.example",
               "--smtp-server", "smtp.alice.example", "--smtp-port", "587", "--smtp-login", "alice",
               "--smtp-password-stdin", "--tone", "Casual", "--quiet-hours", "22:00-07:00",
               "--timezone", "Europe/Berlin", stdin=ALICE_SMTP + "\n"),
        people("add", "Bob", "--phone", "(555) 123-0002", "--address", "Bob@X.example",
               "--address", "bob@home.example", PHONE_REGION="US"),
        people("add", "Carol", "--phone", "+442079460018", "--address", "carol@y.example",
               "--imap-server", "imap.y.example", "--imap-password-env", "CAROL_PW", CAROL_PW=CAROL_IMAP))
    ids = {name: added_id(r) for name, r in (("Alice", alice), ("Bob", bob), ("Carol", carol))}
    assert "Bob  +15551230002  bob@x.example,bob@home.example  smtp=worker's" in bob.stdout

    listed, by_phone, by_address = await asyncio.gather(
        people("list"), people("show", "+15551230001"), people("show", "BOB@x.example"))
    assert listed.returncode == 0, listed.stderr
    assert sorted(listed.stdout.splitlines()) == sorted([
        f"{ids['Alice']}  Alice  +15551230001  alice@x.example  smtp=own  imap=none"
        "  awaiting=0  in_progress=0  ended=0",
        f"{ids['Bob']}  Bob  +15551230002  bob@x.example,bob@home.example  smtp=worker's  imap=worker's"
        "  awaiting=0  in_progress=0  ended=0",
        f"{ids['Carol']}  Carol  +442079460018  carol@y.example  smtp=worker's  imap=own"
        "  awaiting=0  in_progress=0  ended=0"])
    shown = fields(by_phone)
    assert shown["smtp_password"] == "(set)" and shown["imap_password"] == "(not set)"
    assert (shown["id"], shown["smtp_server"], shown["smtp_port"], shown["smtp_login"], shown["tone"],
            shown["quiet_hours"], shown["max_length"]) == (
        str(ids["Alice"]), "smtp.alice.example", "587", "alice", "casual", "22:00-07:00", "(worker's setting)")
    assert fields(by_address)["addresses"] == "bob@x.example, bob@home.example"

    # What the table holds is a token the workers' key opens, never the password.
    for person, field, clear in (("Alice", "smtp_password", ALICE_SMTP), ("Carol", "imap_password", CAROL_IMAP)):
        token = (await stored(pool, ids[person]))[field]
        assert token and clear not in token and PeopleKeys(key).decrypt(token) == clear

    # An empty value is the worker's setting again; refusals are one line each, naming what is wrong.
    changed, reset, taken, in_clear, bad_tone, no_one, no_keys, bad_keys = await asyncio.gather(
        people("set", "Bob", "tone", "friendly", "max_length", "250", "addresses", "bob@x.example"),
        people("set", str(ids["Alice"]), "quiet_hours", "", "tone", ""),
        people("add", "Dave", "--phone", "+1 555 123 0001", "--address", "dave@x.example"),
        people("set", "Carol", "smtp_password", "xyz-in-clear"),
        people("set", "Carol", "tone", "angry"),
        people("show", "nobody@x.example"),
        people("add", "Dave", "--phone", "+15551230004", "--address", "dave@x.example", "--smtp-password-stdin",
               stdin="pw\n", PEOPLE_KEYS=""),
        people("list", PEOPLE_KEYS="not-a-fernet-key"))
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout.strip() == f"changed tone, max_length, addresses of person {ids['Bob']} (Bob)"
    assert reset.returncode == 0, reset.stderr
    bob_row, alice_row = await stored(pool, ids["Bob"]), await stored(pool, ids["Alice"])
    assert (bob_row["tone"], bob_row["max_length"]) == ("friendly", 250)
    assert (alice_row["quiet_hours"], alice_row["tone"]) == (None, None)
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT address FROM person_addresses WHERE person_id = %s", (ids["Bob"],))
        assert [r["address"] for r in await cur.fetchall()] == ["bob@x.example"]
        cur = await conn.execute("SELECT name FROM people ORDER BY name")
        assert [r["name"] for r in await cur.fetchall()] == ["Alice", "Bob", "Carol"]  # no Dave
    assert "the phone +15551230001 is Alice's" in refused(taken, 1)
    said = refused(in_clear, 2)
    assert "smtp_password" in said and "--smtp-password-stdin" in said and "xyz-in-clear" not in said
    assert refused(bad_tone, 2) == "orchestrator: people: tone: one of professional, casual, technical, friendly"
    assert "no person 'nobody@x.example'" in refused(no_one, 1)
    said = refused(no_keys, 2)
    assert said.startswith("orchestrator: configuration error: PEOPLE_KEYS:") and "people new-key" in said
    assert refused(bad_keys, 2).startswith("orchestrator: configuration error: PEOPLE_KEYS: ")
    assert (await stored(pool, ids["Carol"]))["tone"] is None

    for clear in (ALICE_SMTP, CAROL_IMAP):
        assert not [text for text in people.said if clear in text]

    # The default person's phone and address are theirs (the worker's settings): no person takes them.
    mine = {"YOUR_PHONE_NUMBER": "+1 555 999 0000", "EMAIL_ADDRESS": "Me@Home.example"}
    phone, address, moved = await asyncio.gather(
        people("add", "Eve", "--phone", "+15559990000", "--address", "eve@x.example", **mine),
        people("add", "Eve", "--phone", "+15551230005", "--address", "me@home.example", **mine),
        people("set", "Bob", "phone", "+15559990000", **mine))
    assert refused(phone, 1) == "orchestrator: people: the phone +15559990000 is the default person's (YOUR_PHONE_NUMBER)"
    assert refused(address, 1) == "orchestrator: people: Me@Home.example is the default person's (EMAIL_ADDRESS)"
    assert "default person's (YOUR_PHONE_NUMBER)" in refused(moved, 1)
    assert (await stored(pool, ids["Bob"]))["phone"] == "+15551230002"


async def test_remove_waits_for_open_work_and_rotate_keys_moves_every_password(
        database: str, pool: Pool, repo: WorkflowRepository, tmp_path: Path) -> None:
    old, new = PeopleKeys.new_key(), PeopleKeys.new_key()
    people = Operator(database, tmp_path, old)
    alice, bob = await asyncio.gather(
        people("add", "Alice", "--phone", "+15551230001", "--address", "alice@x.example",
               "--smtp-login", "alice", "--smtp-password-env", "ALICE_PW", ALICE_PW=ALICE_SMTP),
        people("add", "Bob", "--phone", "+15551230002", "--address", "bob@x.example"))
    alice_id, bob_id = added_id(alice), added_id(bob)
    open_one = await start_workflow(repo, pool, to_addresses=["alice@x.example"])
    nobodys = await start_workflow(repo, pool, to_addresses=["stranger@z.example"])
    async with pool.connection() as conn:
        await conn.execute("UPDATE workflow_state SET person_id = %s WHERE message_id = %s", (alice_id, open_one))
        await conn.execute("UPDATE workflow_state SET person_id = NULL, current_state = 'unrouted'"
                           " WHERE message_id = %s", (nobodys,))

    listed, kept, removed = await asyncio.gather(
        people("list"), people("remove", "alice@x.example"), people("remove", "Bob"))
    assert f"{alice_id}  Alice  +15551230001  alice@x.example  smtp=own  imap=none  awaiting=0  in_progress=1" \
           "  ended=0" in listed.stdout.splitlines()
    assert listed.stdout.splitlines()[-1].startswith("1 email(s) belonged to nobody")
    assert refused(kept, 1) == (f"orchestrator: people: person {alice_id} (Alice) still has 1 open workflow(s);"
                                " nothing removed (remove them once their emails are answered or ended)")
    assert removed.returncode == 0 and removed.stdout.strip() == f"removed person {bob_id} (Bob)"
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT name FROM people")
        assert [r["name"] for r in await cur.fetchall()] == ["Alice"]

    before = (await stored(pool, alice_id))["smtp_password"]
    stranger = await people("rotate-keys", PEOPLE_KEYS=new)  # no key that made Alice's token
    assert f"person {alice_id} (Alice): a stored password was made with a key PEOPLE_KEYS no longer holds" \
           in refused(stranger, 1)
    assert (await stored(pool, alice_id))["smtp_password"] == before  # nothing written

    rotated = await people("rotate-keys", PEOPLE_KEYS=f"{new},{old}")
    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout.strip() == "rotated the passwords of 1 person(s) to the first key of PEOPLE_KEYS"
    after = (await stored(pool, alice_id))["smtp_password"]
    assert after != before and PeopleKeys(new).decrypt(after) == ALICE_SMTP
    with pytest.raises(KeysError):
        PeopleKeys(old).decrypt(after)

    made = await people("new-key", DATABASE_URL="")  # needs no database
    assert made.returncode == 0 and PeopleKeys(made.stdout.strip()).encrypt("x")
    assert not [text for text in people.said if ALICE_SMTP in text]


async def test_doctor_says_whether_people_keys_opens_every_stored_password(pipeline: Any) -> None:
    """With people, `orchestrator doctor` adds a line: PEOPLE_KEYS must open each stored password."""
    old, new = PeopleKeys.new_key(), PeopleKeys.new_key()
    async with await psycopg.AsyncConnection.connect(pipeline.database) as conn:
        await conn.execute("INSERT INTO people (name, phone, smtp_login, smtp_password) VALUES"
                           " ('Ann', '+15550000001', 'ann@a.example', %s)", (PeopleKeys(old).encrypt("pw"),))
        await conn.commit()

    def doctor(keys: str) -> subprocess.CompletedProcess[str]:
        env = dict(pipeline.env, PEOPLE_KEYS=keys)
        return subprocess.run([str(ORCHESTRATOR), "doctor"], env=env, cwd=pipeline.worker.log_path.parent,
                              capture_output=True, text=True, timeout=120)

    opened, locked = await asyncio.gather(asyncio.to_thread(doctor, f"{new},{old}"), asyncio.to_thread(doctor, new))
    assert opened.returncode == 0 and "✓ people: 1 person(s); PEOPLE_KEYS opens every stored password" in opened.stdout
    assert locked.returncode == 1 and "✗ people: PEOPLE_KEYS opens no key of the password(s) of Ann" in locked.stdout
