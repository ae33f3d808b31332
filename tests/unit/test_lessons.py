"""Lessons (docs/design.md, "It learns from you"): the pure rules of
handlers/lessons.py, then the stages on the in-memory repository: evidence
from edits and replies written by hand, a lesson once repeated, the first
draft carrying it, ``remember`` and ``forget``."""

from __future__ import annotations

from handlers.lessons import (
    LESSON_CHARS,
    LESSONS_HEADING,
    Evidence,
    Learnt,
    Lesson,
    Scope,
    Thresholds,
    applicable,
    closing_of,
    evidence,
    hand_instruction,
    known_lesson,
    learnt_from,
    lessons_block,
    lessons_in,
    normalise,
    render_forgot_sms,
    same_instruction,
    sender_and_domain,
)
from handlers.messages import InboundSms
from handlers.workflow import WorkflowState
from standins.peers import default_draft

from tests.unit.test_stages import PHONE, World

S = WorkflowState
T = Thresholds()


def ev(mid: str, sender: str, text: str) -> Evidence:
    found = evidence(mid, sender, text)
    assert found is not None
    return found


# ------------------------------------------------------------------ the rules


def test_the_same_instruction_is_equal_once_case_blanks_and_punctuation_are_set_aside_or_close() -> None:
    assert normalise("  Sign as JACK!! ") == normalise("sign as jack") == "sign as jack"
    assert normalise("be more casual, please.") == "be more casual please"
    assert same_instruction(normalise("Sign it as Jack"), normalise("sign as Jack"))  # ratio 0.89
    assert same_instruction(normalise("mention the office hours"), normalise("mention our office hours"))
    assert not same_instruction(normalise("sign as Jack"), normalise("sign as Jill Smith"))
    assert not same_instruction(normalise("say yes to Tuesday"), normalise("say no to Tuesday and Friday"))
    assert not same_instruction("", "x") and evidence("<a@x>", "a@x", "!!! ...") is None


#: Instructions that differ only in the detail that matters: never the same one.
DIFFERENT = [("say yes to Tuesday", "say no to Tuesday"),
             ("accept the meeting on tuesday", "accept the meeting on thursday"),
             ("say I can do 3pm", "say I can do 2pm"), ("pay 500", "pay 5000"),
             ("agree to the price of 1200 dollars", "agree to the price of 1500 dollars"),
             ("agree to the price of 1200 dollars", "refuse the price of 1200 dollars"),
             ("Meet on Mon", "meet on Tue"), ("cc Anna on it", "cc Hanna on it"),
             ("be more formal", "be more informal"), ("make it two paragraphs", "make it three paragraphs")]
#: Rewordings of one instruction: still the same.
SAME = [("make it shorter", "make it shorter please"), ("sign as Jack", "sign as jack."),
        ("be more casual", "be a bit more casual"), ("Sign it as Jack", "sign as Jack"),
        ("Please keep it short", "keep it short"), ("mention the office hours", "mention our office hours")]


def test_instructions_that_differ_in_a_detail_that_matters_are_different_ones() -> None:
    """A differing word with a digit, a day or month, a yes or no, a name, a
    number or an opposite makes another instruction; softeners do not."""
    for a, b in DIFFERENT:
        assert not same_instruction(a, b) and not same_instruction(b, a), (a, b)
    for a, b in SAME:
        assert same_instruction(a, b) and same_instruction(b, a), (a, b)


def test_an_instruction_for_one_sender_applies_from_its_second_email() -> None:
    first = ev("<1@x>", "Ann <ann@one.example>", "sign as Jack")
    assert learnt_from(first, [first], T) is None  # once: not a lesson
    again_same_email = ev("<1@x>", "Ann <ann@one.example>", "Sign as Jack.")
    assert learnt_from(again_same_email, [first], T) is None  # one email's evidence, given twice
    second = ev("<2@x>", "Ann <ann@one.example>", "sign it as Jack")
    assert learnt_from(second, [first], T) == Learnt(Scope.SENDER, "ann@one.example", "sign it as Jack")
    assert learnt_from(second, [first], Thresholds(sender=3)) is None  # the setting


