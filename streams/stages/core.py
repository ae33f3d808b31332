"""The work each agent does, one method per :class:`~handlers.workflow.Stage`.

Orchestration only: each method reads the workflow through the repository,
asks :mod:`handlers` what to do, calls a peer under the retry policy, and
records the outcome with a compare-and-set transition whose follow-up
messages go through the outbox in the same transaction. A redelivered message
finds the workflow already moved on and does nothing. Every failure ends in a
written decision: ``failed`` with the stage and error, a dead-letter record,
and one SMS to the person, texted once the failure is committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from handlers.clock import Clock
from handlers.commands import parse_command
from handlers.decisions import DraftOnPhone, decide_command
from handlers.edits import context_instructions
from handlers.emails import Reply, build_reply, new_message_id, sender_name
from handlers.errors import OutcomeUnknownError, PeerError, PermanentError, TransientError
from handlers.links import draft_url
from handlers.messages import DraftReady, EditRequested, EmailPending, InboundSms, ReplyApproved, TopicMessage
from handlers.quiet import is_quiet
from handlers.retry import ParkPolicy, RetryPolicy
from handlers.senders import parse_patterns, skip_rule
from handlers.sms_text import (
    DraftSms,
    render_cut_off_sms,
    render_draft_sms,
    render_failed_sms,
    render_ignored_sms,
    render_outage_sms,
    render_reminder_sms,
    render_sent_sms,
)
from handlers.workflow import (
    READY_STATE,
    TIMES_OUT_FROM,
    TIMES_OUT_TO,
    Stage,
    WorkflowState,
    is_terminal,
    plan_retry,
)
from streams.kafka import topics
from streams.peers.ai import GeneratedDraft
from streams.pipeline.consumer import CURRENT_RECORD, SourceRecord
from streams.settings import Settings
from streams.stages.ports import MailSender, ReplyGenerator, SentMailbox, SmsSender
from streams.stages.retrying import Exhausted, Gate, call_with_retries
from streams.storage.records import Email, Workflow
from streams.storage.repository import Transaction, WorkflowRepository

S = WorkflowState
log = logging.getLogger(__name__)


class UnknownWorkflow(LookupError):
    """No workflow has this message_id."""


class NotAllowedNow(Exception):
    """The workflow's current state does not allow what was asked; the message says why."""


