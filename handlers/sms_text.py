"""What the person reads on the phone: draft SMS, help, confirmations.

Segments are counted as carriers count them: GSM-7 (160 characters alone,
153 per part when concatenated; ``^{}\\[~]|€`` take two) unless any character is
outside GSM-7, then UCS-2 (70 / 67). Typographic punctuation is folded to
plain ASCII first, so one curly quote in a draft does not halve the room. The
email itself keeps the original text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")

#: The gateway's limit (docs/contracts.md §3).
MAX_SMS_CHARS = 1600
#: The generator calls a draft SMS-friendly up to this length (docs/contracts.md §2).
SMS_FRIENDLY_CHARS = 300

_FOLD = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
        "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-", "\u2010": "-", "\u2011": "-",
        "\u2026": "...", "\u00a0": " ", "\u2009": " ", "\u202f": " ", "\u200b": "",
        "\u2022": "-", "\t": " ",
    }
)

COMMAND_HINT = "1=Send 2=Edit 3=Ignore"


def fold_typography(text: str) -> str:
    """Replace typographic quotes, dashes, ellipses and odd spaces by plain ones."""
    return text.translate(_FOLD)


@dataclass(frozen=True)
class SegmentCount:
    encoding: Literal["GSM-7", "UCS-2"]
    units: int
    segments: int


def count_segments(text: str) -> SegmentCount:
    """How many SMS segments ``text`` takes, as a carrier counts them."""
    if all(ch in GSM7_BASIC or ch in GSM7_EXTENDED for ch in text):
        units = sum(2 if ch in GSM7_EXTENDED else 1 for ch in text)
        single, part = 160, 153
        encoding: Literal["GSM-7", "UCS-2"] = "GSM-7"
    else:
        units = len(text.encode("utf-16-le")) // 2  # astral characters take two
        single, part = 70, 67
        encoding = "UCS-2"
    segments = 1 if units <= single else math.ceil(units / part)
    return SegmentCount(encoding, units, segments)


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 3)].rstrip() + "..."


@dataclass(frozen=True)
class DraftSms:
    """The inputs of a draft notification."""

    sender: str
    subject: str | None
    preview: str
    draft: str
    waiting: int
    link: str
    #: The draft's short code (handlers/codes.py): answers may name it.
    code: str | None = None
    #: The sender is one who comes first (VIP_SENDERS): the SMS begins ``VIP``.
    vip: bool = False
    #: How many remembered lessons the draft was written with: ``Draft (2 lessons):``.
    lessons: int = 0


def _waiting_line(waiting: int) -> str:
    return f" (+{waiting} waiting)" if waiting else ""


def _footer(code: str | None, waiting: int) -> str:
    """``K7: 1=Send 2=Edit 3=Ignore (+2 waiting)``: the code first, as an answer puts it."""
    return f"{code + ': ' if code else ''}{COMMAND_HINT}{_waiting_line(waiting)}"


def render_draft_sms(draft: DraftSms, fmt: Literal["condensed", "full"]) -> str:
    """The SMS that presents a draft; a draft too long for the format goes as a link.

    ``condensed``: sender, a short preview, the draft and the command hint, in
    one segment where the draft allows (the preview shrinks first), otherwise
    up to the SMS-friendly length. ``full``: sender, subject, preview and the
    whole draft, up to the gateway's 1,600 characters.
    """
    body = fold_typography(draft.draft.strip())
    sender = ("VIP " if draft.vip else "") + fold_typography(_shorten(draft.sender, 30))
    topic = fold_typography(draft.subject or draft.preview or "(no subject)")
    footer = _footer(draft.code, draft.waiting)
    label = f"Draft ({draft.lessons} lesson{'s' if draft.lessons != 1 else ''})" if draft.lessons else "Draft"
    if fmt == "full":
        text = (
            f"From: {sender}\nSubject: {fold_typography(_shorten(draft.subject or '(none)', 120))}\n"
            f"{fold_typography(_shorten(draft.preview, 160))}\n---\n{label}:\n{body}\n{footer}"
        )
        if len(text) <= MAX_SMS_CHARS:
            return text
        return (
            f"From: {sender}\nSubject: {fold_typography(_shorten(draft.subject or '(none)', 120))}\n"
            f"Draft ({len(body)} chars): {_shorten(body, 200)}\nRead it all: {draft.link}\n{footer}"
        )

    def condensed(preview_len: int) -> str:
        return f"{sender}: {_shorten(topic, preview_len)}\n{label}: {body}\n{footer}"

    for preview_len in (60, 40, 25, 15):
        text = condensed(preview_len)
        if count_segments(text).segments == 1:
            return text
    if len(body) <= SMS_FRIENDLY_CHARS:
        return condensed(40)
    return f"{sender}: {_shorten(topic, 40)}\n{label}: {_shorten(body, 80)}\nFull: {draft.link}\n{footer}"


HELP_SMS = (
    "Reply 1 to send the draft, 2 <what to change> to edit it "
    "(e.g. 2 make it shorter), 3 to ignore the email. Put a draft's code first to answer that one "
    "(K7 1); list shows your open drafts."
)
NOTHING_WAITING_SMS = "No draft is waiting for your answer right now."


def _next_line(next_sender: str | None, waiting: int, awaiting: int = 0) -> str:
    """What comes next: the draft texted next and how many wait behind it; or,
    when none is queued, the drafts on the phone still to be answered."""
    if next_sender is None and awaiting:
        return f" {awaiting} other draft{'s' if awaiting != 1 else ''} on your phone to answer (list shows them)."
    if next_sender is None:
        return " Nothing else waiting."
    more = f" ({waiting - 1} more after it)" if waiting > 1 else ""
    return f" Next: {fold_typography(_shorten(next_sender, 30))}{more}."


def render_sent_sms(recipient: str, next_sender: str | None, waiting: int, awaiting: int = 0, *,
                    code: str | None = None, from_dashboard: bool = False) -> str:
    """``Sent to John ✓``; ``K7 sent from the dashboard to John ✓`` when the dashboard approved it."""
    to = fold_typography(_shorten(recipient, 40))
    if from_dashboard:
        return f"{code or 'Draft'} sent from the dashboard to {to} \u2713{_next_line(next_sender, waiting, awaiting)}"
    return f"Sent to {to} \u2713{_next_line(next_sender, waiting, awaiting)}"


def render_ignored_sms(sender: str, next_sender: str | None, waiting: int, awaiting: int = 0, *,
                       code: str | None = None, from_dashboard: bool = False) -> str:
    who = fold_typography(_shorten(sender, 40))
    where = " from the dashboard" if from_dashboard else ""
    head = f"{code} ignored{where}: the email from {who}." if code and from_dashboard else (
        f"Ignored the email from {who}{where}.")
    return f"{head}{_next_line(next_sender, waiting, awaiting)}"


def render_edit_limit_sms(limit: int) -> str:
    return f"Edit limit ({limit}) reached for this email. Reply 1 to send the draft or 3 to ignore it."


def render_failed_sms(sender: str, subject: str | None, reason: str) -> str:
    return (
        f"Gave up on the email from {fold_typography(_shorten(sender, 30))} "
        f"({fold_typography(_shorten(subject or 'no subject', 40))}): {_shorten(reason, 120)}. "
        "It can be retried from the orchestrator."
    )


def render_late_answer_sms(answer: str, sender: str) -> str:
    """Said when an answer was written before the draft on the phone was
    texted (it was meant for an earlier one): it was not applied."""
    return (f"Your answer '{fold_typography(_shorten(answer, 20))}' was written before the draft reply to "
            f"{fold_typography(_shorten(sender, 30))} was texted, so it was not applied. "
            f"Answer again: {COMMAND_HINT}")


REMINDER_PREFIX = "Reminder: "


def render_reminder_sms(draft_sms: str) -> str:
    """The draft SMS again, marked as a reminder, so it can be answered as it stands."""
    return (REMINDER_PREFIX + draft_sms)[:MAX_SMS_CHARS]


def render_cut_off_sms(sender: str, subject: str | None, link: str) -> str:
    """Sent instead of the draft SMS again when a worker stopped while texting
    it: the draft may or may not have arrived, and is never texted twice."""
    return (f"A restart cut off the draft reply to {fold_typography(_shorten(sender, 30))} "
            f"({fold_typography(_shorten(subject or 'no subject', 40))}); it may not have reached you. "
            f"Read it at {link} and reply 1 to send it, 2 <changes> to edit it, 3 to ignore the email.")


#: The peer a person's own mail login is parked on while the server refuses it.
LOGIN_PEER = "your mail login"


def render_outage_sms(peer: str) -> str:
    """Said once per outage, however many emails it holds up."""
    if peer == LOGIN_PEER:
        return ("Your mail server refused your login (a wrong or changed password?). Your replies wait and "
                "go out on their own once it is fixed: ask your admin to set your SMTP password.")
    return (f"{peer} is not answering. Your emails wait and go ahead on their own when it is back; "
            "nothing to do.")


def draft_label(code: str | None, sender: str, subject: str | None) -> str:
    """How an SMS names a draft: its code, then whose email it answers
    (``K7 (John: Meeting?)``); without a code, the sender and subject alone."""
    about = f"{fold_typography(_shorten(sender, 30))}: {fold_typography(_shorten(subject or 'no subject', 40))}"
    return f"{code} ({about})" if code else about


def render_not_texted_sms(code: str) -> str:
    """A code answer for a draft that waits for the phone: the person has not read it."""
    return f"{code} has not been texted to you yet. Reply {code} to read it, then answer."


def render_unknown_code_sms(code: str) -> str:
    return f"No open draft is called {code}. Reply list to see your open drafts."


def render_which_draft_sms(open_codes: list[str]) -> str:
    """A bare answer when no draft is the latest on the phone but several wait."""
    example = open_codes[0] if open_codes else "K7"
    shown = " ".join(open_codes[:12]) + (" ..." if len(open_codes) > 12 else "")
    return (f"Which draft? Put its code first, e.g. {example} 1 to send it. Open: {shown}. "
            "Reply list for details.")


def render_being_drafted_sms(code: str) -> str:
    return f"{code} is still being drafted; it comes to your phone when it is ready."


def render_edit_from_dashboard_sms(label: str, instructions: str) -> str:
    return (f"{label}: new draft asked for from the dashboard "
            f"({fold_typography(_shorten(instructions, 60))}); it follows.")


def render_confirm_all_sms(count: int) -> str:
    return (f"Ignore all {count} draft{'s' if count != 1 else ''} on your phone? "
            "Reply yes within a minute to confirm.")


def render_ignored_all_sms(count: int, next_sender: str | None = None, waiting: int = 0, awaiting: int = 0) -> str:
    if not count:
        return "Nothing was ignored: those drafts were answered meanwhile."
    return f"Ignored {count} email{'s' if count != 1 else ''}.{_next_line(next_sender, waiting, awaiting)}"


NOT_IGNORED_SMS = "Not ignored: nothing changed."
QUESTION_LAPSED_SMS = ("That yes came too late for all 3 (a minute, with no other answer between): nothing was "
                       "ignored or sent. Reply all 3 again to ignore your drafts.")


@dataclass(frozen=True)
class ListedDraft:
    """One line of the ``list`` SMS."""

    code: str
    sender: str
    subject: str | None
    age: timedelta
    #: ``on phone``, ``waiting``, ``drafting``: what state the draft is in, as the person sees it.
    status: str
    #: From a sender who comes first (VIP_SENDERS): the line begins ``*``.
    vip: bool = False
    #: A reply scheduled for later: when it leaves (``Wed 09:00``), said instead of the age.
    sends: str | None = None


#: The ``list`` SMS stays within this many characters (three segments of GSM-7).
LIST_SMS_CHARS = 459


def _age(age: timedelta) -> str:
    seconds = max(0, int(age.total_seconds()))
    if seconds < 3600:
        return f"{max(1, seconds // 60)}m"
    if seconds < 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def render_list_sms(drafts: list[ListedDraft]) -> str:
    """One SMS of the open drafts, oldest first: code, sender, subject, age,
    a VIP sender's line marked ``*``; those that do not fit are counted at the end."""
    if not drafts:
        return "No open drafts."
    head = f"{len(drafts)} open:" + (" (*VIP)" if any(d.vip for d in drafts) else "")
    tail = "Reply a code to see that draft, or K7 1 / K7 3."
    lines: list[str] = []
    for i, d in enumerate(drafts):
        status = "" if d.status == "on phone" else f", {d.status}"
        when = f"sends {d.sends}" if d.sends else _age(d.age) + status  # a scheduled reply: when it leaves
        line = (f"{'*' if d.vip else ''}{d.code} {fold_typography(_shorten(d.sender, 18))}: "
                f"{fold_typography(_shorten(d.subject or 'no subject', 24))} ({when})")
        rest = len(drafts) - i - 1
        more = f"+{rest} more on the dashboard" if rest else ""
        candidate = "\n".join([head, *lines, line, *([more] if more else []), tail])
        if len(candidate) > LIST_SMS_CHARS:
            return "\n".join([head, *lines, f"+{len(drafts) - i} more on the dashboard", tail])
        lines.append(line)
    return "\n".join([head, *lines, tail])


