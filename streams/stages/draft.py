"""The draft stage: ask for drafts, then (in a generation pool) generate them."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from handlers.drafts import GeneratedDraft
from handlers.edits import context_instructions
from handlers.errors import PermanentError, TransientError
from handlers.messages import DraftReady, EditRequested, EmailPending
from handlers.senders import skip_rule
from handlers.threads import (
    EARLIER_EMAILS,
    ClosedDraft,
    EarlierEmail,
    joined_context,
    render_superseded_sms,
    superseded_reason,
    thread_instructions,
)
from handlers.workflow import CLOSABLE_STATES, Stage, WorkflowState
from streams.stages import lessons
from streams.stages.context import StageContext
from streams.stages.failures import fail_workflow
from streams.stages.parking import park_or_fail
from streams.stages.retrying import Exhausted, call_with_retries
from streams.storage.protocol import RepositoryTransaction
from streams.storage.records import Workflow

S = WorkflowState
log = logging.getLogger(__name__)


async def draft(ctx: StageContext, messages: Sequence[EmailPending | EditRequested]) -> None:
    """Ask for the drafts of ``messages`` (new emails, or again after an
    edit): move them to ``ai_generating``, where a generation pool leases
    them (:class:`~streams.pipeline.generation.GenerationPool`), in one transaction.
    Quick: the Kafka messages are done with once this commits; the
    generation itself, which takes seconds, never holds a partition up.
    A workflow already past this stage (a redelivery) is left as it is;
    a new email from a sender the rules skip ends in ``filtered``. A new
    email closes the open drafts of the older emails of its thread
    (:func:`supersede_older`), and the person is told once it commits."""
    emails = [m for m in messages if isinstance(m, EmailPending)]
    skipped = {m.message_id: rule for m in emails if (rule := await _skip_rule(ctx, m)) is not None}
    async with ctx.repo.transaction() as tx:
        for message_id, rule in skipped.items():
            if await tx.transition(message_id, S.PENDING, S.FILTERED, f"no draft: {rule}"):
                log.info("no draft for %s: %s", message_id, rule)
        started = await tx.transition_many([m.message_id for m in emails if m.message_id not in skipped],
                                           S.PENDING, S.AI_GENERATING, "draft requested")
        await tx.transition_many([m.message_id for m in messages if isinstance(m, EditRequested)],
                                 S.USER_EDIT_REQUESTED, S.AI_GENERATING, "edit requested")
        closed = await supersede_older(tx, started)
    whose = {m.message_id: m.person_id for m in emails}
    for newer_id, text in closed:
        person = await ctx.person(whose.get(newer_id, 0))
        await (ctx.for_person(person) if person is not None else ctx).tell_person(text)


async def supersede_older(tx: RepositoryTransaction, newer: Sequence[str]) -> list[tuple[str, str]]:
    """Close as ``superseded`` every open draft of an older email of the
    threads of ``newer`` (just started drafting) from the same sender (the
    storage compares them: an email of the thread from anyone else keeps its
    own draft), compare-and-set from
    :data:`~handlers.workflow.CLOSABLE_STATES`: a draft being texted, or a
    reply approved or being sent, is left alone. Returns the SMS to send
    once this commits, one per newer email, naming the closed drafts the
    person may have seen (those that had a draft); docs/design.md."""
    older_of: dict[str, list[Workflow]] = {}
    for newer_id, older in await tx.open_earlier_in_thread(newer, CLOSABLE_STATES):
        older_of.setdefault(newer_id, []).append(older)
    texts = []
    for newer_id, olds in older_of.items():
        gone = set(await tx.transition_many([wf.message_id for wf in olds], CLOSABLE_STATES, S.SUPERSEDED,
                                            superseded_reason(newer_id)))
        if not gone:
            continue
        await tx.record_superseded(gone, newer_id)
        log.info("%s superseded by the newer email %s of their thread", ", ".join(sorted(gone)), newer_id)
        # Read before the move: a terminal transition clears the code.
        text = render_superseded_sms([ClosedDraft(wf.draft_code, wf.email_from, wf.email_subject)
                                      for wf in olds if wf.message_id in gone and wf.ai_reply_text])
        if text:
            texts.append((newer_id, text))
    return texts


async def _skip_rule(ctx: StageContext, message: EmailPending) -> str | None:
    """Why ``message``'s email gets no draft (a sender rule of the person
    whose email it is), or None. A message without the sender (written by
    hand, or by an older worker) is drafted as before: the rules need the sender."""
    if message.from_address is None:
        return None
    person = await ctx.person(message.person_id) or ctx.default_person
    return skip_rule(message.from_address, person.email_address, person.skip_patterns)


async def generate(ctx: StageContext, wf: Workflow) -> None:
    """Generate the draft of ``wf``, leased in ``ai_generating`` by this
    worker's pool, and hand it on; park or fail it when the generator
    cannot. Every call waits at the generator's gate (Retry-After)."""
    ctx = await ctx.about(wf) or ctx  # the person whose email it is: their tone, their phone for news
    message_id = wf.message_id
    history = list(wf.edit_history)
    is_edit = wf.edit_iteration > len(history)
    edits = None
    if is_edit:
        instructions = [h["instructions"] for h in history] + [wf.user_edit_instructions or ""]
        edits = context_instructions(wf.ai_reply_text, instructions)
    lesson_ids, taught = await lessons.for_draft(ctx, wf, is_edit=is_edit)  # docs/design.md, "It learns from you"
    thread = await _thread_context(ctx, message_id) if wf.supersedes else None
    context = joined_context(taught, joined_context(thread, edits))

    async def ask() -> GeneratedDraft:
        await ctx.generator_gate.wait()
        try:
            return await ctx.ai.generate(message_id, tone=ctx.me.tone, max_length=ctx.me.max_length,
                                         context_instructions=context)
        except TransientError as exc:
            if exc.retry_after:
                ctx.generator_gate.hold(exc.retry_after)  # the whole pool slows down
            raise

    try:
        generated, _ = await call_with_retries(ask, ctx.policy, f"draft for {message_id}")
    except PermanentError as exc:
        await fail_workflow(ctx, wf, S.AI_GENERATING, Stage.DRAFT, exc)
        return
    except Exhausted as exc:
        await park_or_fail(ctx, wf, S.AI_GENERATING, Stage.DRAFT, exc)
        return
    if is_edit:
        history.append({"instructions": wf.user_edit_instructions, "draft": generated.full_draft})
    first = {} if is_edit or wf.ai_first_draft else {"ai_first_draft": generated.full_draft}
    async with ctx.repo.transaction() as tx:
        if await tx.transition(
            message_id, S.AI_GENERATING, S.AI_GENERATED,
            "draft regenerated" if is_edit else "draft generated",
            ai_reply_text=generated.full_draft,
            ai_draft_id=generated.draft_id,
            ai_model_version=generated.model_version,
            ai_reply_generated_at=ctx.clock.now(),
            edit_history=history,
            error_message=None,
            lesson_ids=lesson_ids,
            **first,
        ):
            await tx.publish(DraftReady(message_id=message_id, iteration=wf.edit_iteration))
            if not is_edit:
                await lessons.applied(tx, lesson_ids)


async def _thread_context(ctx: StageContext, message_id: str) -> str | None:
    """What the generator is told of the earlier emails of the thread whose
    drafts ``message_id`` superseded, read again at every generation (so an
    edit of the newer draft keeps them in view); None when there are none."""
    async with ctx.repo.transaction() as tx:
        earlier = await tx.earlier_emails(message_id, EARLIER_EMAILS)
    return thread_instructions([EarlierEmail(e.from_address, e.subject, e.body_text, e.body_html)
                                for e in earlier])
