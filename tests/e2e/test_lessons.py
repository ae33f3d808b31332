"""It learns from you (docs/design.md): on the real worker, Kafka and
PostgreSQL with the stand-in peers, a simulated person with fixed
preferences edits less and less; a one-off instruction never leaves its
email; ``forget`` by SMS and the dashboard's switch (in Chromium) stop a
lesson from being sent to the generator."""

from __future__ import annotations

from typing import Any

from handlers.lessons import lessons_in

from tests.support.browser import Browser
from tests.support.harness import Pipeline, eventually

#: Three senders, each with the instruction the person always gives for them
#: (two share a domain: a sender's preference must not spread to its domain).
PREFERENCES = {
    "Ann One <ann@acme.example>": "sign as Jack",
    "Bob Two <bob@acme.example>": "be more casual",
    "Cat Three <cat@three.example>": "mention the office hours",
}
ONE_OFF = "say yes to Tuesday"
#: The one email the one-off instruction is given for (Bob's seventh).
ONE_OFF_AT = 19
EMAILS = 30
WINDOW = 5


async def _code(p: Pipeline, mid: str) -> str:
    [row] = await p.query("SELECT draft_code FROM workflow_state WHERE message_id = %s", mid)
    return str(row["draft_code"])


async def _draft_on_phone(p: Pipeline, mid: str, iteration: int) -> str:
    """The draft SMS of ``mid``'s draft ``iteration`` (0: the first), once it is on the phone."""
    async def there() -> bool:
        rows = await p.query("SELECT current_state, edit_iteration FROM workflow_state WHERE message_id = %s", mid)
        return bool(rows and rows[0]["current_state"] == "awaiting_user" and rows[0]["edit_iteration"] == iteration)
    await eventually(there, 30, f"draft {iteration} of {mid} on the phone")
    code = await _code(p, mid)
    return [text for text in p.sms.messages if f"{code}: 1=Send" in text][-1]


async def _lessons_sent(p: Pipeline, mid: str) -> list[str]:
    """The lessons the first generator request for ``mid`` carried."""
    return lessons_in(p.ai.for_email(mid)[0].get("context_instructions"))


async def _email(p: Pipeline, sender: str, n: int) -> str:
    return await p.new_email(from_address=sender, subject=f"Question {n}", body_text=f"Question {n}?")


async def _approve(p: Pipeline, mid: str, answer: str = "1") -> None:
    await p.reply_sms(answer)
    await p.reaches(mid, "reply_sent")


