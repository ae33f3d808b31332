"""Every answer names its draft: codes on the draft SMS, answers in any
order, ``list``, a code alone, ``all 3``; on the real worker, Kafka and
PostgreSQL, each effect read at the peer that sees it (the SMS gateway, the
SMTP server) as well as in the database."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from handlers.codes import is_code
from standins.peers import webhook_body, webhook_headers

from tests.support.harness import PHONE, Pipeline, eventually

SENDERS = ["Ann One <ann@one.example>", "Bob Two <bob@two.example>", "Cat Three <cat@three.example>",
           "Dan Four <dan@four.example>", "Eve Five <eve@five.example>"]


async def _codes(p: Pipeline, mids: list[str]) -> list[str]:
    rows = await p.query("SELECT message_id, draft_code FROM workflow_state WHERE message_id = ANY(%s)", mids)
    by_id = {r["message_id"]: r["draft_code"] for r in rows}
    return [by_id[m] for m in mids]


async def _all_in(p: Pipeline, mids: list[str], state: str, timeout: float = 60) -> None:
    for mid in mids:
        await p.reaches(mid, state, timeout=timeout)


async def _answer_written_at(p: Pipeline, text: str, written_at: datetime) -> None:
    body = json.dumps(webhook_body(text, PHONE, received_at=written_at.isoformat(timespec="milliseconds"))).encode()
    response = await p.http.post("/orchestrator/sms-response", content=body, headers=webhook_headers(body, None))
    assert response.status_code == 200, response.text


async def test_five_drafts_answered_by_code_in_any_order_each_reply_goes_where_its_code_says(
        make_pipeline: Any) -> None:
    p: Pipeline = await make_pipeline(PHONE_MODE="each")
    start = datetime.now(UTC) - timedelta(minutes=30)
    mids = await p.new_emails(*({"from_address": sender, "subject": f"Question {n}",
                                 "received_at": start + timedelta(minutes=n)} for n, sender in enumerate(SENDERS, 1)))
    await _all_in(p, mids, "awaiting_user")  # each mode: all five on the phone at once
    texts = await p.sms_count(5)
    codes = await _codes(p, mids)
    assert len(set(codes)) == 5 and all(is_code(c) and re.fullmatch(r"[A-Z][2-9]", c) for c in codes)
    for mid, code, sender in zip(mids, codes, SENDERS):
        [sms] = [t for t in texts if t.startswith(sender.split(" <")[0] + ":")]
        assert f"\n{code}: 1=Send 2=Edit 3=Ignore" in sms, sms  # the code on the draft it names

    c1, c2, c3, c4, c5 = codes
    await p.reply_sms(f"{c4} 1")  # 4: send
    await p.reaches(mids[3], "reply_sent")
    await p.reply_sms(f"{c2.lower()} 2 make it shorter")  # 2: edit (the code as a phone may type it)
    await eventually(lambda: _edited(p, mids[1]), 30, "the second email's draft regenerated and texted")
    await p.reply_sms(f"{c5} 3")  # 5: ignore
    await p.reaches(mids[4], "user_ignored")
    await p.reply_sms(f"{c1}: send")  # 1: send
    await p.reaches(mids[0], "reply_sent")
    await p.reply_sms(f"{c2} 1")  # 2: send the edited draft
    await p.reaches(mids[1], "reply_sent")
    await p.reply_sms(f"{c3} 3")  # 3: ignore
    await p.reaches(mids[2], "user_ignored")

    emails = await p.emails(3)
    drafts = {r["message_id"]: r["ai_reply_text"] for r in await p.query(
        "SELECT message_id, ai_reply_text FROM workflow_state WHERE message_id = ANY(%s)", mids)}
    sent = {e["In-Reply-To"]: e for e in emails}
    assert set(sent) == {mids[3], mids[0], mids[1]}  # 4, 1, 2 and nothing else
    for n in (3, 0, 1):
        email = sent[mids[n]]
        assert email["To"] == SENDERS[n].split(" <")[1].rstrip(">") or SENDERS[n] in email["To"], email["To"]
        assert email.get_content().strip() == drafts[mids[n]].strip()
    assert "make it shorter" in sent[mids[1]].get_content()  # the edited draft, not the first
    assert [e["In-Reply-To"] for e in emails] == [mids[3], mids[0], mids[1]]  # in the order answered
    assert await p.email_status(mids[4]) == "ignored" and await p.email_status(mids[2]) == "ignored"
    assert await _codes(p, mids) == [None] * 5  # every code given up with its decision


async def _edited(p: Pipeline, mid: str) -> bool:
    [row] = await p.query("SELECT current_state, edit_iteration FROM workflow_state WHERE message_id = %s", mid)
    return bool(row["current_state"] == "awaiting_user" and row["edit_iteration"] == 1)


async def test_one_at_a_time_list_a_code_alone_late_and_unknown_codes_and_all_3(pipeline: Pipeline) -> None:
    p = pipeline
    start = datetime.now(UTC) - timedelta(hours=2)
    a, b = await p.new_emails({"from_address": SENDERS[0], "subject": "Older", "received_at": start},
                              {"from_address": SENDERS[1], "subject": "Newer", "received_at": start + timedelta(hours=1)})
    await p.reaches(a, "awaiting_user")
    await p.reaches(b, "ai_generated")  # one at a time: the second waits
    code_a, code_b = await _codes(p, [a, b])
    [first] = await p.sms_count(1)
    assert first.startswith("Ann One:") and f"{code_a}: 1=Send" in first and first.endswith("(+1 waiting)")

    await p.reply_sms("list")
    listing = (await p.sms_count(2))[1]
    assert listing.startswith("2 open:")
    assert f"{code_a} Ann One: Older (2h)" in listing and f"{code_b} Bob Two: Newer (1h, waiting)" in listing

    await p.reply_sms(f"{code_b} 1")  # not texted yet: the person has not read it
    assert (await p.sms_count(3))[2] == f"{code_b} has not been texted to you yet. Reply {code_b} to read it, then answer."
    assert await p.state(b) == "ai_generated"

    await p.reply_sms(code_b)  # a code alone: text it now, over the one on the phone
    await p.reaches(b, "awaiting_user")
    shown = (await p.sms_count(4))[3]
    assert shown.startswith("Bob Two:") and f"{code_b}: 1=Send" in shown

    unknown = next(c for c in ("Z9", "Y8", "X7") if c not in (code_a, code_b))
    await p.reply_sms(f"{unknown} 1")  # names no open draft: help, nothing changes
    assert (await p.sms_count(5))[4] == f"No open draft is called {unknown}. Reply list to see your open drafts."
    assert (await p.state(a), await p.state(b)) == ("awaiting_user", "awaiting_user")

    [row] = await p.query("SELECT presented_at FROM workflow_state WHERE message_id = %s", a)
    await _answer_written_at(p, f"{code_a} 1", row["presented_at"] - timedelta(minutes=5))  # late for a
    assert "was written before the draft reply to Ann One was texted" in (await p.sms_count(6))[5]
    assert await p.state(a) == "awaiting_user"

    await p.reply_sms("1")  # bare: the draft texted most recently, b
    await p.reaches(b, "reply_sent")
    [email] = await p.emails(1)
    assert email["In-Reply-To"] == b and "bob@two.example" in email["To"]

    texts = await p.sms_count(7)  # "Sent to Bob Two"
    assert texts[6].startswith("Sent to Bob Two")
    await p.reply_sms("all 3")
    assert (await p.sms_count(8))[7] == "Ignore all 1 draft on your phone? Reply yes within a minute to confirm."
    assert await p.state(a) == "awaiting_user"  # nothing before the yes
    await p.reply_sms("yes")
    await p.reaches(a, "user_ignored")
    assert (await p.sms_count(9))[8].startswith("Ignored 1 email.")
    await p.emails(1)  # still only b's reply
