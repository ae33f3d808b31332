"""The dashboard's answers without a server (streams/web/actions.py): what a
posted form stands for, when it is refused, the message queued for the
command stage, and the forms a workflow's page shows. Over the real worker
and browser: tests/e2e/test_dashboard_actions.py."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from handlers.messages import REPLY_TEXT_LIMIT, InboundSms
from handlers.workflow import DECIDABLE_STATES, WorkflowState
from streams.storage.records import Workflow
from streams.web import dashboard
from streams.web.actions import (
    INSTRUCTIONS_LIMIT,
    Answer,
    Refused,
    check_decidable,
    inbound,
    note,
    read_answer,
    seen_iteration,
    workflow_url,
)
from streams.web.dashboard import workflow_view
from streams.web.pages import render

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
HOSTILE = "<script>alert(1)</script>"


def workflow(state: WorkflowState = WorkflowState.AWAITING_USER, iteration: int = 1,
             draft: str | None = "Hi Ann,\nThursday works.") -> Workflow:
    return Workflow('<a"b/c@x>', state, None, "Lunch?", "Ann <ann@example.com>", None, None, NOW, draft, NOW,
                    None, NOW, None, None, None, None, iteration, draft_code="K7")


def refusal(action: str, form: dict[str, str]) -> Refused:
    with pytest.raises(Refused) as caught:
        read_answer(action, form)
    assert caught.value.status == 400
    return caught.value


def test_each_button_stands_for_the_sms_the_phone_would_send() -> None:
    assert read_answer("send", {}) == Answer("1")
    assert read_answer("ignore", {}) == Answer("3")
    assert read_answer("edit", {"instructions": "  make it shorter \n"}) == Answer("2 make it shorter")
    typed = "Hi Ann,\r\n\r\nYes  -- see you there. \r\n"
    assert read_answer("write", {"reply_text": typed}) == Answer("1", reply_text="Hi Ann,\n\nYes  -- see you there. \n")


def test_an_answer_without_its_text_is_refused_with_the_reason() -> None:
    assert "instructions are empty" in refusal("edit", {"instructions": " \n "}).reason
    assert "instructions are empty" in refusal("edit", {}).reason
    assert "longer than" in refusal("edit", {"instructions": "x" * (INSTRUCTIONS_LIMIT + 1)}).reason
    assert read_answer("edit", {"instructions": "x" * INSTRUCTIONS_LIMIT}).text == "2 " + "x" * INSTRUCTIONS_LIMIT
    assert "empty" in refusal("write", {"reply_text": "\r\n  "}).reason
    assert "longer than 20000" in refusal("write", {"reply_text": "x" * (REPLY_TEXT_LIMIT + 1)}).reason
    assert read_answer("write", {"reply_text": "x" * REPLY_TEXT_LIMIT}).reply_text == "x" * REPLY_TEXT_LIMIT
    assert "NUL" in refusal("write", {"reply_text": "a\x00b"}).reason
    assert "cannot be sent" in refusal("edit", {"instructions": "a\udc80b"}).reason
    with pytest.raises(web.HTTPNotFound):
        read_answer("approve", {})


def test_the_form_names_the_draft_it_showed() -> None:
    assert seen_iteration({"seen_iteration": "0"}) == 0 and seen_iteration({"seen_iteration": "12"}) == 12
    for bad in ({}, {"seen_iteration": ""}, {"seen_iteration": "-1"}, {"seen_iteration": "1.0"},
                {"seen_iteration": "١"}, {"seen_iteration": "9" * 10}):
        with pytest.raises(Refused) as caught:
            seen_iteration(bad)
        assert caught.value.status == 400


def test_only_a_decidable_draft_the_page_showed_is_answered() -> None:
    for state in DECIDABLE_STATES:
        check_decidable(workflow(state), 1, "send", max_edits=10)
    for state in set(WorkflowState) - DECIDABLE_STATES:
        with pytest.raises(Refused) as caught:
            check_decidable(workflow(state), 1, "send", max_edits=10)
        assert caught.value.status == 409 and state.value in caught.value.reason
    with pytest.raises(Refused) as changed:
        check_decidable(workflow(iteration=2), 1, "ignore", max_edits=10)
    assert changed.value.status == 409 and "changed since" in changed.value.reason
    with pytest.raises(Refused) as no_draft:
        check_decidable(workflow(draft=None), 1, "send", max_edits=10)
    assert no_draft.value.status == 409
    with pytest.raises(Refused) as limit:
        check_decidable(workflow(iteration=3), 3, "edit", max_edits=3)
    assert limit.value.status == 409 and "MAX_EDIT_ITERATIONS" in limit.value.reason
    check_decidable(workflow(iteration=3), 3, "write", max_edits=3)  # by hand: no new draft is asked for


def test_the_queued_message_names_its_draft_and_its_source() -> None:
    wf = workflow(iteration=2)
    sms = inbound(Answer("1", reply_text="Yes."), wf, "+15551234567", 2, NOW)
    assert sms.sms_id.startswith("dashboard:") and len(sms.sms_id) == len("dashboard:") + 32
    assert (sms.phone_number, sms.text, sms.received_at, sms.source) == ("+15551234567", "1", NOW, "dashboard")
    assert (sms.message_id, sms.seen_iteration, sms.reply_text) == (wf.message_id, 2, "Yes.")
    assert sms.record_key == "+15551234567"  # in order with the person's SMS
    assert InboundSms.model_validate_json(sms.to_json()) == sms
    assert inbound(Answer("3"), wf, "+1", 2, NOW).sms_id != inbound(Answer("3"), wf, "+1", 2, NOW).sms_id


def test_the_way_back_is_ascii_whatever_the_message_id_holds() -> None:
    url = workflow_url('<é\r\n"x/y@z>', "send")
    assert url.isascii() and "\r" not in url and url.endswith("?queued=send")
    assert url.startswith("/workflows/%3C%C3%A9%0D%0A%22x%2Fy%40z%3E")


def page(wf: Workflow, **view: str) -> str:
    app = web.Application()
    dashboard.attach(app, "token-1")
    response = render(make_mocked_request("GET", "/workflows/x", app=app), "workflow.html", "t",
                      **workflow_view(wf, None, [], **view))
    return response.text or ""


def test_a_decidable_page_offers_the_four_answers_on_the_draft_it_shows() -> None:
    shown = page(dataclasses.replace(workflow(iteration=4), ai_reply_text=f"\nHi {HOSTILE}"))
    for action in ("send", "ignore", "edit", "write"):
        assert f'action="/actions/{action}"' in shown
    # Five forms carry the CSRF token: the four answers and "Mark this sender VIP".
    assert shown.count('name="seen_iteration" value="4"') == 4 and shown.count('name="csrf" value="') == 5
    assert shown.count('name="message_id" value="&lt;a&#34;b/c@x&gt;"') == 4
    # The textarea holds the draft as text; its first line break survives the parser's dropping one.
    assert 'name="reply_text" rows="10" cols="80" maxlength="20000" required>\n\nHi &lt;script&gt;' in shown
    assert "<script>alert" not in shown and "K7" in shown
    for state in set(WorkflowState) - DECIDABLE_STATES:
        assert "/actions/send" not in page(workflow(state))


def test_the_page_says_what_became_of_an_answer() -> None:
    shown = page(workflow(), note="Sent to the orchestrator: send this draft.", problem=HOSTILE)
    assert 'id="note">Sent to the orchestrator: send this draft.' in shown
    assert "Not done: &lt;script&gt;" in shown


def test_the_note_after_an_answer_is_fixed_words_pending_until_the_draft_moves_on() -> None:
    assert note("send", pending=True).startswith("Sent to the orchestrator: send this draft. It shows in the")
    assert note("write", pending=False).endswith("The timeline shows what became of it.")
    assert note("<script>", pending=True) == note("", pending=False) == ""