@dataclass
class Stages:
    settings: Settings
    repo: WorkflowRepository
    ai: ReplyGenerator
    sms: SmsSender
    smtp: MailSender
    clock: Clock
    #: The account's Sent folder, to settle sends cut off mid-way (None: a person settles them).
    sent_folder: SentMailbox | None = None
    #: Shared by every generation of this worker: closed while the generator asks us to wait.
    generator_gate: Gate = field(default_factory=Gate)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    @property
    def policy(self) -> RetryPolicy:
        s = self.settings
        return RetryPolicy(s.max_retry_attempts, s.retry_backoff_base, s.retry_backoff_max)

    @property
    def park_policy(self) -> ParkPolicy:
        s = self.settings
        return ParkPolicy(s.retry_park_base, s.retry_park_max, s.retry_deadline)

    @property
    def phone(self) -> str:
        return self.settings.your_phone_number

    # ------------------------------------------------------------------ draft

    async def draft(self, messages: Sequence[EmailPending | EditRequested]) -> None:
        """Ask for the drafts of ``messages`` (new emails, or again after an
        edit): move them to ``ai_generating``, where a generation pool leases
        them (:class:`~streams.pipeline.generation.GenerationPool`), in one transaction.
        Quick: the Kafka messages are done with once this commits; the
        generation itself, which takes seconds, never holds a partition up.
        A workflow already past this stage (a redelivery) is left as it is;
        a new email from a sender the rules skip ends in ``filtered``."""
        emails = [m for m in messages if isinstance(m, EmailPending)]
        skipped = {m.message_id: rule for m in emails if (rule := self._skip_rule(m.from_address)) is not None}
        async with self.repo.transaction() as tx:
            for message_id, rule in skipped.items():
                if await tx.transition(message_id, S.PENDING, S.FILTERED, f"no draft: {rule}"):
                    log.info("no draft for %s: %s", message_id, rule)
            await tx.transition_many([m.message_id for m in emails if m.message_id not in skipped],
                                     S.PENDING, S.AI_GENERATING, "draft requested")
            await tx.transition_many([m.message_id for m in messages if isinstance(m, EditRequested)],
                                     S.USER_EDIT_REQUESTED, S.AI_GENERATING, "edit requested")

    def _skip_rule(self, sender: str | None) -> str | None:
        """Why an email from ``sender`` gets no draft (a sender rule), or None."""
        return skip_rule(sender or "", self.settings.email_address, parse_patterns(self.settings.skip_senders))

    async def generate(self, wf: Workflow) -> None:
        """Generate the draft of ``wf``, leased in ``ai_generating`` by this
        worker's pool, and hand it on; park or fail it when the generator
        cannot. Every call waits at the generator's gate (Retry-After)."""
        message_id = wf.message_id
        history = list(wf.edit_history)
        is_edit = wf.edit_iteration > len(history)
        context = None
        if is_edit:
            instructions = [h["instructions"] for h in history] + [wf.user_edit_instructions or ""]
            context = context_instructions(wf.ai_reply_text, instructions)
        async def ask() -> GeneratedDraft:
            await self.generator_gate.wait()
            try:
                return await self.ai.generate(message_id, tone=self.settings.ai_reply_tone,
                                              max_length=self.settings.ai_reply_max_length,
                                              context_instructions=context)
            except TransientError as exc:
                if exc.retry_after:
                    self.generator_gate.hold(exc.retry_after)  # the whole pool slows down
                raise

        try:
            draft, _ = await call_with_retries(ask, self.policy, f"draft for {message_id}")
        except PermanentError as exc:
            await self.fail_workflow(wf, S.AI_GENERATING, Stage.DRAFT, exc)
            return
        except Exhausted as exc:
            await self.park_or_fail(wf, S.AI_GENERATING, Stage.DRAFT, exc)
            return
        if is_edit:
            history.append({"instructions": wf.user_edit_instructions, "draft": draft.full_draft})
        first = {} if is_edit or wf.ai_first_draft else {"ai_first_draft": draft.full_draft}
        async with self.repo.transaction() as tx:
            if await tx.transition(
                message_id, S.AI_GENERATING, S.AI_GENERATED,
                "draft regenerated" if is_edit else "draft generated",
                ai_reply_text=draft.full_draft,
                ai_draft_id=draft.draft_id,
                ai_model_version=draft.model_version,
                ai_reply_generated_at=self.clock.now(),
                edit_history=history,
                error_message=None,
                **first,
            ):
                await tx.publish(DraftReady(message_id=message_id, iteration=wf.edit_iteration))

    # ----------------------------------------------------------------- notify

    async def notify(self) -> None:
        """Put the right draft on the phone, if the phone is free.

        The phone holds one draft at a time: the one most recently presented,
        until it reaches a decision. An edited draft keeps the phone. Inside
        QUIET_HOURS nothing is presented; the housekeeping sweep presents it
        when they end.

        The draft SMS goes out at most once. The presentation is committed
        first (``sms_sending``, the phone assigned, under the phone's lock, so
        notifiers in several workers never present twice), and the worker
        holds it (an advisory lock on its session) while it texts. A worker
        that dies in between leaves a presentation nobody holds: the next
        notifier settles it without texting the draft again
        (:meth:`_settle_cut_off_presentation`). The gateway has no idempotency key, so
        texting again could only duplicate it.
        """
        if is_quiet(self.settings.quiet, self.clock.now()):
            return
        async with self.repo.session() as session:
            async with session.transaction() as tx:
                started = await self._start_presentation(tx)
            if not isinstance(started, _Presentation):
                await self.tell_person(started)
                return
            wf = started.wf
            try:
                sms_id, _ = await call_with_retries(
                    lambda: self.sms.send(self.phone, started.text), self.policy, "draft SMS")
            except (Exhausted, PermanentError) as exc:
                async with session.transaction() as tx:
                    notice = await self._withdraw_presentation(tx, wf, exc)
                await self.tell_person(notice)
                return
            now = self.clock.now()
            async with session.transaction() as tx:
                await tx.transition(
                    wf.message_id, S.SMS_SENDING, S.AWAITING_USER, "draft sent by SMS",
                    sms_message_id=sms_id, sms_sent_at=now,
                    timeout_at=now + timedelta(seconds=self.settings.user_response_timeout),
                )

    async def _start_presentation(self, tx: Transaction) -> _Presentation | str | None:
        """Under the phone's lock: record the presentation of the draft that
        should go on the phone now and hold it; or settle a presentation cut
        off by a dead worker (returns the SMS that says so); or nothing."""
        holder = await tx.phone.lock(self.phone)
        if holder is not None and holder.current_state is S.SMS_SENDING:
            if await tx.presenter_gone(holder.message_id):
                return await self._settle_cut_off_presentation(tx, holder)
            return None  # being texted right now
        if holder is not None and holder.current_state is READY_STATE:
            if holder.next_attempt_at is not None and holder.next_attempt_at > self.clock.now():
                return None  # an edited draft keeps the phone; it waits for the gateway
            candidate: Workflow | None = holder
        elif holder is not None and not is_terminal(holder.current_state):
            return None  # the person has a draft to answer, or it is being worked on
        else:
            candidate = await tx.phone.oldest_ready()
        if candidate is None:
            return None
        if not await tx.transition(candidate.message_id, READY_STATE, S.SMS_SENDING, "presenting the draft",
                                   sms_phone_number=self.phone):
            return None  # it moved on since we looked: nothing to text
        await tx.phone.assign(self.phone, candidate.message_id)
        if not await tx.hold_presentation(candidate.message_id):
            raise RuntimeError(f"the presentation of {candidate.message_id} is held elsewhere")
        waiting = await tx.phone.count_waiting(exclude=candidate.message_id)
        return _Presentation(candidate, self._draft_sms(candidate, waiting))

    async def _withdraw_presentation(self, tx: Transaction, wf: Workflow,
                                     error: Exhausted | PermanentError) -> str | None:
        """The gateway did not take the draft: it waits for the phone again,
        parked (an outage) or failed; returns the SMS to text once ``tx`` commits."""
        reason = error.last if isinstance(error, Exhausted) else error
        await tx.transition(wf.message_id, S.SMS_SENDING, READY_STATE, f"draft not texted: {reason}")
        await tx.phone.release([wf.message_id])
        if isinstance(error, Exhausted):
            return await self._park_or_fail_in(tx, wf, READY_STATE, Stage.NOTIFY, error)
        return await self._fail_in(tx, wf, READY_STATE, Stage.NOTIFY, error)

    async def _settle_cut_off_presentation(self, tx: Transaction, wf: Workflow, *,
                                           tell: bool = True) -> str | None:
        """A draft whose worker died while texting it: it may or may not have
        reached the phone. It awaits the person's answer as if texted, and
        (``tell``) the person gets a short SMS saying so, with the draft's
        link, instead of the draft again."""
        now = self.clock.now()
        if not await tx.transition(
                wf.message_id, S.SMS_SENDING, S.AWAITING_USER,
                "draft SMS cut off (its worker stopped while texting it); not texted again",
                sms_sent_at=now, timeout_at=now + timedelta(seconds=self.settings.user_response_timeout)):
            return None
        log.warning("%s: its draft SMS was cut off by a stopped worker; it awaits an answer", wf.message_id)
        if not tell:
            return None
        return render_cut_off_sms(sender_name(wf.email_from or "unknown sender"), wf.email_subject,
                                  draft_url(str(self.settings.orchestrator_base_url),
                                            self.settings.draft_link_key, wf.message_id))

    def _draft_sms(self, wf: Workflow, waiting: int) -> str:
        return render_draft_sms(
            DraftSms(
                sender=sender_name(wf.email_from or "unknown sender"),
                subject=wf.email_subject,
                preview=wf.email_body_preview or "",
                draft=wf.ai_reply_text or "",
                waiting=waiting,
                link=draft_url(str(self.settings.orchestrator_base_url),
                               self.settings.draft_link_key, wf.message_id),
            ),
            self.settings.sms_format,
        )

    async def send_reminders(self) -> int:
        """Text the draft on the phone once more when it has waited
        REMINDER_AFTER seconds for an answer (once; never in QUIET_HOURS).
        A reminder the gateway refuses is tried again on the next sweep."""
        after, now = self.settings.reminder_after, self.clock.now()
        if not after or is_quiet(self.settings.quiet, now):
            return 0
        sent = 0
        for message_id in await self.repo.due_reminders(now - timedelta(seconds=after)):
            try:
                async with self.repo.transaction() as tx:
                    holder = await tx.phone.lock(self.phone)
                    if holder is None or holder.message_id != message_id:
                        continue
                    if not await tx.mark_reminded(message_id):
                        continue
                    text = render_reminder_sms(self._draft_sms(holder, await tx.phone.count_waiting()))
                    # Inside the transaction: a refused reminder rolls its mark back.
                    await call_with_retries(lambda: self.sms.send(self.phone, text), self.policy, "reminder SMS")
                sent += 1
            except (Exhausted, PermanentError) as exc:
                log.warning("reminder for %s not sent (%s); trying again on the next sweep", message_id, exc)
        return sent

    # ---------------------------------------------------------------- command

    async def command(self, sms: InboundSms) -> None:
        """Act on one SMS from the person, once. An answer that arrives while
        the draft is still being texted (the person can be quicker than the
        gateway's reply) waits for that presentation to be recorded."""
        waited = 0.0
        while True:
            try:
                reply = await self._command(sms, wait_for_presentation=waited < self._presentation_bound)
                break
            except _BeingTexted:
                await self.sleep(PRESENTATION_POLL)
                waited += PRESENTATION_POLL
        await self.tell_person(reply)

    @property
    def _presentation_bound(self) -> float:
        """The longest a live worker can take to text a draft (every attempt timing out)."""
        s = self.settings
        return s.max_retry_attempts * (s.http_timeout + s.retry_backoff_max)

    async def _command(self, sms: InboundSms, *, wait_for_presentation: bool) -> str | None:
        """:meth:`command`'s transaction; returns the SMS to text once it commits.
        Raises :class:`_BeingTexted` (nothing written) while a live worker is
        texting the draft on the phone."""
        async with self.repo.transaction() as tx:
            if not await tx.sms.claim(sms.sms_id, sms.phone_number, sms.text, sms.received_at):
                return None  # handled before: a redelivery
            if sms.phone_number != self.phone:
                await tx.sms.settle(sms.sms_id, "foreign_number", None)
                return None
            wf = await tx.phone.lock(self.phone)
            if wf is not None and wf.current_state is S.SMS_SENDING:
                if await tx.presenter_gone(wf.message_id):
                    # Its worker died while texting it, and the person answers it: it reached them.
                    await self._settle_cut_off_presentation(tx, wf, tell=False)
                    wf = await tx.get(wf.message_id)
                elif wait_for_presentation:
                    raise _BeingTexted(wf.message_id)
            on_phone = DraftOnPhone(wf.message_id, wf.current_state, wf.edit_iteration) if wf else None
            effect = decide_command(parse_command(sms.text), sms.text, on_phone,
                                    self.settings.max_edit_iterations, self.clock.now())
            reply = effect.reply_sms
            if wf is not None and effect.target is not None:
                await tx.transition(wf.message_id, S.AWAITING_USER, effect.target, effect.reason,
                                    **effect.fields)
                if effect.follow_up is not None:
                    await tx.publish(effect.follow_up)
                if effect.tell_what_is_next:
                    reply = render_ignored_sms(sender_name(wf.email_from or "?"), *await _next_up(tx))
            await tx.sms.settle(sms.sms_id, effect.outcome, wf.message_id if wf else None)
        return reply

    # ------------------------------------------------------------------- send

    async def _claim_send(self, message_id: str) -> _SendClaim | None:
        """Record the intent to send (our Message-ID, ``send_attempted_at``)
        before any SMTP traffic. None when there is nothing to send (not
        approved: a redelivery); a claim with ``cut_off`` set when a previous
        attempt was cut off mid-send and its outcome is unknown."""
        async with self.repo.transaction() as tx:
            wf = await tx.get(message_id, for_update=True)
            if wf is None or wf.current_state is not S.USER_APPROVED:
                return None
            reply_id = wf.reply_message_id or new_message_id(self.settings.email_address)
            cut_off = not await tx.claim_send(message_id, reply_id)
            email = await tx.email(message_id)
        assert email is not None  # workflow_state references processed_emails
        return _SendClaim(wf, email, reply_id, cut_off)

    async def send(self, message_id: str) -> None:
        """Send the approved reply, at most once; a send cut off mid-way is
        settled by the Sent folder when there is one, else by a person."""
        claim = await self._claim_send(message_id)
        if claim is None:
            return
        if claim.cut_off and not await self._settle_cut_off(claim, "a worker stopped while this reply was "
                                                                   "being sent"):
            return
        for attempt in ("first", "after the Sent folder check"):
            try:
                attempts = await self._hand_over(claim)
            except OutcomeUnknownError as exc:
                if attempt != "first":  # cut off twice: a person decides
                    await self.fail_workflow(claim.wf, S.USER_APPROVED, Stage.SEND, exc)
                elif await self._settle_cut_off(claim, str(exc)):
                    continue  # not in the Sent folder: sent again, once, with the same Message-ID
                return
            except PermanentError as exc:
                # The server refused it: nothing went out, a retry may send again.
                await self.fail_workflow(claim.wf, S.USER_APPROVED, Stage.SEND, exc, send_attempted_at=None)
                return
            except Exhausted as exc:
                await self.park_or_fail(claim.wf, S.USER_APPROVED, Stage.SEND, exc, send_attempted_at=None)
                return
            await self._record_sent(claim, "reply sent", retry_count=claim.wf.retry_count + attempts - 1)
            return

    async def _hand_over(self, claim: _SendClaim) -> int:
        """Give the reply to the SMTP server; returns the attempts it took."""
        wf, email = claim.wf, claim.email
        message = build_reply(Reply(
            from_address=self.settings.email_address,
            original_from=email.from_address,
            original_subject=email.subject,
            original_message_id=wf.message_id,
            original_references=email.in_reply_to,
            body=wf.ai_reply_text or "",
            message_id=claim.reply_id,
            date=self.clock.now(),
        ))
        _, attempts = await call_with_retries(lambda: self.smtp.send(message), self.policy,
                                              f"reply to {wf.message_id}")
        return attempts

    async def _record_sent(self, claim: _SendClaim, reason: str, **fields: Any) -> None:
        message_id = claim.wf.message_id
        async with self.repo.transaction() as tx:
            await tx.transition(message_id, S.USER_APPROVED, S.REPLY_SENT, reason,
                                reply_sent_at=self.clock.now(), **fields)
            await tx.record_sent_reply(message_id, claim.wf.ai_reply_text or "")
            next_up = await _next_up(tx)
        await self.tell_person(render_sent_sms(sender_name(claim.email.from_address), *next_up))

    async def _settle_cut_off(self, claim: _SendClaim, what_happened: str) -> bool:
        """A send whose outcome is unknown: look for our Message-ID in the Sent
        folder. Found: the reply went out (recorded as sent). Not found: True,
        send it again with the same Message-ID. No Sent folder, or it cannot be
        read: the workflow fails as "outcome unknown" for a person to decide."""
        wf, reply_id = claim.wf, claim.reply_id
        if self.sent_folder is not None:
            folder = self.sent_folder
            try:
                found, _ = await call_with_retries(lambda: folder.contains(reply_id), self.policy,
                                                   f"Sent folder check for {reply_id}")
            except (Exhausted, PeerError) as exc:
                what_happened += f"; the Sent folder could not be checked ({exc})"
            else:
                if found:
                    await self._record_sent(claim, f"reply confirmed in the Sent folder ({reply_id})")
                    return False
                async with self.repo.transaction() as tx:
                    if not await tx.claim_send(wf.message_id, reply_id, again=True):
                        return False
                log.warning("%s: %s, and %s is not in the Sent folder: sending again", wf.message_id,
                            what_happened, reply_id)
                return True
        unknown = OutcomeUnknownError(
            "SMTP", f"outcome unknown: {what_happened}; it may or may not have gone out. Check the Sent "
            "folder, then retry to send it again")
        await self.fail_workflow(wf, S.USER_APPROVED, Stage.SEND, unknown)
        return False

    # ------------------------------------------------------ timeouts, retries

    async def expire_timeouts(self) -> int:
        """Time out every draft the person has not answered by its ``timeout_at``."""
        expired = 0
        for message_id in await self.repo.due_timeouts(self.clock.now()):
            expired += await self.repo.transition(
                message_id, TIMES_OUT_FROM, TIMES_OUT_TO,
                f"no answer within {self.settings.user_response_timeout:g}s")
        return expired

    async def time_out(self, message_id: str, reason: str) -> None:
        """Time out ``message_id`` now; raises :class:`UnknownWorkflow` or :class:`NotAllowedNow`."""
        wf = await self.repo.get(message_id)
        if wf is None:
            raise UnknownWorkflow(f"no workflow for {message_id}")
        if not await self.repo.transition(message_id, TIMES_OUT_FROM, TIMES_OUT_TO, reason):
            raise NotAllowedNow(f"only a workflow awaiting the user can be timed out; this one is "
                                f"{wf.current_state.value}")

    async def retry(self, message_id: str, reason: str) -> WorkflowState:
        """Restart a failed or timed-out workflow where
        :func:`~handlers.workflow.plan_retry` says; returns the state it
        re-entered. Raises :class:`UnknownWorkflow` or :class:`NotAllowedNow`."""
        async with self.repo.transaction() as tx:
            wf = await tx.get(message_id, for_update=True)
            if wf is None:
                raise UnknownWorkflow(f"no workflow for {message_id}")
            restart = plan_retry(wf.current_state, wf.failed_stage, has_draft=bool(wf.ai_reply_text))
            if restart is None:
                raise NotAllowedNow(f"only failed or timed-out workflows can be retried; this one is "
                                    f"{wf.current_state.value}")
            await tx.transition(message_id, wf.current_state, restart.state, reason,
                                error_message=None, send_attempted_at=None)
            await tx.publish(_restart_message(restart.stage, wf))
        return restart.state

    # ---------------------------------------------------------------- outages

    async def park_or_fail(self, wf: Workflow, state: WorkflowState, stage: Stage, error: Exhausted,
                           **fail_fields: Any) -> None:
        """A peer outlasted the in-call retries: park ``wf`` in ``state`` and
        try ``stage`` again later (see :class:`~handlers.retry.ParkPolicy`),
        texting the person once per outage; past RETRY_DEADLINE, fail it."""
        async with self.repo.transaction() as tx:
            sms = await self._park_or_fail_in(tx, wf, state, stage, error, **fail_fields)
        await self.tell_person(sms)

    async def _park_or_fail_in(self, tx: Transaction, wf: Workflow, state: WorkflowState, stage: Stage,
                               error: Exhausted, **fail_fields: Any) -> str | None:
        """:meth:`park_or_fail` inside ``tx``; returns the SMS to text once it commits."""
        now = self.clock.now()
        since = wf.parked_since or now
        next_at = self.park_policy.next_attempt(wf.park_attempts, since, now)
        if next_at is None:
            return await self._fail_in(tx, wf, state, stage, error, **fail_fields)
        peer = error.last.peer
        if not await tx.park(wf.message_id, state, stage=stage.value, peer=peer, reason=str(error.last),
                             since=since, attempts=wf.park_attempts + 1, next_attempt_at=next_at,
                             release_send="send_attempted_at" in fail_fields):
            return None
        log.warning("%s parked at %s: %s; next try at %s", wf.message_id, stage, error.last, next_at.isoformat())
        return render_outage_sms(peer) if await tx.note_outage(peer) else None

    async def resume_parked(self, limit: int = 100) -> int:
        """Set going again every parked stage whose next try is due (through
        its topic, so the partition's owner runs it); forget outages that hold
        nothing parked any more."""
        async with self.repo.transaction() as tx:
            due = await tx.claim_due_parked(limit)
            for wf in due:
                if wf.park_stage != Stage.DRAFT.value:  # a due draft is leased by a generation pool
                    await tx.publish(_restart_message(Stage(wf.park_stage or Stage.DRAFT.value), wf))
            for peer in await tx.end_outages():
                log.info("%s is back: nothing is parked on it any more", peer)
        return len(due)

    # --------------------------------------------------------------- failures

    async def fail_workflow(self, wf: Workflow, expected: WorkflowState, stage: Stage, error: Exception,
                            **fields: Any) -> None:
        """Record that ``wf`` gave up at ``stage``; dead-letter it; tell the person."""
        async with self.repo.transaction() as tx:
            failure_sms = await self._fail_in(tx, wf, expected, stage, error, **fields)
        await self.tell_person(failure_sms)

    async def fail_unexpected(self, message_id: str, stage: Stage, error: Exception) -> None:
        """A bug, not a peer, stopped ``message_id``: fail it (if it is still live)
        so it is visible, retryable and not silently stuck mid-stage."""
        wf = await self.repo.get(message_id)
        if wf is None or is_terminal(wf.current_state) or wf.current_state is S.AWAITING_USER:
            return
        await self.fail_workflow(wf, wf.current_state, stage, error)

    async def _fail_in(self, tx: Transaction, wf: Workflow, expected: WorkflowState, stage: Stage,
                       error: Exception, **fields: Any) -> str | None:
        """Fail ``wf`` inside ``tx``; return the SMS to text once ``tx`` has
        committed (None when the workflow had already moved on)."""
        attempts = error.attempts if isinstance(error, Exhausted) else 1
        text = str(error)
        if not await tx.transition(wf.message_id, expected, S.FAILED, f"{stage} failed", error=text,
                                   failed_stage=stage.value, error_message=text,
                                   retry_count=wf.retry_count + attempts - 1, **fields):
            return None
        # The record that set the stage going when there is one; else the
        # message that sets it going again (a draft is driven from the database).
        record = CURRENT_RECORD.get()
        if (record is None or record.topic != topics.STAGE_TOPIC[stage]
                or (stage is not Stage.COMMAND and record.key != wf.message_id.encode())):
            restart = _restart_message(stage, wf)
            record = SourceRecord(restart.topic, wf.message_id.encode(), restart.to_json().encode())
        await tx.publish(record.dead_letter(stage, "exhausted" if isinstance(error, Exhausted) else "permanent",
                                            error, attempts))
        return render_failed_sms(sender_name(wf.email_from or "?"), wf.email_subject, _reason(error))

    async def tell_person(self, text: str | None) -> None:
        """Best effort: an informational SMS that fails is logged, not retried
        forever. Nothing to say (None) sends nothing."""
        if not text:
            return
        try:
            await call_with_retries(lambda: self.sms.send(self.phone, text), self.policy, "SMS")
        except (Exhausted, PeerError) as exc:
            log.warning("could not text the person: %s", exc)