def test_a_domain_lesson_needs_two_senders_of_it_and_not_a_public_mail_domain() -> None:
    a = ev("<1@x>", "Ann <ann@acme.example>", "mention the office hours")
    b = ev("<2@x>", "Bob <bob@acme.example>", "mention the office hours")
    assert learnt_from(b, [a], T) == Learnt(Scope.DOMAIN, "acme.example", "mention the office hours")
    assert learnt_from(b, [a], Thresholds(domain=3)) is None
    g1 = ev("<3@x>", "Gil <gil@gmail.com>", "be brief")
    g2 = ev("<4@x>", "Hal <hal@gmail.com>", "be brief")
    assert learnt_from(g2, [g1], T) is None  # gmail.com senders share only the provider


def test_a_habit_of_three_senders_is_for_everyone() -> None:
    given = [ev(f"<{n}@x>", f"P{n} <p{n}@d{n}.example>", "sign as Jack") for n in range(3)]
    assert learnt_from(given[1], given[:2], T) is None
    assert learnt_from(given[2], given, T) == Learnt(Scope.EVERYONE, None, "sign as Jack")


def test_a_one_off_instruction_is_never_generalised() -> None:
    """Given for one email, among many repeated ones, or given again for the
    sender's next email with another detail (another day, amount, answer):
    never a lesson."""
    known = [ev(f"<{n}@x>", "Ann <ann@one.example>", "sign as Jack") for n in range(10)]
    known += [ev(f"<b{n}@x>", f"B{n} <b{n}@b{n}.example>", "be more casual") for n in range(10)]
    one_off = ev("<z@x>", "Ann <ann@one.example>", "say yes to Tuesday")
    assert learnt_from(one_off, [*known, one_off], T) is None
    assert learnt_from(one_off, [*known, one_off], Thresholds(sender=1)) is not None  # only as repeated as asked
    for a, b in DIFFERENT:
        first, second = ev("<y1@x>", "Ann <ann@one.example>", a), ev("<y2@x>", "Ann <ann@one.example>", b)
        assert learnt_from(second, [*known, first, second], T) is None, (a, b)
    again = ev("<y3@x>", "Ann <ann@one.example>", "Say yes to Tuesday.")  # the very same, repeated: learnt
    assert learnt_from(again, [*known, one_off, again], T) == Learnt(Scope.SENDER, "ann@one.example",
                                                                      "Say yes to Tuesday.")


def test_the_lessons_that_apply_most_specific_first_one_of_each() -> None:
    lessons = [Lesson(1, Scope.EVERYONE, None, "sign as Jack"),
               Lesson(2, Scope.SENDER, "ann@one.example", "Sign as Jack!"),
               Lesson(3, Scope.DOMAIN, "one.example", "mention the office hours"),
               Lesson(4, Scope.SENDER, "bob@two.example", "be casual"),
               Lesson(5, Scope.SENDER, "ann@one.example", "no emoji", enabled=False),
               Lesson(6, Scope.DOMAIN, "two.example", "be brief")]
    assert [x.id for x in applicable(lessons, "ann@one.example", "one.example")] == [2, 3]
    assert [x.id for x in applicable(lessons, "bob@two.example", "two.example")] == [4, 6, 1]
    assert [x.id for x in applicable(lessons, "cat@three.example", "three.example")] == [1]
    assert known_lesson(lessons, Learnt(Scope.SENDER, "ann@one.example", "no emoji.")) == lessons[4]  # off counts
    assert known_lesson(lessons, Learnt(Scope.SENDER, "bob@two.example", "no emoji")) is None


def test_the_generator_request_names_its_lessons_and_the_stand_in_shows_them() -> None:
    block = lessons_block(["sign as Jack", "be casual"])
    assert block == f"{LESSONS_HEADING}\n1. sign as Jack\n2. be casual" and lessons_block([]) is None
    assert lessons_in(f"{block}\n\nApply every instruction below, in order:\n1. shorter") == ["sign as Jack",
                                                                                                "be casual"]
    assert lessons_in("Apply every instruction below:\n1. shorter") == [] and lessons_in(None) == []
    assert default_draft({"context_instructions": block}, 3).endswith("(draft 3) (lessons: sign as Jack; be casual)")
    edit = default_draft({"context_instructions": f"{block}\n\nApply every instruction:\n1. say yes"}, 4)
    assert edit == "Revised draft 4 (1. say yes) (lessons: sign as Jack; be casual)"
    assert default_draft({}, 1) == "Thanks for your email. Yes, that works for me. (draft 1)"


