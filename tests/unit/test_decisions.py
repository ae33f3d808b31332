"""What a command does (pure): the whole effect, so the command stage is one path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from handlers.commands import parse_command
from handlers.decisions import Answer, CommandEffect, DraftOnPhone, decide_command
from handlers.messages import EditRequested, ReplyApproved
from handlers.sms_text import HELP_SMS, NOTHING_WAITING_SMS
from handlers.workflow import WorkflowState

S = WorkflowState
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ON_PHONE = DraftOnPhone("<a@x>", S.AWAITING_USER, edit_iteration=1)


def decide(text: str, on_phone: DraftOnPhone | None = ON_PHONE, max_edits: int = 10) -> CommandEffect:
    return decide_command(parse_command(text), text, on_phone, max_edits, NOW)


def test_approve_moves_to_approved_and_sets_sending_going() -> None:
    effect = decide(" Yes. ")
    assert effect.target is S.USER_APPROVED
    assert effect.fields == {"user_command": "Yes.", "user_responded_at": NOW}
    assert effect.follow_up == ReplyApproved(message_id="<a@x>")
    assert effect.reply_sms is None


def test_edit_counts_the_iteration_and_carries_the_instructions() -> None:
    effect = decide("2 Decline, Politely")
    assert effect.target is S.USER_EDIT_REQUESTED
    assert effect.fields["edit_iteration"] == 2
    assert effect.follow_up == EditRequested(message_id="<a@x>", instructions="Decline, Politely", iteration=2)


def test_ignore_asks_the_caller_to_say_what_is_next() -> None:
    effect = decide("skip")
    assert effect.target is S.USER_IGNORED and effect.tell_what_is_next
    assert effect.follow_up is None


def test_what_changes_nothing() -> None:
    assert decide("what?").reply_sms == HELP_SMS
    assert decide("what?", on_phone=None).outcome == "help"
    for on_phone in (None, DraftOnPhone("<a@x>", S.AI_GENERATING, 1)):
        effect = decide("1", on_phone=on_phone)
        assert (effect.outcome, effect.target, effect.reply_sms) == (
            "nothing_waiting", None, NOTHING_WAITING_SMS)
    limited = decide("2 again", max_edits=1)
    assert (limited.outcome, limited.target) == ("edit_limit", None)
    assert decide("1", DraftOnPhone("<a@x>", S.AWAITING_USER, 5), max_edits=1).target is S.USER_APPROVED


PRESENTED = DraftOnPhone("<b@x>", S.AWAITING_USER, 0, presented_at=NOW, sender="Bob")
SKEW = timedelta(seconds=5)


def answered(text: str, written_at: datetime | None, on_phone: DraftOnPhone = PRESENTED) -> CommandEffect:
    return decide_command(parse_command(text), text, on_phone, 10, NOW + timedelta(minutes=1),
                          written_at=written_at, clock_skew=SKEW)


def test_an_answer_written_before_the_draft_was_texted_is_not_applied() -> None:
    for text in ("1", "3", "2 shorter"):
        effect = answered(text, NOW - timedelta(minutes=10))
        assert (effect.outcome, effect.target, effect.follow_up, effect.fields) == ("late", None, None, {})
    assert answered(" 1 ", NOW - timedelta(seconds=6)).reply_sms == (
        "Your answer '1' was written before the draft reply to Bob was texted, so it was not applied. "
        "Answer again: 1=Send 2=Edit 3=Ignore")
    assert answered("what?", NOW - timedelta(hours=1)).outcome == "help"  # nothing to apply anyway


def test_an_answer_within_the_clock_skew_or_without_a_time_is_applied() -> None:
    for written_at in (NOW - SKEW, NOW, NOW + timedelta(seconds=30), None,
                       (NOW - timedelta(hours=1)).replace(tzinfo=None),  # no offset: says nothing
                       datetime.max.replace(tzinfo=UTC), datetime.min.replace(tzinfo=UTC)):
        effect = answered("1", written_at)
        expected = "late" if written_at == datetime.min.replace(tzinfo=UTC) else "approved"
        assert effect.outcome == expected, written_at
    unknown = DraftOnPhone("<b@x>", S.AWAITING_USER, 0)  # presented before presented_at was kept
    assert answered("1", NOW - timedelta(days=1), unknown).outcome == "approved"


# ------------------------------------------------------------ named drafts


def test_a_code_for_a_draft_not_yet_texted_is_not_applied() -> None:
    waiting = DraftOnPhone("<b@x>", S.AI_GENERATED, edit_iteration=0, code="M3")
    effect = decide_command(parse_command("M3 1"), "M3 1", waiting, 10, NOW, answer=Answer(named=True))
    assert effect.outcome == "not_texted" and effect.target is None
    assert effect.reply_sms == "M3 has not been texted to you yet. Reply M3 to read it, then answer."
    # A bare answer never meant a draft that was not texted.
    assert decide("1", on_phone=waiting).outcome == "nothing_waiting"


def test_a_code_answer_written_before_its_draft_was_texted_is_late() -> None:
    on_phone = DraftOnPhone("<a@x>", S.AWAITING_USER, 0, presented_at=NOW, sender="Ann", code="K7")
    early = Answer(written_at=NOW - timedelta(minutes=1), named=True)
    assert decide_command(parse_command("K7 1"), "K7 1", on_phone, 10, NOW, answer=early).outcome == "late"
    fine = Answer(written_at=NOW + timedelta(seconds=1), named=True)
    assert decide_command(parse_command("K7 1"), "K7 1", on_phone, 10, NOW, answer=fine).outcome == "approved"


def test_the_dashboard_may_act_on_a_draft_not_yet_texted_and_says_so_in_the_audit() -> None:
    waiting = DraftOnPhone("<b@x>", S.AI_GENERATED, edit_iteration=0, code="M3")
    effect = decide_command(parse_command("3"), "3", waiting, 10, NOW,
                            answer=Answer(source="dashboard", seen_iteration=0))
    assert effect.target is S.USER_IGNORED and effect.reason == "ignored from the dashboard"
    assert effect.fields["user_command"] == "dashboard: 3"


def test_a_dashboard_action_on_a_draft_that_changed_since_the_page_showed_it_is_not_applied() -> None:
    effect = decide_command(parse_command("1"), "1", ON_PHONE, 10, NOW,
                            answer=Answer(source="dashboard", seen_iteration=0))  # the page showed iteration 0
    assert effect.outcome == "changed" and effect.target is None and effect.reply_sms is None


def test_a_reply_written_by_hand_is_approved_as_typed_and_kept_in_the_history() -> None:
    history = ({"instructions": "shorter", "draft": "Short."},)
    on_phone = DraftOnPhone("<a@x>", S.AWAITING_USER, 1, edit_history=history)
    typed = "Dear Ann,\n\nYes - Tuesday works.\n\nJack"
    effect = decide_command(parse_command("1"), "1", on_phone, 10, NOW,
                            answer=Answer(source="dashboard", seen_iteration=1, reply_text=typed))
    assert effect.target is S.USER_APPROVED and effect.fields["ai_reply_text"] == typed
    assert effect.reason == "written by hand and approved from the dashboard"
    assert effect.fields["edit_history"][0] == {"instructions": "shorter", "draft": "Short."}
    assert effect.fields["edit_history"][1]["draft"] == typed and effect.fields["edit_history"][1]["by"] == "hand"
    assert effect.follow_up == ReplyApproved(message_id="<a@x>")


def test_a_time_is_read_as_of_when_the_sms_was_written() -> None:
    """`1 at 9:00` written at 08:59:50 and acted on at 09:00:05 means today's
    9:00 (due at once), not tomorrow's."""
    from zoneinfo import ZoneInfo

    on_phone = DraftOnPhone("<a@x>", S.AWAITING_USER, 0, code="K7", sender="Ann")
    acted = datetime(2026, 11, 25, 9, 0, 5, tzinfo=UTC)
    written = Answer(written_at=datetime(2026, 11, 25, 8, 59, 50, tzinfo=UTC))
    effect = decide_command(parse_command("1 at 9:00"), "1 at 9:00", on_phone, 10, acted,
                            answer=written, zone=ZoneInfo("UTC"))
    assert effect.fields["send_at"] == datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    far_off = Answer(written_at=acted - timedelta(days=2))  # a clock far off is not believed
    effect = decide_command(parse_command("1 at 9:00"), "1 at 9:00", on_phone, 10, acted,
                            answer=far_off, zone=ZoneInfo("UTC"))
    assert effect.fields["send_at"] == datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