async def test_a_simulated_person_edits_less_as_it_learns_and_a_one_off_stays_with_its_email(
        pipeline: Pipeline) -> None:
    p = pipeline
    senders = list(PREFERENCES)
    edited: list[bool] = []
    mids: list[str] = []
    for n in range(EMAILS):  # one email at a time, answered as it comes
        sender = senders[n % len(senders)]
        wants = [PREFERENCES[sender]] + ([ONE_OFF] if n == ONE_OFF_AT else [])
        mid = await _email(p, sender, n)
        mids.append(mid)
        sms = await _draft_on_phone(p, mid, 0)
        missing = [want for want in wants if want.lower() not in sms.lower()]
        for iteration, want in enumerate(missing, start=1):  # the person edits what the draft lacks
            await p.reply_sms(f"2 {want}")
            sms = await _draft_on_phone(p, mid, iteration)
            assert want.lower() in sms.lower(), sms  # the stand-in generator did as asked
        edited.append(bool(missing))
        await _approve(p, mid)

    curve = [sum(edited[i:i + WINDOW]) / WINDOW for i in range(0, EMAILS, WINDOW)]
    print("\nedit rate per window of 5 emails:", " ".join(f"{rate:.1f}" for rate in curve))
    print("edited:", "".join("E" if e else "." for e in edited))
    assert edited[:3] == [True, True, True]  # each sender's first email: 1.0
    last = edited[EMAILS // 2:]
    assert sum(last) / len(last) <= 0.2, edited
    assert curve[0] == 1.0 and curve[-1] <= 0.2

    # The one-off reached only its own email's requests; each sender's
    # lesson only that sender's first drafts.
    one_off_mid = mids[ONE_OFF_AT]
    assert any(ONE_OFF in (r.get("context_instructions") or "") for r in p.ai.for_email(one_off_mid))
    for request in p.ai.requests:
        if request["email_message_id"] != one_off_mid:
            assert "tuesday" not in (request.get("context_instructions") or "").lower(), request
    for n, mid in enumerate(mids):
        carried = await _lessons_sent(p, mid)
        assert carried in ([], [PREFERENCES[senders[n % 3]]]), (n, carried)
    lessons = await p.query("SELECT scope, key, text, times_applied, times_edited_after FROM lessons ORDER BY key")
    assert [(r["scope"], r["key"], r["text"]) for r in lessons] == [
        ("sender", "ann@acme.example", "sign as Jack"), ("sender", "bob@acme.example", "be more casual"),
        ("sender", "cat@three.example", "mention the office hours")]
    assert [r["times_applied"] for r in lessons] == [8, 8, 8]  # every email after the second
    assert [r["times_edited_after"] for r in lessons] == [0, 1, 0]  # Bob's: the one-off
    last_sms = [t for t in p.sms.messages if "1=Send" in t][-1]
    assert "\nDraft (1 lesson): " in last_sms


async def test_forget_by_sms_and_the_dashboard_switch_stop_a_lesson_being_sent(pipeline: Pipeline) -> None:
    p = pipeline
    ann, bob = "Ann One <ann@acme.example>", "Bob Two <bob@two.example>"
    first = await _email(p, ann, 1)
    await _draft_on_phone(p, first, 0)
    await p.reply_sms("remember sign as Jack")
    await eventually(lambda: _said(p, "Remembered for Ann One: sign as Jack."), 20, "the remember answer")
    await _approve(p, first)

    second = await _email(p, ann, 2)
    sms = await _draft_on_phone(p, second, 0)
    assert await _lessons_sent(p, second) == ["sign as Jack"] and "Draft (1 lesson): " in sms
    assert "(lessons: sign as Jack)" in sms  # the stand-in applied it
    await p.reply_sms("forget")
    await eventually(lambda: _said(p, "Forgot: sign as Jack. They will not be used again."), 20, "forget's answer")
    await _approve(p, second)
    third = await _email(p, ann, 3)
    sms = await _draft_on_phone(p, third, 0)
    assert await _lessons_sent(p, third) == [] and "Draft: " in sms  # forgotten: not sent

    await p.reply_sms("remember all be brief")
    await eventually(lambda: _said(p, "Remembered for every sender: be brief."), 20, "remember all's answer")
    await _approve(p, third)
    fourth = await _email(p, bob, 4)
    await _draft_on_phone(p, fourth, 0)
    assert await _lessons_sent(p, fourth) == ["be brief"]
    await _approve(p, fourth)
    [row] = await p.query("SELECT id FROM lessons WHERE scope = 'everyone'")
    b = Browser(p.base_url)
    try:
        await b.open("/lessons")
        body = await b.wait_for_text("For everyone")
        assert "For one sender" in body and "(off)" in body  # Ann's, forgotten
        texts = [field.get_attribute("value") for field in await b.find_all("input[name=text]")]
        assert texts == ["sign as Jack", "be brief"]
        applied = await b.find(f"#lesson-{row['id']} .applied")
        assert applied.text == "1"
        await b.shot("dashboard-lessons")
        await b.click(f"#lesson-{row['id']} .switch")
        await b.wait_for_text("Lesson switched off: new drafts no longer carry it.", 20)
        await b.type_and_send(f"#lesson-{row['id']} input[name=text]", "be brief and warm",
                              f"#lesson-{row['id']} .edit")
        await b.wait_for_text("Lesson changed.", 20)
        [ann_lesson] = await p.query("SELECT id FROM lessons WHERE scope = 'sender'")
        await b.click(f"#lesson-{ann_lesson['id']} .delete")
        await b.wait_for_text("Lesson deleted.", 20)
        assert [f.get_attribute("value") for f in await b.find_all("input[name=text]")] == ["be brief and warm"]
    finally:
        b.close()
    fifth = await _email(p, bob, 5)
    await _draft_on_phone(p, fifth, 0)
    assert await _lessons_sent(p, fifth) == []  # switched off on the page: not sent
    assert await p.query("SELECT scope, text, enabled FROM lessons") == [
        {"scope": "everyone", "text": "be brief and warm", "enabled": False}]


async def _said(p: Pipeline, text: str) -> Any:
    return any(text in message for message in p.sms.messages)
