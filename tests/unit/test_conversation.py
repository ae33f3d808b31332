"""The conversation on the phone with codes, driven through the stages on the
in-memory repository: what each answer does, and what it must not do."""

from __future__ import annotations

from handlers.messages import InboundSms
from handlers.workflow import WorkflowState

from tests.unit.test_stages import PHONE, World

S = WorkflowState


async def two_on_the_phone(w: World) -> tuple[str, str]:
    """Two drafts texted (PHONE_MODE=each); returns their codes."""
    await w.repo.start("<a@x>", from_address="Ann <ann@x>")
    await w.repo.start("<b@x>", from_address="Bob <bob@x>")
    await w.draft("<a@x>")
    await w.draft("<b@x>")
    await w.stages.notify()
    a, b = w.repo.data.workflows["<a@x>"], w.repo.data.workflows["<b@x>"]
    assert a.current_state is S.AWAITING_USER and b.current_state is S.AWAITING_USER
    assert a.draft_code and b.draft_code
    return a.draft_code, b.draft_code


async def test_an_answer_between_all_3_and_yes_cancels_the_question_and_the_yes_acts_on_nothing() -> None:
    w = World(phone_mode="each")
    await two_on_the_phone(w)
    await w.answer("all 3")
    assert w.sms.texts[-1] == "Ignore all 2 drafts on your phone? Reply yes within a minute to confirm."
    await w.answer("list")
    await w.answer("yes")  # meant for the question: it must not send the latest draft instead
    assert (w.state("<a@x>"), w.state("<b@x>")) == (S.AWAITING_USER, S.AWAITING_USER)
    assert w.sms.texts[-1].startswith("That yes came too late for all 3")
    await w.answer("yes")  # the question was answered: a yes now is a plain yes again
    assert w.state("<b@x>") is S.USER_APPROVED


async def test_a_yes_after_the_minute_ignores_nothing_and_sends_nothing() -> None:
    from datetime import timedelta

    w = World(phone_mode="each")
    await two_on_the_phone(w)
    await w.answer("all 3")
    w.clock.advance(timedelta(seconds=61))
    await w.answer("yes")
    assert (w.state("<a@x>"), w.state("<b@x>")) == (S.AWAITING_USER, S.AWAITING_USER)
    assert w.sms.texts[-1].startswith("That yes came too late for all 3")


async def test_a_no_to_all_3_ignores_nothing() -> None:
    w = World(phone_mode="each")
    await two_on_the_phone(w)
    await w.answer("all 3")
    await w.answer("no")  # "no" alone would ignore the latest draft: here it answers the question
    assert (w.state("<a@x>"), w.state("<b@x>")) == (S.AWAITING_USER, S.AWAITING_USER)
    assert w.sms.texts[-1] == "Not ignored: nothing changed."


async def test_all_3_ignores_only_the_drafts_texted_to_the_phone() -> None:
    w = World()  # one at a time: a is texted, b waits unread
    await w.repo.start("<a@x>", from_address="Ann <ann@x>")
    await w.repo.start("<b@x>", from_address="Bob <bob@x>")
    await w.draft("<a@x>")
    await w.draft("<b@x>")
    await w.stages.notify()
    await w.answer("all 3")
    assert w.sms.texts[-1] == "Ignore all 1 draft on your phone? Reply yes within a minute to confirm."
    await w.answer("yes")
    assert w.state("<a@x>") is S.USER_IGNORED
    assert w.state("<b@x>") is not S.USER_IGNORED  # never seen: not ignored, and texted next
    assert w.sms.texts[-1] == "Ignored 1 email. Next: Bob."


async def test_a_bare_answer_is_not_guessed_when_the_latest_draft_is_decided_and_others_wait() -> None:
    w = World(phone_mode="each")
    code_a, code_b = await two_on_the_phone(w)
    await w.answer(f"{code_b} 3")  # the latest, by its code
    await w.answer("1")
    assert w.state("<a@x>") is S.AWAITING_USER  # not sent on a guess
    assert w.sms.texts[-1].startswith(f"Which draft? Put its code first, e.g. {code_a} 1")
    await w.answer(f"{code_a} 1")
    assert w.state("<a@x>") is S.USER_APPROVED