# Send later (docs/design.md, "Send later").


def render_scheduled_sms(code: str | None, sender: str, when: str) -> str:
    """The answer to ``1 at 9:00``: when the reply leaves, and how to take it back."""
    if code:
        return f"{code} will be sent {when}. Reply {code} cancel to keep it."
    return f"Your reply to {fold_typography(_shorten(sender, 30))} will be sent {when}. Reply cancel to keep it."


def render_bad_time_sms(when: str, forms: str) -> str:
    """A time after an approval that is not one of the forms (or is past): nothing was sent."""
    return (f"Could not read '{fold_typography(_shorten(when, 20))}' as a time ahead, so nothing was sent. "
            f"Try {forms} (your time zone).")


def render_cancelled_sms(code: str | None) -> str:
    return f"{code or 'The reply'} will not be sent; it waits for your answer."


NOTHING_SCHEDULED_SMS = "No reply is scheduled to be sent later."


def render_which_scheduled_sms(codes: list[str]) -> str:
    """A bare ``cancel`` while several replies are scheduled."""
    shown = " ".join(codes[:12]) + (" ..." if len(codes) > 12 else "")
    return f"Which one? Several replies are scheduled ({shown}): reply e.g. {codes[0]} cancel."


def render_already_sending_sms(code: str | None) -> str:
    return f"{code or 'That reply'} is being sent already; it can no longer be taken back."


def render_already_sent_sms(code: str | None, sender: str) -> str:
    who = fold_typography(_shorten(sender, 30))
    return f"{code + ': the' if code else 'The'} reply to {who} was sent already; it cannot be taken back."


def render_not_scheduled_sms(code: str | None) -> str:
    return f"{code or 'That draft'} is not scheduled to be sent later; nothing to cancel."
