"""The dashboard as a second phone: send, ignore, edit with instructions and
edit by hand, from a workflow's page.

A button here changes no workflow itself. It records and queues an answer on
``sms.inbound`` exactly as the SMS webhook does (``server.py``), marked
``source="dashboard"`` and naming the draft it was shown (``message_id`` and
``seen_iteration``), so the command stage applies it as it applies an SMS:
once, in order with the person's SMS, audited with where it came from, and
not at all when the draft changed since the page showed it
(docs/design.md, "The dashboard as a second phone").

What can be checked here is checked before anything is queued (CSRF, the
workflow, its state and iteration, the text), so a refusal comes back at
once with its reason; the command stage checks again when it applies it.

The answer comes from the phone of the person whose email it is (their
conversation, their codes: docs/design.md, "Many people"), and a person
signed in answers only their own drafts (another's is a 404, ``access.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final
from urllib.parse import quote

from aiohttp import web

from handlers.messages import REPLY_TEXT_LIMIT, SMS_TEXT_LIMIT, InboundSms
from handlers.workflow import DECIDABLE_STATES
from streams.storage.records import Workflow
from streams.web.access import visible
from streams.web.appkeys import REPO, SETTINGS, STAGES
from streams.web.guard import GUARD

#: The SMS each button stands for (README, SMS commands).
SEND, EDIT, IGNORE = "1", "2", "3"
#: The longest instructions: with "2 " in front they fit one SMS as the webhook takes it.
INSTRUCTIONS_LIMIT: Final = SMS_TEXT_LIMIT - 2
#: What the page says once an answer is queued (``?queued=<action>``): fixed
#: words, so nothing a client puts in the URL is shown back.
QUEUED_NOTES: Final = {
    "send": "Sent to the orchestrator: send this draft.",
    "ignore": "Sent to the orchestrator: ignore this email.",
    "edit": "Sent to the orchestrator: write a new draft with your instructions.",
    "write": "Sent to the orchestrator: send the reply you wrote.",
}


def note(queued: str, *, pending: bool) -> str:
    """What the page says after an answer was queued: pending while the draft
    still waits, else where to see what became of it ("" for no answer)."""
    said = QUEUED_NOTES.get(queued)
    if said is None:
        return ""
    return said + (" It shows in the timeline once applied; the phone is told too." if pending
                   else " The timeline shows what became of it.")


class Refused(Exception):
    """An answer the dashboard does not queue: the HTTP status and the reason shown."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Answer:
    """What a button stands for: the SMS text, and a reply written by hand."""

    text: str
    reply_text: str | None = None


def _sendable(text: str, what: str) -> str:
    """``text`` when PostgreSQL and JSON can carry it (no NUL, no lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise Refused(400, f"{what} holds a character that cannot be sent") from None
    if "\x00" in text:
        raise Refused(400, f"{what} holds a NUL character, which cannot be sent")
    return text


def read_answer(action: str, form: Mapping[str, str]) -> Answer:
    """The answer a posted form gives; :class:`Refused` (400) when it gives none."""
    if action == "send":
        return Answer(SEND)
    if action == "ignore":
        return Answer(IGNORE)
    if action == "edit":
        instructions = _sendable(form.get("instructions", "").strip(), "The instructions")
        if not instructions:
            raise Refused(400, "Say how the draft should change (the instructions are empty).")
        if len(instructions) > INSTRUCTIONS_LIMIT:
            raise Refused(400, f"The instructions are longer than {INSTRUCTIONS_LIMIT} characters.")
        return Answer(f"{EDIT} {instructions}")
    if action == "write":
        # A browser sends a textarea's line breaks as CRLF: kept as the person typed them, one per line.
        typed = _sendable(form.get("reply_text", "").replace("\r\n", "\n"), "The reply")
        if not typed.strip():
            raise Refused(400, "The reply is empty; write it, or use Send for the draft.")
        if len(typed) > REPLY_TEXT_LIMIT:
            raise Refused(400, f"The reply is longer than {REPLY_TEXT_LIMIT} characters ({len(typed)}).")
        return Answer(SEND, reply_text=typed)
    raise web.HTTPNotFound(reason="no such action")


def seen_iteration(form: Mapping[str, str]) -> int:
    """The draft iteration the page showed (a hidden field)."""
    value = form.get("seen_iteration", "")
    if not (value.isascii() and value.isdigit() and len(value) <= 9):
        raise Refused(400, "The form does not say which draft it showed; reload the page.")
    return int(value)


def check_decidable(wf: Workflow, seen: int, action: str, max_edits: int) -> None:
    """:class:`Refused` (409) unless ``wf`` can be answered now, on the draft the page showed."""
    if wf.current_state not in DECIDABLE_STATES or not wf.ai_reply_text:
        raise Refused(409, f"This email is {wf.current_state.value} now: there is no draft to answer.")
    if wf.edit_iteration != seen:
        raise Refused(409, "The draft has changed since this page showed it; read the new one and answer again.")
    if action == "edit" and wf.edit_iteration >= max_edits:
        raise Refused(409, f"This draft has had {max_edits} edits, the most allowed (MAX_EDIT_ITERATIONS); "
                           "send it, edit it by hand, or ignore the email.")


def inbound(answer: Answer, wf: Workflow, phone: str, seen: int, now: datetime) -> InboundSms:
    """The answer as the message the command stage takes, with an id of its own."""
    return InboundSms(sms_id=f"dashboard:{uuid.uuid4().hex}", phone_number=phone, text=answer.text,
                      received_at=now, source="dashboard", message_id=wf.message_id, seen_iteration=seen,
                      reply_text=answer.reply_text)


def workflow_url(message_id: str, action: str | None = None) -> str:
    """The workflow's page (ASCII whatever the Message-ID holds), noting a queued ``action``."""
    return f"/workflows/{quote(message_id, safe='')}" + (f"?queued={action}" if action else "")


async def queue_answer(request: web.Request) -> web.StreamResponse:
    """Queue one answer from a workflow's page, then back to that page (303)
    saying so. :class:`Refused` with the reason when it is not queued (the
    dashboard shows the page again with it)."""
    form = await request.app[GUARD].require_csrf(request)
    repo, settings = request.app[REPO], request.app[SETTINGS]
    wf = await visible(request, form.get("message_id", ""))
    if wf is None:
        raise web.HTTPNotFound(reason="no workflow with that Message-ID")
    action = request.match_info["action"]
    answer = read_answer(action, form)
    seen = seen_iteration(form)
    check_decidable(wf, seen, action, settings.max_edit_iterations)
    owner = await request.app[STAGES].person(wf.person_id)
    if owner is None:
        raise Refused(409, "This email is nobody's now (its person was removed): there is no phone to answer it from.")
    sms = inbound(answer, wf, owner.phone, seen, datetime.now(UTC))
    async with repo.transaction() as tx:
        await tx.sms.record(sms.sms_id, sms.phone_number, sms.text, sms.received_at)
        await tx.publish(sms)
    raise web.HTTPSeeOther(workflow_url(wf.message_id, action))


#: The actions' path; ``dashboard.py`` serves it (a refusal is shown on the workflow's page).
PATH = "/actions/{action:send|ignore|edit|write}"
