"""Answered elsewhere: a draft whose email the person already answered from
their own mail client leaves the phone (docs/design.md, "Answered elsewhere").

A step of the housekeeping sweep. The person's reply is filed in the
account's Sent folder naming the email in ``In-Reply-To`` and addressed to
its sender (``To`` or ``Cc``: a forward to a colleague does not count); one
sweep looks for every open draft at once: one read of the open workflows (and
their senders), then ONE IMAP connection with one ``UID SEARCH SINCE`` (the
day before the oldest open email arrived) and one ``UID FETCH`` of the
threading headers and recipients of at most
:data:`SCAN_LIMIT` of the newest hits, matched in Python
(:func:`handlers.elsewhere.answered_elsewhere`). No transaction is open while
IMAP is asked. Each match is then closed with a compare-and-set from
CLOSABLE_STATES in a transaction of its own, so a draft approved (or being
texted) meanwhile is left alone; the terminal transition frees the phone
(the next draft comes) and the person is told by an informational SMS after
the commit.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from handlers.elsewhere import answered_elsewhere
from handlers.emails import sender_name
from handlers.errors import PeerError
from handlers.sms_text import draft_label
from handlers.workflow import CLOSABLE_STATES, WorkflowState
from streams.stages.context import StageContext
from streams.stages.ports import SentMailbox
from streams.stages.scheduling import is_scheduled

log = logging.getLogger(__name__)

#: The most Sent-folder messages one sweep reads the headers of (the newest).
#: A reply filed behind this many newer messages since the oldest open email
#: is not seen; the draft then waits for the person as it would without IMAP.
SCAN_LIMIT = 500
#: IMAP's SINCE is a day in the server's time zone: one day early covers any.
SINCE_MARGIN = timedelta(days=1)


async def close_answered_elsewhere(ctx: StageContext) -> int:
    """Close the open drafts the person answered from their mail client;
    returns how many. Nothing to do (the check off, no IMAP, no open draft)
    costs no IMAP connection; IMAP trouble is one WARNING and changes nothing
    (the next sweep looks again)."""
    if not ctx.settings.answered_elsewhere_check:
        return 0
    now, every = ctx.clock.now(), timedelta(seconds=ctx.settings.answered_elsewhere_interval)
    closed = 0
    for person in await ctx.everyone():  # each person's own Sent folder, for their own emails
        last = ctx.elsewhere_checked.get(person.id)
        if last is not None and now - last < every:
            continue  # looked a moment ago (ANSWERED_ELSEWHERE_INTERVAL)
        mine = ctx.for_person(person)
        folder = mine.sent_folder_for(person)
        if folder is None:
            continue
        found = await _look(mine, folder)
        if found is not None:  # a failed look is not counted: the next sweep tries again, for them only
            ctx.elsewhere_checked[person.id] = now
            closed += found
    return closed


async def _look(ctx: StageContext, folder: SentMailbox) -> int | None:
    """Close the drafts of the person ``ctx`` works for answered in ``folder``;
    how many, or None when the folder could not be read."""
    open_emails = await ctx.repo.closable_emails(ctx.person_id)
    if not open_emails:
        return 0
    since = (min(received for _, received, _ in open_emails) - SINCE_MARGIN).date()
    try:
        replies = await folder.replies_since(since, SCAN_LIMIT)
    except PeerError as exc:
        log.warning("could not look in the Sent folder for replies written elsewhere (%s); next sweep tries again",
                    exc)
        return None
    senders = {message_id: sender for message_id, _, sender in open_emails}  # a reply went to the sender
    found = answered_elsewhere(replies, senders)
    if found:
        # Our own sends answer emails too; a Message-ID we gave is never the person's.
        ours = await ctx.repo.own_replies(set(found.values()))
        if ours:
            found = answered_elsewhere(replies, senders, ours)
    closed = 0
    for message_id, reply_id in found.items():
        if await _close(ctx, message_id, reply_id):
            closed += 1
    return closed


async def _close(ctx: StageContext, message_id: str, reply_id: str) -> bool:
    """One compare-and-set into ``answered_elsewhere``, then the SMS; False
    when the workflow moved on meanwhile (approved, being texted, decided)."""
    async with ctx.repo.transaction() as tx:
        wf = await tx.get(message_id, for_update=True)
        if wf is None:
            return False
        # Read before the transition: a decided draft gives its code up.
        label = draft_label(wf.draft_code, sender_name(wf.email_from or "?"), wf.email_subject)
        closable = set(CLOSABLE_STATES)
        if is_scheduled(wf) and wf.send_released_at is None and wf.send_attempted_at is None:
            closable.add(WorkflowState.USER_APPROVED)  # a reply for later that has not begun to leave: not sent
        if not await tx.transition(message_id, closable, WorkflowState.ANSWERED_ELSEWHERE,
                                   f"answered from your mail client: {reply_id}", send_at=None):
            return False
    log.info("%s was answered from the mail client (%s): closed", message_id, reply_id)
    await ctx.tell_person(f"{label} was answered from your mail; closed.")
    return True
