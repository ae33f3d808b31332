"""What a command does to the draft it names (pure).

The caller supplies the draft the answer is for (the one its code names, the
one the dashboard showed, or for a bare answer the one texted most recently;
or None) and carries out the
:class:`CommandEffect` as one path: at most one transition out of
``awaiting_user`` with the columns it sets, at most one follow-up message
that sets the next stage going, and perhaps an SMS back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from .commands import Command, CommandKind
from .messages import EditRequested, ReplyApproved, TopicMessage
from .schedule import ACCEPTED_FORMS, format_send_time, send_time
from .sms_text import (
    HELP_SMS,
    NOTHING_WAITING_SMS,
    render_bad_time_sms,
    render_edit_limit_sms,
    render_late_answer_sms,
    render_not_texted_sms,
    render_scheduled_sms,
)
from .workflow import DECIDABLE_STATES, WorkflowState

#: ``workflow_state.user_command`` is VARCHAR(50).
USER_COMMAND_CHARS = 50
#: How ``user_command`` begins when the answer came from the dashboard.
DASHBOARD_COMMAND = "dashboard:"


@dataclass(frozen=True)
class DraftOnPhone:
    """What a decision needs to know of the draft the person is answering."""

    message_id: str
    state: WorkflowState
    edit_iteration: int
    #: When it was put on the phone (``phone_conversation.presented_at``), if known.
    presented_at: datetime | None = None
    #: Who wrote the email it answers, as the person knows them.
    sender: str = "?"
    #: Its short code on the phone (handlers/codes.py), if it has one.
    code: str | None = None
    subject: str | None = None
    #: Every (instructions, draft) so far: a reply written by hand joins it.
    edit_history: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class Answer:
    """Where an answer came from, and what it carried besides its text."""

    #: ``sms`` or ``dashboard``.
    source: str = "sms"
    #: When the gateway received the SMS (its clock), if it said.
    written_at: datetime | None = None
    #: The edit iteration the dashboard showed.
    seen_iteration: int | None = None
    #: A reply the person wrote by hand (dashboard).
    reply_text: str | None = None
    #: The SMS named its draft by code (a bare answer means the latest one).
    named: bool = False

    @property
    def via(self) -> str:
        return "from the dashboard" if self.source == "dashboard" else "by SMS"


@dataclass(frozen=True)
class CommandEffect:
    """Everything one command does.

    ``outcome`` is recorded in the inbound-SMS ledger. When ``target`` is set,
    the draft on the phone moves from ``awaiting_user`` to it with ``reason``,
    setting ``fields``, and ``follow_up`` (if any) is published in the same
    transaction. ``reply_sms`` is texted back after commit; when
    ``tell_what_is_next`` is set, the caller texts which draft comes next
    instead (it knows the queue).
    """

    outcome: str
    target: WorkflowState | None = None
    reason: str = ""
    fields: Mapping[str, Any] = field(default_factory=dict)
    follow_up: TopicMessage | None = None
    reply_sms: str | None = None
    tell_what_is_next: bool = False
    #: A reply approved for later (``send_at``): the draft gives the phone up
    #: now, as a decision does, so the next one comes (docs/design.md, "Send later").
    frees_the_phone: bool = False


def decide_command(command: Command, text: str, on_phone: DraftOnPhone | None, max_edits: int,
                   now: datetime, *, written_at: datetime | None = None,
                   clock_skew: timedelta = timedelta(0), answer: Answer | None = None,
                   zone: ZoneInfo | None = None) -> CommandEffect:
    """The effect of ``command`` (whose SMS read ``text``) on the draft it is
    for, ``on_phone``, at time ``now``.

    ``written_at``: when the gateway received the SMS (its clock), if it said.
    An answer received before that draft was texted was meant for an earlier
    one: it is not applied (outcome ``late``) and the person is told.
    ``clock_skew`` is how far the gateway's clock may lag ours; within it the
    answer is taken as meant for the draft. Without ``written_at`` (or
    ``presented_at``) the answer acts as it always did. ``answer``: where it
    came from; an answer from the dashboard names its draft and the version
    it showed, and is refused (``changed``) when the draft changed since.
    ``zone``: the person's time zone (``TIMEZONE``), in which an approval's
    time (``1 at 9:00``) is read.
    """
    answer = answer or Answer(written_at=written_at)
    if command.kind is CommandKind.UNKNOWN:
        return CommandEffect("help", reply_sms=HELP_SMS)
    if on_phone is None or on_phone.state not in DECIDABLE_STATES:
        return CommandEffect("nothing_waiting", reply_sms=NOTHING_WAITING_SMS)
    if answer.source == "dashboard":
        if answer.seen_iteration is not None and answer.seen_iteration != on_phone.edit_iteration:
            return CommandEffect("changed", reply_sms=None)
    elif on_phone.state is not WorkflowState.AWAITING_USER:
        # Drafted but not texted: the person has not read it on the phone.
        if not answer.named:
            return CommandEffect("nothing_waiting", reply_sms=NOTHING_WAITING_SMS)
        return CommandEffect("not_texted", reply_sms=render_not_texted_sms(on_phone.code or "?"))
    elif is_late(answer.written_at or written_at, on_phone.presented_at, clock_skew):
        return CommandEffect("late", reply_sms=render_late_answer_sms(text.strip(), on_phone.sender))
    via = answer.via
    answered = {"user_command": _recorded(answer, text), "user_responded_at": now}
    if command.kind is CommandKind.APPROVE and answer.reply_text is not None:
        history = [*map(dict, on_phone.edit_history),
                   {"instructions": "(written by hand)", "draft": answer.reply_text, "by": "hand", "at": now.isoformat()}]
        approved = CommandEffect("approved", WorkflowState.USER_APPROVED, f"written by hand and approved {via}",
                                 {**answered, "ai_reply_text": answer.reply_text, "edit_history": history},
                                 follow_up=ReplyApproved(message_id=on_phone.message_id))
        return _later(approved, command.when, on_phone, now, zone, _written(answer, now))
    if command.kind is CommandKind.APPROVE:
        approved = CommandEffect("approved", WorkflowState.USER_APPROVED, f"approved {via}", answered,
                                 follow_up=ReplyApproved(message_id=on_phone.message_id))
        return _later(approved, command.when, on_phone, now, zone, _written(answer, now))
    if command.kind is CommandKind.IGNORE:
        return CommandEffect("ignored", WorkflowState.USER_IGNORED, f"ignored {via}", answered,
                             tell_what_is_next=True)
    if command.kind is not CommandKind.EDIT:
        return CommandEffect("help", reply_sms=HELP_SMS)
    if on_phone.edit_iteration >= max_edits:
        return CommandEffect("edit_limit", reply_sms=render_edit_limit_sms(max_edits))
    assert command.instructions  # the parser never yields an edit without them
    iteration = on_phone.edit_iteration + 1
    return CommandEffect(
        "edit_requested", WorkflowState.USER_EDIT_REQUESTED, f"edit {iteration} requested {via}",
        {"user_command": "edit" if answer.source == "sms" else f"{DASHBOARD_COMMAND} edit",
         "user_edit_instructions": command.instructions,
         "user_responded_at": now, "edit_iteration": iteration},
        follow_up=EditRequested(message_id=on_phone.message_id, instructions=command.instructions,
                                iteration=iteration),
    )


#: How far back the time an SMS was written may be used to read its ``1 at …``:
#: a gateway that forwards late still means the time as the person wrote it;
#: a clock that is far off is not believed.
WRITTEN_AT_TRUSTED = timedelta(hours=1)


def _written(answer: Answer, now: datetime) -> datetime:
    """When the answer was written, as far as the time it names is read from:
    the gateway's ``receivedAt`` when it is a little before now, else now."""
    written = answer.written_at
    if written is None or written.tzinfo is None or not now - WRITTEN_AT_TRUSTED <= written <= now:
        return now
    return written


