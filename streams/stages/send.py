"""The send stage: the approved reply goes out at most once; a send cut off
mid-way is settled by the Sent folder when there is one, else by a person.
A send in progress is told from one cut off by the sending worker's lock
(docs/design.md, "Side effects happen once")."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from handlers.decisions import DASHBOARD_COMMAND
from handlers.emails import Reply, build_reply, new_message_id, sender_name
from handlers.errors import LoginRefusedError, OutcomeUnknownError, PeerError, PermanentError, TransientError
from handlers.headers import clean_reply
from handlers.messages import SourceRecord
from handlers.sms_text import LOGIN_PEER, render_sent_sms
from handlers.workflow import Stage, WorkflowState
from streams.stages.context import StageContext
from streams.stages.failures import fail_workflow
from streams.stages.notify import next_up
from streams.stages.parking import park_or_fail
from streams.stages.retrying import Exhausted, call_with_retries
from streams.storage.protocol import RepositorySession
from streams.storage.records import Email, Workflow

S = WorkflowState
log = logging.getLogger(__name__)

#: How often a worker that finds a reply being sent by another looks again, in seconds.
SEND_WAIT_POLL = 0.5
#: How much longer than one SMTP timeout it waits for that worker, in seconds.
SEND_WAIT_MARGIN = 10.0


@dataclass(frozen=True)
class _SendClaim:
    """An approved reply claimed for sending: ``cut_off`` when an earlier
    attempt's outcome is unknown; ``source``, the record that set the send
    going (a failure dead-letters it)."""

    wf: Workflow
    email: Email
    reply_id: str
    cut_off: bool
    source: SourceRecord | None


async def send(ctx: StageContext, message_id: str, source: SourceRecord | None = None) -> None:
    """Send the approved reply, at most once; a send cut off mid-way is
    settled by the Sent folder when there is one, else by a person.
    ``source``: the record that set this going, if the message loop handed
    one over."""
    wf = await ctx.repo.get(message_id)
    mine = await ctx.about(wf) if wf is not None else None
    if mine is None:  # gone, or nobody's: nothing to send
        return
    ctx = mine  # the person whose reply it is: their login, their address, their phone
    async with ctx.repo.session() as session:  # holds the send's lock until the reply is settled
        claim = await _claim_send(ctx, session, message_id, source)
        if claim is not None:
            await _send_claimed(ctx, claim)


async def _send_claimed(ctx: StageContext, claim: _SendClaim) -> None:
    """Settle a cut-off send if need be, then hand the reply over."""
    if claim.cut_off and not await _settle_cut_off(ctx, claim, "a worker stopped while this reply was "
                                                               "being sent"):
        return
    for attempt in ("first", "after the Sent folder check"):
        try:
            attempts = await _hand_over(ctx, claim)
        except OutcomeUnknownError as exc:
            if attempt != "first":  # cut off twice: a person decides
                await fail_workflow(ctx, claim.wf, S.USER_APPROVED, Stage.SEND, exc, source=claim.source)
            elif await _settle_cut_off(ctx, claim, str(exc)):
                continue  # not in the Sent folder: sent again, once, with the same Message-ID
            return
        except LoginRefusedError as exc:
            if ctx.me.is_default or ctx.me.own_mail:
                await fail_workflow(ctx, claim.wf, S.USER_APPROVED, Stage.SEND, exc, source=claim.source,
                                    send_attempted_at=None)
            else:  # a person's own login: only their replies wait, until it is fixed
                await park_or_fail(ctx, claim.wf, S.USER_APPROVED, Stage.SEND,
                                   Exhausted(TransientError(LOGIN_PEER, str(exc)), 1), source=claim.source,
                                   send_attempted_at=None)
            return
        except PermanentError as exc:
            # The server refused it: nothing went out, a retry may send again.
            await fail_workflow(ctx, claim.wf, S.USER_APPROVED, Stage.SEND, exc, source=claim.source,
                                send_attempted_at=None)
            return
        except Exhausted as exc:
            await park_or_fail(ctx, claim.wf, S.USER_APPROVED, Stage.SEND, exc, source=claim.source,
                               send_attempted_at=None)
            return
        await _record_sent(ctx, claim, "reply sent", retry_count=claim.wf.retry_count + attempts - 1)
        return


async def _claim_send(ctx: StageContext, session: RepositorySession, message_id: str,
                      source: SourceRecord | None) -> _SendClaim | None:
    """Hold the send's lock for ``session`` and record the intent to send (our
    Message-ID, ``send_attempted_at``) before any SMTP traffic. None when
    there is nothing to send (not approved: a redelivery, or the send another
    worker was making ended). A claim with ``cut_off`` set when a previous
    attempt's outcome is unknown: its worker is gone (it no longer holds the
    lock). While a live worker holds it, this one waits for it, at most one
    SMTP timeout and a margin, and then leaves the reply to that worker."""
    bound = ctx.settings.smtp_timeout + SEND_WAIT_MARGIN
    last = int(bound / SEND_WAIT_POLL) + 1
    for look in range(last + 1):
        async with session.transaction() as tx:
            wf = await tx.get(message_id, for_update=True)
            if wf is None or wf.current_state is not S.USER_APPROVED:
                return None
            if wf.send_at is not None and wf.send_at > ctx.clock.now():
                # Scheduled for later: an early or redelivered message sends nothing; the
                # sweep queues it again when its time comes (docs/design.md, "Send later").
                log.info("%s: its reply is scheduled for %s: not sent before", message_id, wf.send_at.isoformat())
                return None
            if await tx.hold_send(message_id):
                reply_id = wf.reply_message_id or new_message_id(ctx.me.email_address)
                cut_off = not await tx.claim_send(message_id, reply_id)
                email = await tx.email(message_id)
                assert email is not None  # workflow_state references processed_emails
                return _SendClaim(wf, email, reply_id, cut_off, source)
        if look == last:
            break
        if look == 0:
            log.info("%s: its reply is being sent by another worker: waiting for it (at most %.0f s)",
                     message_id, bound)
        await ctx.sleep(SEND_WAIT_POLL)
    log.warning("%s: its reply is still being sent by another worker after %.0f s: left to that worker",
                message_id, bound)
    return None


async def _hand_over(ctx: StageContext, claim: _SendClaim) -> int:
    """Give the reply to the SMTP server; returns the attempts it took."""
    wf, email = claim.wf, claim.email
    message = build_reply(clean_reply(Reply(
        from_address=ctx.me.email_address,
        original_from=email.from_address,
        original_subject=email.subject,
        original_message_id=wf.message_id,
        original_references=email.in_reply_to,
        body=wf.ai_reply_text or "",
        message_id=claim.reply_id,
        date=ctx.clock.now(),
    )))
    smtp = ctx.mail_for(ctx.me)
    _, attempts = await call_with_retries(lambda: smtp.send(message), ctx.policy,
                                          f"reply to {wf.message_id}")
    return attempts


async def _record_sent(ctx: StageContext, claim: _SendClaim, reason: str, **fields: Any) -> None:
    message_id = claim.wf.message_id
    async with ctx.repo.transaction() as tx:
        await tx.transition(message_id, S.USER_APPROVED, S.REPLY_SENT, reason,
                            reply_sent_at=ctx.clock.now(), **fields)
        await tx.record_sent_reply(message_id, claim.wf.ai_reply_text or "")
        following = await next_up(ctx, tx)
    await ctx.tell_person(render_sent_sms(
        sender_name(claim.email.from_address), *following, code=claim.wf.draft_code,
        from_dashboard=(claim.wf.user_command or "").startswith(DASHBOARD_COMMAND)))


async def _settle_cut_off(ctx: StageContext, claim: _SendClaim, what_happened: str) -> bool:
    """A send whose outcome is unknown: look for our Message-ID in the Sent
    folder. Found: the reply went out (recorded as sent). Not found: True,
    send it again with the same Message-ID. No Sent folder, or it cannot be
    read: the workflow fails as "outcome unknown" for a person to decide."""
    wf, reply_id = claim.wf, claim.reply_id
    folder = ctx.sent_folder_for(ctx.me)
    if folder is not None:
        try:
            found, _ = await call_with_retries(lambda: folder.contains(reply_id), ctx.policy,
                                               f"Sent folder check for {reply_id}")
        except (Exhausted, PeerError) as exc:
            what_happened += f"; the Sent folder could not be checked ({exc})"
        else:
            if found:
                await _record_sent(ctx, claim, f"reply confirmed in the Sent folder ({reply_id})")
                return False
            async with ctx.repo.transaction() as tx:
                if not await tx.claim_send(wf.message_id, reply_id, again=True):
                    return False
            log.warning("%s: %s, and %s is not in the Sent folder: sending again", wf.message_id,
                        what_happened, reply_id)
            return True
    unknown = OutcomeUnknownError(
        "SMTP", f"outcome unknown: {what_happened}; it may or may not have gone out. Check the Sent "
        "folder, then retry to send it again")
    await fail_workflow(ctx, wf, S.USER_APPROVED, Stage.SEND, unknown, source=claim.source)
    return False
