"""The dashboard as a second phone, in a real browser (Chromium) over the real
worker, Kafka and PostgreSQL: send, ignore, edit with instructions and edit
by hand from a workflow's page; each answer is queued on ``sms.inbound`` as
an SMS is, and the command stage applies it (streams/web/actions.py)."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote, unquote

import httpx

from tests.support.browser import Browser
from tests.support.harness import PHONE, Pipeline, eventually

DECIDABLE = ("awaiting_user", "ai_generated")


def page_of(message_id: str) -> str:
    return "/workflows/" + quote(message_id, safe="")


async def code_of(p: Pipeline, message_id: str) -> str:
    [row] = await p.query("SELECT draft_code FROM workflow_state WHERE message_id = %s", message_id)
    assert row["draft_code"], "every open draft has a code (given at intake)"
    return str(row["draft_code"])


async def queued(p: Pipeline, message_id: str, at_least: int) -> list[dict[str, Any]]:
    """The answers the dashboard queued for ``message_id``, as they travel on
    ``sms.inbound`` (read from the topic), once there are ``at_least``."""
    records = p.records("sms.inbound", at_least)
    found = [json.loads(r.value) for r in records]
    mine = [m for m in found if m.get("source") == "dashboard" and m.get("message_id") == message_id]
    assert len(mine) >= at_least, found
    assert all(r.key == PHONE.encode() for r in records)  # in order with the person's own SMS
    return mine


async def decidable(p: Pipeline, message_id: str) -> None:
    async def ready() -> bool:
        return await p.state(message_id) in DECIDABLE
    await eventually(ready, 30, f"{message_id} drafted")


async def test_send_one_draft_and_ignore_another_in_any_order(pipeline: Pipeline) -> None:
    p = pipeline
    senders = {"Lunch on Thursday?": "maria@example.com", "Q3 numbers": "tom@example.com"}
    ids = await p.new_emails(*({"subject": subject, "from_address": f"Someone <{address}>"}
                               for subject, address in senders.items()))
    for mid in ids:
        await decidable(p, mid)
    on_phone = await p.awaiting_one()
    assert on_phone in ids
    # The draft behind the one on the phone (or beside it) is sent first, then the other ignored.
    first, second = next(mid for mid in ids if mid != on_phone), on_phone
    codes = {mid: await code_of(p, mid) for mid in ids}
    [row] = await p.query("SELECT email_subject, ai_reply_text, edit_iteration FROM workflow_state"
                          " WHERE message_id = %s", first)
    b = Browser(p.base_url)
    try:
        await b.open(page_of(first))
        await b.wait_for_text("Answer this draft")
        assert codes[first] in await b.text()
        await b.shot("dashboard-answer-forms")
        await b.click("#answer-send")
        await b.wait_for_text("Sent to the orchestrator: send this draft.", 20)
        assert unquote(await b.url()).endswith(f"/workflows/{first}?queued=send")
        # Our half: recorded like an SMS and queued on sms.inbound, naming its draft.
        [sent] = await queued(p, first, 1)
        assert sent["text"] == "1" and sent["phone_number"] == PHONE and sent["sms_id"].startswith("dashboard:")
        assert sent["seen_iteration"] == row["edit_iteration"] and sent["reply_text"] is None
        [ledger] = await p.query("SELECT phone_number, body FROM inbound_sms WHERE sms_id = %s", sent["sms_id"])
        assert ledger == {"phone_number": PHONE, "body": "1"}

        # The command stage's half: the right reply to the right person, the phone told.
        [email] = await p.emails(1)
        assert senders[row["email_subject"]] in email["To"] and email["Subject"] == f"Re: {row['email_subject']}"
        assert email.get_content().strip() == row["ai_reply_text"].strip()
        await p.reaches(first, "reply_sent")
        assert await p.state(second) in DECIDABLE  # the other draft untouched
        await b.wait_for_text("from the dashboard", 20, reload=True)  # the timeline says where it came from

        await b.open(page_of(second))
        await b.wait_for_text("Answer this draft")
        await b.click("#answer-ignore")
        await b.wait_for_text("Sent to the orchestrator: ignore this email.", 20)
        await p.reaches(second, "user_ignored")
        assert await p.email_status(second) == "ignored"
        # A page loaded now (the answer forms sit outside the part that refreshes itself):
        await b.open(page_of(second))
        await b.wait_for_text("user_ignored", 20)
        assert "Answer this draft" not in await b.text()  # nothing left to answer
        await b.shot("dashboard-answer-ignored")
        await p.emails(1)  # the ignored email got no reply
        # The phone was told of both, naming each draft by its code.
        assert any(f"{codes[second]} ignored from the dashboard" in sms for sms in p.sms.messages), p.sms.messages
        assert any(f"{codes[first]} sent from the dashboard" in sms for sms in p.sms.messages), p.sms.messages
    finally:
        b.close()


async def test_edit_with_instructions_then_by_hand_sends_what_was_typed(pipeline: Pipeline) -> None:
    p = pipeline
    mid = await p.new_email(subject="Can we move our call?", from_address="Priya Shah <priya@example.com>")
    await p.reaches(mid, "awaiting_user")
    b = Browser(p.base_url)
    try:
        await b.open(page_of(mid))
        await b.wait_for_text("Answer this draft")
        await b.type_and_send("#answer-instructions", "make it shorter", "#answer-edit")
        await b.wait_for_text("Sent to the orchestrator: write a new draft with your instructions.", 20)
        [edit] = await queued(p, mid, 1)
        assert edit["text"] == "2 make it shorter" and edit["seen_iteration"] == 0

        # Regenerated with the instructions, and on the phone again.
        async def regenerated() -> bool:
            rows = await p.query("SELECT current_state, edit_iteration FROM workflow_state WHERE message_id = %s",
                                 mid)
            return rows[0]["edit_iteration"] == 1 and rows[0]["current_state"] in DECIDABLE
        await eventually(regenerated, 30, "the second draft")
        assert "1. make it shorter" in p.ai.for_email(mid)[-1]["context_instructions"]
        assert any("new draft asked for from the dashboard" in sms for sms in p.sms.messages), p.sms.messages

        await b.open(page_of(mid))
        page = await b.wait_for_text("Answer this draft")
        assert 'edit 1: "make it shorter"' in page and "Revised draft 2 (1. make it shorter)" in page
        typed = "Hi Priya,\n\nFriday at 10 works — see you at Café Nord.\n  Indented, kept.\n\nAnna"
        await b.type_and_send("#answer-text", typed, "#answer-write")
        await b.wait_for_text("Sent to the orchestrator: send the reply you wrote.", 20)
        [_, written] = await queued(p, mid, 2)
        assert written["text"] == "1" and written["reply_text"] == typed and written["seen_iteration"] == 1

        [email] = await p.emails(1)  # exactly what was typed reaches the SMTP server
        assert "priya@example.com" in email["To"]
        assert email.get_content().replace("\r\n", "\n").rstrip("\n") == typed
        await p.reaches(mid, "reply_sent")
        page = await b.wait_for_text("reply_sent", 20, reload=True)
        assert "Friday at 10 works — see you at Café Nord." in page  # the reply sent, on the page
        await b.shot("dashboard-answer-by-hand")
    finally:
        b.close()


async def sign_in(http: httpx.AsyncClient, token: str) -> None:
    form = (await http.get("/signin")).text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf
    done = await http.post("/signin", data={"csrf": csrf.group(1), "token": token, "next": "/"})
    assert done.status_code == 303 and "orchestrator_session" in http.cookies


async def test_an_answer_is_refused_without_sign_in_csrf_or_on_a_changed_draft(make_pipeline: Any) -> None:
    p: Pipeline = await make_pipeline(API_TOKEN="dash-token-Qw12")
    mid = await p.new_email(subject="Refuse me")
    await p.reaches(mid, "awaiting_user")
    answer = {"message_id": mid, "seen_iteration": "0"}
    anonymous = await p.http.post("/actions/send", data=answer)
    assert anonymous.status_code == 403 and "sign in" in anonymous.json()["error"]
    async with httpx.AsyncClient(base_url=p.base_url, timeout=10) as http:
        await sign_in(http, "dash-token-Qw12")
        no_csrf = await http.post("/actions/send", data=answer)
        assert no_csrf.status_code == 403 and "CSRF" in no_csrf.json()["error"]
        page = (await http.get(page_of(mid))).text
        found = re.search(r'name="csrf" value="([^"]+)"', page)
        assert found and 'name="seen_iteration" value="0"' in page
        csrf = found.group(1)
        changed = await http.post("/actions/send", data=answer | {"csrf": csrf, "seen_iteration": "1"})
        assert changed.status_code == 409 and "changed since this page showed it" in changed.text
        empty = await http.post("/actions/edit", data=answer | {"csrf": csrf, "instructions": "  "})
        assert empty.status_code == 400 and "instructions are empty" in empty.text
        long = await http.post("/actions/write", data=answer | {"csrf": csrf, "reply_text": "x" * 20_001})
        assert long.status_code == 400 and "longer than 20000" in long.text
        unknown = await http.post("/actions/ignore", data=answer | {"csrf": csrf, "message_id": "<nope@x>"})
        assert unknown.status_code == 404
        # Nothing was queued, and nothing moved.
        assert await p.query("SELECT sms_id FROM inbound_sms WHERE sms_id LIKE %s", "dashboard:%") == []
        assert await p.state(mid) == "awaiting_user"

        ok = await http.post("/actions/ignore", data=answer | {"csrf": csrf}, follow_redirects=False)
        assert ok.status_code == 303 and unquote(ok.headers["Location"]) == f"/workflows/{mid}?queued=ignore"
        await p.reaches(mid, "user_ignored")
        again = await http.post("/actions/send", data=answer | {"csrf": csrf})  # closed now
        assert again.status_code == 409 and "user_ignored now" in again.text
    await p.emails(0)