async def _next_up(tx: Transaction) -> tuple[str | None, int]:
    """Who sent the draft that goes on the phone next, and how many wait."""
    nxt = await tx.phone.oldest_ready()
    return (sender_name(nxt.email_from or "?") if nxt else None), await tx.phone.count_waiting()


#: How often an answer that arrived mid-presentation looks again.
PRESENTATION_POLL = 0.1


class _BeingTexted(Exception):
    """The draft on the phone is being texted by a live worker right now."""


@dataclass(frozen=True)
class _Presentation:
    """A draft this worker is putting on the phone, and its SMS."""

    wf: Workflow
    text: str


@dataclass(frozen=True)
class _SendClaim:
    """An approved reply claimed for sending: ``cut_off`` when an earlier
    attempt's outcome is unknown."""

    wf: Workflow
    email: Email
    reply_id: str
    cut_off: bool


def _restart_message(stage: Stage, wf: Workflow) -> TopicMessage:
    """The message that sets ``stage`` going again for ``wf``."""
    if stage is Stage.DRAFT:
        return EmailPending(message_id=wf.message_id, from_address=wf.email_from, subject=wf.email_subject,
                            received_at=wf.email_received_at)
    if stage is Stage.NOTIFY:
        return DraftReady(message_id=wf.message_id, iteration=wf.edit_iteration)
    if stage is Stage.SEND:
        return ReplyApproved(message_id=wf.message_id)
    raise ValueError(f"stage {stage} is not restarted by a message of its own")


def _reason(error: Exception) -> str:
    if isinstance(error, Exhausted):
        error = error.last
    return str(error)