async def test_a_code_alone_texts_its_draft_again_and_makes_it_the_one_a_bare_answer_means() -> None:
    w = World(phone_mode="each")
    code_a, _ = await two_on_the_phone(w)
    await w.answer(code_a)
    again = w.sms.texts[-1]
    assert again.startswith("Ann:") and f"\n{code_a}: 1=Send 2=Edit 3=Ignore" in again
    await w.answer("3")
    assert w.state("<a@x>") is S.USER_IGNORED and w.state("<b@x>") is S.AWAITING_USER


async def test_the_dashboard_names_its_draft_and_is_refused_when_it_changed() -> None:
    w = World()
    await w.presented("<a@x>", from_address="Ann <ann@x>")
    await w.stages.command(InboundSms(sms_id="dashboard:1", phone_number=PHONE, text="1", source="dashboard",
                                      message_id="<a@x>", seen_iteration=3))  # the page showed another version
    assert w.state("<a@x>") is S.AWAITING_USER
    await w.stages.command(InboundSms(sms_id="dashboard:2", phone_number=PHONE, text="3", source="dashboard",
                                      message_id="<a@x>", seen_iteration=0))
    assert w.state("<a@x>") is S.USER_IGNORED
    code = w.repo.data.audit[-1]
    assert code[1].transition_reason == "ignored from the dashboard"
    assert " ignored from the dashboard: the email from Ann." in w.sms.texts[-1]


async def test_a_decision_says_which_drafts_are_still_on_the_phone_to_answer() -> None:
    w = World(phone_mode="each")
    _, code_b = await two_on_the_phone(w)
    await w.answer(f"{code_b} 3")
    assert w.sms.texts[-1] == "Ignored the email from Bob. 1 other draft on your phone to answer (list shows them)."


async def test_each_mode_does_not_guess_a_bare_answer_written_as_the_next_draft_arrived() -> None:
    from datetime import timedelta

    w = World(phone_mode="each")
    await two_on_the_phone(w)  # b was texted last, a moment ago
    written = w.clock.now() - timedelta(seconds=2)  # while reading a, as b was on its way
    await w.stages.command(InboundSms(sms_id="r1", phone_number=PHONE, text="1", received_at=written))
    assert (w.state("<a@x>"), w.state("<b@x>")) == (S.AWAITING_USER, S.AWAITING_USER)
    assert w.sms.texts[-1].startswith("Which draft?")
    w.clock.advance(timedelta(minutes=1))
    await w.stages.command(InboundSms(sms_id="r2", phone_number=PHONE, text="1", received_at=w.clock.now()))
    assert w.state("<b@x>") is S.USER_APPROVED  # well after b arrived: b, as always


async def test_remember_written_before_the_latest_draft_was_texted_teaches_nothing() -> None:
    from datetime import timedelta

    w = World(phone_mode="each")
    await two_on_the_phone(w)
    written = w.clock.now() - timedelta(minutes=1)  # for a, before b (the latest) was texted
    await w.stages.command(InboundSms(sms_id="r1", phone_number=PHONE, text="remember always cc Carol",
                                      received_at=written))
    assert "was written before the draft reply to Bob was texted" in w.sms.texts[-1]
    async with w.repo.transaction() as tx:
        assert await tx.lessons_for("bob@x", "x") == []


async def test_a_bare_answer_while_the_latest_draft_is_redrafted_names_the_others_that_wait() -> None:
    w = World(phone_mode="each")
    code_a, code_b = await two_on_the_phone(w)
    await w.answer(f"{code_b} 2 make it shorter")  # b, the latest, is being redrafted
    await w.answer("1")
    assert w.state("<a@x>") is S.AWAITING_USER
    assert w.sms.texts[-1].startswith(f"Which draft? Put its code first, e.g. {code_a} 1")


async def test_a_retried_workflow_gets_a_code_again() -> None:
    w = World()
    await w.repo.start("<a@x>")
    async with w.repo.transaction() as tx:
        assert await tx.transition("<a@x>", S.PENDING, S.FAILED, "test")
    assert w.repo.data.workflows["<a@x>"].draft_code is None  # a decision gave it up
    await w.stages.retry("<a@x>", "retried from the dashboard")
    assert w.repo.data.workflows["<a@x>"].draft_code is not None