def test_the_lessons_page_is_behind_the_dashboard_sign_in() -> None:
    from streams.web.guard import is_page
    from streams.web.lessons import ROUTES

    assert all(is_page(route.path) for route in ROUTES)


def test_a_reply_written_by_hand_teaches_its_sign_off() -> None:
    assert closing_of("Hi Ann,\nSure.\n\nBest,\nJack") == "Best, Jack"
    assert hand_instruction("Hi Ann,\nSure, Tuesday works.\nJack") == 'end the reply with "Jack"'
    assert hand_instruction("Sure, Tuesday works.") is None  # one line: no sign-off to tell
    assert sender_and_domain("Ann Lee <Ann@One.Example>") == ("ann@one.example", "one.example")
    assert render_forgot_sms(["sign as Jack", "be casual"]) == (
        "Forgot: sign as Jack; be casual. They will not be used again.")


# ------------------------------------------------------------------ the stages


async def cycle(w: World, mid: str, sender: str, *answers: str) -> str:
    """An email from ``sender`` drafted and texted; each answer given (an edit
    is regenerated and texted again); returns the first draft SMS."""
    await w.presented(mid, from_address=sender)
    first = w.sms.texts[-1]
    for text in answers:
        await w.answer(text)
        if w.state(mid) is S.USER_EDIT_REQUESTED:
            await w.draft(mid)
            await w.stages.notify()
        elif w.state(mid) is S.USER_APPROVED:
            await w.stages.send(mid)
    return first


async def test_a_lesson_learnt_from_two_edits_is_carried_by_the_next_first_draft_and_forget_stops_it() -> None:
    w = World()
    ann, bob = "Ann <ann@one.example>", "Bob <bob@two.example>"
    await cycle(w, "<1@x>", ann, "2 sign as Jack", "1")
    await cycle(w, "<2@x>", bob, "2 say yes to Tuesday", "1")  # a one-off
    assert w.repo.data.lessons == {}
    await cycle(w, "<3@x>", ann, "2 Sign as Jack.", "1")
    [lesson] = w.repo.data.lessons.values()
    assert (lesson.scope, lesson.key, lesson.source) == (Scope.SENDER, "ann@one.example", "learnt")

    sms = await cycle(w, "<4@x>", ann)
    request = w.ai.calls[-1]["context_instructions"]
    assert request == f"{LESSONS_HEADING}\n1. Sign as Jack."
    assert "\nDraft (1 lesson): " in sms
    assert w.repo.data.workflows["<4@x>"].lesson_ids == [lesson.id]
    assert w.repo.data.lessons[lesson.id].times_applied == 1
    await w.answer("2 shorter")  # still edited: counted against the lesson, and the edit keeps it
    await w.draft("<4@x>")
    assert lessons_in(w.ai.calls[-1]["context_instructions"]) == ["Sign as Jack."]
    assert w.repo.data.lessons[lesson.id].times_edited_after == 1
    await w.stages.notify()
    await w.answer("forget")
    assert w.sms.texts[-1] == "Forgot: Sign as Jack. They will not be used again."
    assert not w.repo.data.lessons[lesson.id].enabled
    await w.answer("1")
    await w.stages.send("<4@x>")
    await cycle(w, "<5@x>", ann)
    assert w.ai.calls[-1]["context_instructions"] is None  # off: not sent
    await cycle(w, "<6@x>", bob)
    assert all("Tuesday" not in (c["context_instructions"] or "") for c in w.ai.calls
               if c["email_message_id"] != "<2@x>")  # the one-off never left its email
    await w.answer("forget")
    assert w.sms.texts[-1] == "No lessons were behind that draft: nothing to forget."


