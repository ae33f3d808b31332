"""The dashboard and the API for many people (issue 19, items 4, 6 and the
admin page of 1/7), on the real worker, Kafka and PostgreSQL, with Chromium:
a person signs in with a code texted to their phone and sees only their own
workflows (another's is a 404, in the pages and in the API); the admin's
token sees everyone, and the admin page lists the people with their counts and
the emails that were nobody's, adds a person (their password encrypted) and
refuses to remove one who holds open drafts.

One worker serves the whole module (its tests run in order): Ann and Bob are
people rows, the default person is the worker's settings, and one email
belongs to nobody."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pytest
import pytest_asyncio
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from handlers.people_keys import PeopleKeys

from tests.support.browser import Browser
from tests.support.factories import insert_email, new_message_id
from tests.support.harness import PHONE, Pipeline, delete_topics, eventually
from tests.support.services import Endpoints

pytestmark = pytest.mark.asyncio(loop_scope="module")

TOKEN = "people-admin-token-Zr41"
KEY = PeopleKeys.new_key()
ANN, BOB = "+15550000101", "+15550000102"
STRANGER = "+15550000199"
CODE = re.compile(r"Your dashboard sign-in code is (\d{6}) \(valid 10 minutes\)")


@dataclass
class World:
    p: Pipeline
    people: dict[str, int]
    mail: dict[str, str]


def _conninfo(url: str, dbname: str) -> str:
    return make_conninfo("", **(conninfo_to_dict(url) | {"dbname": dbname}))


async def _add_person(p: Pipeline, name: str, phone: str, address: str) -> int:
    """A people row as ``orchestrator people add`` writes one (no login of their own)."""
    async with await psycopg.AsyncConnection.connect(p.database) as conn:
        cur = await conn.execute("INSERT INTO people (name, phone) VALUES (%s, %s) RETURNING id", (name, phone))
        row = await cur.fetchone()
        assert row is not None
        await conn.execute("INSERT INTO person_addresses (address, person_id) VALUES (%s, %s)", (address, row[0]))
        await conn.commit()
        return int(row[0])


async def _emails(p: Pipeline, *emails: tuple[str, str, str]) -> dict[str, str]:
    """Emails (name, subject, recipient) arriving now; their Message-IDs by name."""
    async with await psycopg.AsyncConnection.connect(p.database) as conn:
        return {key: await insert_email(conn, subject=subject, to_addresses=[to]) for key, subject, to in emails}


async def _email_to_nobody(p: Pipeline) -> str:
    """An email a monitor says arrived in a mailbox nobody here answers from."""
    mid = new_message_id()
    async with await psycopg.AsyncConnection.connect(p.database) as conn:
        await conn.execute(
            "INSERT INTO processed_emails (message_id, subject, from_address, to_addresses, received_at, status,"
            " body_text, mailbox) VALUES (%s, 'Nobody''s invoice', 'Vendor <v@vendor.example>', %s, %s,"
            " 'pending', 'Pay me', 'stranger@nowhere.example')",
            (mid, ["stranger@nowhere.example"], datetime.now(UTC) - timedelta(minutes=5)))
        await conn.commit()
    return mid


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(endpoints: Endpoints, template_database: str,
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    name = f"orch_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(endpoints.database_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    prefix = f"t{uuid.uuid4().hex[:10]}."
    p = Pipeline(_conninfo(endpoints.database_url, name), endpoints.kafka_bootstrap_servers, prefix,
                 tmp_path_factory.mktemp("people-web"), API_TOKEN=TOKEN, PEOPLE_KEYS=KEY, PEOPLE_REFRESH="0.5")
    try:
        await p.start()
        people = {"Ann": await _add_person(p, "Ann", ANN, "ann@a.example"),
                  "Bob": await _add_person(p, "Bob", BOB, "bob@b.example")}
        await asyncio.sleep(1)  # past PEOPLE_REFRESH: the worker knows them
        mail = await _emails(p, ("ann_1", "Ann's budget review", "ann@a.example"),
                             ("bob_1", "Bob's lunch on Friday", "bob@b.example"),
                             ("mine", "The default person's note", "me@example.com"))
        mail["nobody"] = await _email_to_nobody(p)
        for key in ("ann_1", "bob_1", "mine"):
            await p.reaches(mail[key], "awaiting_user", timeout=60)
        await p.reaches(mail["nobody"], "unrouted")
        # A second draft each for Ann and Bob, waiting behind the one on their phone.
        mail |= await _emails(p, ("ann_2", "Ann's offsite plan", "Ann <ann@a.example>"),
                              ("bob_2", "Bob's holiday request", "bob@b.example"))
        for key in ("ann_2", "bob_2"):
            await p.reaches(mail[key], "ai_generated")
        yield World(p, people, mail)
    finally:
        try:
            await p.stop()
        finally:
            await asyncio.to_thread(delete_topics, endpoints.kafka_bootstrap_servers, prefix)
            with psycopg.connect(endpoints.database_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def page_of(message_id: str) -> str:
    return "/workflows/" + quote(message_id, safe="")


def codes_to(p: Pipeline, phone: str) -> list[str]:
    return [m.group(1) for s in p.sms.sent if s["to"] == phone and (m := CODE.search(s["message"]))]


async def new_code(p: Pipeline, phone: str, before: int) -> str:
    """The sign-in code texted to ``phone`` after the ``before`` it had."""
    async def texted() -> list[str]:
        return codes_to(p, phone)[before:]
    return (await eventually(texted, 15, f"a sign-in code texted to {phone}"))[-1]


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


async def ask_code(http: httpx.AsyncClient, phone: str) -> httpx.Response:
    form = await http.get("/signin")
    return await http.post("/signin/phone", data={"csrf": csrf_of(form.text), "phone": phone, "next": "/"})


async def give_code(http: httpx.AsyncClient, phone: str, code: str) -> httpx.Response:
    form = await http.get("/signin")
    return await http.post("/signin/code", data={"csrf": csrf_of(form.text), "phone": phone, "code": code,
                                                 "next": "/"}, follow_redirects=False)


async def sign_in_by_phone(p: Pipeline, http: httpx.AsyncClient, phone: str) -> None:
    before = len(codes_to(p, phone))
    assert (await ask_code(http, phone)).status_code == 200
    done = await give_code(http, phone, await new_code(p, phone, before))
    assert done.status_code == 303 and done.headers["Location"] == "/", done.text
    assert "orchestrator_session" in http.cookies


async def test_a_person_signs_in_with_a_texted_code_and_sees_only_their_own(world: World) -> None:
    p, mail = world.p, world.mail
    b = Browser(p.base_url)
    try:
        await b.open("/")
        assert "/signin?next=" in await b.url()
        await b.type_and_send("form[action='/signin/phone'] input[name=phone]", "+1 555 000 0102",
                              "form[action='/signin/phone'] button")
        await b.wait_for_text("a sign-in code is on its way", 20)
        code = await new_code(p, BOB, 0)
        await b.shot("people-signin-code")
        await b.type_and_send("form[action='/signin/code'] input[name=code]", code,
                              "form[action='/signin/code'] button")
        shown = await b.wait_for_text("Signed in as Bob", 20)
        assert "Bob's lunch on Friday" in shown
        assert "Ann's" not in shown and "default person's" not in shown and "Nobody's" not in shown
        assert await b.find_all("header a[href='/people']") == []  # the admin's links are not offered
        await b.shot("people-signed-in-as-bob")
        # Another person's workflow does not exist for Bob, in the browser and over HTTP with his cookie.
        await b.open(page_of(mail["ann_1"]))
        assert "no workflow for" in await b.wait_for_text("no workflow for", 10)
        await b.open(page_of(mail["bob_1"]))
        assert "Bob's lunch on Friday" in await b.wait_for_text("Answer this draft", 10)
        # Bob answers his own draft on the page: the answer comes from his phone, not the default person's.
        await b.click("#answer-ignore")
        await b.wait_for_text("Sent to the orchestrator: ignore this email.", 10)
        await p.reaches(mail["bob_1"], "user_ignored")
        [answer] = await p.query("SELECT phone_number FROM inbound_sms WHERE sms_id LIKE 'dashboard:%%'")
        assert answer["phone_number"] == BOB
        cookie = {c["name"]: c["value"] for c in await b._do(b.driver.get_cookies)}
        async with httpx.AsyncClient(base_url=p.base_url, cookies=cookie) as bob:
            assert (await bob.get(page_of(mail["ann_1"]))).status_code == 404
            assert (await bob.get(page_of(mail["nobody"]))).status_code == 404
            assert (await bob.get(page_of(mail["bob_1"]))).status_code == 200
            for admins in ("/people", "/dead-letters", "/analytics", "/lessons", "/vips"):
                refused = await bob.get(admins, follow_redirects=False)
                assert refused.status_code == 403 and "admin" in refused.json()["error"], admins
            home = await bob.get("/")
            assert (await bob.post("/actions/retry", data={"csrf": csrf_of(home.text), "message_id": mail["ann_1"]})
                    ).status_code == 404
        # The code was single use: signed out, the same code signs in no more.
        await b.click("header form button")  # sign out
        await b.wait_for_text("Sign in with your phone", 10)
        await b.type_and_send("form[action='/signin/phone'] input[name=phone]", "call me",
                              "form[action='/signin/phone'] button")
        await b.wait_for_text("not a phone number", 10)
        await b.type_and_send("form[action='/signin/phone'] input[name=phone]", STRANGER,
                              "form[action='/signin/phone'] button")  # (texts nobody: a stranger's phone)
        await b.wait_for_text("a sign-in code is on its way", 10)
        await b._do(lambda: _fill(b, "form[action='/signin/code']", {"phone": BOB, "code": code}))
        await b.click("form[action='/signin/code'] button")
        assert "Signed in as" not in await b.wait_for_text("That code is not right", 10)
    finally:
        b.close()

    # A phone is answered the same whether it is someone's or not, and a stranger is texted nothing.
    async with httpx.AsyncClient(base_url=p.base_url) as http:
        known, stranger = await ask_code(http, BOB), await ask_code(http, STRANGER)
        assert known.status_code == stranger.status_code == 200
        assert _without_nonce(known.text.replace(BOB, "X")) == _without_nonce(stranger.text.replace(STRANGER, "X"))
        code = await new_code(p, BOB, 1)
        assert [s for s in p.sms.sent if s["to"] == STRANGER] == []
        # Five wrong tries spend the code: the right one is refused after them.
        wrong = "000000" if code != "000000" else "111111"
        for _ in range(5):
            refused = await give_code(http, BOB, wrong)
            assert refused.status_code == 401 and "not right" in refused.text
        spent = await give_code(http, BOB, code)
        assert spent.status_code == 401 and "orchestrator_session" not in http.cookies
    [row] = await p.query("SELECT count(*) AS n FROM sign_in_codes WHERE person_id = %s AND code_hash LIKE %s",
                          world.people["Bob"], f"%{code}%")
    assert row["n"] == 0  # only a hash of the code is kept


def _without_nonce(html: str) -> str:
    """A page less what differs per response: its CSP nonce."""
    return re.sub(r'nonce="[^"]*"', "", html)


async def test_the_api_answers_a_persons_session_with_their_own_workflows(world: World) -> None:
    p, mail = world.p, world.mail
    admin = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=p.base_url) as bob:
        await sign_in_by_phone(p, bob, BOB)
        csrf = {"X-CSRF-Token": csrf_of((await bob.get("/")).text)}
        await p.reaches(mail["bob_2"], "awaiting_user")  # on his phone once bob_1 was ignored
        pending = (await bob.get("/workflow/pending")).json()
        assert {w["message_id"] for w in pending["items"]} == {mail["bob_2"]} and pending["total"] == 1
        status = (await bob.get("/workflow/status")).json()
        assert status["total"] == 2 and status["completed"] == 1, status  # bob_1 and bob_2, nobody else's
        assert (await bob.get(p.workflow_path(mail["bob_1"]))).status_code == 200
        for other in ("ann_1", "mine", "nobody"):
            seen = await bob.get(p.workflow_path(mail[other]))
            assert seen.status_code == 404 and seen.json()["error"] == f"no workflow for {mail[other]}", other
        # Acting on another's workflow is a 404 too, and changes nothing.
        assert (await bob.post(p.workflow_path(mail["ann_1"], "retry"), headers=csrf)).status_code == 404
        assert (await bob.post("/workflow/timeout/" + quote(mail["ann_1"], safe=""), headers=csrf)).status_code == 404
        assert await p.state(mail["ann_1"]) == "awaiting_user"
        # A change made with the cookie must carry the session's CSRF token.
        bare = await bob.post("/workflow/timeout/" + quote(mail["bob_2"], safe=""))
        assert bare.status_code == 403 and "X-CSRF-Token" in bare.json()["error"]
        own = await bob.post("/workflow/timeout/" + quote(mail["bob_2"], safe=""), headers=csrf)
        assert own.status_code == 200 and own.json()["current_state"] == "timeout"
        assert (await bob.get("/metrics")).status_code == 401  # the metrics are the admin's
        assert "checks" not in (await bob.get("/health")).json()  # so are the health details

    # The admin's bearer sees and acts on everyone's.
    async with httpx.AsyncClient(base_url=p.base_url, headers=admin) as http:
        everyone = (await http.get("/workflow/pending")).json()
        assert {mail["ann_1"], mail["mine"]} <= {w["message_id"] for w in everyone["items"]}
        assert (await http.get(p.workflow_path(mail["ann_1"]))).json()["email_subject"] == "Ann's budget review"
        assert (await http.get(p.workflow_path(mail["nobody"]))).json()["current_state"] == "unrouted"
        assert (await http.post(p.workflow_path(mail["ann_1"], "retry"))).status_code == 409  # seen: not failed
        timed_out = await http.post("/workflow/timeout/" + quote(mail["ann_1"], safe=""))
        assert timed_out.status_code == 200, timed_out.text
    # Without either, the API is closed as before.
    assert (await p.http.get("/workflow/pending")).status_code == 401

    # At most SIGN_IN_CODES_PER_HOUR (5) codes an hour: Bob had 3; of 3 more asked for, 2 are texted.
    async with httpx.AsyncClient(base_url=p.base_url) as http:
        assert len(codes_to(p, BOB)) == 3
        pages = [await ask_code(http, BOB) for _ in range(3)]
        assert len({_without_nonce(page.text) for page in pages}) == 1  # the page says the same every time
        await p.settle(lambda: len(codes_to(p, BOB)), 5)
        assert len(codes_to(p, BOB)) == 5
    await p.reaches(mail["ann_2"], "awaiting_user")  # Ann's next draft reaches her phone


async def test_the_admin_page_lists_adds_and_keeps_people(world: World) -> None:
    p = world.p
    b = Browser(p.base_url)
    try:
        await b.open("/people")
        assert "/signin?next=" in await b.url()
        await b.type_and_send("input[name=token]", TOKEN, "form[action='/signin'] button")
        shown = await b.wait_for_text("Emails that belonged to nobody", 20)
        assert "Nobody's invoice" in shown and "stranger@nowhere.example" in shown

        async def counts(person: int) -> list[str]:
            """A person's row's counts, read at once (the live part of the page is replaced every few seconds)."""
            cells = ", ".join(f"tr[data-person='{person}'] td.{c}" for c in ("awaiting", "in-progress", "ended"))
            found = await b.script(f"return Array.from(document.querySelectorAll(\"{cells}\"))"
                                   ".map(function (e) { return e.textContent.trim(); })")
            return list(found)

        for who, expected in (("Ann", ["1", "0", "1"]), ("Bob", ["0", "0", "2"])):  # awaiting, in progress, ended
            async def right(person: int = world.people[who], expected: list[str] = expected) -> bool:
                return await counts(person) == expected
            await eventually(right, 15, f"{who}'s counts on the admin page")
        assert await counts(0) == ["1", "0", "0"]  # the default person's note
        await b.shot("people-admin-page")

        # A person added through the form; their password is kept only encrypted.
        fields = {"name": "Cat", "phone": "+15550000103", "addresses": "cat@c.example, cat@alias.example",
                  "smtp_server": "127.0.0.1", "smtp_port": "465", "smtp_login": "cat@c.example",
                  "smtp_password": "pw-cat-clear"}
        await b._do(lambda: _fill(b, "#add-person", fields))
        await b.click("#add")
        shown = await b.wait_for_text("Person added", 10)
        assert "Cat" in shown and "cat@c.example, cat@alias.example" in shown and "password set" in shown
        assert "pw-cat-clear" not in await b.script("return document.documentElement.outerHTML")
        [cat] = await p.query("SELECT id, smtp_password FROM people WHERE name = 'Cat'")
        assert cat["smtp_password"] != "pw-cat-clear" and "pw-cat-clear" not in cat["smtp_password"]
        assert PeopleKeys(KEY).decrypt(cat["smtp_password"]) == "pw-cat-clear"
        # Someone else's phone is refused with the reason.
        await b.open("/people")
        await b._do(lambda: _fill(b, "#add-person", fields | {"name": "Dup", "addresses": "dup@d.example",
                                                              "smtp_password": ""}))
        await b.click("#add")
        assert "+15550000103 is Cat's" in await b.wait_for_text("Not done", 10)

        # Ann holds an open draft: not removed, and told why; Cat holds none: removed.
        await b.open("/people")
        await b.click(f"tr[data-person='{world.people['Ann']}'] button.remove")
        assert "Ann is not removed: 1 of their workflows are still open" in await b.wait_for_text("Not done", 10)
        assert await p.query("SELECT id FROM people WHERE name = 'Ann'")
        await b.open("/people")
        await b.click(f"tr[data-person='{cat['id']}'] button.remove")
        await b.wait_for_text("Person removed.", 10)
        assert await p.query("SELECT id FROM people WHERE name = 'Cat'") == []
    finally:
        b.close()


def _fill(b: Browser, form: str, fields: dict[str, Any]) -> None:
    """Type ``fields`` into the inputs of ``form`` (a CSS selector), each cleared first."""
    from selenium.webdriver.common.by import By

    for name, value in fields.items():
        field = b.driver.find_element(By.CSS_SELECTOR, f"{form} input[name={name}]")
        field.clear()
        if value:
            field.send_keys(value)