def _later(approved: CommandEffect, when: str | None, on_phone: DraftOnPhone, now: datetime,
           zone: ZoneInfo | None, written: datetime | None = None) -> CommandEffect:
    """An approval with a time (``1 at 9:00``): approved now, sent at that
    time, so no ``replies.approved`` yet (the sweep queues it when it is due);
    a time not understood, or past, approves nothing. The time is read as of
    when the SMS was ``written``: ``1 at 9:00`` written at 08:59:50 and acted
    on at 09:00:05 means today's 9:00 (sent at once), not tomorrow's."""
    if when is None:
        return approved
    zone = zone or ZoneInfo("UTC")
    at = send_time(when, written or now, zone)
    if at is None:
        return CommandEffect("bad_time", reply_sms=render_bad_time_sms(when, ACCEPTED_FORMS))
    said = format_send_time(at, now, zone)
    return replace(approved, outcome="scheduled", follow_up=None, frees_the_phone=True,
                   reason=f"{approved.reason}, to be sent at {at:%Y-%m-%d %H:%M} {zone.key}",
                   fields={**approved.fields, "send_at": at, "send_released_at": None},
                   reply_sms=render_scheduled_sms(on_phone.code, on_phone.sender, said))


def _recorded(answer: Answer, text: str) -> str:
    """``workflow_state.user_command``: the answer as given, marked when it came from the dashboard."""
    given = text.strip() if answer.source == "sms" else f"{DASHBOARD_COMMAND} {text.strip()}"
    return given[:USER_COMMAND_CHARS]


def is_late(written_at: datetime | None, presented_at: datetime | None, clock_skew: timedelta) -> bool:
    """Whether an answer written at ``written_at`` came before the draft
    presented at ``presented_at`` (more than ``clock_skew`` before). A time
    without its offset says nothing: not late."""
    if written_at is None or presented_at is None or written_at.tzinfo is None or presented_at.tzinfo is None:
        return False
    return written_at < presented_at - clock_skew  # ours moved: theirs may be any date