async def test_remember_makes_a_lesson_at_once_for_the_sender_or_everyone() -> None:
    w = World()
    await cycle(w, "<1@x>", "Ann <ann@one.example>", "remember sign as Jack")
    assert w.sms.texts[-1].startswith("Remembered for Ann: sign as Jack.")
    await w.answer("remember all no emoji")
    assert w.sms.texts[-1].startswith("Remembered for every sender: no emoji.")
    await w.answer("remember  Sign as Jack!")  # the same: kept once, its words as given last
    assert sorted((x.scope, x.key, x.text, x.source) for x in w.repo.data.lessons.values()) == [
        (Scope.EVERYONE, None, "no emoji", "remembered"),
        (Scope.SENDER, "ann@one.example", "Sign as Jack!", "remembered")]
    await w.answer("1")
    await w.stages.send("<1@x>")
    await w.answer("remember be brief")  # no draft on the phone: no sender to take
    assert w.sms.texts[-1].startswith("No draft to take the sender from.")
    await cycle(w, "<2@x>", "Ann <ann@one.example>")
    assert lessons_in(w.ai.calls[-1]["context_instructions"]) == ["Sign as Jack!", "no emoji"]
    await cycle(w, "<3@x>", "Bob <bob@two.example>")  # not Ann's: everyone's only
    assert lessons_in(w.ai.calls[-1]["context_instructions"]) == ["no emoji"]


async def test_replies_written_by_hand_are_evidence_and_teach_their_sign_off() -> None:
    w = World()
    for n in (1, 2):
        await w.presented(f"<{n}@x>", from_address="Ann <ann@one.example>")
        await w.stages.command(InboundSms(sms_id=f"dashboard:{n}", phone_number=PHONE, text="1",
                                          source="dashboard", message_id=f"<{n}@x>", seen_iteration=0,
                                          reply_text=f"Hi Ann,\nSure, {n}.\n\nCheers,\nJack"))
        assert w.state(f"<{n}@x>") is S.USER_APPROVED
    assert [(e.text, kind) for e, kind in w.repo.data.evidence] == [('end the reply with "Cheers, Jack"', "hand")] * 2
    [lesson] = w.repo.data.lessons.values()
    assert (lesson.scope, lesson.key) == (Scope.SENDER, "ann@one.example")


async def test_one_offs_with_another_detail_on_two_emails_teach_nothing() -> None:
    """``say yes to Tuesday`` then ``say no to Tuesday`` for Ann's next email:
    two one-offs, not a lesson; her third email's draft carries none."""
    w = World()
    ann = "Ann <ann@one.example>"
    await cycle(w, "<1@x>", ann, "2 say yes to Tuesday", "1")
    await cycle(w, "<2@x>", ann, "2 say no to Tuesday", "1")
    assert len(w.repo.data.evidence) == 2 and w.repo.data.lessons == {}
    sms = await cycle(w, "<3@x>", ann)
    assert w.ai.calls[-1]["context_instructions"] is None
    assert w.repo.data.workflows["<3@x>"].lesson_ids in (None, []) and "lesson" not in sms


async def test_remember_keeps_at_most_the_lesson_length_and_says_so() -> None:
    w = World()
    await cycle(w, "<1@x>", "Ann <ann@one.example>", "remember " + "keep   it\tshort " * 290)  # 4,930 characters
    [lesson] = w.repo.data.lessons.values()
    assert len(lesson.text) <= LESSON_CHARS and lesson.text.startswith("keep it short keep it short")
    assert "  " not in lesson.text and "\t" not in lesson.text
    sms = w.sms.texts[-1]
    assert sms.startswith("Remembered for Ann: keep it short") and len(sms) <= 320
    assert sms.endswith(f"(kept the first {LESSON_CHARS} characters). Used from the next email on; "
                        "reply forget on a draft to undo.")
    await w.answer("remember all be brief")  # short: kept whole, nothing said about it
    assert "kept the first" not in w.sms.texts[-1]
    await w.answer("1")
    await w.stages.send("<1@x>")
    await cycle(w, "<2@x>", "Ann <ann@one.example>")
    assert len(w.ai.calls[-1]["context_instructions"]) < LESSON_CHARS + 200  # not 4,900 in every request
